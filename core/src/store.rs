//! The event store contract every adapter implements, and its errors.

use std::fmt;
use std::future::Future;
use std::ops::{RangeFrom, RangeFull, RangeInclusive, RangeToInclusive};

pub use futures::stream::BoxStream;

use crate::envelope::{Envelope, NewEvent};
use crate::snapshot::StoredSnapshot;

/// The optimistic-concurrency condition of an append.
///
/// ```
/// # use annals::ExpectedVersion;
/// assert!(ExpectedVersion::Exact(3).accepts(3));
/// assert!(ExpectedVersion::NoStream.accepts(0));
/// assert!(!ExpectedVersion::NoStream.accepts(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (hold no events).
    NoStream,
    /// The stream must be exactly at this version (0 means empty).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` version satisfies this expectation.
    pub fn accepts(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Which versions of a stream to read, both ends inclusive.
///
/// Build it from a Rust range: `..` (everything), `3..` (from version 3), `..=7`
/// (up to 7), `3..=7`.
///
/// ```
/// # use annals::VersionRange;
/// let r: VersionRange = (3..=7).into();
/// assert!(r.contains(3) && r.contains(7) && !r.contains(8));
/// let all: VersionRange = (..).into();
/// assert!(all.contains(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionRange {
    /// First version to read (versions start at 1).
    pub from: u64,
    /// Last version to read, or `None` for the end of the stream.
    pub to: Option<u64>,
}

impl VersionRange {
    /// The whole stream.
    pub const ALL: VersionRange = VersionRange { from: 1, to: None };

    /// Whether `version` lies in the range.
    pub fn contains(&self, version: u64) -> bool {
        version >= self.from && self.to.is_none_or(|to| version <= to)
    }
}

impl From<RangeFull> for VersionRange {
    fn from(_: RangeFull) -> Self {
        VersionRange::ALL
    }
}

impl From<RangeFrom<u64>> for VersionRange {
    fn from(r: RangeFrom<u64>) -> Self {
        VersionRange { from: r.start.max(1), to: None }
    }
}

impl From<RangeInclusive<u64>> for VersionRange {
    fn from(r: RangeInclusive<u64>) -> Self {
        VersionRange { from: (*r.start()).max(1), to: Some(*r.end()) }
    }
}

impl From<RangeToInclusive<u64>> for VersionRange {
    fn from(r: RangeToInclusive<u64>) -> Self {
        VersionRange { from: 1, to: Some(r.end) }
    }
}

/// Batch size [`EventStore::read_all`] callers use when they have no better idea.
pub const DEFAULT_BATCH_SIZE: usize = 512;

/// An append-only, ordered event store.
///
/// Every adapter (`annals-memory`, `annals-postgres`) implements this contract and proves
/// it with the conformance suite (`annals::conformance`, feature `testing`):
///
/// - [`append`](Self::append) writes all given events or none, checks the expected version
///   atomically with the write, and gives the events contiguous stream versions and
///   increasing global positions;
/// - re-appending events whose ids are already stored at the same place returns the stored
///   envelopes instead of writing them twice (a retry after a lost reply is safe);
/// - reads return events in version order (a stream) or global order (all), in batches,
///   so memory stays constant however long the history is.
///
/// The trait uses `impl Future + Send` so stores work in multi-threaded runtimes without
/// boxing each call.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends `events` to `stream_id` if its current version satisfies `expected`.
    ///
    /// Returns the stored envelopes. On a version mismatch returns
    /// [`StoreError::Conflict`] and writes nothing. Appending no events only checks the
    /// expected version.
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Vec<Envelope>, StoreError>> + Send;

    /// Reads the events of one stream within `versions`, in version order.
    ///
    /// A stream that does not exist reads as empty.
    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>>;

    /// Reads all events with a global position greater than `after`, in global order,
    /// fetching `batch_size` events at a time. `after = 0` reads from the beginning.
    fn read_all(&self, after: u64, batch_size: usize) -> BoxStream<'_, Result<Envelope, StoreError>>;

    /// The current version of a stream (0 when it holds no events), without reading events.
    fn stream_version(&self, stream_id: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The global position of the newest event (0 for an empty store).
    fn head_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The latest snapshot of `stream_id`. Stores that keep no snapshots return `None`
    /// (the default), which only makes loads read every event.
    fn load_snapshot(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send {
        let _ = stream_id;
        async { Ok(None) }
    }

    /// Stores `snapshot` unless a snapshot at a later version is already stored. Stores
    /// that keep no snapshots ignore it (the default).
    fn save_snapshot(&self, snapshot: StoredSnapshot) -> impl Future<Output = Result<(), StoreError>> + Send {
        drop(snapshot);
        async { Ok(()) }
    }
}

/// Checks a stream id before it reaches a store. Adapters call this first in `append`.
///
/// Stream ids are opaque text: quotes, unicode and long ids are fine; empty ids and NUL
/// characters (which PostgreSQL cannot store in text) are not.
pub fn validate_stream_id(stream_id: &str) -> Result<(), StoreError> {
    let reason = if stream_id.is_empty() {
        "a stream id must not be empty"
    } else if stream_id.contains('\0') {
        "a stream id must not contain NUL characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidStreamId { stream: stream_id.to_owned(), reason })
}

/// Checks an append's input before it reaches a store: the stream id (see
/// [`validate_stream_id`]) and that no event id appears twice in the batch. Adapters call
/// this first in [`EventStore::append`].
pub fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    validate_stream_id(stream_id)?;
    if events.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    match events.iter().find(|e| !seen.insert(e.event_id)) {
        Some(repeated) => {
            Err(StoreError::RepeatedEventId { stream: stream_id.to_owned(), event_id: repeated.event_id })
        }
        None => Ok(()),
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream's version did not match the expected version; nothing was written.
    #[error(
        "version conflict on stream `{stream}`: expected {expected}, but the stream is at version {actual}; \
         reload the stream and decide again"
    )]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: u64,
    },

    /// An event id that is already stored elsewhere was appended again.
    #[error(
        "event id {event_id} appended to stream `{stream}` is already stored in stream `{existing_stream}` \
         at version {existing_version}; give every new event a fresh id"
    )]
    DuplicateEventId {
        /// The repeated id.
        event_id: uuid::Uuid,
        /// The stream the caller appended to.
        stream: String,
        /// The stream that already holds the id.
        existing_stream: String,
        /// The version at which it is stored.
        existing_version: u64,
    },

    /// The same event id appears twice in one append; nothing was written.
    #[error("event id {event_id} appears twice in one append to stream `{stream}`; give every event its own id")]
    RepeatedEventId {
        /// The stream appended to.
        stream: String,
        /// The repeated id.
        event_id: uuid::Uuid,
    },

    /// The stream id cannot be stored.
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId {
        /// The rejected id.
        stream: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The store could not be reached or the connection broke. The operation may be
    /// retried; an append that used the same event ids is idempotent.
    #[error("event store unavailable while {operation}: {source}; check the connection and retry")]
    Unavailable {
        /// What the store was doing.
        operation: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The store failed for a reason retrying will not fix (bad configuration, a missing
    /// table, a constraint the adapter did not expect).
    #[error("event store failed while {operation}: {source}")]
    Backend {
        /// What the store was doing.
        operation: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether this is an optimistic-concurrency conflict (reload and decide again).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether the failure is transient (connection lost, server unavailable), as opposed
    /// to a conflict or a permanent error.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
