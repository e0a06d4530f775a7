use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

// `Deserialize` is missing: stored events are read back from JSON.
#[derive(Event, Serialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened {
    pub owner: String,
}

pub struct Open;

#[derive(Aggregate, Default)]
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
        Ok(vec![Opened { owner: "ann".into() }.into()])
    }
}

fn main() {}
