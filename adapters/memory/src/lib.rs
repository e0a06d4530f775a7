//! The embedded in-memory event store for annals.
//!
//! [`MemoryStore`] implements every store contract of annals in process memory
//! ([`EventStore`], [`EventFeed`], [`SnapshotStore`], [`CheckpointStore`]): it is what
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

use std::collections::HashMap;
use std::sync::Arc;

use annals::store::{
    kit, BoxStream, Checkpoint, CheckpointStore, EventFeed, FeedBatch, FeedEvent, Filter, SnapshotStore,
    StoredSnapshot,
};
use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
use futures::StreamExt;
use parking_lot::RwLock;
use uuid::Uuid;

/// How many events a read copies per lock acquisition, so long reads never hold the lock
/// for long and never copy the whole log at once.
const READ_BATCH: usize = 256;

/// How many events a feed read scans at most per call when few of them match its filter.
const FEED_SCAN_LIMIT: usize = 4096;

/// A thread-safe in-memory event store. Cheap to clone; clones share the events.
#[derive(Clone)]
pub struct MemoryStore {
    log: Arc<RwLock<Log>>,
    /// The latest snapshot of each stream.
    snapshots: Arc<RwLock<HashMap<String, StoredSnapshot>>>,
    /// The head position, published after every append to wake subscriptions.
    head: Arc<tokio::sync::watch::Sender<u64>>,
    /// Consumers' checkpoints ([`CheckpointStore`]); a transaction holds the lock.
    checkpoints: Arc<tokio::sync::Mutex<HashMap<String, Checkpoint>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            log: Arc::default(),
            snapshots: Arc::default(),
            head: Arc::new(tokio::sync::watch::Sender::new(0)),
            checkpoints: Arc::default(),
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.log.read();
        f.debug_struct("MemoryStore").field("events", &log.events.len()).field("streams", &log.streams.len()).finish()
    }
}

#[derive(Default)]
struct Log {
    /// Every event in global order: `events[i]` has global position `i + 1`.
    events: Vec<Envelope>,
    /// For each stream, the indexes into `events` of its events in version order.
    streams: HashMap<String, Vec<usize>>,
    /// Where each event id is stored, for idempotent re-appends.
    ids: HashMap<Uuid, usize>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Log {
    fn version(&self, stream_id: &str) -> u64 {
        self.streams.get(stream_id).map_or(0, |s| count(s.len()))
    }

    fn stored(&self, event_id: &Uuid) -> Option<&Envelope> {
        self.ids.get(event_id).and_then(|&index| self.events.get(index))
    }
}

/// A length or index as a version or position. `usize` is at most 64 bits on every
/// target Rust supports, so this never saturates in practice.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The global position of the event at `index` in the log.
fn position(index: usize) -> u64 {
    count(index).saturating_add(1)
}

/// The feed checkpoint of the event at global position `position`: position order is
/// commit order here.
fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint::from_parts(0, position)
}

impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        kit::validate_append(stream_id, &events)?;
        let mut log = self.log.write();
        if let Some(stored) = kit::already_stored(stream_id, expected, &events, |id| log.stored(id))? {
            return Ok(stored);
        }
        let current = log.version(stream_id);
        if !expected.accepts(current) {
            return Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual: current });
        }
        // Every check is done: from here on nothing can fail, so the append is all or nothing.
        let recorded_at = chrono::Utc::now();
        let first_index = log.events.len();
        let mut indexes = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let index = first_index + i;
            log.ids.insert(event.event_id, index);
            log.events.push(Envelope {
                event_id: event.event_id,
                stream_id: stream_id.to_owned(),
                stream_version: current.saturating_add(position(i)),
                global_position: position(index),
                recorded_at,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
            });
            indexes.push(index);
        }
        log.streams.entry(stream_id.to_owned()).or_default().extend_from_slice(&indexes);
        let appended = log.events[first_index..].to_vec();
        let head = count(log.events.len());
        drop(log);
        self.head.send_replace(head);
        Ok(appended)
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        // Versions are 1-based; `next` is the 0-based offset into the stream's index list.
        let start = usize::try_from(versions.from.saturating_sub(1)).unwrap_or(usize::MAX);
        let end = versions.to.map_or(usize::MAX, |to| usize::try_from(to).unwrap_or(usize::MAX));
        futures::stream::unfold(start, move |next| async move {
            if next >= end {
                return None;
            }
            let log = self.log.read();
            let indexes = log.streams.get(stream_id)?;
            let upto = end.min(indexes.len()).min(next + READ_BATCH);
            if next >= upto {
                return None;
            }
            let batch: Vec<_> = indexes[next..upto].iter().map(|&i| Ok(log.events[i].clone())).collect();
            Some((futures::stream::iter(batch), upto))
        })
        .flatten()
        .boxed()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        Ok(self.log.read().version(stream_id))
    }
}

