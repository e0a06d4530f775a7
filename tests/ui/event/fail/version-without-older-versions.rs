use annals::Event;
use serde::{Deserialize, Serialize};

// Version 2, but nothing says how a stored version 1 reads.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", version = 2)]
pub struct Opened {
    pub owner: String,
}

fn main() {}
