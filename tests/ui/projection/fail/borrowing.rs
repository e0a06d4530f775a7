use annals::{Event, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Projection)]
#[projection(events(ItemAdded))]
pub struct CartSummaries<'a> {
    rows: &'a mut Vec<String>,
}

fn main() {}
