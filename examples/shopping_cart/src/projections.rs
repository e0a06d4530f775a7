//! Read models of the cart in PostgreSQL, kept by projections: a summary row per cart, and
//! the best-selling products across every checked-out cart.
//!
//! Each projection owns its tables and writes them inside the transaction the
//! projection runner gives its handlers, together with its checkpoint, so every event
//! is applied exactly once even across crashes and restarts.

use annals::prelude::*;
use annals::BoxError;
use annals_postgres::{sqlx, PgConnection, PostgresStore};

use crate::{CheckedOut, ItemAdded, ItemRemoved};

/// One row per cart: units, total and whether it was checked out
/// (`<schema>.cart_summaries`, with its lines in `<schema>.cart_summary_lines`).
#[derive(Projection)]
#[projection(name = "cart_summaries", events(ItemAdded, ItemRemoved, CheckedOut), context = PgConnection)]
pub struct CartSummaries {
    /// The quoted schema the tables live in.
    schema: String,
}

/// A row of [`CartSummaries`].
#[derive(Debug, Clone, PartialEq)]
pub struct CartSummary {
    /// The cart's stream.
    pub cart: String,
    /// Units in the cart.
    pub units: i64,
    /// Price of everything in the cart, in cents.
    pub total_cents: i64,
    /// Whether it was checked out.
    pub checked_out: bool,
    /// The stream version the row reflects.
    pub version: i64,
}

impl CartSummaries {
    /// The projection, with its tables in `store`'s schema (created when missing).
    pub async fn new(store: &PostgresStore) -> Result<Self, sqlx::Error> {
        let schema = store.schema().quoted();
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.cart_summaries (
                 cart text PRIMARY KEY, units bigint NOT NULL, total_cents bigint NOT NULL,
                 checked_out boolean NOT NULL, version bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {schema}.cart_summary_lines (
                 cart text NOT NULL, sku text NOT NULL, qty bigint NOT NULL, unit_price_cents bigint NOT NULL,
                 PRIMARY KEY (cart, sku));"
        ))
        .execute(store.pool())
        .await?;
        Ok(CartSummaries { schema })
    }

    /// The summary of the cart with stream `cart`.
    pub async fn get(&self, store: &PostgresStore, cart: &str) -> Result<Option<CartSummary>, sqlx::Error> {
        let row: Option<(String, i64, i64, bool, i64)> = sqlx::query_as(&format!(
            "SELECT cart, units, total_cents, checked_out, version FROM {}.cart_summaries WHERE cart = $1",
            self.schema
        ))
        .bind(cart)
        .fetch_optional(store.pool())
        .await?;
        Ok(row.map(|(cart, units, total_cents, checked_out, version)| CartSummary {
            cart,
            units,
            total_cents,
            checked_out,
            version,
        }))
    }

    /// Recomputes the cart's row from its lines, at `envelope`'s version.
    async fn refresh(&self, envelope: &Envelope, checked_out: bool, tx: &mut PgConnection) -> Result<(), BoxError> {
        let s = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO {s}.cart_summaries (cart, units, total_cents, checked_out, version)
             SELECT $1, coalesce(sum(qty), 0), coalesce(sum(qty * unit_price_cents), 0), $2, $3
             FROM {s}.cart_summary_lines WHERE cart = $1
             ON CONFLICT (cart) DO UPDATE SET units = excluded.units, total_cents = excluded.total_cents,
                 checked_out = excluded.checked_out, version = excluded.version"
        ))
        .bind(&envelope.stream_id)
        .bind(checked_out)
        .bind(i64::try_from(envelope.stream_version)?)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl On<ItemAdded> for CartSummaries {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "INSERT INTO {s}.cart_summary_lines (cart, sku, qty, unit_price_cents) VALUES ($1, $2, $3, $4)
             ON CONFLICT (cart, sku) DO UPDATE SET qty = {s}.cart_summary_lines.qty + excluded.qty,
                 unit_price_cents = excluded.unit_price_cents",
            s = self.schema
        ))
        .bind(&envelope.stream_id)
        .bind(&e.sku)
        .bind(i64::from(e.qty))
        .bind(i64::try_from(e.unit_price_cents)?)
        .execute(&mut *tx)
        .await?;
        self.refresh(envelope, false, tx).await
    }
}

