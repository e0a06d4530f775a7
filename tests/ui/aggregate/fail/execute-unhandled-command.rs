use annals::{Aggregate, Apply, Event, Repository};
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

impl annals::Handle<Open> for Account {
    fn handle(&self, _: &Open) -> annals::Decision<Self> {
        Ok(vec![Opened.into()])
    }
}

async fn freeze(accounts: Repository<Account, annals_memory::MemoryStore>) {
    // `Freeze` is neither listed nor handled.
    let _ = accounts.execute("a1", Freeze).await;
}

fn main() {
    drop(freeze);
}
