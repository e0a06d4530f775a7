use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

// Stored as `cart.item_added` in the past: events of that name would be ambiguous.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.line_added", aliases("cart.item_added"))]
pub struct LineAdded;

#[derive(Projection, Default)]
#[projection(events(ItemAdded, LineAdded))]
pub struct CartSummaries;

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, _: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

impl On<LineAdded> for CartSummaries {
    async fn on(&mut self, _: LineAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        Ok(())
    }
}

fn main() {}
