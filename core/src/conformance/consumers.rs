//! The consumers suite: the [`CheckpointStore`] contract (moves only from the stored
//! checkpoint, in transactions that fence each other), and subscriptions feeding an
//! [`InMemoryProjection`], an [`ExactlyOnce`] and an [`AtLeastOnce`] consumer: catch-up,
//! live following, failing handlers, restarts, fencing of a second instance, rebuilds and
//! resets. Run it with [`consumer_conformance_tests!`](crate::consumer_conformance_tests).
//!
//! The exactly-once cases record into memory, outside the store's transaction (the suite
//! cannot write through an unknown connection); where a batch may be retried they read
//! batches of one event, so a rolled-back batch never leaves a record behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::support::{closed, drain, fast, noise, noted, wait_until, Log, Recorder, RECORDER};
use crate::projection::Projection;
use crate::retry::RetryPolicy;
use crate::store::{Checkpoint, CheckpointStore, EventFeed, EventStore, ExpectedVersion, Filter};
use crate::subscription::{
    AtLeastOnce, CheckpointMoved, ExactlyOnce, InMemoryProjection, Sink, SinkError, Subscription, SubscriptionError,
    SubscriptionOptions,
};

/// The checkpoints of the first `n` events of the feed (appending them if needed is the
/// caller's job).
async fn feed_checkpoints<F: EventFeed>(feed: &F) -> Vec<Checkpoint> {
    drain(feed, Checkpoint::START, &Filter::all(), 100).await.0.iter().map(|e| e.checkpoint).collect()
}

/// The checkpoint of the event labelled `label`.
async fn checkpoint_of<F: EventFeed>(feed: &F, label: &str) -> Checkpoint {
    let (all, _) = drain(feed, Checkpoint::START, &Filter::all(), 100).await;
    all.iter().find(|e| e.envelope.payload["label"] == label).map(|e| e.checkpoint).expect("an event with that label")
}

/// The stored checkpoint of `name`.
async fn stored<K: CheckpointStore>(store: &K, name: &str) -> Option<Checkpoint> {
    store.load_checkpoint(name).await.unwrap()
}

/// Moves `name` from `from` to `to` in a transaction of its own; commits if it moved.
async fn move_alone<K: CheckpointStore>(store: &K, name: &str, from: Option<Checkpoint>, to: Checkpoint) -> bool {
    let mut transaction = store.begin().await.unwrap();
    let moved = store.move_checkpoint(&mut transaction, name, from, to).await.unwrap();
    if moved {
        store.commit(transaction).await.unwrap();
    }
    moved
}

fn options_with_attempts(max_attempts: u32, batch_size: usize) -> SubscriptionOptions {
    SubscriptionOptions { batch_size, retry: RetryPolicy { max_attempts, ..fast().retry }, ..fast() }
}

/// Checks that `error` is the sink stopping after `attempts` attempts on the event at
/// `stream` version `version`.
fn assert_stopped_at(error: &SubscriptionError, attempts: u32, stream: &str, version: u64) {
    match error {
        SubscriptionError::Sink { name, attempts: tried, .. } => {
            assert_eq!((name.as_str(), *tried), (RECORDER, attempts))
        }
        other => panic!("expected the sink to stop the subscription, got {other:?}"),
    }
    let message = error.to_string();
    let at = format!("stream `{stream}` version {version}");
    assert!(message.contains(&at) && message.contains("conformance.noted"), "the error names the event: {message}");
}

