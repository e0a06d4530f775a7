//! Subscriptions: catch up from a checkpoint in batches, then follow new events live,
//! feeding a [`Sink`] (a projection with its checkpoint) without ever skipping or
//! repeating an event.
//!
//! # The ordering guarantee
//! A store that implements [`EventFeed`] delivers events in *commit order*: an event is
//! handed out only once every event that could precede it is committed (or rolled back),
//! so a subscriber never skips an event that commits late with a lower position. The
//! [`Checkpoint`] names a place in that order. In memory, commit order is the global
//! position; on PostgreSQL it is (writing transaction id, global position), read only
//! below the oldest transaction still running — see `annals-postgres` for why that is
//! correct.
//!
//! # Exactly once
//! A [`Sink`] stores its checkpoint together with its effects: the in-memory
//! [`InMemoryProjection`] keeps it with its state; the PostgreSQL projection runner
//! commits read-model writes and checkpoint in one transaction. A sink whose effects
//! leave the database (emails, other services) is at-least-once: its handlers get the
//! event id as idempotency key.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::envelope::Envelope;
use crate::projection::{BoxError, Projection, ProjectionError};
use crate::store::{BoxStream, EventStore, StoreError};

/// A place in the store's commit order; a subscription resumes strictly after it.
///
/// Checkpoints compare by `commit`, then `position`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The store's commit-order key: the global position in memory, the writing
    /// transaction's id on PostgreSQL.
    pub commit: u64,
    /// The global position of the event within its commit.
    pub position: u64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint { commit: 0, position: 0 };
}

/// Which events a subscription wants. The store applies it (pushes it down) before
/// returning events.
///
/// ```
/// # use annals::subscription::Filter;
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

    /// Whether an event of `event_type` in `stream_id` passes the filter.
    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        let type_ok = self.event_types.as_ref().is_none_or(|types| types.iter().any(|t| t == event_type));
        let stream_ok = match &self.streams {
            StreamFilter::All => true,
            StreamFilter::Stream(s) => s == stream_id,
            StreamFilter::Category(c) => {
                stream_id.len() > c.len() && stream_id.starts_with(c.as_str()) && stream_id.as_bytes()[c.len()] == b'-'
            }
        };
        type_ok && stream_ok
    }
}

/// An event as a subscription receives it: the envelope and its place in commit order.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    /// Where the event stands in commit order.
    pub checkpoint: Checkpoint,
    /// The event.
    pub envelope: Envelope,
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
}

/// A store that subscriptions can follow: reads in commit order, gap-free, and wakes
/// subscribers when events are appended.
pub trait EventFeed: EventStore {
    /// Reads up to `limit` events matching `filter` after `after`, in commit order. Never
    /// returns an event while an event before it may still commit.
    fn read_feed(
        &self,
        after: Checkpoint,
        filter: &Filter,
        limit: usize,
    ) -> impl Future<Output = Result<FeedBatch, StoreError>> + Send;

    /// A stream that yields whenever events may have been appended. Subscriptions also poll,
    /// so a lost wake-up only delays them.
    fn wakeups(&self) -> impl Future<Output = Result<BoxStream<'static, ()>, StoreError>> + Send;

    /// Waits until every event committed before the call can be read: afterwards,
    /// [`read_feed`](Self::read_feed) holds back none of them. [`Subscription::catch_up`]
    /// calls it first, so it processes at least every event committed before it was
    /// called. A store that delivers events as soon as they are committed returns at once
    /// (the default); on PostgreSQL this waits for the transactions running at the call
    /// to end.
    fn settle(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
}

/// Where a subscription delivers events: a projection together with its checkpoint.
pub trait Sink: Send {
    /// The name used in errors.
    fn name(&self) -> &str;

    /// The events this sink wants; [`Subscription::new`] pushes it down to the store.
    /// Default: every event.
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// The checkpoint to resume after.
    fn checkpoint(&mut self) -> impl Future<Output = Result<Checkpoint, BoxError>> + Send;

