//! The embedded SQLite event store for annals: everything in one file, nothing to run
//! beside your program.
//!
//! [`SqliteStore`] implements every store contract of annals on SQLite (through sqlx):
//! [`EventStore`](annals::EventStore), [`EventFeed`](annals::EventFeed),
//! [`SnapshotStore`](annals::store::SnapshotStore) and
//! [`CheckpointStore`](annals::store::CheckpointStore), and passes the same exported
//! suites as the other adapters.
//!
//! - **Appends** take the database's write lock before they read the stream's version,
//!   then insert their events and commit, all or nothing: a one-event append is a single
//!   `INSERT ... SELECT` that checks the version (a lone write statement takes the lock
//!   when it starts), a longer one a `BEGIN IMMEDIATE` transaction. The write lock makes
//!   the appends of every process take turns (this process's writers queue in order;
//!   another process's wait up to the 5 s busy timeout). One-event appends that queue up
//!   behind the lock are written together by **group commit**: one `BEGIN IMMEDIATE`
//!   transaction and one sync for all of them, each with its own version check and
//!   outcome. Retrying an append with the same event ids returns the stored events.
//! - **Durability**: the file is in WAL mode with `synchronous = FULL` by default: an
//!   append is synced to disk (fsync) before it returns, so a crash or a power loss
//!   never loses an acknowledged append, and never keeps part of one.
//! - **The feed** is in commit order and gap-free: one write transaction commits at a
//!   time, so position order is commit order. A [`Checkpoint`](annals::store::Checkpoint) is
//!   `Checkpoint::from_parts(0, global_position)`. Filters run in SQL. Subscriptions wake
//!   on this process's appends and poll for other processes'.
//! - **Checkpoints** move in `BEGIN IMMEDIATE` transactions, which
//!   [`ExactlyOnce`](annals::subscription::ExactlyOnce) projections write their read
//!   models through ([`SqliteConnection`]): read model and checkpoint commit together.
//! - **Errors**: a database that stays locked past the busy timeout, a pool timeout or
//!   an I/O failure is [`StoreError::Unavailable`](annals::StoreError) (`is_transient()`:
//!   retry); a stored row annals did not write (a version below 1, JSON that does not
//!   read back, text that is not UTF-8: a hand edit, an old backup, another tool) is
//!   [`StoreError::Corrupt`](annals::StoreError), naming its stream, version and position,
//!   and the reads deliver the events before it; anything else is
//!   [`StoreError::Backend`](annals::StoreError), saying what the store was doing.
//! - **Limits**, the same on every store (`annals::store::kit`): stream ids of at most
//!   1024 bytes, event types of at most 255, payloads and metadata nested at most 127
//!   levels deep; the schema (migration 4) refuses such rows from other writers too.
//!
//! Payloads and metadata are stored as the JSON text serde_json writes, and read back
//! with serde_json.
//!
//! ```
//! use annals::prelude::*;
//! use annals::subscription::{ExactlyOnce, Subscription};
//! use annals_sqlite::{sqlx, SqliteConnection, SqliteStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "account.deposited")]
//! pub struct Deposited { pub cents: u64 }
//!
//! pub struct Deposit { pub cents: u64 }
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "account", events(Deposited), commands(Deposit))]
//! pub struct Account { balance: u64 }
//!
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, e: Deposited) { self.balance += e.cents; }
//! }
//!
//! impl Handle<Deposit> for Account {
//!     fn handle(&self, c: &Deposit) -> Decision<Self> { Ok(vec![Deposited { cents: c.cents }.into()]) }
//! }
//!
//! /// A read model in a table of the same file, written in the checkpoint's transaction.
//! #[derive(Projection, Default)]
//! #[projection(name = "deposits", events(Deposited), context = SqliteConnection)]
//! struct Deposits;
//!
//! impl On<Deposited> for Deposits {
//!     async fn on(&mut self, e: Deposited, _: &Envelope, db: &mut SqliteConnection) -> Result<(), annals::BoxError> {
//!         sqlx::query("UPDATE deposits SET total = total + ?1").bind(i64::try_from(e.cents)?).execute(db).await?;
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! # let dir = annals_sqlite::testing::TempDir::new()?;
//! # let path = dir.path().join("bank.db");
//! let store = SqliteStore::open(&path).await?; // creates the file and the store's tables
//! sqlx::raw_sql("CREATE TABLE deposits (total INTEGER NOT NULL); INSERT INTO deposits VALUES (0);")
//!     .execute(store.pool())
//!     .await?;
//!
//! let accounts = Repository::<Account, _>::new(store.clone());
//! accounts.execute("7", Deposit { cents: 500 }).await?;
//! accounts.execute("7", Deposit { cents: 250 }).await?;
//! assert_eq!(accounts.load("7").await?.state.balance, 750);
//!
//! Subscription::new(store.clone(), ExactlyOnce::new(store.clone(), Deposits)).catch_up().await?;
//! let total: i64 = sqlx::query_scalar("SELECT total FROM deposits").fetch_one(store.pool()).await?;
//! assert_eq!(total, 750);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Teams that run their own migrations take the SQL from [`migrations()`] instead of
//! calling [`SqliteStore::migrate`]. Feature `testing` adds module `testing`: fresh stores in
//! temporary files for test suites and benchmarks.
#![warn(missing_docs)]

mod append;
mod checkpoints;
mod deadlines;
mod error;
mod feed;
mod group_commit;
mod inspect;
mod migrate;
mod read;
mod rows;
mod snapshots;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::migrate::{migrations, Migration};
pub use crate::store::SqliteStore;
/// The sqlx version this adapter is built on, for pools, options and queries of your own.
pub use sqlx;
/// The connection [`ExactlyOnce`](annals::subscription::ExactlyOnce) projection handlers
/// receive: the open checkpoint transaction of their batch
/// (`#[projection(context = annals_sqlite::SqliteConnection)]`).
pub use sqlx::SqliteConnection;
