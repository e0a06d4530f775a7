use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "")]
pub struct ItemAdded;

fn main() {}
