//! Without `#[event(...)]`, the stored name is the type's name and the version is 1.

use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ItemAdded {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum PaymentChanged {
    Card { last4: String },
    Cash,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CartEmptied;

fn main() {
    assert_eq!(ItemAdded::NAME, "ItemAdded");
    assert_eq!(ItemAdded::VERSION, 1);
    assert_eq!(PaymentChanged::NAME, "PaymentChanged");
    assert_eq!(<CartEmptied as Event>::NAME, "CartEmptied");
}
