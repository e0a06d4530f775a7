//! What the suites share: small events, a recording projection, feed reads and bounded
//! waits.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::envelope::{Envelope, NewEvent};
use crate::event::Event;
use crate::projection::{Projection, ProjectionError};
use crate::retry::RetryPolicy;
use crate::store::{Checkpoint, EventFeed, EventStore, FeedEvent, Filter, VersionRange};
use crate::subscription::SubscriptionOptions;

/// A plain event numbered `n`, for the store and feed suites.
pub(crate) fn event(n: u64) -> NewEvent {
    NewEvent::new("conformance.happened", 1, json!({ "n": n }))
}

/// Events numbered `range`, in order.
pub(crate) fn events(range: std::ops::RangeInclusive<u64>) -> Vec<NewEvent> {
    range.map(event).collect()
}

/// A value nested `depth` levels deep (see [`json_depth`](crate::store::kit::json_depth)):
/// objects and arrays in turn, each with a scalar beside the next level, around a string.
pub(crate) fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(json!("bottom"), |inner, level| {
        if level % 2 == 0 {
            json!([level, inner])
        } else {
            json!({ "level": level, "inner": inner })
        }
    })
}

/// The `n` of events made by [`event`].
pub(crate) fn numbers(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.payload["n"].as_u64().expect("payload n")).collect()
}

/// The stream versions of `envelopes`.
pub(crate) fn versions(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.stream_version).collect()
}

/// Every event of `stream` within `range`.
pub(crate) async fn read<S: EventStore>(store: &S, stream: &str, range: impl Into<VersionRange>) -> Vec<Envelope> {
    store.read_stream(stream, range.into()).try_collect().await.expect("read_stream")
}

/// Every event of the feed after `after` that matches `filter`, read `limit` at a time
/// until a read makes no progress, after [`EventFeed::settle`]; and where the last read
/// ended.
pub(crate) async fn drain<F: EventFeed>(
    feed: &F,
    after: Checkpoint,
    filter: &Filter,
    limit: usize,
) -> (Vec<FeedEvent>, Checkpoint) {
    feed.settle().await.expect("settle");
    let mut all = Vec::new();
    let mut at = after;
    for _ in 0..100_000 {
        let batch = feed.read_feed(at, filter, limit).await.expect("read_feed");
        assert!(batch.events.len() <= limit.max(1), "a read of limit {limit} returned {} events", batch.events.len());
        if batch.next == at {
            assert!(batch.events.is_empty(), "a read returned events but did not move past them: {batch:?}");
            return (all, at);
        }
        assert!(batch.next > at, "a read moved its checkpoint backwards, from {at} to {}", batch.next);
        at = batch.next;
        all.extend(batch.events);
    }
    panic!("the feed kept returning batches after 100,000 reads");
}

/// Every event of the feed, from the start.
pub(crate) async fn feed_all<F: EventFeed>(feed: &F) -> Vec<Envelope> {
    drain(feed, Checkpoint::START, &Filter::all(), 100).await.0.into_iter().map(|e| e.envelope).collect()
}

/// Waits up to 10 s for `done`, checking every 5 ms; panics naming `what` if it never is.
pub(crate) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out after 10 s waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Subscription options for tests: small batches, quick polls, quick retries.
pub(crate) fn fast() -> SubscriptionOptions {
    SubscriptionOptions {
        batch_size: 7,
        poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_attempts: 5,
            budget: None,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        wait: RetryPolicy {
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::forever()
        },
    }
}

/// Something noted; the event the [`Recorder`] records.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.noted")]
pub(crate) struct Noted {
    /// What was noted; the recorder records it.
    pub(crate) label: String,
}

/// The notebook was closed; the [`Recorder`] records it as `<closed>`.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.closed")]
pub(crate) struct Closed;

/// A [`Noted`] event as appended.
pub(crate) fn noted(label: &str) -> NewEvent {
    NewEvent::new(Noted::NAME, Noted::VERSION, json!({ "label": label }))
}

/// A [`Closed`] event as appended.
pub(crate) fn closed() -> NewEvent {
    NewEvent::new(Closed::NAME, Closed::VERSION, serde_json::Value::Null)
}

/// An event of a type the [`Recorder`] does not handle.
pub(crate) fn noise(label: &str) -> NewEvent {
    NewEvent::new("conformance.ignored", 1, json!({ "label": label }))
}

/// What the [`Recorder`] saw of one event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Seen {
    pub(crate) event_id: Uuid,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) label: String,
}

/// The record a [`Recorder`] keeps, shared by clones; it plays the read model.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub(crate) fn entries(&self) -> MutexGuard<'_, Vec<Seen>> {
        self.0.lock().expect("the log's lock")
    }

    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }

    pub(crate) fn labels(&self) -> Vec<String> {
        self.entries().iter().map(|s| s.label.clone()).collect()
    }

    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}

/// A projection of [`Noted`] and [`Closed`] that records every event it handles into a
/// [`Log`], and can be told to fail on one label a number of times. Generic over its
/// context, which it ignores, so it runs in any sink: `()` for in-memory and at-least-once
/// consumers, the store's connection for exactly-once ones.
pub(crate) struct Recorder<C = ()> {
    log: Log,
    failing: Option<(String, Arc<AtomicU32>)>,
    context: PhantomData<fn() -> C>,
}

/// The [`Recorder`]'s name: the key of its checkpoint.
pub(crate) const RECORDER: &str = "conformance_recorder";

impl<C> Recorder<C> {
    /// Records into `log`.
    pub(crate) fn new(log: &Log) -> Self {
        Recorder { log: log.clone(), failing: None, context: PhantomData }
    }

    /// Fails on the event labelled `label` while `failures` is above 0, counting it down.
    pub(crate) fn failing_on(mut self, label: &str, failures: &Arc<AtomicU32>) -> Self {
        self.failing = Some((label.to_owned(), Arc::clone(failures)));
        self
    }

    fn record(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        let label = if envelope.event_type == Noted::NAME {
            envelope.decode::<Noted>().map_err(|source| ProjectionError::decode(RECORDER, envelope, source))?.label
        } else if envelope.event_type == Closed::NAME {
            "<closed>".to_owned()
        } else {
            return Ok(());
        };
        if let Some((failing, failures)) = &self.failing {
            if *failing == label && failures.load(Ordering::SeqCst) > 0 {
                failures.fetch_sub(1, Ordering::SeqCst);
                let error = format!("refusing `{label}` for now").into();
                return Err(ProjectionError::handler(RECORDER, envelope, error));
            }
        }
        self.log.entries().push(Seen {
            event_id: envelope.event_id,
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            position: envelope.global_position,
            label,
        });
        Ok(())
    }
}

impl<C: Send + 'static> Projection for Recorder<C> {
    const NAME: &'static str = RECORDER;
    const EVENT_TYPES: &'static [&'static str] = &[Noted::NAME, Closed::NAME];
    type Context = C;

    fn project<'a>(
        &'a mut self,
        envelope: &'a Envelope,
        _connection: &'a mut C,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a {
        std::future::ready(self.record(envelope))
    }
}
