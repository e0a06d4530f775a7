//! The read models: plain structs kept up to date from the event feed, queried by
//! [`queries`](crate::queries). Neither knows about HTTP or about the store; both could
//! be rebuilt from scratch at any time by replaying the events.

use std::collections::{BTreeMap, HashMap};

use annals::prelude::*;
use annals::BoxError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shopping_cart::{Cart, CheckedOut, ItemAdded, ItemRemoved};

/// The cart id of an event of stream `cart-{id}`.
pub(crate) fn cart_id(envelope: &Envelope) -> Result<&str, BoxError> {
    envelope
        .stream_id
        .strip_prefix(Cart::NAME)
        .and_then(|rest| rest.strip_prefix('-'))
        .ok_or_else(|| format!("stream `{}` is not a cart stream", envelope.stream_id).into())
}

/// What `GET /carts/{id}` shows: one cart as the customer sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CartSummary {
    /// The cart id.
    pub cart_id: String,
    /// The stream version this summary reflects: wait for it with `?min_version=`.
    pub version: u64,
    /// `"open"` or `"checked_out"`.
    pub status: CartStatus,
    /// Product lines by SKU.
    pub items: BTreeMap<String, LineSummary>,
    /// Units in the cart.
    pub item_count: u64,
    /// The price of the cart, in cents (what was paid, once checked out).
    pub total_cents: u64,
    /// When the last event was recorded.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Whether the cart can still change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    /// Items can be added and removed.
    #[default]
    Open,
    /// Paid and closed.
    CheckedOut,
}

/// One product line of a [`CartSummary`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LineSummary {
    /// Units.
    pub qty: u32,
    /// Price of one unit, in cents (the latest addition's).
    pub unit_price_cents: u64,
}

/// Read model of every cart, by cart id (a single-stream projection: each cart's summary
/// depends only on its own events).
#[derive(Projection, Default, Debug)]
#[projection(name = "cart_summaries", events(ItemAdded, ItemRemoved, CheckedOut))]
pub struct CartSummaries {
    carts: HashMap<String, CartSummary>,
}

impl CartSummaries {
    /// The summary of cart `id`, if it has any event yet.
    pub fn get(&self, id: &str) -> Option<&CartSummary> {
        self.carts.get(id)
    }

    fn touch(&mut self, envelope: &Envelope) -> Result<&mut CartSummary, BoxError> {
        let id = cart_id(envelope)?;
        let summary = self
            .carts
            .entry(id.to_owned())
            .or_insert_with(|| CartSummary { cart_id: id.to_owned(), ..CartSummary::default() });
        summary.version = envelope.stream_version;
        summary.updated_at = Some(envelope.recorded_at);
        Ok(summary)
    }
}

impl CartSummary {
    fn recount(&mut self) {
        // Saturating: the cart refuses commands that would overflow, but events stored
        // before that rule must not panic the read model.
        self.item_count = self.items.values().fold(0u64, |sum, l| sum.saturating_add(u64::from(l.qty)));
        self.total_cents = self
            .items
            .values()
            .fold(0u64, |sum, l| sum.saturating_add(u64::from(l.qty).saturating_mul(l.unit_price_cents)));
    }
}

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let summary = self.touch(envelope)?;
        let line = summary.items.entry(e.sku).or_default();
        line.qty = line.qty.saturating_add(e.qty);
        line.unit_price_cents = e.unit_price_cents;
        summary.recount();
        Ok(())
    }
}

impl On<ItemRemoved> for CartSummaries {
    async fn on(&mut self, e: ItemRemoved, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let summary = self.touch(envelope)?;
        if let Some(line) = summary.items.get_mut(&e.sku) {
            line.qty = line.qty.saturating_sub(e.qty);
            if line.qty == 0 {
                summary.items.remove(&e.sku);
            }
        }
        summary.recount();
        Ok(())
    }
}

impl On<CheckedOut> for CartSummaries {
    async fn on(&mut self, e: CheckedOut, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let summary = self.touch(envelope)?;
        summary.status = CartStatus::CheckedOut;
        summary.total_cents = e.total_cents;
        Ok(())
    }
}

/// One row of `GET /products/best-sellers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BestSeller {
    /// The product.
    pub sku: String,
    /// Units sold in checked-out carts.
    pub units_sold: u64,
}

/// Units sold per SKU across all carts (a multi-stream projection): it follows the lines
/// of every open cart from `ItemAdded`/`ItemRemoved` and counts them as sold when the cart
/// is checked out. Lines of carts never checked out are never sold.
#[derive(Projection, Default, Debug)]
#[projection(name = "best_sellers", events(ItemAdded, ItemRemoved, CheckedOut))]
pub struct BestSellers {
    /// Units per SKU in each cart not yet checked out.
    open_carts: HashMap<String, BTreeMap<String, u64>>,
    units_sold: HashMap<String, u64>,
    checked_out_carts: u64,
    /// The highest global position among the events applied (read-your-writes for
    /// `?min_position=`).
    position: u64,
}

impl BestSellers {
    /// The `limit` best-selling SKUs, most units first (ties by SKU).
    pub fn top(&self, limit: usize) -> Vec<BestSeller> {
        let mut all: Vec<BestSeller> =
            self.units_sold.iter().map(|(sku, units)| BestSeller { sku: sku.clone(), units_sold: *units }).collect();
        all.sort_by(|a, b| b.units_sold.cmp(&a.units_sold).then_with(|| a.sku.cmp(&b.sku)));
        all.truncate(limit);
        all
    }

    /// How many carts were checked out.
    pub fn checked_out_carts(&self) -> u64 {
        self.checked_out_carts
    }

    /// The highest global position among the events applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    fn saw(&mut self, envelope: &Envelope) {
        self.position = self.position.max(envelope.global_position);
    }
}

impl On<ItemAdded> for BestSellers {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let lines = self.open_carts.entry(cart_id(envelope)?.to_owned()).or_default();
        let units = lines.entry(e.sku).or_default();
        *units = units.saturating_add(u64::from(e.qty));
        self.saw(envelope);
        Ok(())
    }
}

impl On<ItemRemoved> for BestSellers {
    async fn on(&mut self, e: ItemRemoved, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        if let Some(lines) = self.open_carts.get_mut(cart_id(envelope)?) {
            if let Some(units) = lines.get_mut(&e.sku) {
                *units = units.saturating_sub(u64::from(e.qty));
                if *units == 0 {
                    lines.remove(&e.sku);
                }
            }
        }
        self.saw(envelope);
        Ok(())
    }
}

impl On<CheckedOut> for BestSellers {
    async fn on(&mut self, _: CheckedOut, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let lines = self.open_carts.remove(cart_id(envelope)?).unwrap_or_default();
        for (sku, units) in lines {
            let sold = self.units_sold.entry(sku).or_default();
            *sold = sold.saturating_add(units);
        }
        self.checked_out_carts = self.checked_out_carts.saturating_add(1);
        self.saw(envelope);
        Ok(())
    }
}
