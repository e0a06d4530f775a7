use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.frozen")]
pub struct Frozen;

pub struct Freeze;

#[derive(Aggregate, Default)]
#[aggregate(events(Opened), commands(Freeze))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: Opened) {}
}

impl annals::Handle<Freeze> for Account {
    fn handle(&self, _: &Freeze) -> annals::Decision<Self> {
        // `Frozen` is not in `events(...)`.
        Ok(vec![Frozen.into()])
    }
}

fn main() {}
