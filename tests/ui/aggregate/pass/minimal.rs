//! Only `events(...)`: the name defaults to the type name in snake_case, the error to
//! `Infallible`, and no command enum is generated.

use annals::{Aggregate, Apply, Event, EventSet};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Opened;

#[derive(Aggregate, Default)]
#[aggregate(events(Opened))]
pub struct ShoppingCart {
    open: bool,
}

impl Apply<Opened> for ShoppingCart {
    fn apply(&mut self, _: Opened) {
        self.open = true;
    }
}

fn main() {
    assert_eq!(ShoppingCart::NAME, "shopping_cart");
    assert_eq!(ShoppingCart::stream_id("7"), "shopping_cart-7");
    assert_eq!(ShoppingCartEvent::NAMES, ["Opened"]);
    let _: fn(<ShoppingCart as Aggregate>::Error) -> std::convert::Infallible = |e| e;
    let mut cart = ShoppingCart::default();
    cart.apply_event(Opened.into());
    assert!(cart.open);
}
