//! The poison suite: consumers that meet an event their handler cannot process stop at
//! it, or park it as a dead letter in the store and go on; parked events are listed,
//! retried after a fix (per stream in order) and skipped. Run it with
//! [`poison_conformance_tests!`](crate::poison_conformance_tests).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::support::{fast, noted, Log, Recorder};
use crate::envelope::NewEvent;
use crate::event::Event;
use crate::retry::RetryPolicy;
use crate::store::{CheckpointStore, EventFeed, EventStore, ExpectedVersion};
use crate::subscription::{
    AtLeastOnce, ExactlyOnce, InMemoryProjection, PoisonPolicy, Subscription, SubscriptionError, SubscriptionOptions,
};

/// Two attempts per failing batch, so a failing event is parked quickly; batches of one
/// event, so that a rolled-back exactly-once batch leaves nothing in the recorder's log
/// (which lives outside the store's transaction).
fn options() -> SubscriptionOptions {
    SubscriptionOptions { batch_size: 1, retry: RetryPolicy { max_attempts: 2, ..fast().retry }, ..fast() }
}

/// A `Noted` event whose payload does not decode: a permanent failure.
fn undecodable() -> NewEvent {
    NewEvent::new(super::support::Noted::NAME, 1, json!({ "label": 42 }))
}

/// Stream `s-1`: a, b, c; stream `s-2`: d, e.
async fn two_streams<S: EventStore>(store: &S) {
    store.append("s-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("b"), noted("c")]).await.unwrap();
    store.append("s-2", ExpectedVersion::Exact(0), vec![noted("d"), noted("e")]).await.unwrap();
}

/// `Park`: an event that keeps failing is parked after the retries, every other event is
/// delivered; after the fix, `retry_parked` applies it and the read model holds what a
/// clean run holds. A new instance of the consumer skips the parked event.
pub async fn exactly_once_parks_a_failing_event_and_retries_it_after_a_fix<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    two_streams(&store).await;
    let (log, failures) = (Log::default(), Arc::new(AtomicU32::new(u32::MAX)));
    let recorder = Recorder::<S::Connection>::new(&log).failing_on("b", &failures);
    let consumer = ExactlyOnce::new(store.clone(), recorder).poison(PoisonPolicy::Park);
    let mut subscription = Subscription::new(store.clone(), consumer).options(options());
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "c", "d", "e"]);
    let parked = subscription.sink().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].event.envelope.stream_id.as_str(), parked[0].event.envelope.stream_version), ("s-1", 2));
    assert!(parked[0].reason.contains("refusing `b`"), "{}", parked[0].reason);
    assert_eq!(parked[0].behind, None);

    // Another instance (after a restart) finds it parked and does not apply it.
    let again = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log)).poison(PoisonPolicy::Park);
    store.append("s-2", ExpectedVersion::Exact(2), vec![noted("f")]).await.unwrap();
    let mut subscription = Subscription::new(store.clone(), again).options(options());
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "c", "d", "e", "f"]);

    // The fix: the handler accepts `b` now.
    failures.store(0, Ordering::SeqCst);
    let mut consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log)).poison(PoisonPolicy::Park);
    let report = consumer.retry_parked().await.unwrap();
    assert_eq!((report.applied.len(), report.still_parked.len()), (1, 0));
    assert!(consumer.parked().await.unwrap().is_empty());
    let mut labels = log.labels();
    labels.sort();
    assert_eq!(labels, ["a", "b", "c", "d", "e", "f"], "the same events as a clean run");
}