    /// Applies `events` and records `next` as the checkpoint. If it fails, it must leave
    /// the checkpoint at the last event whose effects it kept, so a retry neither loses
    /// nor repeats an effect.
    fn process(&mut self, events: &[FeedEvent], next: Checkpoint)
        -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Why a [`Sink`] failed to process a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A handler failed (or its event did not decode).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The sink's own storage (checkpoint, transaction) failed.
    #[error("storing the projection's effects or checkpoint failed: {0}")]
    Storage(BoxError),
}

/// A subscription stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// Reading events failed after retries.
    #[error("subscription `{name}` could not read events: {source}")]
    Store {
        /// The sink's name.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The sink kept failing on the same batch; nothing after it was applied.
    #[error("subscription `{name}` stopped after {attempts} attempts: {source}; fix the cause and restart it, it resumes at the failed event")]
    Sink {
        /// The sink's name.
        name: String,
        /// How many times the batch was tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: SinkError,
    },
    /// The sink's checkpoint could not be read.
    #[error("subscription `{name}` could not read its checkpoint: {source}")]
    Checkpoint {
        /// The sink's name.
        name: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
}

/// Tuning of a [`Subscription`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Events per read.
    pub batch_size: usize,
    /// How often to poll when no wake-up arrives (also the fallback when notifications
    /// are lost).
    pub poll_interval: Duration,
    /// Attempts per batch before the subscription stops with an error.
    pub max_attempts: u32,
    /// First back-off between attempts; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_attempts: 5,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Feeds a [`Sink`] from an [`EventFeed`]: catches up from the sink's checkpoint in
/// batches, then follows new events.
///
/// ```
/// # use annals::prelude::*;
/// # use annals::subscription::{InMemoryProjection, Subscription, Filter};
/// # use annals_memory::MemoryStore;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Rang;
/// #[derive(Projection, Default)]
/// #[projection(name = "ring_count", events(Rang))]
/// struct RingCount { rings: u64 }
///
/// impl On<Rang> for RingCount {
///     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
///         self.rings += 1;
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// # store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("Rang", 1, serde_json::json!(null))]).await?;
/// let view = InMemoryProjection::new(RingCount::default());
/// Subscription::new(store.clone(), view.clone()).catch_up().await?;
/// assert_eq!(view.read().await.rings, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Subscription<F, S> {
    feed: F,
    sink: S,
    filter: Filter,
    options: SubscriptionOptions,
}

impl<F: EventFeed, S: Sink> Subscription<F, S> {
    /// A subscription of `sink` to the events it wants (its [`Sink::filter`]: for a
    /// projection, the event types it handles).
    pub fn new(feed: F, sink: S) -> Self {
        let filter = sink.filter();
        Subscription { feed, sink, filter, options: SubscriptionOptions::default() }
    }

    /// Only events matching `filter` (replaces the sink's own filter).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Other tuning.
    pub fn options(mut self, options: SubscriptionOptions) -> Self {
        self.options = options;
        self
    }

    /// The sink, e.g. to read a projection after [`catch_up`](Self::catch_up).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Processes every event committed after the checkpoint (at least up to the call; see
    /// [`EventFeed::settle`]), then returns the checkpoint reached.
    pub async fn catch_up(&mut self) -> Result<Checkpoint, SubscriptionError> {
        self.feed.settle().await.map_err(|source| self.store_error(source))?;
        let mut checkpoint = self.load_checkpoint().await?;
        let mut batch = self.read(checkpoint).await?;
        while batch.next != checkpoint {
            checkpoint = batch.next;
            batch = self.process_and_read_ahead(batch).await?;
        }
        Ok(checkpoint)
    }

    /// Catches up, then follows new events until an error stops it. To stop it, drop or
    /// abort the task running it: every processed batch is already checkpointed.
    pub async fn run(&mut self) -> Result<(), SubscriptionError> {
        let mut wakeups = self.feed.wakeups().await.map_err(|source| self.store_error(source))?;
        let mut checkpoint = self.load_checkpoint().await?;
        let mut batch = self.read(checkpoint).await?;
        loop {
            if batch.next == checkpoint {
                // Nothing new: wait for a wake-up, or poll in case one was lost (or an
                // earlier transaction still holds back newer events).
                let _ = tokio::time::timeout(self.options.poll_interval, wakeups.next()).await;
                batch = self.read(checkpoint).await?;
                continue;
            }
            checkpoint = batch.next;
            batch = self.process_and_read_ahead(batch).await?;
        }
    }

    async fn load_checkpoint(&mut self) -> Result<Checkpoint, SubscriptionError> {
        self.sink
            .checkpoint()
            .await
            .map_err(|source| SubscriptionError::Checkpoint { name: self.sink.name().to_owned(), source })
    }

    fn store_error(&self, source: StoreError) -> SubscriptionError {
        SubscriptionError::Store { name: self.sink.name().to_owned(), source }
    }

    async fn read(&self, checkpoint: Checkpoint) -> Result<FeedBatch, SubscriptionError> {
        read_batch(&self.feed, &self.filter, &self.options, self.sink.name(), checkpoint).await
    }

