//! Snapshots as an optional store capability.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{EventStore, StoreError};

/// A stored snapshot: the state of a stream's aggregate after `stream_version` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// The stream.
    pub stream_id: String,
    /// How many events the state includes.
    pub stream_version: u64,
    /// The aggregate's [`Snapshot::SNAPSHOT_VERSION`](crate::snapshot::Snapshot) when it
    /// was taken.
    pub schema_version: u32,
    /// The serialized state.
    pub state: serde_json::Value,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// A store that keeps the latest snapshot of each stream, which
/// [`Repository::with_snapshots`](crate::Repository::with_snapshots) needs.
///
/// A snapshot is only ever a shortcut: the repository ignores one it cannot use, so a
/// store may drop snapshots at any time.
pub trait SnapshotStore: EventStore {
    /// The latest snapshot of `stream_id`, if any.
    fn load_snapshot(&self, stream_id: &str)
        -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send;

    /// Stores `snapshot` unless a snapshot at a later version of the stream is already
    /// stored.
    fn save_snapshot(&self, snapshot: StoredSnapshot) -> impl Future<Output = Result<(), StoreError>> + Send;
}
