//! annals reached through another path (a renamed dependency, or a re-export from a
//! crate of one's own): `crate = "..."` on each derive.

mod facade {
    pub use annals as inner;
}

use facade::inner::{Aggregate, Apply, Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", crate = "crate::facade::inner")]
pub struct Opened;

pub struct Open;

#[derive(Aggregate, Default)]
#[aggregate(events(Opened), commands(Open), crate = "crate::facade::inner")]
pub struct Account {
    pub open: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: Opened) {
        self.open = true;
    }
}

impl facade::inner::Handle<Open> for Account {
    fn handle(&self, _: &Open) -> facade::inner::Decision<Self> {
        Ok(vec![Opened.into()])
    }
}

#[derive(Projection, Default)]
#[projection(events(Opened), crate = "crate::facade::inner")]
pub struct Accounts {
    pub opened: u32,
}

impl On<Opened> for Accounts {
    async fn on(&mut self, _: Opened, _: &Envelope, _: &mut ()) -> Result<(), facade::inner::BoxError> {
        self.opened += 1;
        Ok(())
    }
}

fn main() {
    let mut account = Account::default();
    account.apply_event(AccountEvent::Opened(Opened));
    assert!(account.open);
    assert_eq!(<Opened as Event>::NAME, "account.opened");
}
