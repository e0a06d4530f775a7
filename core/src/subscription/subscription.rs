//! [`Subscription`]: catch up from a checkpoint, then follow; wait out transient
//! failures, retry failing handlers, and say what it is doing.

use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::projection::BoxError;
use crate::retry::{Attempts, RetryPolicy};
use crate::store::{Checkpoint, EventFeed, FeedBatch, Filter, Partition, StoreError};
use crate::subscription::{Sink, SinkError};
use crate::telemetry;

/// A subscription stopped: something retrying cannot fix without someone fixing its
/// cause. Transient store failures never stop a subscription; it waits them out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// Reading events failed for a reason that is not transient.
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
        source: Box<SinkError>,
    },
    /// The sink's checkpoint could not be read, for a reason that is not transient.
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
    /// How often a failing batch is tried, and the waits between, before the
    /// subscription stops with an error. Transient store failures do not count: they are
    /// waited out with [`wait`](Self::wait), however long they last.
    pub retry: RetryPolicy,
    /// The waits while the store is unreachable (back-off and its cap); its attempt count
    /// and budget are ignored: a subscription never gives up on a transient failure.
    pub wait: RetryPolicy,
}

impl Default for SubscriptionOptions {
    /// Batches of 500, polling every 500 ms, a failing batch tried 5 times with back-off
    /// from 50 ms to 5 s; outages waited out with back-off from 50 ms to 5 s.
    fn default() -> Self {
        SubscriptionOptions {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 5,
                budget: None,
                backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
            },
            wait: RetryPolicy::forever(),
        }
    }
}

/// What a subscription is doing, for an operator: read it with
/// [`Subscription::status`].
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionStatus {
    /// The sink's name.
    pub name: String,
    /// What it is doing.
    pub state: SubscriptionState,
    /// The last checkpoint it processed up to.
    pub checkpoint: Checkpoint,
    /// When `state` last changed.
    pub since: SystemTime,
}

/// The state in a [`SubscriptionStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionState {
    /// Not started yet.
    Idle,
    /// Processing events (catching up, or following new ones as they come).
    Processing,
    /// Caught up; waiting for new events.
    Live,
    /// Waiting out a failure: the store is unreachable (it retries for as long as it
    /// takes), or a batch failed and is tried again.
    Retrying {
        /// What failed, and why.
        reason: String,
        /// The failed attempts so far.
        attempts: u32,
    },
    /// Stopped with an error (what [`Subscription::run`] returned).
    Stopped {
        /// The error.
        error: String,
    },
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
    status: watch::Sender<SubscriptionStatus>,
}

impl<F: EventFeed, S: Sink> Subscription<F, S> {
    /// A subscription of `sink` to the events it wants (its [`Sink::filter`]: for a
    /// projection, the event types it handles).
    pub fn new(feed: F, sink: S) -> Self {
        let filter = sink.filter();
        let status = watch::Sender::new(SubscriptionStatus {
            name: sink.name().to_owned(),
            state: SubscriptionState::Idle,
            checkpoint: Checkpoint::START,
            since: SystemTime::now(),
        });
        Subscription { feed, sink, filter, options: SubscriptionOptions::default(), status }
    }

    /// Only events matching `filter` (replaces the sink's own filter): the one place to
    /// narrow what a consumer reads.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Only the events of `partition`'s streams (added to the filter): one partition of
    /// a consumer split into several, each with its own name and checkpoint.
    ///
    /// ```
    /// # use annals::subscription::{InMemoryProjection, Subscription};
    /// # use annals::store::Partition;
    /// # use annals_memory::MemoryStore;
    /// # use annals::prelude::*;
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// # pub struct Rang;
    /// # #[derive(Projection, Default)]
    /// # #[projection(name = "ring_count", events(Rang))]
    /// # struct RingCount;
    /// # impl On<Rang> for RingCount {
    /// #     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
    /// # }
    /// let store = MemoryStore::new();
    /// // The streams of the first of two partitions; another subscription reads the second.
    /// let half = Subscription::new(store, InMemoryProjection::new(RingCount)).partition(Partition::new(0, 2)?);
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn partition(mut self, partition: Partition) -> Self {
        self.filter.partition = Some(partition);
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

    /// What the subscription is doing, now and as it changes: keep the receiver (it stays
    /// valid while the subscription runs in another task) and read it with
    /// `borrow()`, or wait for changes with `changed()`.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::subscription::{InMemoryProjection, Subscription, SubscriptionState};
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// # pub struct Rang;
    /// # #[derive(Projection, Default)]
    /// # #[projection(events(Rang))]
    /// # struct Rings;
    /// # impl On<Rang> for Rings {
    /// #     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut subscription = Subscription::new(annals_memory::MemoryStore::new(), InMemoryProjection::new(Rings));
    /// let status = subscription.status();
    /// assert_eq!(status.borrow().state, SubscriptionState::Idle);
    /// subscription.catch_up().await?;
    /// assert_eq!(status.borrow().state, SubscriptionState::Live);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn status(&self) -> watch::Receiver<SubscriptionStatus> {
        self.status.subscribe()
    }

