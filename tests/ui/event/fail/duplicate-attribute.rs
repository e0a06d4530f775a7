use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", name = "cart.added")]
pub struct ItemAdded;

// Keys may be split over several attributes, but each is given once in total.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 2, oldest = 2)]
#[event(version = 3)]
pub struct ItemRemoved;

fn main() {}
