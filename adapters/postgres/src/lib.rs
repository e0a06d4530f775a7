//! The PostgreSQL store for annals.
//!
//! [`PostgresStore`] implements every store contract of annals on the tables of one
//! schema of your choice (default `annals`):
//!
//! - [`EventStore`](annals::EventStore) on `<schema>.events`: an append is **one
//!   statement and one round trip**, a multi-row insert that numbers the new events after
//!   the stream's current version and inserts only if that version is the expected one;
//!   the unique `(stream_id, stream_version)` index turns a lost race into
//!   [`StoreError::Conflict`](annals::StoreError::Conflict). Writers on different streams
//!   never wait for each other. Stream reads are one streamed query (constant memory,
//!   however long the stream);
//! - [`EventFeed`](annals::EventFeed): every event in commit order without gaps, below
//!   the oldest running transaction, woken by LISTEN/NOTIFY (see [`feed`]);
//! - [`SnapshotStore`](annals::store::SnapshotStore) on `<schema>.snapshots`;
//! - [`CheckpointStore`](annals::store::CheckpointStore) on
//!   `<schema>.projection_checkpoints` (and consumers' dead letters on
//!   `<schema>.parked_events`), so that [`ExactlyOnce`](annals::subscription::ExactlyOnce)
//!   commits a consumer's read model and its checkpoint in one transaction;
//!   [`PgProjectionRunner`] keeps one instance of a consumer running among all processes.
//!
//! Connection failures are [`StoreError::Unavailable`](annals::StoreError::Unavailable)
//! (`is_transient()`), everything else [`StoreError::Backend`](annals::StoreError::Backend).
//!
//! Start with [`PostgresStore::connect`] and [`PostgresStore::migrate`]:
//!
//! ```no_run
//! use annals::Repository;
//! use annals_postgres::PostgresStore;
//! use shopping_cart::{AddItem, Cart};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://app@localhost/app").await?;
//! store.migrate().await?; // creates schema `annals` and its tables, once
//! let carts = Repository::<Cart, _>::new(store);
//! carts.execute("42", AddItem { sku: "tea".into(), qty: 2, unit_price_cents: 450 }).await?;
//! # Ok(()) }
//! ```
//!
//! Teams that run their own migrations take the SQL from [`migrations()`] instead of
//! calling `migrate`.
#![warn(missing_docs)]

mod append;
mod checkpoints;
mod correlation;
mod error;
pub mod feed;
mod migrate;
mod read;
mod rows;
mod runner;
mod schema;
mod snapshots;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::runner::{LockedReset, PgProjectionRunner, ResetError, RunError};
pub use crate::schema::{migrations, InvalidSchemaName, Migration, SchemaName};
pub use crate::store::PostgresStore;
/// The sqlx version this adapter is built on, for building pools by hand and writing read
/// models.
pub use sqlx;
/// The connection PostgreSQL projection handlers receive: the open transaction of their
/// batch (`#[projection(context = annals_postgres::PgConnection)]`).
pub use sqlx::PgConnection;
