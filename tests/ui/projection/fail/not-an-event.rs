use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

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

fn main() {}