/// A checkpoint moves only from the stored one (`None`: none stored) and only when the
/// transaction commits; each name has its own; deleting one starts it over.
pub async fn checkpoints_move_only_from_the_stored_checkpoint<S: EventStore + EventFeed + CheckpointStore>(store: S) {
    store.append("cp-1", ExpectedVersion::Exact(0), vec![noted("1"), noted("2"), noted("3")]).await.unwrap();
    let cps = feed_checkpoints(&store).await;
    let (one, two, three) = (cps[0], cps[1], cps[2]);
    let name = "conformance 'checkpoint' \"ünï\" 🧾";
    assert_eq!(stored(&store, name).await, None);

    assert!(move_alone(&store, name, None, one).await, "the first move starts from none");
    assert_eq!(stored(&store, name).await, Some(one));
    assert!(!move_alone(&store, name, None, two).await, "none is no longer stored");
    assert!(!move_alone(&store, name, Some(two), three).await, "`two` was never stored");
    assert_eq!(stored(&store, name).await, Some(one), "refused moves change nothing");

    let mut rolled_back = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut rolled_back, name, Some(one), two).await.unwrap());
    drop(rolled_back);
    assert_eq!(stored(&store, name).await, Some(one), "a transaction dropped without commit changes nothing");

    let mut transaction = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut transaction, name, Some(one), two).await.unwrap());
    assert!(
        store.move_checkpoint(&mut transaction, name, Some(two), three).await.unwrap(),
        "a transaction sees its own move"
    );
    store.commit(transaction).await.unwrap();
    assert_eq!(stored(&store, name).await, Some(three));

    assert!(move_alone(&store, "conformance-other", None, one).await, "another name has its own checkpoint");
    assert_eq!(stored(&store, name).await, Some(three));

    let mut kept = store.begin().await.unwrap();
    store.delete_checkpoint(&mut kept, name).await.unwrap();
    drop(kept);
    assert_eq!(stored(&store, name).await, Some(three), "a delete without commit changes nothing");
    let mut deleting = store.begin().await.unwrap();
    store.delete_checkpoint(&mut deleting, name).await.unwrap();
    store.commit(deleting).await.unwrap();
    assert_eq!(stored(&store, name).await, None);
    assert_eq!(stored(&store, "conformance-other").await, Some(one));
    assert!(move_alone(&store, name, None, two).await, "after a delete it starts from none again");
    assert_eq!(stored(&store, name).await, Some(two));
}

/// A transaction that moved a checkpoint keeps other transactions from moving it until
/// it ends: after a commit the other finds it moved; after a rollback the other moves it.
pub async fn a_moving_transaction_fences_other_transactions_until_it_ends<
    S: EventStore + EventFeed + CheckpointStore,
>(
    store: S,
) {
    store.append("cp-1", ExpectedVersion::Exact(0), vec![noted("1"), noted("2"), noted("3")]).await.unwrap();
    let cps = feed_checkpoints(&store).await;
    let (one, two, three) = (cps[0], cps[1], cps[2]);
    let name = "conformance-fenced";
    let other = |from: Option<Checkpoint>, to: Checkpoint| {
        let store = store.clone();
        tokio::spawn(async move { move_alone(&store, name, from, to).await })
    };

    // A first move (from none) is held until its transaction ends; then it is committed.
    let mut first = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut first, name, None, one).await.unwrap());
    let waiting = other(None, two);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the other move waits while the first transaction is open");
    store.commit(first).await.unwrap();
    let moved = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the other move finishes").unwrap();
    assert!(!moved, "after the commit, the other transaction finds the checkpoint moved");
    assert_eq!(stored(&store, name).await, Some(one));

    // A move of a stored checkpoint is held too; this time it is rolled back.
    let mut second = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut second, name, Some(one), two).await.unwrap());
    let waiting = other(Some(one), three);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the other move waits while the second transaction is open");
    drop(second);
    let moved = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the other move finishes").unwrap();
    assert!(moved, "after the rollback, the other transaction moves the checkpoint");
    assert_eq!(stored(&store, name).await, Some(three));
}

