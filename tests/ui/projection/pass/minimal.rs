//! The defaults: the name is the type's name in snake_case, the context `()`.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Projection, Default)]
#[projection(events(ItemAdded))]
pub struct CartSummaries {
    added: u64,
}

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, _: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.added += 1;
        Ok(())
    }
}

fn main() {
    assert_eq!(<CartSummaries as Projection>::NAME, "cart_summaries");
    assert_eq!(<CartSummaries as Projection>::EVENT_TYPES, ["cart.item_added"]);
    let _: <CartSummaries as Projection>::Context = ();
    assert_eq!(CartSummaries::default().added, 0);
}
