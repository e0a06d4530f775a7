use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

#[derive(Aggregate, Default)]
#[aggregate(evnets(Opened))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: Opened) {}
}

fn main() {}