/// Catch-up delivers each matching event once, in order, skips other event types, and
/// applies nothing twice when run again.
pub async fn in_memory_catch_up_delivers_matching_events_once_in_order<S: EventStore + EventFeed>(store: S) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noise("a"), noted("b")]).await.unwrap();
    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("c"), closed()]).await.unwrap();
    for i in 0..30 {
        store.append("note-3", ExpectedVersion::Any, vec![noted(&format!("x{i}"))]).await.unwrap();
    }
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log));
    let mut subscription = Subscription::new(store.clone(), view.clone()).options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(log.len(), 34, "every noted and closed event, no other type");
    assert_eq!(log.labels()[..4], ["a", "b", "c", "<closed>"]);
    let positions: Vec<u64> = log.entries().iter().map(|s| s.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in commit order: {positions:?}");
    assert_eq!(view.checkpoint().await, reached);
    subscription.catch_up().await.unwrap();
    assert_eq!(log.len(), 34, "catching up again applies nothing twice");
}

/// A category filter keeps one category's streams (not a longer name sharing its
/// prefix); a stream filter keeps one stream.
pub async fn in_memory_filters_keep_only_those_streams<S: EventStore + EventFeed>(store: S) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a")]).await.unwrap();
    store.append("wishlist-1", ExpectedVersion::Exact(0), vec![noted("w")]).await.unwrap();
    store.append("notebook-1", ExpectedVersion::Exact(0), vec![noted("m")]).await.unwrap();
    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("b"), noise("b")]).await.unwrap();
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log));
    let filter = Filter::for_projection::<Recorder>().category("note");
    Subscription::new(store.clone(), view).filter(filter).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b"]);
    let one = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&one));
    Subscription::new(store.clone(), view).filter(Filter::all().stream("note-2")).catch_up().await.unwrap();
    assert_eq!(one.labels(), ["b"], "events of types the projection does not handle are ignored");
}

/// After catching up, a running subscription follows events appended concurrently by 8
/// writers, and sees each exactly once.
pub async fn in_memory_follows_concurrent_writers_live<S: EventStore + EventFeed>(store: S) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 25;
    store.append("note-early", ExpectedVersion::Exact(0), vec![noted("early")]).await.unwrap();
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log));
    let mut subscription = Subscription::new(store.clone(), view).options(fast());
    let runner = tokio::spawn(async move { subscription.run().await });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                let batch = vec![noted(&format!("w{w}-{i}")), noise("noise")];
                store.append(&format!("note-w{w}"), ExpectedVersion::Any, batch).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = WRITERS * APPENDS + 1;
    wait_until(&format!("the projection saw {total} events"), || log.len() >= total || runner.is_finished()).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // anything extra would show up now
    if runner.is_finished() {
        panic!("the subscription stopped: {:?}", runner.await);
    }
    runner.abort();
    let labels: BTreeSet<String> = log.labels().into_iter().collect();
    assert_eq!((log.len(), labels.len()), (total, total), "every event exactly once");
    // Concurrent appends commit in any order; each stream's events arrive in version order.
    let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for seen in log.entries().iter() {
        per_stream.entry(seen.stream.clone()).or_default().push(seen.version);
    }
    assert_eq!(per_stream.len(), WRITERS + 1);
    for (stream, versions) in &per_stream {
        let expected: Vec<u64> =
            if stream == "note-early" { vec![1] } else { (0..APPENDS as u64).map(|i| 2 * i + 1).collect() };
        assert_eq!(*versions, expected, "the events of {stream} in version order");
    }
}

/// A handler that fails a few times is retried with back-off; nothing is applied twice.
pub async fn in_memory_a_failing_handler_is_retried_without_double_applying<S: EventStore + EventFeed>(store: S) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("flaky"), noted("c")]).await.unwrap();
    let failures = Arc::new(AtomicU32::new(2));
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log).failing_on("flaky", &failures));
    Subscription::new(store.clone(), view).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "flaky", "c"]);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}

