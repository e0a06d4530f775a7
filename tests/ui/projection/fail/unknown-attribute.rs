use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved;

#[derive(Projection, Default)]
#[projection(evnts(ItemAdded), events(ItemAdded))]
pub struct CartSummaries;

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, _: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

fn main() {}
