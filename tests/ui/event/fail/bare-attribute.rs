use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event = "cart.item_removed"]
pub struct ItemRemoved;

fn main() {}
