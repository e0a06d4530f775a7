use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

#[derive(Projection, Default)]
#[projection(events(Opened))]
pub struct Accounts;

impl On<Opened> for Accounts {
    // Not `async fn`.
    fn on(&mut self, _: Opened, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

fn main() {}