    /// Processes `batch` while reading the batch after it. Reading has no effects, so
    /// reading ahead changes only how long a catch-up takes: if processing fails, the
    /// batch read ahead is dropped and the failed batch is retried as before.
    async fn process_and_read_ahead(&mut self, batch: FeedBatch) -> Result<FeedBatch, SubscriptionError> {
        let Subscription { feed, sink, filter, options } = self;
        let name = sink.name().to_owned();
        let (processed, next) =
            tokio::join!(process_batch(sink, options, &batch), read_batch(feed, filter, options, &name, batch.next));
        processed?;
        next
    }
}

/// Reads the batch after `checkpoint`, retrying transient store failures.
async fn read_batch<F: EventFeed>(
    feed: &F,
    filter: &Filter,
    options: &SubscriptionOptions,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<FeedBatch, SubscriptionError> {
    let mut attempt = 1;
    loop {
        match feed.read_feed(checkpoint, filter, options.batch_size).await {
            Ok(batch) => return Ok(batch),
            Err(e) if e.is_transient() && attempt < options.max_attempts => {
                tokio::time::sleep(backoff(options, attempt)).await;
                attempt += 1;
            }
            Err(source) => return Err(SubscriptionError::Store { name: name.to_owned(), source }),
        }
    }
}

/// Hands `batch` to the sink, retrying with back-off; stops with the last error after
/// `max_attempts`.
async fn process_batch<S: Sink>(
    sink: &mut S,
    options: &SubscriptionOptions,
    batch: &FeedBatch,
) -> Result<(), SubscriptionError> {
    let mut attempt = 1;
    loop {
        match sink.process(&batch.events, batch.next).await {
            Ok(()) => return Ok(()),
            Err(source) if attempt >= options.max_attempts => {
                return Err(SubscriptionError::Sink { name: sink.name().to_owned(), attempts: attempt, source })
            }
            Err(_) => {
                tokio::time::sleep(backoff(options, attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// The wait before attempt `attempt + 1`: doubling from `backoff`, capped at `max_backoff`.
fn backoff(options: &SubscriptionOptions, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    options.backoff.saturating_mul(factor).min(options.max_backoff)
}

/// A projection whose read model lives in process memory, with its checkpoint beside it:
/// each event's effect and checkpoint change together under one lock, so a failed
/// handler never causes an event to be applied twice.
///
/// Clones share the same read model: keep one to query while a [`Subscription`] feeds
/// another.
pub struct InMemoryProjection<P> {
    inner: Arc<tokio::sync::RwLock<Tracked<P>>>,
}

struct Tracked<P> {
    projection: P,
    checkpoint: Checkpoint,
}

impl<P> Clone for InMemoryProjection<P> {
    fn clone(&self) -> Self {
        InMemoryProjection { inner: Arc::clone(&self.inner) }
    }
}

impl<P: Projection<Context = ()> + Sync> InMemoryProjection<P> {
    /// A projection starting from the first event.
    pub fn new(projection: P) -> Self {
        InMemoryProjection {
            inner: Arc::new(tokio::sync::RwLock::new(Tracked { projection, checkpoint: Checkpoint::START })),
        }
    }

    /// Read access to the read model.
    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, P> {
        tokio::sync::RwLockReadGuard::map(self.inner.read().await, |t| &t.projection)
    }

    /// The checkpoint of the last applied event.
    pub async fn checkpoint(&self) -> Checkpoint {
        self.inner.read().await.checkpoint
    }

    /// Rebuilds the read model from the first event into `fresh` while this one keeps
    /// serving reads, then swaps it in. A subscription feeding this projection may keep
    /// running: the final catch-up and the swap happen under the write lock, and the
    /// running subscription skips what the rebuilt model already holds.
    pub async fn rebuild<F: EventFeed>(&self, feed: F, fresh: P) -> Result<Checkpoint, SubscriptionError> {
        let shadow = InMemoryProjection::new(fresh);
        Subscription::new(feed.clone(), shadow.clone()).catch_up().await?;
        let mut live = self.inner.write().await;
        let reached = Subscription::new(feed, shadow.clone()).catch_up().await?;
        std::mem::swap(&mut *live, &mut *shadow.inner.write().await);
        Ok(reached)
    }
}

impl<P: Projection<Context = ()> + Sync> Sink for InMemoryProjection<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        Ok(self.inner.read().await.checkpoint)
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let mut tracked = self.inner.write().await;
        for event in events {
            if event.checkpoint <= tracked.checkpoint {
                continue; // already applied before a retry
            }
            tracked.projection.project(&event.envelope, &mut ()).await?;
            tracked.checkpoint = event.checkpoint;
        }
        tracked.checkpoint = tracked.checkpoint.max(next);
        Ok(())
    }
}