    /// Processes every event committed after the checkpoint (at least up to the call; see
    /// [`EventFeed::settle`]), then returns the checkpoint reached. Waits out transient
    /// store failures.
    pub async fn catch_up(&mut self) -> Result<Checkpoint, SubscriptionError> {
        let outcome = self.catch_up_inner().await;
        self.stopped_if_failed(outcome)
    }

    /// Catches up, then follows new events. Never returns because of a transient failure
    /// (a restart, an outage, an exhausted pool): it waits with capped back-off, logs a
    /// warning and shows [`SubscriptionState::Retrying`] in its [`status`](Self::status),
    /// and goes on where it was. It returns only when a failure needs someone to fix it
    /// (a handler that keeps failing, a store error that is not transient). To stop it,
    /// drop or abort the task running it: every processed batch is already checkpointed.
    pub async fn run(&mut self) -> Result<(), SubscriptionError> {
        let outcome = self.run_inner().await;
        self.stopped_if_failed(outcome)
    }

    async fn catch_up_inner(&mut self) -> Result<Checkpoint, SubscriptionError> {
        self.set_state(SubscriptionState::Processing);
        self.settle().await?;
        let mut checkpoint = self.load_checkpoint().await?;
        let mut batch = self.read(checkpoint).await?;
        while batch.next != checkpoint {
            checkpoint = batch.next;
            batch = self.process_and_read_ahead(batch).await?;
        }
        self.set_state(SubscriptionState::Live);
        Ok(checkpoint)
    }

    async fn run_inner(&mut self) -> Result<(), SubscriptionError> {
        self.set_state(SubscriptionState::Processing);
        let mut wakeups = self.wakeups().await?;
        let mut checkpoint = self.load_checkpoint().await?;
        let mut batch = self.read(checkpoint).await?;
        loop {
            if batch.next == checkpoint {
                // Nothing new: wait for a wake-up, or poll in case one was lost (or an
                // earlier writer still holds back newer events).
                wakeups = self.wait_for_news(wakeups).await?;
                batch = self.read(checkpoint).await?;
                continue;
            }
            checkpoint = batch.next;
            if batch.more {
                // A backlog: process this batch while reading the next.
                self.set_state(SubscriptionState::Processing);
                batch = self.process_and_read_ahead(batch).await?;
            } else {
                // Caught up with what was readable: process it, then wait for news
                // instead of reading again at once, so that a crowd of subscribers does
                // not keep the store busy while appends go on.
                if !batch.events.is_empty() {
                    self.set_state(SubscriptionState::Processing);
                }
                self.process(&batch).await?;
                wakeups = self.wait_for_news(wakeups).await?;
                batch = self.read(checkpoint).await?;
            }
        }
    }

