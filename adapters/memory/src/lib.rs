//! The embedded in-memory event store for annals.
//!
//! [`MemoryStore`] implements every store contract of annals in process memory
//! ([`EventStore`](annals::EventStore), [`EventFeed`](annals::EventFeed), [`SnapshotStore`](annals::store::SnapshotStore),
//! [`CheckpointStore`](annals::store::CheckpointStore)): it is what
//! tests, examples and the given/when/then kit run on, and it passes the same exported
//! suites as the database adapters. Clones share the same events. Nothing persists: for
//! an embedded store that does, use `annals-sqlite`.
//!
//! ```
//! use annals::{EventStore, ExpectedVersion, NewEvent};
//! use annals_memory::MemoryStore;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let event = NewEvent::new("greeted", 1, serde_json::json!({"name": "Ada"}));
//! let stored = store.append("greeter-1", ExpectedVersion::Exact(0), vec![event]).await?;
//! assert_eq!((stored[0].stream_version, stored[0].global_position), (1, 1));
//! # Ok::<(), annals::StoreError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod checkpoints;
mod deadlines;
mod feed;
mod inspect;
mod snapshots;
mod store;

pub use checkpoints::MemoryTransaction;
pub use store::MemoryStore;