impl On<ItemRemoved> for CartSummaries {
    async fn on(&mut self, e: ItemRemoved, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        let s = &self.schema;
        sqlx::query(&format!(
            "UPDATE {s}.cart_summary_lines SET qty = greatest(qty - $3, 0) WHERE cart = $1 AND sku = $2"
        ))
        .bind(&envelope.stream_id)
        .bind(&e.sku)
        .bind(i64::from(e.qty))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DELETE FROM {s}.cart_summary_lines WHERE cart = $1 AND qty = 0"))
            .bind(&envelope.stream_id)
            .execute(&mut *tx)
            .await?;
        self.refresh(envelope, false, tx).await
    }
}

impl On<CheckedOut> for CartSummaries {
    async fn on(&mut self, _: CheckedOut, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.refresh(envelope, true, tx).await
    }
}

/// Units sold per product across every checked-out cart: a view over many streams
/// (`<schema>.best_sellers`, with the lines of carts not yet checked out in
/// `<schema>.best_sellers_open_lines`).
#[derive(Projection)]
#[projection(name = "best_sellers", events(ItemAdded, ItemRemoved, CheckedOut), context = PgConnection)]
pub struct BestSellers {
    /// The quoted schema the tables live in.
    schema: String,
}

impl BestSellers {
    /// The projection, with its tables in `store`'s schema (created when missing).
    pub async fn new(store: &PostgresStore) -> Result<Self, sqlx::Error> {
        let schema = store.schema().quoted();
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.best_sellers (sku text PRIMARY KEY, units_sold bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {schema}.best_sellers_open_lines (
                 cart text NOT NULL, sku text NOT NULL, qty bigint NOT NULL, PRIMARY KEY (cart, sku));"
        ))
        .execute(store.pool())
        .await?;
        Ok(BestSellers { schema })
    }

    /// The `limit` best-selling products, most units first.
    pub async fn top(&self, store: &PostgresStore, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT sku, units_sold FROM {}.best_sellers ORDER BY units_sold DESC, sku LIMIT $1",
            self.schema
        ))
        .bind(limit)
        .fetch_all(store.pool())
        .await
    }
}

impl On<ItemAdded> for BestSellers {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "INSERT INTO {s}.best_sellers_open_lines (cart, sku, qty) VALUES ($1, $2, $3)
             ON CONFLICT (cart, sku) DO UPDATE SET qty = {s}.best_sellers_open_lines.qty + excluded.qty",
            s = self.schema
        ))
        .bind(&envelope.stream_id)
        .bind(&e.sku)
        .bind(i64::from(e.qty))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl On<ItemRemoved> for BestSellers {
    async fn on(&mut self, e: ItemRemoved, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "UPDATE {}.best_sellers_open_lines SET qty = greatest(qty - $3, 0) WHERE cart = $1 AND sku = $2",
            self.schema
        ))
        .bind(&envelope.stream_id)
        .bind(&e.sku)
        .bind(i64::from(e.qty))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl On<CheckedOut> for BestSellers {
    async fn on(&mut self, _: CheckedOut, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        // The cart's open lines become sales, in one statement.
        sqlx::query(&format!(
            "WITH sold AS (DELETE FROM {s}.best_sellers_open_lines WHERE cart = $1 RETURNING sku, qty)
             INSERT INTO {s}.best_sellers (sku, units_sold)
             SELECT sku, sum(qty) FROM sold WHERE qty > 0 GROUP BY sku
             ON CONFLICT (sku) DO UPDATE SET units_sold = {s}.best_sellers.units_sold + excluded.units_sold",
            s = self.schema
        ))
        .bind(&envelope.stream_id)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
