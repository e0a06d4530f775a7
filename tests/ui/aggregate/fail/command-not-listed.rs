use annals::{Aggregate, Apply, Event, Handle};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

pub struct Open;
pub struct Freeze;

#[derive(Aggregate, Default)]
#[aggregate(events(Opened), commands(Open))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: Opened) {}
}

impl Handle<Open> for Account {
    fn handle(&self, _: &Open) -> annals::Decision<Self> {
        Ok(vec![Opened.into()])
    }
}

fn main() {
    // `Freeze` is not in `commands(...)`, so the command enum has no variant for it.
    let _ = AccountCommand::from(Freeze);
}
