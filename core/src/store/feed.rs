//! The feed: every event of the store in commit order, without gaps, from a checkpoint.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use futures::stream::BoxStream;

use crate::envelope::Envelope;
use crate::projection::Projection;
use crate::store::{Partition, StoreError};

/// A place in a store's commit order; a feed read resumes strictly after it.
///
/// Opaque: the store that hands it out defines what it means, and only that store's feed
/// understands it. Checkpoints of one store compare in commit order. Keep one wherever
/// you keep the consumer's state: as text ([`Display`](fmt::Display) and
/// [`FromStr`]), as 16 bytes ([`to_bytes`](Self::to_bytes)), through serde (as text), or
/// as two integers ([`parts`](Self::parts)).
///
/// ```
/// # use annals::store::Checkpoint;
/// let at = Checkpoint::from_parts(7, 42);
/// assert!(Checkpoint::START < at);
/// assert_eq!(at.to_string().parse::<Checkpoint>()?, at);
/// assert_eq!(Checkpoint::from_bytes(at.to_bytes()), at);
/// # Ok::<(), annals::store::InvalidCheckpoint>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint(u128);

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint(0);

    /// A checkpoint from the store's two-part key; checkpoints compare by `major`, then
    /// `minor`. Only adapters build checkpoints; what the parts mean is theirs to define.
    pub const fn from_parts(major: u64, minor: u64) -> Self {
        Checkpoint(((major as u128) << 64) | minor as u128)
    }

    /// The two parts given to [`from_parts`](Self::from_parts).
    pub const fn parts(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }

    /// The checkpoint as 16 bytes whose byte order is commit order.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The checkpoint [`to_bytes`](Self::to_bytes) gave.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Checkpoint(u128::from_be_bytes(bytes))
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checkpoint({self})")
    }
}

/// `major:minor`, e.g. `0:42`.
impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.parts();
        write!(f, "{major}:{minor}")
    }
}

/// Text that is not a checkpoint (`major:minor`, two unsigned 64-bit integers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a checkpoint: expected two unsigned integers as `major:minor`, e.g. `0:42`")]
pub struct InvalidCheckpoint {
    /// The rejected text.
    pub text: String,
}

impl FromStr for Checkpoint {
    type Err = InvalidCheckpoint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCheckpoint { text: text.to_owned() };
        let (major, minor) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Checkpoint::from_parts(major.parse().map_err(|_| invalid())?, minor.parse().map_err(|_| invalid())?))
    }
}

impl serde::Serialize for Checkpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Checkpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which events a feed read wants. The store applies it (pushes it down) before
/// returning events.
///
/// ```
/// # use annals::store::Filter;
/// let filter = Filter::all().event_types(["cart.item_added"]).category("cart");
/// assert!(filter.matches("cart-42", "cart.item_added"));
/// assert!(!filter.matches("order-42", "cart.item_added"));
/// assert!(!filter.matches("cart-42", "cart.checked_out"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these event types; `None` for all.
    pub event_types: Option<Vec<String>>,
    /// Only these streams.
    pub streams: StreamFilter,
    /// Only the streams of this partition; `None` for all.
    pub partition: Option<Partition>,
}

/// The stream part of a [`Filter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StreamFilter {
    /// Every stream.
    #[default]
    All,
    /// One stream.
    Stream(String),
    /// Every stream of a category: ids that start with `{category}-` (the streams of one
    /// aggregate type, e.g. `cart`).
    Category(String),
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Only the events a projection handles.
    pub fn for_projection<P: Projection>() -> Self {
        Filter::all().event_types(P::EVENT_TYPES.iter().copied())
    }

    /// Only these event types.
    pub fn event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only this stream.
    pub fn stream(mut self, stream_id: impl Into<String>) -> Self {
        self.streams = StreamFilter::Stream(stream_id.into());
        self
    }

    /// Only streams of this category (`{category}-...`).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.streams = StreamFilter::Category(category.into());
        self
    }

    /// Only the streams of `partition`: how the partitions of a partitioned consumer
    /// split the feed between them.
    ///
    /// ```
    /// # use annals::store::{Filter, Partition};
    /// let first = Filter::all().partition(Partition::new(0, 2)?);
    /// let second = Filter::all().partition(Partition::new(1, 2)?);
    /// assert_ne!(first.matches("cart-1", "e"), second.matches("cart-1", "e"));
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Whether an event of `event_type` in `stream_id` passes the filter.
    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        let type_ok = self.event_types.as_ref().is_none_or(|types| types.iter().any(|t| t == event_type));
        let stream_ok = match &self.streams {
            StreamFilter::All => true,
            StreamFilter::Stream(s) => s == stream_id,
            StreamFilter::Category(c) => {
                stream_id.strip_prefix(c.as_str()).is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
            }
        };
        type_ok && stream_ok && self.partition.is_none_or(|partition| partition.contains(stream_id))
    }
}

