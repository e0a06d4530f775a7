use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

#[derive(Aggregate, Default)]
#[aggregate(events(ItemAdded, ItemRemoved, ItemAdded))]
pub struct Cart;

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, _: ItemAdded) {}
}

impl Apply<ItemRemoved> for Cart {
    fn apply(&mut self, _: ItemRemoved) {}
}

fn main() {}