/// `ParkStream`: the failing event's later stream events are parked behind it while
/// other streams flow; after the fix they are applied in their stream's order.
pub async fn exactly_once_park_stream_holds_back_the_rest_of_the_stream<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    two_streams(&store).await;
    let (log, failures) = (Log::default(), Arc::new(AtomicU32::new(u32::MAX)));
    let recorder = Recorder::<S::Connection>::new(&log).failing_on("b", &failures);
    let mut consumer = ExactlyOnce::new(store.clone(), recorder).poison(PoisonPolicy::ParkStream);
    let mut subscription = Subscription::new(store.clone(), consumer).options(options());
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "d", "e"], "s-1 stops at b; s-2 flows");
    let parked = subscription.sink().parked().await.unwrap();
    let parked_labels: Vec<_> = parked.iter().map(|p| p.event.envelope.payload["label"].clone()).collect();
    assert_eq!(parked_labels, [json!("b"), json!("c")]);
    assert_eq!(parked[1].behind, Some(parked[0].event.envelope.event_id));

    // Still failing: both stay parked, c still behind b.
    consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log).failing_on("b", &failures))
        .poison(PoisonPolicy::ParkStream);
    let report = consumer.retry_parked().await.unwrap();
    assert_eq!((report.applied.len(), report.still_parked.len()), (0, 2));
    assert_eq!(log.labels(), ["a", "d", "e"]);

    failures.store(0, Ordering::SeqCst);
    let report = consumer.retry_parked().await.unwrap();
    assert_eq!((report.applied.len(), report.still_parked.len()), (2, 0));
    assert_eq!(log.labels(), ["a", "d", "e", "b", "c"], "s-1 in its order: a, b, c");
}

/// An event that does not decode is permanent: with `Stop` the subscription stops at it
/// after one attempt (no retries that cannot help), naming the event; with `Park` it is
/// parked at once.
pub async fn a_permanent_failure_stops_at_once_or_is_parked_at_once<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    store.append("p-1", ExpectedVersion::Exact(0), vec![noted("a"), undecodable(), noted("c")]).await.unwrap();
    let log = Log::default();
    let many = SubscriptionOptions { retry: RetryPolicy { max_attempts: 50, ..fast().retry }, ..fast() };
    let stopping = AtLeastOnce::new(store.clone(), Recorder::new(&log));
    let error = Subscription::new(store.clone(), stopping).options(many).catch_up().await.unwrap_err();
    match &error {
        SubscriptionError::Sink { attempts, source, .. } => {
            assert_eq!(*attempts, 1, "a permanent failure is not retried");
            assert!(source.is_permanent() && source.to_string().contains("p-1"), "{source}");
        }
        other => panic!("expected the sink to stop, got {other}"),
    }
    assert_eq!(log.labels(), ["a"]);

    let parking = AtLeastOnce::new(store.clone(), Recorder::new(&log)).poison(PoisonPolicy::Park);
    let mut subscription = Subscription::new(store.clone(), parking).options(many);
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "c"]);
    let parked = subscription.sink().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event.envelope.stream_version, 2);
}

/// An operator can skip a parked event: it is dropped without being applied.
pub async fn at_least_once_skips_a_parked_event_on_request<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    two_streams(&store).await;
    let (log, failures) = (Log::default(), Arc::new(AtomicU32::new(u32::MAX)));
    let consumer =
        AtLeastOnce::new(store.clone(), Recorder::new(&log).failing_on("d", &failures)).poison(PoisonPolicy::Park);
    let mut subscription = Subscription::new(store.clone(), consumer).options(options());
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b", "c", "e"]);
    let mut consumer = AtLeastOnce::new(store.clone(), Recorder::new(&log)).poison(PoisonPolicy::Park);
    let parked = consumer.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(consumer.skip_parked(parked[0].event.envelope.event_id).await.unwrap());
    assert!(!consumer.skip_parked(parked[0].event.envelope.event_id).await.unwrap(), "skipped once");
    assert!(consumer.parked().await.unwrap().is_empty());
    assert_eq!(consumer.retry_parked().await.unwrap().applied.len(), 0);
    assert_eq!(log.labels(), ["a", "b", "c", "e"], "d was never applied");
}

