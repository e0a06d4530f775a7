//! [`StoreError`]: why a store operation failed.

use crate::store::ExpectedVersion;

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

    /// An event of an append cannot be stored as given, on any store: its event type is
    /// empty, holds a NUL character or is too long, or its payload or metadata is nested
    /// too deeply to be read back (the rules of
    /// [`kit::validate_append`](crate::store::kit::validate_append)). Nothing was written.
    #[error("invalid event {event_id} (index {index} of the append to stream `{stream}`): {reason}")]
    InvalidEvent {
        /// The stream appended to.
        stream: String,
        /// The event's index in the append, from 0.
        index: usize,
        /// The event's id.
        event_id: uuid::Uuid,
        /// What is wrong with it.
        reason: String,
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

    /// Stored data breaks what annals writes: a row edited by hand, restored from an old
    /// backup or written by another tool (a gap in a stream's versions, a value out of
    /// range, a row that does not decode). Nothing was changed.
    #[error(
        "stored data of stream `{stream}`{at} is invalid: {detail}; it is not what annals wrote \
         (edited by hand, restored from a backup, or written by another tool): repair or remove it",
        at = location(*version, *position)
    )]
    Corrupt {
        /// The stream.
        stream: String,
        /// The stream version of the offending event, when known.
        version: Option<u64>,
        /// Its global position, when known.
        position: Option<u64>,
        /// What is wrong.
        detail: String,
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

/// ` at version 4 (global position 17)`, as far as known.
fn location(version: Option<u64>, position: Option<u64>) -> String {
    match (version, position) {
        (Some(v), Some(p)) => format!(" at version {v} (global position {p})"),
        (Some(v), None) => format!(" at version {v}"),
        (None, Some(p)) => format!(" at global position {p}"),
        (None, None) => String::new(),
    }
}
