use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ItemAdded {
    #[event(name = "cart.item_added")]
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum PaymentChanged {
    #[event(version = 2)]
    Card,
}

fn main() {}
