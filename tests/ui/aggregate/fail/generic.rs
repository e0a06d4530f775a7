use annals::{Aggregate, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

#[derive(Aggregate, Default)]
#[aggregate(events(ItemAdded, ItemRemoved))]
pub struct Cart<T> {
    items: Vec<T>,
}

fn main() {}
