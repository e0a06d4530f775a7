use annals::{Aggregate, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

#[derive(Aggregate)]
#[aggregate(events(ItemAdded, ItemRemoved))]
pub union Cart {
    a: u32,
    b: f32,
}

fn main() {}
