use annals::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Changed<T> {
    pub value: T,
}

fn main() {}