    /// Shows `Live` and waits for a wake-up or the poll interval; listens again when the
    /// wake-up stream ended (its connection is gone).
    async fn wait_for_news(
        &self,
        mut wakeups: BoxStream<'static, ()>,
    ) -> Result<BoxStream<'static, ()>, SubscriptionError> {
        self.set_state(SubscriptionState::Live);
        if let Ok(None) = tokio::time::timeout(self.options.poll_interval, wakeups.next()).await {
            wakeups = self.wakeups().await?;
        }
        Ok(wakeups)
    }

    /// Processes `batch` (without reading ahead) and records how far it got.
    async fn process(&mut self, batch: &FeedBatch) -> Result<(), SubscriptionError> {
        let Subscription { sink, options, status, .. } = self;
        process_batch(sink, options, status, batch).await?;
        status.send_modify(|status| status.checkpoint = batch.next);
        Ok(())
    }

    fn stopped_if_failed<T>(&self, outcome: Result<T, SubscriptionError>) -> Result<T, SubscriptionError> {
        if let Err(error) = &outcome {
            tracing::error!(subscription = %self.sink.name(), %error, "subscription stopped");
            self.set_state(SubscriptionState::Stopped { error: error.to_string() });
        }
        outcome
    }

    fn set_state(&self, state: SubscriptionState) {
        set_state(&self.status, state);
    }

    async fn settle(&self) -> Result<(), SubscriptionError> {
        let mut waits = Waits::new(&self.status, &self.options, self.sink.name(), "waiting for running writers");
        loop {
            match self.feed.settle().await {
                Ok(()) => {
                    waits.recovered();
                    return Ok(());
                }
                Err(e) if e.is_transient() => waits.wait(&e).await,
                Err(source) => return Err(self.store_error(source)),
            }
        }
    }

    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, SubscriptionError> {
        let mut waits = Waits::new(&self.status, &self.options, self.sink.name(), "listening for new events");
        loop {
            match self.feed.wakeups().await {
                Ok(wakeups) => return Ok(waits.recovered_with(wakeups)),
                Err(e) if e.is_transient() => waits.wait(&e).await,
                Err(source) => return Err(self.store_error(source)),
            }
        }
    }

    async fn load_checkpoint(&mut self) -> Result<Checkpoint, SubscriptionError> {
        let name = self.sink.name().to_owned();
        let mut waits = Waits::new(&self.status, &self.options, &name, "reading the checkpoint");
        loop {
            match self.sink.checkpoint().await {
                Ok(checkpoint) => {
                    waits.recovered();
                    self.status.send_modify(|status| status.checkpoint = checkpoint);
                    return Ok(checkpoint);
                }
                Err(e) if e.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient) => waits.wait(&e).await,
                Err(source) => return Err(SubscriptionError::Checkpoint { name, source }),
            }
        }
    }

    fn store_error(&self, source: StoreError) -> SubscriptionError {
        SubscriptionError::Store { name: self.sink.name().to_owned(), source }
    }

    async fn read(&self, checkpoint: Checkpoint) -> Result<FeedBatch, SubscriptionError> {
        read_batch(&self.feed, &self.filter, &self.options, &self.status, self.sink.name(), checkpoint).await
    }

    /// Processes `batch` while reading the batch after it. Reading has no effects, so
    /// reading ahead changes only how long a catch-up takes: if processing fails, the
    /// batch read ahead is dropped and the failed batch is retried as before.
    async fn process_and_read_ahead(&mut self, batch: FeedBatch) -> Result<FeedBatch, SubscriptionError> {
        let Subscription { feed, sink, filter, options, status } = self;
        let name = sink.name().to_owned();
        let (processed, next) = tokio::join!(
            process_batch(sink, options, status, &batch),
            read_batch(feed, filter, options, status, &name, batch.next)
        );
        processed?;
        status.send_modify(|status| status.checkpoint = batch.next);
        next
    }
}

fn set_state(status: &watch::Sender<SubscriptionStatus>, state: SubscriptionState) {
    status.send_if_modified(|status| {
        if status.state == state {
            return false;
        }
        status.state = state;
        status.since = SystemTime::now();
        true
    });
}

/// Waiting out a transient failure: capped back-off that never gives up, a warning in the
/// log (at the first failure and then at every tenth), the reason in the status, and a
/// note in the log when it is over.
struct Waits<'a> {
    status: &'a watch::Sender<SubscriptionStatus>,
    name: &'a str,
    what: &'static str,
    attempts: Attempts,
    failures: u32,
}

impl<'a> Waits<'a> {
    fn new(
        status: &'a watch::Sender<SubscriptionStatus>,
        options: &SubscriptionOptions,
        name: &'a str,
        what: &'static str,
    ) -> Self {
        let forever = RetryPolicy { max_attempts: u32::MAX, budget: None, ..options.wait };
        Waits { status, name, what, attempts: forever.start(), failures: 0 }
    }

