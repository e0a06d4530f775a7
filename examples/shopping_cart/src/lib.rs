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
    /// Adding would put more units of one product in the cart than it can count
    /// (`u32::MAX`, 4,294,967,295). Nothing is stored.
    #[error("cannot add {adding} of `{sku}`: the cart holds {held}, and it holds at most 4294967295 of a product")]
    TooManyUnits {
        /// The product.
        sku: String,
        /// How many the cart holds.
        held: u32,
        /// How many were to be added.
        adding: u32,
    },
    /// The cart's total would be more cents than it can count (`u64::MAX`,
    /// 18,446,744,073,709,551,615). Nothing is stored.
    #[error("the cart's total would exceed 18446744073709551615 cents")]
    TotalTooLarge,
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
    /// The price of everything in the cart, in cents; `None` when it is more than a `u64`
    /// holds, which the commands never let happen (only events stored before that rule
    /// could make it so).
    pub fn checked_total_cents(&self) -> Option<u64> {
        total(self.items.values())
    }

    /// The price of everything in the cart, in cents, for display: saturates at
    /// `u64::MAX` instead of overflowing ([`checked_total_cents`](Self::checked_total_cents)
    /// says whether it did).
    pub fn total_cents(&self) -> u64 {
        self.checked_total_cents().unwrap_or(u64::MAX)
    }

    fn ensure_open(&self) -> Result<(), CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        Ok(())
    }
}

/// The price of `lines`, in cents; `None` when it overflows a `u64`.
fn total<'a>(lines: impl IntoIterator<Item = &'a Line>) -> Option<u64> {
    lines
        .into_iter()
        .try_fold(0u64, |sum, line| sum.checked_add(u64::from(line.qty).checked_mul(line.unit_price_cents)?))
}

/// Numbers meet only in checked arithmetic: a command whose result the cart could not
/// represent (more than `u32::MAX` units of a product, a total beyond `u64::MAX` cents)
/// is refused here, before its event is stored, so every stored cart can be loaded,
/// changed and checked out.
impl Handle<AddItem> for Cart {
    fn handle(&self, c: &AddItem) -> Decision<Self> {
        self.ensure_open()?;
        if c.qty == 0 {
            return Err(CartError::ZeroQuantity);
        }
        let held = self.items.get(&c.sku).map_or(0, |l| l.qty);
        let qty = held.checked_add(c.qty).ok_or_else(|| CartError::TooManyUnits {
            sku: c.sku.clone(),
            held,
            adding: c.qty,
        })?;
        // The total after the addition, which also re-prices the line.
        let line = Line { qty, unit_price_cents: c.unit_price_cents };
        let others = self.items.iter().filter(|(sku, _)| **sku != c.sku).map(|(_, l)| l);
        total(others.chain([&line])).ok_or(CartError::TotalTooLarge)?;
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
        // Never a wrapped or saturated total: a cart whose stored events (from before the
        // rule of `AddItem`) sum beyond `u64::MAX` cents cannot check out.
        let total_cents = self.checked_total_cents().ok_or(CartError::TotalTooLarge)?;
        Ok(vec![CheckedOut { total_cents }.into()])
    }
}

