//! The embedded in-memory event store for annals.
//!
//! [`MemoryStore`] implements the full [`EventStore`] contract in process memory: it is
//! what tests, examples and the given/when/then kit run on, and it passes the same
//! conformance suite as the PostgreSQL adapter. Clones share the same events.
//!
//! ```
//! use annals::{EventStore, ExpectedVersion, NewEvent};
//! use annals_memory::MemoryStore;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let event = NewEvent::new("greeted", 1, serde_json::json!({"name": "Ada"}));
//! let stored = store.append("greeter-1", ExpectedVersion::NoStream, vec![event]).await?;
//! assert_eq!((stored[0].stream_version, stored[0].global_position), (1, 1));
//! # Ok::<(), annals::StoreError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use annals::snapshot::StoredSnapshot;
use annals::store::{validate_append, BoxStream};
use annals::subscription::{Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter};
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
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            log: Arc::default(),
            snapshots: Arc::default(),
            head: Arc::new(tokio::sync::watch::Sender::new(0)),
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
        self.streams.get(stream_id).map_or(0, |s| s.len() as u64)
    }

    /// If the batch's ids are already stored, either it is the same batch appended again
    /// (a retry after a lost reply: returns the stored envelopes) or an id is reused
    /// elsewhere (an error).
    fn already_stored(&self, stream_id: &str, events: &[NewEvent]) -> Option<Result<Vec<Envelope>, StoreError>> {
        let (duplicate, existing) = events.iter().find_map(|e| Some((e, &self.events[*self.ids.get(&e.event_id)?])))?;
        let stored: Option<Vec<&Envelope>> =
            events.iter().map(|e| self.ids.get(&e.event_id).map(|&i| &self.events[i])).collect();
        if let Some(stored) = stored {
            let same_batch = stored.iter().all(|s| s.stream_id == stream_id)
                && stored.windows(2).all(|w| w[1].stream_version == w[0].stream_version + 1);
            if same_batch {
                return Some(Ok(stored.into_iter().cloned().collect()));
            }
        }
        Some(Err(StoreError::DuplicateEventId {
            event_id: duplicate.event_id,
            stream: stream_id.to_owned(),
            existing_stream: existing.stream_id.clone(),
            existing_version: existing.stream_version,
        }))
    }
}

impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        validate_append(stream_id, &events)?;
        let mut log = self.log.write();
        if let Some(outcome) = log.already_stored(stream_id, &events) {
            return outcome;
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
                stream_version: current + 1 + i as u64,
                global_position: index as u64 + 1,
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
        let head = log.events.len() as u64;
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
        let start = versions.from.saturating_sub(1) as usize;
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

    fn read_all(&self, after: u64, batch_size: usize) -> BoxStream<'_, Result<Envelope, StoreError>> {
        let batch_size = batch_size.max(1);
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        futures::stream::unfold(start, move |next| async move {
            let log = self.log.read();
            let upto = log.events.len().min(next.saturating_add(batch_size));
            if next >= upto {
                return None;
            }
            let batch: Vec<_> = log.events[next..upto].iter().cloned().map(Ok).collect();
            Some((futures::stream::iter(batch), upto))
        })
        .flatten()
        .boxed()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        Ok(self.log.read().version(stream_id))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.log.read().events.len() as u64)
    }

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
/// a checkpoint's `commit` is simply the global position.
impl EventFeed for MemoryStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let log = self.log.read();
        let start = usize::try_from(after.position).unwrap_or(usize::MAX).min(log.events.len());
        let mut batch = FeedBatch { events: Vec::new(), next: after };
        for envelope in log.events[start..].iter().take(FEED_SCAN_LIMIT.max(limit)) {
            let at = Checkpoint { commit: envelope.global_position, position: envelope.global_position };
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