    async fn wait(&mut self, error: &(dyn std::fmt::Display + Sync)) {
        self.failures = self.failures.saturating_add(1);
        telemetry::consumer_waited(self.name);
        if self.failures == 1 || self.failures.is_multiple_of(10) {
            tracing::warn!(
                subscription = %self.name,
                failures = self.failures,
                waited_ms = u64::try_from(self.attempts.elapsed().as_millis()).unwrap_or(u64::MAX),
                %error,
                "{} failed; waiting for the store and retrying", self.what
            );
        }
        set_state(
            self.status,
            SubscriptionState::Retrying { reason: format!("{}: {error}", self.what), attempts: self.failures },
        );
        let wait = self.attempts.failed().unwrap_or(RetryPolicy::forever().max_backoff);
        tokio::time::sleep(wait).await;
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                subscription = %self.name,
                failures = self.failures,
                waited_ms = u64::try_from(self.attempts.elapsed().as_millis()).unwrap_or(u64::MAX),
                "{} works again; resuming", self.what
            );
            set_state(self.status, SubscriptionState::Processing);
            self.failures = 0;
        }
    }

    fn recovered_with<T>(&mut self, value: T) -> T {
        self.recovered();
        value
    }
}

/// Reads the batch after `checkpoint`, waiting out transient store failures.
async fn read_batch<F: EventFeed>(
    feed: &F,
    filter: &Filter,
    options: &SubscriptionOptions,
    status: &watch::Sender<SubscriptionStatus>,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<FeedBatch, SubscriptionError> {
    let mut waits = Waits::new(status, options, name, "reading events");
    loop {
        match feed.read_feed(checkpoint, filter, options.batch_size).await {
            Ok(batch) => return Ok(waits.recovered_with(batch)),
            Err(e) if e.is_transient() => waits.wait(&e).await,
            Err(source) => return Err(SubscriptionError::Store { name: name.to_owned(), source }),
        }
    }
}

/// Hands `batch` to the sink. Transient store failures are waited out; other failures
/// are retried as `options.retry` allows (permanent ones are not), then the failing event
/// is offered to the sink to park; if it does not park it, the subscription stops.
async fn process_batch<S: Sink>(
    sink: &mut S,
    options: &SubscriptionOptions,
    status: &watch::Sender<SubscriptionStatus>,
    batch: &FeedBatch,
) -> Result<(), SubscriptionError> {
    let name = sink.name().to_owned();
    let mut waits = Waits::new(status, options, &name, "storing a batch");
    let mut tries = options.retry.start();
    loop {
        let span = tracing::debug_span!(
            "annals.batch",
            consumer = %name,
            checkpoint = %batch.events.first().map_or(batch.next, |first| first.checkpoint),
            events = batch.events.len(),
            next = %batch.next,
        );
        match sink.process(&batch.events, batch.next).instrument(span).await {
            Ok(()) => {
                waits.recovered();
                let newest = batch.events.last().map(|event| event.envelope.recorded_at);
                telemetry::batch_processed(&name, batch.events.len(), newest);
                return Ok(());
            }
            Err(e) if e.is_transient() => waits.wait(&e).await,
            Err(source) => {
                let attempts = tries.count();
                let permanent = source.is_permanent();
                tracing::warn!(subscription = %name, attempts, permanent, error = %source, "a batch failed");
                set_state(status, SubscriptionState::Retrying { reason: source.to_string(), attempts });
                if !permanent && tries.wait_after_failure().await {
                    continue;
                }
                // Retrying cannot help (any more): park the failing event, or stop.
                let failed = source.event_id().and_then(|id| batch.events.iter().find(|e| e.envelope.event_id == id));
                let parked = match failed {
                    Some(event) => sink.park(event, &source.to_string()).await,
                    None => Ok(false),
                };
                match parked {
                    Ok(true) => {
                        telemetry::parked(&name);
                        if let Some(event) = failed {
                            tracing::warn!(
                                subscription = %name,
                                stream = %event.envelope.stream_id,
                                version = event.envelope.stream_version,
                                position = event.envelope.global_position,
                                event_type = %event.envelope.event_type,
                                error = %source,
                                "parked a poison event; going on without it"
                            );
                        }
                        tries = options.retry.start();
                    }
                    Ok(false) => {
                        return Err(SubscriptionError::Sink { name, attempts, source: Box::new(source) });
                    }
                    Err(park_error) => {
                        tracing::error!(subscription = %name, error = %park_error, "could not park a poison event");
                        return Err(SubscriptionError::Sink { name, attempts, source: Box::new(source) });
                    }
                }
            }
        }
    }
}
