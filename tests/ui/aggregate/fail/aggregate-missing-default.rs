use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

pub struct Open;

// `Default` is missing: a new aggregate starts from its default state.
#[derive(Aggregate)]
#[aggregate(events(Opened), commands(Open))]
pub struct Account {
    pub open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: Opened) {
        self.open = true;
    }
}

impl annals::Handle<Open> for Account {
    fn handle(&self, _: &Open) -> annals::Decision<Self> {
        Ok(vec![Opened.into()])
    }
}

fn main() {}
