//! [`Subscription`]: catch up from a checkpoint, then follow, retrying failures.

use std::time::Duration;

use futures::StreamExt;

use crate::projection::BoxError;
use crate::retry::RetryPolicy;
use crate::store::{Checkpoint, EventFeed, FeedBatch, Filter, StoreError};
use crate::subscription::{Sink, SinkError};

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
    /// Attempts per read and per batch, and the waits between them, before the
    /// subscription stops with an error.
    pub retry: RetryPolicy,
}

impl Default for SubscriptionOptions {
    /// Batches of 500, polling every 500 ms, 5 attempts with back-off from 50 ms to 5 s.
    fn default() -> Self {
        SubscriptionOptions {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 5,
                backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
            },
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
            Err(e) if e.is_transient() && options.retry.allows_another(attempt) => {
                tokio::time::sleep(options.retry.delay(attempt)).await;
                attempt += 1;
            }
            Err(source) => return Err(SubscriptionError::Store { name: name.to_owned(), source }),
        }
    }
}

/// Hands `batch` to the sink, retrying with back-off; stops with the last error after
/// `options.retry.max_attempts`.
async fn process_batch<S: Sink>(
    sink: &mut S,
    options: &SubscriptionOptions,
    batch: &FeedBatch,
) -> Result<(), SubscriptionError> {
    let mut attempt = 1;
    loop {
        match sink.process(&batch.events, batch.next).await {
            Ok(()) => return Ok(()),
            Err(source) if !options.retry.allows_another(attempt) => {
                return Err(SubscriptionError::Sink { name: sink.name().to_owned(), attempts: attempt, source })
            }
            Err(_) => {
                tokio::time::sleep(options.retry.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}
