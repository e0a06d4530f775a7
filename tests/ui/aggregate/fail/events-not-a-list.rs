use annals::{Aggregate, Apply, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

#[derive(Aggregate, Default)]
#[aggregate(events = [ItemAdded])]
pub struct Cart;

#[derive(Aggregate, Default)]
#[aggregate(events(ItemAdded, &str), event_enum = "WishlistEvent")]
pub struct Wishlist;

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, _: ItemAdded) {}
}

impl Apply<ItemAdded> for Wishlist {
    fn apply(&mut self, _: ItemAdded) {}
}

fn main() {}
