use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(nme = "cart.item_added", version = 1, schema::v = 2)]
pub struct ItemAdded;

fn main() {}
