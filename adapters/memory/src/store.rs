//! [`MemoryStore`]: the log, and the [`EventStore`] contract on it.

use std::collections::HashMap;
use std::sync::Arc;

use annals::store::{kit, BoxStream, Checkpoint, StoredSnapshot};
use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
use futures::StreamExt;
use parking_lot::RwLock;
use uuid::Uuid;

/// How many events a read copies per lock acquisition, so long reads never hold the lock
/// for long and never copy the whole log at once.
const READ_BATCH: usize = 256;

/// A thread-safe in-memory event store. Cheap to clone; clones share the events.
#[derive(Clone)]
pub struct MemoryStore {
    pub(crate) log: Arc<RwLock<Log>>,
    /// The latest snapshot of each stream.
    pub(crate) snapshots: Arc<RwLock<HashMap<String, StoredSnapshot>>>,
    /// The head position, published after every append to wake subscriptions.
    pub(crate) head: Arc<tokio::sync::watch::Sender<u64>>,
    /// Consumers' checkpoints and dead letters ([`CheckpointStore`](annals::store::CheckpointStore));
    /// a transaction holds the lock.
    pub(crate) consumers: Arc<tokio::sync::Mutex<crate::checkpoints::Consumers>>,
    /// Process managers' deadlines ([`DeadlineStore`](annals::store::DeadlineStore)).
    pub(crate) deadlines: Arc<RwLock<crate::deadlines::Deadlines>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            log: Arc::default(),
            snapshots: Arc::default(),
            head: Arc::new(tokio::sync::watch::Sender::new(0)),
            consumers: Arc::default(),
            deadlines: Arc::default(),
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
pub(crate) struct Log {
    /// Every event in global order: `events[i]` has global position `i + 1`.
    pub(crate) events: Vec<Envelope>,
    /// For each stream, the indexes into `events` of its events in version order.
    pub(crate) streams: HashMap<String, Vec<usize>>,
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
pub(crate) fn checkpoint(position: u64) -> Checkpoint {
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
                payload: event.payload.into(),
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
            let upto = end.min(indexes.len()).min(next.saturating_add(READ_BATCH));
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
