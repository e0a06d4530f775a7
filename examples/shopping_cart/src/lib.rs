//! The shopping-cart domain: events, commands, the `Cart` aggregate and its rules.
//!
//! The binary (`src/main.rs`) tells the story; tests and benchmarks reuse this domain.

use std::collections::BTreeMap;

#[cfg(feature = "postgres")]
pub mod projections;

use annals::prelude::*;
use annals::snapshot::Snapshot;
use serde::{Deserialize, Serialize};

/// Some units of a product went into the cart.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 1)]
pub struct ItemAdded {
    /// The product.
    pub sku: String,
    /// How many units.
    pub qty: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Some units of a product were taken out of the cart.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed", version = 1)]
pub struct ItemRemoved {
    /// The product.
    pub sku: String,
    /// How many units.
    pub qty: u32,
}

/// The customer paid; the cart is closed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out", version = 1)]
pub struct CheckedOut {
    /// What the customer paid, in cents.
    pub total_cents: u64,
}

/// Put `qty` units of `sku` into the cart.
#[derive(Debug, Clone)]
pub struct AddItem {
    /// The product.
    pub sku: String,
    /// How many units (at least 1).
    pub qty: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Take `qty` units of `sku` out of the cart.
#[derive(Debug, Clone)]
pub struct RemoveItem {
    /// The product.
    pub sku: String,
    /// How many units (at least 1).
    pub qty: u32,
}

/// Pay and close the cart.
#[derive(Debug, Clone)]
pub struct Checkout;

/// Why the cart refuses a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CartError {
    /// The cart is closed.
    #[error("the cart is already checked out")]
    AlreadyCheckedOut,
    /// A quantity of zero.
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    /// Removing more than the cart holds.
    #[error("cannot remove {wanted} of `{sku}`: the cart holds {held}")]
    NotEnough {
        /// The product.
        sku: String,
        /// How many the cart holds.
        held: u32,
        /// How many were to be removed.
        wanted: u32,
    },
    /// Checking out an empty cart.
    #[error("cannot check out an empty cart")]
    Empty,
}

/// One product line of the cart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Units in the cart.
    pub qty: u32,
    /// Price of one unit, in cents (the price of the latest addition).
    pub unit_price_cents: u64,
}

/// A customer's shopping cart.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "cart",
    events(ItemAdded, ItemRemoved, CheckedOut),
    commands(AddItem, RemoveItem, Checkout),
    error = CartError
)]
pub struct Cart {
    /// Product lines by SKU.
    pub items: BTreeMap<String, Line>,
    /// Whether the cart was paid.
    pub checked_out: bool,
}

/// Carts can be snapshotted; bump the version whenever `Cart`'s serialized shape changes,
/// so older snapshots are ignored and carts are rebuilt from their events.
impl Snapshot for Cart {
    const SNAPSHOT_VERSION: u32 = 1;
}

impl Cart {
    /// The price of everything in the cart, in cents.
    pub fn total_cents(&self) -> u64 {
        self.items.values().map(|l| u64::from(l.qty) * l.unit_price_cents).sum()
    }

    fn ensure_open(&self) -> Result<(), CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        Ok(())
    }
}

impl Handle<AddItem> for Cart {
    fn handle(&self, c: &AddItem) -> Decision<Self> {
        self.ensure_open()?;
        if c.qty == 0 {
            return Err(CartError::ZeroQuantity);
        }
        Ok(vec![ItemAdded { sku: c.sku.clone(), qty: c.qty, unit_price_cents: c.unit_price_cents }.into()])
    }
}

impl Handle<RemoveItem> for Cart {
    fn handle(&self, c: &RemoveItem) -> Decision<Self> {
        self.ensure_open()?;
        if c.qty == 0 {
            return Err(CartError::ZeroQuantity);
        }
        let held = self.items.get(&c.sku).map_or(0, |l| l.qty);
        if held < c.qty {
            return Err(CartError::NotEnough { sku: c.sku.clone(), held, wanted: c.qty });
        }
        Ok(vec![ItemRemoved { sku: c.sku.clone(), qty: c.qty }.into()])
    }
}

impl Handle<Checkout> for Cart {
    fn handle(&self, _: &Checkout) -> Decision<Self> {
        self.ensure_open()?;
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(vec![CheckedOut { total_cents: self.total_cents() }.into()])
    }
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: ItemAdded) {
        let line = self.items.entry(e.sku).or_default();
        line.qty += e.qty;
        line.unit_price_cents = e.unit_price_cents;
    }
}

impl Apply<ItemRemoved> for Cart {
    fn apply(&mut self, e: ItemRemoved) {
        if let Some(line) = self.items.get_mut(&e.sku) {
            line.qty = line.qty.saturating_sub(e.qty);
            if line.qty == 0 {
                self.items.remove(&e.sku);
            }
        }
    }
}

impl Apply<CheckedOut> for Cart {
    fn apply(&mut self, _: CheckedOut) {
        self.checked_out = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals::test_kit::given;

    fn tea(qty: u32) -> ItemAdded {
        ItemAdded { sku: "tea".into(), qty, unit_price_cents: 450 }
    }

    #[test]
    fn adding_items_records_them() {
        let cart =
            given::<Cart>([]).when(AddItem { sku: "tea".into(), qty: 2, unit_price_cents: 450 }).then([tea(2).into()]);
        assert_eq!(cart.total_cents(), 900);
    }

    #[test]
    fn zero_quantity_is_rejected() {
        given::<Cart>([])
            .when(AddItem { sku: "tea".into(), qty: 0, unit_price_cents: 1 })
            .then_error(CartError::ZeroQuantity);
    }

    #[test]
    fn removing_more_than_held_is_rejected() {
        given::<Cart>([tea(1).into()])
            .when(RemoveItem { sku: "tea".into(), qty: 2 })
            .then_error(CartError::NotEnough { sku: "tea".into(), held: 1, wanted: 2 });
    }

    #[test]
    fn removing_the_last_unit_drops_the_line() {
        let cart = given::<Cart>([tea(2).into()]).when(RemoveItem { sku: "tea".into(), qty: 2 }).then([ItemRemoved {
            sku: "tea".into(),
            qty: 2,
        }
        .into()]);
        assert!(cart.items.is_empty());
    }

    #[test]
    fn checkout_charges_the_total_and_closes_the_cart() {
        let cart =
            given::<Cart>([tea(2).into(), ItemAdded { sku: "mug".into(), qty: 1, unit_price_cents: 1200 }.into()])
                .when(Checkout)
                .then([CheckedOut { total_cents: 2100 }.into()]);
        assert!(cart.checked_out);
    }

    #[test]
    fn empty_cart_cannot_check_out() {
        given::<Cart>([]).when(Checkout).then_error(CartError::Empty);
    }

    #[test]
    fn a_checked_out_cart_refuses_everything() {
        let history = || [tea(1).into(), CheckedOut { total_cents: 450 }.into()];
        given::<Cart>(history()).when(Checkout).then_error(CartError::AlreadyCheckedOut);
        given::<Cart>(history())
            .when(AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 })
            .then_error(CartError::AlreadyCheckedOut);
        given::<Cart>(history())
            .when(RemoveItem { sku: "tea".into(), qty: 1 })
            .then_error(CartError::AlreadyCheckedOut);
    }

    #[test]
    fn the_command_enum_dispatches_to_each_handler() {
        given::<Cart>([]).when(CartCommand::from(Checkout)).then_error(CartError::Empty);
        given::<Cart>([])
            .when(CartCommand::from(AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 }))
            .then([tea(1).into()]);
    }
}
