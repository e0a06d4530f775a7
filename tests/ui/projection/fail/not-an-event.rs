use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

// `#[derive(Event)]` is missing: one error, at the listed type (the `On` impl is fine).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CartEmptied;

#[derive(Projection, Default)]
#[projection(events(ItemAdded, CartEmptied))]
pub struct CartSummaries;

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, _: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

impl On<CartEmptied> for CartSummaries {
    async fn on(&mut self, _: CartEmptied, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

fn main() {}
