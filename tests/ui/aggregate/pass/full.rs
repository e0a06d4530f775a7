//! Every key of `#[aggregate(...)]`, with renamed enums and types from other modules.

use annals::{Aggregate, Apply, Decision, Handle};

mod events {
    use annals::Event;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added")]
    pub struct ItemAdded {
        pub sku: String,
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_removed", version = 2, oldest = 2)]
    pub struct ItemRemoved {
        pub sku: String,
    }
}

mod commands {
    pub struct AddItem {
        pub sku: String,
    }
    pub struct RemoveItem {
        pub sku: String,
    }
}

use events::{ItemAdded, ItemRemoved};

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CartError {
    #[error("`{0}` is not in the cart")]
    NotInCart(String),
}

#[derive(Aggregate, Default)]
#[aggregate(
    name = "cart",
    events(events::ItemAdded, crate::events::ItemRemoved),
    commands(commands::AddItem, commands::RemoveItem,),
    error = CartError,
    event_enum = Happened,
    command_enum = Requested,
)]
pub struct Cart {
    items: Vec<String>,
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: ItemAdded) {
        self.items.push(e.sku);
    }
}

impl Apply<ItemRemoved> for Cart {
    fn apply(&mut self, e: ItemRemoved) {
        self.items.retain(|s| *s != e.sku);
    }
}

impl Handle<commands::AddItem> for Cart {
    fn handle(&self, c: &commands::AddItem) -> Decision<Self> {
        Ok(vec![ItemAdded { sku: c.sku.clone() }.into()])
    }
}

impl Handle<commands::RemoveItem> for Cart {
    fn handle(&self, c: &commands::RemoveItem) -> Decision<Self> {
        if !self.items.contains(&c.sku) {
            return Err(CartError::NotInCart(c.sku.clone()));
        }
        Ok(vec![ItemRemoved { sku: c.sku.clone() }.into()])
    }
}

fn main() {
    assert_eq!(Cart::NAME, "cart");
    let cart = Cart::default();
    let decided = cart.handle(&Requested::from(commands::AddItem { sku: "tea".into() }));
    assert_eq!(decided, Ok(vec![Happened::ItemAdded(ItemAdded { sku: "tea".into() })]));
    let rejected = cart.handle(&Requested::RemoveItem(commands::RemoveItem { sku: "tea".into() }));
    assert_eq!(rejected, Err(CartError::NotInCart("tea".into())));
}
