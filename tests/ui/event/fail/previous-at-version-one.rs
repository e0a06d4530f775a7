use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 1)]
pub struct ItemAddedV1 {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", previous = ItemAddedV1)]
pub struct ItemAdded {
    pub sku: String,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(v1: ItemAddedV1) -> Self {
        ItemAdded { sku: v1.sku }
    }
}

fn main() {}