impl SnapshotStore for MemoryStore {
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self.snapshots.read().get(stream_id).cloned())
    }

    async fn save_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.write();
        let newer_stored =
            snapshots.get(&snapshot.stream_id).is_some_and(|s| s.stream_version > snapshot.stream_version);
        if !newer_stored {
            snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }
}

/// In memory, appends take positions under one lock, so position order is commit order:
/// a checkpoint is the global position (`Checkpoint::from_parts(0, position)`).
impl EventFeed for MemoryStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let log = self.log.read();
        let (_, after_position) = after.parts();
        let start = usize::try_from(after_position).unwrap_or(usize::MAX).min(log.events.len());
        let mut batch = FeedBatch { events: Vec::new(), next: after };
        for envelope in log.events[start..].iter().take(FEED_SCAN_LIMIT.max(limit)) {
            let at = checkpoint(envelope.global_position);
            if filter.matches(&envelope.stream_id, &envelope.event_type) {
                batch.events.push(FeedEvent { checkpoint: at, envelope: envelope.clone() });
            }
            batch.next = at;
            if batch.events.len() >= limit.max(1) {
                break;
            }
        }
        Ok(batch)
    }

    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        let receiver = self.head.subscribe();
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            Some(((), receiver))
        })
        .boxed())
    }
}

/// Checkpoints in memory. A transaction holds the lock on all of them until it commits
/// or is dropped, so moving a checkpoint is fenced like a database row lock; the
/// connection handlers receive is `()`.
impl CheckpointStore for MemoryStore {
    type Connection = ();
    type Transaction = MemoryTransaction;

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints.lock().await.get(name).copied())
    }

    async fn begin(&self) -> Result<MemoryTransaction, StoreError> {
        Ok(MemoryTransaction { checkpoints: Arc::clone(&self.checkpoints).lock_owned().await, changes: Vec::new(), connection: () })
    }

    async fn move_checkpoint(
        &self,
        transaction: &mut MemoryTransaction,
        name: &str,
        from: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        if transaction.current(name) != from {
            return Ok(false);
        }
        transaction.changes.push((name.to_owned(), Some(to)));
        Ok(true)
    }

    async fn delete_checkpoint(&self, transaction: &mut MemoryTransaction, name: &str) -> Result<(), StoreError> {
        transaction.changes.push((name.to_owned(), None));
        Ok(())
    }

    async fn commit(&self, mut transaction: MemoryTransaction) -> Result<(), StoreError> {
        for (name, checkpoint) in std::mem::take(&mut transaction.changes) {
            match checkpoint {
                Some(checkpoint) => transaction.checkpoints.insert(name, checkpoint),
                None => transaction.checkpoints.remove(&name),
            };
        }
        Ok(())
    }
}

/// A [`CheckpointStore`] transaction of [`MemoryStore`]: holds the checkpoints' lock and
/// the changes to apply at commit. Dereferences to `()`, the connection handlers receive.
pub struct MemoryTransaction {
    checkpoints: tokio::sync::OwnedMutexGuard<HashMap<String, Checkpoint>>,
    changes: Vec<(String, Option<Checkpoint>)>,
    connection: (),
}

impl MemoryTransaction {
    /// The checkpoint of `name` as this transaction sees it.
    fn current(&self, name: &str) -> Option<Checkpoint> {
        match self.changes.iter().rev().find(|(changed, _)| changed == name) {
            Some((_, checkpoint)) => *checkpoint,
            None => self.checkpoints.get(name).copied(),
        }
    }
}

impl std::ops::Deref for MemoryTransaction {
    type Target = ();

    fn deref(&self) -> &() {
        &self.connection
    }
}

impl std::ops::DerefMut for MemoryTransaction {
    fn deref_mut(&mut self) -> &mut () {
        &mut self.connection
    }
}