/// Applying never panics or wraps, whatever is stored: `AddItem` refuses an addition the
/// cart cannot count before its event is stored, so the quantity saturates only on
/// events stored before that rule (or by another program), and the cart still loads.
impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: ItemAdded) {
        let line = self.items.entry(e.sku).or_default();
        line.qty = line.qty.saturating_add(e.qty);
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
    fn more_units_than_a_line_can_count_are_refused_in_one_step_or_two() {
        let most = || ItemAdded { sku: "tea".into(), qty: u32::MAX, unit_price_cents: 1 };
        let cart = given::<Cart>([])
            .when(AddItem { sku: "tea".into(), qty: u32::MAX, unit_price_cents: 1 })
            .then([most().into()]);
        assert_eq!(cart.total_cents(), u64::from(u32::MAX));
        given::<Cart>([most().into()])
            .when(AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 1 })
            .then_error(CartError::TooManyUnits { sku: "tea".into(), held: u32::MAX, adding: 1 });
        // Other products, and taking some out, still work.
        given::<Cart>([most().into()])
            .when(AddItem { sku: "mug".into(), qty: 1, unit_price_cents: 1 })
            .then([ItemAdded { sku: "mug".into(), qty: 1, unit_price_cents: 1 }.into()]);
        given::<Cart>([most().into()]).when(RemoveItem { sku: "tea".into(), qty: 1 }).then([ItemRemoved {
            sku: "tea".into(),
            qty: 1,
        }
        .into()]);
    }

    #[test]
    fn a_total_beyond_u64_cents_is_refused_never_wrapped() {
        let half = 1u64 << 63;
        let line = |sku: &str, qty, unit_price_cents| ItemAdded { sku: sku.into(), qty, unit_price_cents };
        // Two lines of 2^63 cents: 2^64 would wrap to 0.
        given::<Cart>([line("a", 1, half).into()])
            .when(AddItem { sku: "b".into(), qty: 1, unit_price_cents: half })
            .then_error(CartError::TotalTooLarge);
        // One line: u32::MAX units at u64::MAX cents.
        given::<Cart>([])
            .when(AddItem { sku: "a".into(), qty: u32::MAX, unit_price_cents: u64::MAX })
            .then_error(CartError::TotalTooLarge);
        // Re-pricing a line re-prices the units already in the cart.
        given::<Cart>([line("a", 2, 1).into()])
            .when(AddItem { sku: "a".into(), qty: 1, unit_price_cents: u64::MAX })
            .then_error(CartError::TotalTooLarge);
        // Up to u64::MAX cents exactly is fine, and checks out for exactly that.
        let cart = given::<Cart>([line("a", 1, u64::MAX - 1).into()])
            .when(AddItem { sku: "b".into(), qty: 1, unit_price_cents: 1 })
            .then([line("b", 1, 1).into()]);
        assert_eq!(cart.checked_total_cents(), Some(u64::MAX));
        given::<Cart>([line("a", 1, u64::MAX - 1).into(), line("b", 1, 1).into()])
            .when(Checkout)
            .then([CheckedOut { total_cents: u64::MAX }.into()]);
    }

    #[test]
    fn events_stored_before_the_rules_saturate_and_never_check_out_for_a_wrong_total() {
        let half = 1u64 << 63;
        // Stored by older code: a line beyond u32::MAX units, two lines beyond u64::MAX cents.
        let stored = || {
            [
                ItemAdded { sku: "tea".into(), qty: u32::MAX, unit_price_cents: 1 }.into(),
                ItemAdded { sku: "tea".into(), qty: 1, unit_price_cents: 1 }.into(),
                ItemAdded { sku: "a".into(), qty: 1, unit_price_cents: half }.into(),
                ItemAdded { sku: "b".into(), qty: 1, unit_price_cents: half }.into(),
            ]
        };
        let loaded = given::<Cart>(stored());
        assert_eq!(loaded.state().items["tea"].qty, u32::MAX, "the quantity saturates");
        assert_eq!((loaded.state().checked_total_cents(), loaded.state().total_cents()), (None, u64::MAX));
        loaded.when(Checkout).then_error(CartError::TotalTooLarge);
        // The cart is not bricked: taking the excess out lets it check out.
        let cart = given::<Cart>(stored()).when(RemoveItem { sku: "b".into(), qty: 1 }).then([ItemRemoved {
            sku: "b".into(),
            qty: 1,
        }
        .into()]);
        assert_eq!(cart.checked_total_cents(), Some(u64::from(u32::MAX) + half));
    }

    #[test]
    fn the_command_enum_dispatches_to_each_handler() {
        given::<Cart>([]).when(CartCommand::from(Checkout)).then_error(CartError::Empty);
        given::<Cart>([])
            .when(CartCommand::from(AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 }))
            .then([tea(1).into()]);
    }
}
