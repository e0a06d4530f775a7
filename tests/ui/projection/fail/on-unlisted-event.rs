use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.closed")]
pub struct Closed;

#[derive(Projection, Default)]
#[projection(events(Opened))]
pub struct Balances;

impl On<Opened> for Balances {
    async fn on(&mut self, _: Opened, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

// `Closed` is not in `events(...)`: this handler would never be called.
impl On<Closed> for Balances {
    async fn on(&mut self, _: Closed, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

fn main() {}