/// A handler that keeps failing stops the subscription with an error naming the event;
/// once the cause is fixed, a restart resumes at that event and applies everything once.
pub async fn in_memory_a_handler_that_keeps_failing_stops_visibly_and_resumes_after_a_fix<S: EventStore + EventFeed>(
    store: S,
) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("broken"), noted("c")]).await.unwrap();
    let failures = Arc::new(AtomicU32::new(u32::MAX));
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log).failing_on("broken", &failures));
    let options = options_with_attempts(3, 7);
    let error = Subscription::new(store.clone(), view.clone()).options(options).catch_up().await.unwrap_err();
    assert_stopped_at(&error, 3, "note-1", 2);
    assert_eq!(log.labels(), ["a"], "nothing after the failed event is applied");

    failures.store(0, Ordering::SeqCst); // the fix
    Subscription::new(store.clone(), view).options(options).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "broken", "c"]);
}

/// A new subscription over the same in-memory projection resumes from its checkpoint.
pub async fn in_memory_a_restarted_subscription_resumes_from_the_checkpoint<S: EventStore + EventFeed>(store: S) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("b")]).await.unwrap();
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log));
    let reached = Subscription::new(store.clone(), view.clone()).catch_up().await.unwrap();
    assert_eq!(view.checkpoint().await, reached);
    store.append("note-1", ExpectedVersion::Exact(2), vec![noted("c")]).await.unwrap();
    Subscription::new(store.clone(), view.clone()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b", "c"]);
}

/// Rebuilding while a subscription runs and a writer appends: the rebuilt model ends up
/// with every event exactly once, and the running subscription carries on after the swap.
pub async fn in_memory_a_rebuild_while_running_loses_and_repeats_nothing<S: EventStore + EventFeed>(store: S) {
    const BEFORE: usize = 100;
    const DURING: usize = 150;
    for i in 0..BEFORE {
        store.append("note-r", ExpectedVersion::Any, vec![noted(&format!("before-{i}"))]).await.unwrap();
    }
    let log = Log::default();
    let view = InMemoryProjection::new(Recorder::new(&log));
    let mut subscription = Subscription::new(store.clone(), view.clone()).options(fast());
    let runner = tokio::spawn(async move { subscription.run().await });
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..DURING {
                store.append("note-w", ExpectedVersion::Any, vec![noted(&format!("during-{i}"))]).await.unwrap();
                if i % 25 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    wait_until("the projection saw 50 events", || log.len() >= 50).await;
    let rebuilt = Log::default();
    view.rebuild(store.clone(), Recorder::new(&rebuilt)).await.unwrap();
    writer.await.unwrap();
    let total = BEFORE + DURING;
    wait_until(&format!("the rebuilt projection saw {total} events"), || rebuilt.len() >= total).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    if runner.is_finished() {
        panic!("the subscription stopped: {:?}", runner.await);
    }
    runner.abort();
    let labels: BTreeSet<String> = rebuilt.labels().into_iter().collect();
    assert_eq!((rebuilt.len(), labels.len()), (total, total), "every event exactly once after the rebuild");
    let positions: Vec<u64> = rebuilt.entries().iter().map(|s| s.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "still in order after the swap");
}

/// An exactly-once consumer's checkpoint persists in the store, past skipped events; a
/// new instance resumes after it, and one under another name starts from the beginning.
pub async fn exactly_once_checkpoint_persists_and_a_new_instance_resumes<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    store
        .append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noise("x"), noted("b"), noise("y")])
        .await
        .unwrap();
    let first = Log::default();
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&first));
    let mut subscription = Subscription::new(store.clone(), consumer).options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(first.labels(), ["a", "b"]);
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(reached));
    let last = drain(&store, Checkpoint::START, &Filter::all(), 100).await.0.last().unwrap().checkpoint;
    assert!(reached >= last, "the checkpoint moved past the skipped events");
    subscription.catch_up().await.unwrap();
    assert_eq!(first.labels(), ["a", "b"], "catching up again applies nothing twice");
    drop(subscription);

    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("c")]).await.unwrap();
    let second = Log::default();
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&second));
    let reached = Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(second.labels(), ["c"], "a new instance resumes after the stored checkpoint");
    assert_eq!(stored(&store, RECORDER).await, Some(reached));

    let renamed = Log::default();
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&renamed)).named("conformance_v2");
    assert_eq!(consumer.name(), "conformance_v2");
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(renamed.labels(), ["a", "b", "c"]);
    assert_eq!(stored(&store, "conformance_v2").await, Some(reached));
    assert_eq!(first.labels(), ["a", "b"]);
}

