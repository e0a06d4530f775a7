//! The event store contract: append to a stream with optimistic concurrency, read a
//! stream back.

use std::fmt;
use std::future::Future;
use std::ops::{RangeFrom, RangeFull, RangeInclusive, RangeToInclusive};

use futures::stream::BoxStream;

use crate::envelope::{Envelope, NewEvent};
use crate::store::StoreError;

/// The optimistic-concurrency condition of an append.
///
/// `Exact(0)` means the stream must not exist yet (hold no events).
///
/// ```
/// # use annals::ExpectedVersion;
/// assert!(ExpectedVersion::Exact(3).accepts(3));
/// assert!(ExpectedVersion::Exact(0).accepts(0));
/// assert!(!ExpectedVersion::Exact(0).accepts(1));
/// assert!(ExpectedVersion::Any.accepts(7));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must be exactly at this version; `Exact(0)`: the stream must not exist.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` version satisfies this expectation.
    pub fn accepts(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::Exact(v) => current == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::Exact(0) => f.write_str("no stream (version 0)"),
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

/// An append-only store of event streams.
///
/// Every adapter (`annals-memory`, `annals-sqlite`, `annals-postgres`) implements this
/// contract and proves it with the exported suites (`conformance` (feature `testing`),
/// feature `testing`):
///
/// - [`append`](Self::append) writes all given events or none, checks the expected version
///   atomically with the write, and gives the events contiguous stream versions and
///   increasing global positions;
/// - re-appending events whose ids are already stored at the same place (same stream, same
///   order, where the expected version puts them) returns the stored envelopes instead of
///   writing them twice, so a retry after a lost reply is safe
///   ([`kit::already_stored`](crate::store::kit::already_stored) decides it);
/// - what an append accepts, [`read_stream`](Self::read_stream) returns unchanged, in
///   version order, in batches, so memory stays constant however long the stream is.
///
/// Reading *every* stream in order is not part of this trait: that read must be in commit
/// order without gaps, which is the [`EventFeed`](crate::store::EventFeed) contract.
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

    /// Reads the events of one stream within `versions` to fold them into a state, as
    /// [`Repository`](crate::Repository) does when it loads an aggregate: each envelope's
    /// stream id, stream version, global position, event type, schema version and
    /// payload are the stored ones, the rest may be left out by a store that can read
    /// less (an event id of [`Uuid::nil`](uuid::Uuid::nil), empty metadata, a
    /// `recorded_at` of the Unix epoch).
    ///
    /// Applying an event reads only its type, version and payload; a load of thousands of
    /// events then costs what reading those columns costs. The default reads the whole
    /// events ([`read_stream`](Self::read_stream)); the PostgreSQL store reads five
    /// columns of ten. Use `read_stream` for anything else.
    fn read_stream_to_fold<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        self.read_stream(stream_id, versions)
    }

    /// The current version of a stream (0 when it holds no events), without reading events.
    fn stream_version(&self, stream_id: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
