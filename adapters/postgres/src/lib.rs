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
//!   never lock each other out; appends that arrive while another is in flight are
//!   written together by **group commit**, one statement and one commit for all of them,
//!   each with its own expected-version check and outcome
//!   ([`PostgresStore::group_commit_up_to`]). Stream reads are one streamed query
//!   (constant memory, however long the stream);
//! - [`EventFeed`](annals::EventFeed): every event in commit order without gaps, below
//!   the oldest running transaction, woken by LISTEN/NOTIFY (see [`feed`]);
//! - [`SnapshotStore`](annals::store::SnapshotStore) on `<schema>.snapshots`;
//! - [`CheckpointStore`](annals::store::CheckpointStore) on
//!   `<schema>.projection_checkpoints` (and consumers' dead letters on
//!   `<schema>.parked_events`), so that [`ExactlyOnce`](annals::subscription::ExactlyOnce)
//!   commits a consumer's read model and its checkpoint in one transaction;
//!   [`PgProjectionRunner`] keeps one instance of a consumer running among all processes;
//!   [`PgPartitionedRunner`] splits a consumer into partitions by stream and spreads them
//!   over the processes.
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
//!
//! # Riding through the database's ordinary life
//! - **Restarts and failovers**: an operation that finds its pooled connection dead runs
//!   again at once on another one (up to once per pooled connection), so a restart costs
//!   neither an error nor a retry attempt; while the server is unreachable, the pool
//!   waits for it up to its acquire timeout, commands retry within their
//!   [`RetryPolicy`](annals::RetryPolicy) budget, and subscriptions and
//!   [`PgProjectionRunner`]s and [`PgPartitionedRunner`]s wait with capped back-off for
//!   as long as it lasts, showing `Retrying` (or `waiting`) in their status.
//! - **Many subscribers** share one listener connection per store (see [`feed`]).
//! - **A stray transaction**: only transactions of this database hold the feed back;
//!   [`PostgresStore::feed_blockers`] names them (see [`feed`]).
//!
//! # Cancellation
//! Dropping a future of this crate (a caller's timeout, a `select!`) never corrupts
//! anything, but it does not undo what the server may already have received:
//!
//! - **Not cancellation-safe: appends** ([`EventStore::append`](annals::EventStore::append),
//!   and so [`Repository::execute`](annals::Repository::execute)). Once the statement is
//!   sent, dropping the future leaves its outcome unknown: it may commit after the caller
//!   gave up. Running the same *command* again decides it again, with new event ids, and
//!   stores it twice. To retry safely, give the command an idempotency key
//!   (`repository.execute_with(id, command, Metadata::default().idempotency_key(key))`):
//!   its event ids are derived from the key, so running it again returns the first
//!   outcome instead of storing a second copy. Appending the same `NewEvent`s again (same
//!   ids) is equally safe: an append whose events are already stored returns them.
//! - **Cancellation-safe: reads** (streams, loads, the feed, checkpoints,
//!   [`feed_blockers`](PostgresStore::feed_blockers)): they change nothing; a connection
//!   dropped mid-read is discarded by the pool, not reused.
//! - **Transactions** (a consumer's batch under [`ExactlyOnce`](annals::subscription::ExactlyOnce),
//!   [`migrate`](PostgresStore::migrate), a [`LockedReset`]) roll back when dropped before
//!   their commit was sent; a commit dropped while in flight may or may not have
//!   happened, and the checkpoint stored with the batch tells which.
//! - **Followers** ([`Subscription::run`](annals::subscription::Subscription::run),
//!   [`PgProjectionRunner::run`]) stop when dropped and resume after their stored
//!   checkpoint; a runner's lock connection closes with it, releasing the lock.
#![warn(missing_docs)]

mod append;
mod checkpoints;
mod correlation;
mod deadlines;
mod error;
pub mod feed;
mod feed_window;
mod group_commit;
mod inspect;
mod json;
mod listener;
mod migrate;
mod partitioned;
mod read;
mod rows;
mod runner;
mod schema;
mod snapshots;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::feed::FeedBlocker;
pub use crate::partitioned::{partition_consumer_name, PartitionedStatus, PgPartitionedRunner};
pub use crate::runner::{LockedReset, PgProjectionRunner, ResetError, RunError};
pub use crate::schema::{migrations, InvalidSchemaName, Migration, SchemaName};
pub use crate::store::PostgresStore;
/// The sqlx version this adapter is built on, for building pools by hand and writing read
/// models.
pub use sqlx;
/// The connection PostgreSQL projection handlers receive: the open transaction of their
/// batch (`#[projection(context = annals_postgres::PgConnection)]`).
pub use sqlx::PgConnection;
