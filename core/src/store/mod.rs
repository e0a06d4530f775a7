//! The store contracts every adapter implements, and the kit adapters build them with.
//!
//! - [`EventStore`] (`event_store.rs`): append to a stream with optimistic concurrency,
//!   read a stream back.
//! - [`EventFeed`] (`feed.rs`): the only read across streams, in commit order and without
//!   gaps, from an opaque [`Checkpoint`]; a [`Filter`] narrows it, down to one
//!   [`Partition`] of the streams (`partition.rs`).
//! - [`SnapshotStore`] (`snapshot_store.rs`): optional, for
//!   [`Repository::with_snapshots`](crate::Repository::with_snapshots).
//! - [`CheckpointStore`] (`checkpoint_store.rs`): where consumers keep their checkpoints,
//!   in a transaction with their read-model writes.
//! - [`Inspect`] (`inspect.rs`): listings for operators (streams, consumers).
//! - [`kit`]: the rules every adapter applies the same way (input checks, idempotent
//!   re-appends, integer conversions), written once.

mod checkpoint_store;
mod deadline_store;
mod error;
mod event_store;
mod feed;
mod inspect;
pub mod kit;
mod partition;
mod snapshot_store;

pub use checkpoint_store::CheckpointStore;
pub use deadline_store::{Deadline, DeadlineStore};
pub use error::StoreError;
pub use event_store::{EventStore, ExpectedVersion, VersionRange};
pub use feed::{Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter, InvalidCheckpoint, StreamFilter};
pub use futures::stream::BoxStream;
pub use inspect::{ConsumerInfo, Inspect, StreamInfo};
pub use partition::{stream_hash, InvalidPartition, Partition};
pub use snapshot_store::{SnapshotStore, StoredSnapshot};