/// An event as the feed returns it: the envelope and its place in commit order.
///
/// A stored row that does not read back as an event (edited by hand, written by another
/// tool, stored before a check existed) does not fail the whole read: it comes as a
/// *damaged* event, in its place, so the events around it are delivered. A consumer never
/// runs a handler on a damaged event: it stops at it or parks it, as its
/// [`PoisonPolicy`](crate::subscription::PoisonPolicy) says, and a parked one is read
/// again (fixed, by then) when it is retried.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedEvent {
    /// Where the event stands in commit order.
    pub checkpoint: Checkpoint,
    /// The event. For a damaged event, only its id, stream, stream version, global
    /// position and type are what is stored; the rest are placeholders (a `null` payload,
    /// no metadata, schema version 0, the Unix epoch as its time).
    pub envelope: Envelope,
    /// Why the stored row does not read back as an event; `None` for every event that
    /// does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

impl FeedEvent {
    /// An event read back whole.
    pub fn new(checkpoint: Checkpoint, envelope: Envelope) -> Self {
        FeedEvent { checkpoint, envelope, damage: None }
    }

    /// A stored row that does not read back as an event: [`damage`](Self::damage) says
    /// why. Adapters build it with [`kit::damaged_event`](crate::store::kit::damaged_event).
    pub fn damaged(checkpoint: Checkpoint, envelope: Envelope, damage: impl Into<String>) -> Self {
        FeedEvent { checkpoint, envelope, damage: Some(damage.into()) }
    }
}

/// One read of an [`EventFeed`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedBatch {
    /// The matching events, in commit order.
    pub events: Vec<FeedEvent>,
    /// Where the next read starts: past the returned events and past any non-matching
    /// events the store skipped. Equal to the requested checkpoint when nothing new is
    /// committed yet.
    pub next: Checkpoint,
    /// Whether the read stopped at its limit (of events, or of rows scanned) rather than
    /// at the end of what is readable now: more may follow at once. A subscription that
    /// is following reads again at once when true, and otherwise waits for a wake-up.
    pub more: bool,
}

/// Every event of a store in commit order, without gaps: the one read across streams.
///
/// The contract, which the feed suite of `conformance` (feature `testing`) checks:
///
/// - [`read_feed`](Self::read_feed) returns events in *commit order* and never returns an
///   event while an event that will sort before it may still commit. So a reader that
///   resumes strictly after its checkpoint never skips an event that committed late, and
///   never sees one twice. Events of failed (rolled-back) appends are never returned.
/// - Checkpoints are the store's own ([`Checkpoint`] is opaque) and stable: a checkpoint
///   names the same place in the order forever.
/// - [`wakeups`](Self::wakeups) yields when events may have been appended; readers also
///   poll, so a lost wake-up only delays them.
/// - [`settle`](Self::settle) waits until every event committed before the call is
///   readable, for stores whose feed may hold back committed events for a while.
pub trait EventFeed: Clone + Send + Sync + 'static {
    /// Reads up to `limit` events matching `filter` after `after`, in commit order.
    fn read_feed(
        &self,
        after: Checkpoint,
        filter: &Filter,
        limit: usize,
    ) -> impl Future<Output = Result<FeedBatch, StoreError>> + Send;

    /// A stream that yields whenever events may have been appended.
    fn wakeups(&self) -> impl Future<Output = Result<BoxStream<'static, ()>, StoreError>> + Send;

    /// The feed checkpoint of a stored event (one that [`append`](crate::EventStore::append)
    /// or a read returned): a consumer whose checkpoint is at or past it has applied it and
    /// every event committed before it. What read-your-writes waits for: see
    /// [`InMemoryProjection::wait_for`](crate::subscription::InMemoryProjection::wait_for)
    /// and [`wait_for_checkpoint`](crate::subscription::wait_for_checkpoint).
    fn checkpoint_of(&self, event: &Envelope) -> impl Future<Output = Result<Checkpoint, StoreError>> + Send;

    /// Waits until every event committed before the call can be read: afterwards,
    /// [`read_feed`](Self::read_feed) holds back none of them.
    /// [`Subscription::catch_up`](crate::subscription::Subscription::catch_up) calls it
    /// first, so it processes at least every event committed before it was called. A
    /// store whose feed shows events as soon as they commit returns at once (the
    /// default); a store that holds events back until every earlier writer has finished
    /// waits for the writers running at the call.
    fn settle(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
}
