use annals::{Event, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Projection)]
#[projection(events(ItemAdded))]
pub union CartSummaries {
    count: u32,
    total: f32,
}

fn main() {}
