use annals::{Event, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Projection)]
#[projection(events(ItemAdded))]
pub struct CartSummaries<T> {
    rows: Vec<T>,
}

fn main() {}
