//! `name` and `version`, in one attribute or split over several.

use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 3, oldest = 3)]
pub struct ItemAdded {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
#[event(version = 2, oldest = 2)]
pub struct CheckedOut;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 1)]
pub enum Renamed {
    A,
}

fn main() {
    assert_eq!((ItemAdded::NAME, ItemAdded::VERSION), ("cart.item_added", 3));
    assert_eq!((CheckedOut::NAME, CheckedOut::VERSION), ("cart.checked_out", 2));
    assert_eq!((Renamed::NAME, Renamed::VERSION), ("Renamed", 1));
}