/// The same flow in memory: an [`InMemoryProjection`] keeps its dead letters beside its
/// read model.
pub async fn in_memory_parks_and_retries<S: EventStore + EventFeed>(store: S) {
    two_streams(&store).await;
    let (log, failures) = (Log::default(), Arc::new(AtomicU32::new(u32::MAX)));
    let view = InMemoryProjection::new(Recorder::new(&log).failing_on("b", &failures)).poison(PoisonPolicy::ParkStream);
    Subscription::new(store.clone(), view.clone()).options(options()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "d", "e"]);
    assert_eq!(view.parked().await.len(), 2);
    failures.store(0, Ordering::SeqCst);
    let report = view.retry_parked().await;
    assert_eq!((report.applied.len(), report.still_parked.len()), (2, 0));
    assert_eq!(log.labels(), ["a", "d", "e", "b", "c"]);
    store.append("s-1", ExpectedVersion::Exact(3), vec![noted("g")]).await.unwrap();
    Subscription::new(store.clone(), view.clone()).options(options()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "d", "e", "b", "c", "g"]);
}

/// A stored row that does not read back as an event, on a database adapter: `damage`
/// spoils the row of stream `s-1` version 2 the way the adapter's tables allow (a time
/// annals cannot represent, metadata that is not an object, ...), `repair` restores it.
/// Not in [`poison_conformance_tests!`](crate::poison_conformance_tests), which cannot
/// spoil a row: an adapter calls it from its own tests with its own SQL.
///
/// The feed returns the row in its place as a damaged event ([`FeedEvent::damage`](crate::store::FeedEvent::damage)),
/// with the events around it; a consumer that stops, stops at it at once, naming stream,
/// version and position; one that parks, parks it and delivers the rest; after the
/// repair, retrying applies the event as it now reads, and the read model equals a clean
/// run's.
pub async fn a_damaged_row_stops_a_consumer_or_is_parked_and_retried_after_a_repair<S>(
    store: S,
    damage: impl AsyncFnOnce(&S),
    repair: impl AsyncFnOnce(&S),
) where
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
{
    two_streams(&store).await;
    damage(&store).await;
    let batch = store.read_feed(crate::store::Checkpoint::START, &crate::store::Filter::all(), 100).await.unwrap();
    let places: Vec<_> = batch
        .events
        .iter()
        .map(|e| (e.envelope.stream_id.as_str(), e.envelope.stream_version, e.damage.is_some()))
        .collect();
    assert_eq!(places, [("s-1", 1, false), ("s-1", 2, true), ("s-1", 3, false), ("s-2", 1, false), ("s-2", 2, false)]);

    let log = Log::default();
    let stopping = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log));
    let error = Subscription::new(store.clone(), stopping).options(options()).catch_up().await.unwrap_err();
    match &error {
        SubscriptionError::Sink { attempts, source, .. } => {
            assert_eq!(*attempts, 1, "a damaged row is permanent: {source}");
            let message = source.to_string();
            assert!(source.is_permanent(), "{message}");
            for part in ["stream `s-1` version 2", "global position", "does not read back"] {
                assert!(message.contains(part), "`{part}` in: {message}");
            }
        }
        other => panic!("expected the consumer to stop at the damaged row, got {other}"),
    }
    assert_eq!(log.labels(), ["a"]);

    let parking = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log)).poison(PoisonPolicy::Park);
    let mut subscription = Subscription::new(store.clone(), parking).options(options());
    subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "c", "d", "e"]);
    let parked = subscription.sink().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].event.envelope.stream_id.as_str(), parked[0].event.envelope.stream_version), ("s-1", 2));
    assert!(parked[0].event.damage.is_some() && parked[0].reason.contains("does not read back"), "{parked:?}");

    repair(&store).await;
    let mut consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log)).poison(PoisonPolicy::Park);
    let report = consumer.retry_parked().await.unwrap();
    assert_eq!((report.applied.len(), report.still_parked.len()), (1, 0), "{report:?}");
    let mut labels = log.labels();
    labels.sort();
    assert_eq!(labels, ["a", "b", "c", "d", "e"], "the same events as a clean run");
}
