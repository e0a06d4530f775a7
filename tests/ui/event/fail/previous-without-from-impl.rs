use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 1)]
pub struct ItemAddedV1 {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 2, previous = ItemAddedV1)]
pub struct ItemAdded {
    pub sku: String,
}

fn main() {}