/// An exactly-once consumer retries a failing handler; if it keeps failing, the
/// subscription stops naming the event, the checkpoint stays before it, and after the fix
/// a new instance resumes at it.
pub async fn exactly_once_a_failing_handler_is_retried_then_stops_and_resumes_at_the_event<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    let one_at_a_time = options_with_attempts(5, 1);
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("flaky"), noted("c")]).await.unwrap();
    let log = Log::default();
    let flaky = Arc::new(AtomicU32::new(2));
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log).failing_on("flaky", &flaky));
    Subscription::new(store.clone(), consumer).options(one_at_a_time).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "flaky", "c"]);
    assert_eq!(flaky.load(Ordering::SeqCst), 0);

    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("d"), noted("broken"), noted("e")]).await.unwrap();
    let broken = Arc::new(AtomicU32::new(u32::MAX));
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log).failing_on("broken", &broken));
    let stopping = options_with_attempts(3, 1);
    let error = Subscription::new(store.clone(), consumer).options(stopping).catch_up().await.unwrap_err();
    assert_stopped_at(&error, 3, "note-2", 2);
    assert_eq!(log.labels(), ["a", "flaky", "c", "d"]);
    let at = stored(&store, RECORDER).await.unwrap();
    assert!(at >= checkpoint_of(&store, "d").await && at < checkpoint_of(&store, "broken").await);

    broken.store(0, Ordering::SeqCst); // the fix
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log));
    Subscription::new(store.clone(), consumer).options(stopping).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "flaky", "c", "d", "broken", "e"]);
}

/// Fencing: an instance whose checkpoint is stale (another instance of the consumer moved
/// it) does not apply a batch on top of it, fails with [`CheckpointMoved`], and on the
/// retry applies only what is after the stored checkpoint; an instance with nothing left
/// to do applies nothing.
pub async fn exactly_once_a_stale_instance_never_applies_a_batch_again<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("e1"), noted("e2"), noted("e3")]).await.unwrap();
    let (a_log, b_log, c_log) = (Log::default(), Log::default(), Log::default());
    let mut b = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&b_log));
    assert_eq!(Sink::checkpoint(&mut b).await.unwrap(), Checkpoint::START, "b loads: nothing stored yet");

    let a = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&a_log));
    let reached = Subscription::new(store.clone(), a).options(fast()).catch_up().await.unwrap();
    assert_eq!(a_log.labels(), ["e1", "e2", "e3"]);
    let mut c = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&c_log));
    assert_eq!(Sink::checkpoint(&mut c).await.unwrap(), reached, "c loads after a");

    store.append("note-1", ExpectedVersion::Exact(3), vec![noted("e4")]).await.unwrap();
    let filter = Filter::for_projection::<Recorder<S::Connection>>();
    let (batch, next) = drain(&store, Checkpoint::START, &filter, 100).await;
    assert_eq!(batch.len(), 4);
    match b.process(&batch, next).await {
        Err(SinkError::Storage(error)) => {
            let moved =
                error.downcast_ref::<CheckpointMoved>().unwrap_or_else(|| panic!("not CheckpointMoved: {error}"));
            assert_eq!((moved.name.as_str(), moved.expected, moved.found), (RECORDER, None, Some(reached)));
        }
        other => panic!("expected CheckpointMoved from the stale instance, got {other:?}"),
    }
    assert!(b_log.labels().is_empty(), "the stale instance applied nothing");
    assert_eq!(stored(&store, RECORDER).await, Some(reached));

    b.process(&batch, next).await.unwrap();
    assert_eq!(b_log.labels(), ["e4"], "the retry applies only what is after the stored checkpoint");
    assert_eq!(stored(&store, RECORDER).await, Some(next));

    let outcome = c.process(&batch, next).await;
    assert!(matches!(outcome, Ok(()) | Err(SinkError::Storage(_))), "c finds the checkpoint moved: {outcome:?}");
    assert!(c_log.labels().is_empty(), "an instance with nothing left to do applies nothing");
    assert_eq!(stored(&store, RECORDER).await, Some(next));
}

