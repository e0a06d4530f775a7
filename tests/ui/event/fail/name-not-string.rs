use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = cart.item_added)]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name)]
pub struct ItemRemoved;

fn main() {}
