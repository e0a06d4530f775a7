use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

pub struct AddItem;

#[derive(Aggregate, Default)]
#[aggregate(events(ItemAdded, ItemRemoved), commands(AddItem, AddItem))]
pub struct Cart;

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, _: ItemAdded) {}
}

impl Apply<ItemRemoved> for Cart {
    fn apply(&mut self, _: ItemRemoved) {}
}

impl annals::Handle<AddItem> for Cart {
    fn handle(&self, _: &AddItem) -> annals::Decision<Self> {
        Ok(vec![ItemAdded.into()])
    }
}

fn main() {}