/// Two running instances of one exactly-once consumer, while a writer appends: every
/// event is applied by exactly one of them.
pub async fn exactly_once_two_running_instances_apply_each_event_once<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    const EVENTS: usize = 60;
    let options = SubscriptionOptions {
        batch_size: 5,
        poll_interval: Duration::from_millis(10),
        retry: RetryPolicy {
            max_attempts: 1000,
            budget: None,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        ..SubscriptionOptions::default()
    };
    let logs = [Log::default(), Log::default()];
    let mut runners = Vec::new();
    for log in &logs {
        let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(log));
        let mut subscription = Subscription::new(store.clone(), consumer).options(options);
        runners.push(tokio::spawn(async move { subscription.run().await }));
    }
    for i in 0..EVENTS {
        store
            .append(&format!("note-{}", i % 3), ExpectedVersion::Any, vec![noted(&format!("e{i}")), noise("n")])
            .await
            .unwrap();
        if i % 4 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let applied = || logs[0].len() + logs[1].len();
    wait_until(&format!("the two instances applied {EVENTS} events"), || applied() >= EVENTS).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // a batch applied twice would show up now
    for runner in &runners {
        runner.abort();
    }
    let mut labels: Vec<String> = logs.iter().flat_map(Log::labels).collect();
    labels.sort();
    let mut expected: Vec<String> = (0..EVENTS).map(|i| format!("e{i}")).collect();
    expected.sort();
    assert_eq!(labels, expected, "each event applied by exactly one instance");
}

/// Resetting an exactly-once consumer deletes its checkpoint in a transaction: dropped,
/// it changes nothing; committed, the next run replays every event from the start.
pub async fn exactly_once_reset_replays_from_the_start<
    S: EventStore + EventFeed + CheckpointStore<Connection: 'static>,
>(
    store: S,
) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("b")]).await.unwrap();
    let log = Log::default();
    let consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log));
    let reached = Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b"]);

    let mut consumer = ExactlyOnce::new(store.clone(), Recorder::<S::Connection>::new(&log));
    drop(consumer.reset().await.unwrap());
    assert_eq!(consumer.stored_checkpoint().await.unwrap(), Some(reached), "a reset dropped without commit");
    let mut reset = consumer.reset().await.unwrap();
    let _read_model: &mut S::Connection = reset.connection(); // where a real read model is cleared
    log.clear();
    reset.commit().await.unwrap();
    assert_eq!(consumer.stored_checkpoint().await.unwrap(), None);

    store.append("note-1", ExpectedVersion::Exact(2), vec![noted("c")]).await.unwrap();
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b", "c"]);
}

/// An at-least-once consumer's checkpoint persists in the store, past skipped events; a
/// new instance resumes after it, and one under another name starts from the beginning.
pub async fn at_least_once_checkpoint_persists_and_a_new_instance_resumes<
    S: EventStore + EventFeed + CheckpointStore,
