//! Every key: an explicit name, several events (one with aliases, one by path) and a
//! custom context type, on an enum.

use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

mod cart {
    use serde::{Deserialize, Serialize};

    #[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.checked_out")]
    pub struct CheckedOut;
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", aliases("ItemAdded", "cart.added"))]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

/// What the handlers write to.
pub struct Ledger {
    pub lines: Vec<&'static str>,
}

#[derive(Projection)]
#[projection(name = "cart_status", events(ItemAdded, ItemRemoved, cart::CheckedOut), context = Ledger)]
pub enum CartStatus {
    Open,
    CheckedOut,
}

impl On<ItemAdded> for CartStatus {
    async fn on(&mut self, _: ItemAdded, _: &Envelope, ledger: &mut Ledger) -> Result<(), annals::BoxError> {
        ledger.lines.push("added");
        Ok(())
    }
}

impl On<ItemRemoved> for CartStatus {
    async fn on(&mut self, _: ItemRemoved, _: &Envelope, ledger: &mut Ledger) -> Result<(), annals::BoxError> {
        ledger.lines.push("removed");
        Ok(())
    }
}

impl On<cart::CheckedOut> for CartStatus {
    async fn on(&mut self, _: cart::CheckedOut, _: &Envelope, _: &mut Self::Context) -> Result<(), annals::BoxError> {
        *self = CartStatus::CheckedOut;
        Ok(())
    }
}

fn main() {
    assert_eq!(<CartStatus as Projection>::NAME, "cart_status");
    assert_eq!(
        <CartStatus as Projection>::EVENT_TYPES,
        ["cart.item_added", "ItemAdded", "cart.added", "cart.item_removed", "cart.checked_out"]
    );
    let mut ledger: <CartStatus as Projection>::Context = Ledger { lines: Vec::new() };
    ledger.lines.push("opened");
    assert!(matches!(CartStatus::Open, CartStatus::Open));
}
