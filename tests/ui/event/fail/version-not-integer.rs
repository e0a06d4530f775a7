use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = "1")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = -1)]
pub struct ItemRemoved;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(version = 5000000000)]
pub struct CartEmptied;

fn main() {}