>(
    store: S,
) {
    store
        .append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noise("x"), noted("b"), noise("y")])
        .await
        .unwrap();
    let first = Log::default();
    let mut subscription =
        Subscription::new(store.clone(), AtLeastOnce::new(store.clone(), Recorder::new(&first))).options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(first.labels(), ["a", "b"]);
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(reached));
    let last = drain(&store, Checkpoint::START, &Filter::all(), 100).await.0.last().unwrap().checkpoint;
    assert!(reached >= last, "the checkpoint moved past the skipped events");
    subscription.catch_up().await.unwrap();
    assert_eq!(first.labels(), ["a", "b"], "catching up again handles nothing twice");
    drop(subscription);

    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("c")]).await.unwrap();
    let second = Log::default();
    let reached = Subscription::new(store.clone(), AtLeastOnce::new(store.clone(), Recorder::new(&second)))
        .options(fast())
        .catch_up()
        .await
        .unwrap();
    assert_eq!(second.labels(), ["c"], "a new instance resumes after the stored checkpoint");
    assert_eq!(stored(&store, RECORDER).await, Some(reached));

    let renamed = Log::default();
    let consumer = AtLeastOnce::new(store.clone(), Recorder::new(&renamed)).named("conformance_v2");
    assert_eq!(consumer.name(), "conformance_v2");
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(renamed.labels(), ["a", "b", "c"]);
    assert_eq!(stored(&store, "conformance_v2").await, Some(reached));
}

/// An at-least-once consumer retries a failing handler without handling the events
/// before it again; if it keeps failing, the subscription stops naming the event, the
/// checkpoint is at the event before it, and after the fix a new instance resumes at it.
pub async fn at_least_once_a_failing_handler_is_retried_then_stops_and_resumes_at_the_event<
    S: EventStore + EventFeed + CheckpointStore,
>(
    store: S,
) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("flaky"), noted("c")]).await.unwrap();
    let log = Log::default();
    let flaky = Arc::new(AtomicU32::new(2));
    let consumer = AtLeastOnce::new(store.clone(), Recorder::new(&log).failing_on("flaky", &flaky));
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "flaky", "c"], "the events before the failing one are not handled again");
    assert_eq!(flaky.load(Ordering::SeqCst), 0);

    store.append("note-2", ExpectedVersion::Exact(0), vec![noted("d"), noted("broken"), noted("e")]).await.unwrap();
    let broken = Arc::new(AtomicU32::new(u32::MAX));
    let consumer = AtLeastOnce::new(store.clone(), Recorder::new(&log).failing_on("broken", &broken));
    let stopping = options_with_attempts(3, 7);
    let error = Subscription::new(store.clone(), consumer).options(stopping).catch_up().await.unwrap_err();
    assert_stopped_at(&error, 3, "note-2", 2);
    assert_eq!(log.labels(), ["a", "flaky", "c", "d"]);
    let at = stored(&store, RECORDER).await.unwrap();
    assert!(at >= checkpoint_of(&store, "d").await && at < checkpoint_of(&store, "broken").await);

    broken.store(0, Ordering::SeqCst); // the fix
    let consumer = AtLeastOnce::new(store.clone(), Recorder::new(&log));
    Subscription::new(store.clone(), consumer).options(stopping).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "flaky", "c", "d", "broken", "e"]);
}

/// Fencing at least once: an instance whose checkpoint is stale handles at most the one
/// event it was on again before it notices, then continues after the stored checkpoint,
/// and never moves the checkpoint back.
pub async fn at_least_once_a_stale_instance_never_moves_the_checkpoint_back<
    S: EventStore + EventFeed + CheckpointStore,
