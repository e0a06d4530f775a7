//! An enum aggregate: a state machine with `#[derive(Default)]` and `#[default]`.

use annals::{Aggregate, Apply, Decision, Event, Handle};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.placed")]
pub struct Placed;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.shipped")]
pub struct Shipped;

pub struct Ship;

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("only a placed order can ship")]
pub struct NotPlaced;

#[derive(Aggregate, Default, Debug, PartialEq)]
#[aggregate(events(Placed, Shipped), commands(Ship), error = NotPlaced)]
pub enum Order {
    #[default]
    New,
    Placed,
    Shipped,
}

impl Apply<Placed> for Order {
    fn apply(&mut self, _: Placed) {
        *self = Order::Placed;
    }
}

impl Apply<Shipped> for Order {
    fn apply(&mut self, _: Shipped) {
        *self = Order::Shipped;
    }
}

impl Handle<Ship> for Order {
    fn handle(&self, _: &Ship) -> Decision<Self> {
        match self {
            Order::Placed => Ok(vec![Shipped.into()]),
            _ => Err(NotPlaced),
        }
    }
}

fn main() {
    assert_eq!(Order::NAME, "order");
    let mut order = Order::default();
    assert_eq!(order.handle(&OrderCommand::Ship(Ship)), Err(NotPlaced));
    order.apply_event(OrderEvent::Placed(Placed));
    let events = order.handle(&OrderCommand::from(Ship)).unwrap();
    for event in events {
        order.apply_event(event);
    }
    assert_eq!(order, Order::Shipped);
}