>(
    store: S,
) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("e1"), noted("e2"), noted("e3")]).await.unwrap();
    let (a_log, b_log) = (Log::default(), Log::default());
    let mut b = AtLeastOnce::new(store.clone(), Recorder::new(&b_log));
    assert_eq!(Sink::checkpoint(&mut b).await.unwrap(), Checkpoint::START, "b loads: nothing stored yet");
    let a = AtLeastOnce::new(store.clone(), Recorder::new(&a_log));
    let reached = Subscription::new(store.clone(), a).options(fast()).catch_up().await.unwrap();
    assert_eq!(a_log.labels(), ["e1", "e2", "e3"]);

    store.append("note-1", ExpectedVersion::Exact(3), vec![noted("e4")]).await.unwrap();
    let (batch, next) = drain(&store, Checkpoint::START, &Filter::for_projection::<Recorder>(), 100).await;
    assert_eq!(batch.len(), 4);
    // b handles e1 (at least once), finds the checkpoint moved past it when saving, and
    // continues after the stored checkpoint instead of moving it back.
    b.process(&batch, next).await.unwrap();
    assert_eq!(b_log.labels(), ["e1", "e4"], "e1 handled again, then only what is after the stored checkpoint");
    let after = stored(&store, RECORDER).await.unwrap();
    assert!(after > reached, "the checkpoint never moved back");
    assert_eq!(after, next);
}

/// Resetting an at-least-once consumer deletes its checkpoint in a transaction: dropped,
/// it changes nothing; committed, the next run handles every event from the start.
pub async fn at_least_once_reset_replays_from_the_start<S: EventStore + EventFeed + CheckpointStore>(store: S) {
    store.append("note-1", ExpectedVersion::Exact(0), vec![noted("a"), noted("b")]).await.unwrap();
    let log = Log::default();
    let reached = Subscription::new(store.clone(), AtLeastOnce::new(store.clone(), Recorder::new(&log)))
        .options(fast())
        .catch_up()
        .await
        .unwrap();
    assert_eq!(log.labels(), ["a", "b"]);

    let mut consumer = AtLeastOnce::new(store.clone(), Recorder::new(&log));
    drop(consumer.reset().await.unwrap());
    assert_eq!(consumer.stored_checkpoint().await.unwrap(), Some(reached), "a reset dropped without commit");
    let reset = consumer.reset().await.unwrap();
    log.clear();
    reset.commit().await.unwrap();
    assert_eq!(consumer.stored_checkpoint().await.unwrap(), None);
    assert_eq!(<Recorder as Projection>::NAME, consumer.name());

    store.append("note-1", ExpectedVersion::Exact(2), vec![noted("c")]).await.unwrap();
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(log.labels(), ["a", "b", "c"]);
}

/// `checkpoint_every(n)`: the checkpoint is saved after every `n` handled events and at
/// the end of each batch, so a clean run handles each event once and ends at the same
/// checkpoint as the default; a batch that fails part-way is handled again from the last
/// saved checkpoint (at least once: the events before the failure may come twice).
pub async fn at_least_once_checkpoint_every_n_events_saves_per_n_and_at_batch_end<
    S: EventStore + EventFeed + CheckpointStore,
>(
    store: S,
) {
    let labels = ["a", "b", "c", "d", "e"];
    store.append("note-1", ExpectedVersion::Exact(0), labels.iter().map(|l| noted(l)).collect()).await.unwrap();
    let log = Log::default();
    let mut subscription =
        Subscription::new(store.clone(), AtLeastOnce::new(store.clone(), Recorder::new(&log)).checkpoint_every(2))
            .options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(log.labels(), labels, "each event once on a clean run");
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(reached), "saved at the batch's end");
    drop(subscription);

    // A handler that fails once on `i`, the fourth event of a new batch: the checkpoint was
    // saved at `g` (the second), not at `h`, so the retry of the batch handles `h` again.
    let batch = vec![noted("f"), noted("g"), noted("h"), noted("i")];
    store.append("note-2", ExpectedVersion::Exact(0), batch).await.unwrap();
    let again = Log::default();
    let flaky = Arc::new(AtomicU32::new(1));
    let consumer = AtLeastOnce::new(store.clone(), Recorder::new(&again).failing_on("i", &flaky)).checkpoint_every(2);
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(again.labels(), ["f", "g", "h", "h", "i"]);
}
