//! The [`EventFeed`] suite: every event in commit order, without gaps, in batches of at
//! most the limit, filtered by the store, resumable strictly after opaque checkpoints;
//! `settle` and wake-ups; and concurrent writers whose failed appends roll back while a
//! [`Subscription`] follows live. Run it with
//! [`feed_conformance_tests!`](crate::feed_conformance_tests).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use super::support::{drain, event, events, fast, feed_all, noise, noted, read, wait_until};
use crate::envelope::{Envelope, NewEvent};
use crate::projection::BoxError;
use crate::store::{Checkpoint, EventFeed, EventStore, ExpectedVersion, FeedEvent, Filter, Partition, StoreError};
use crate::subscription::{Sink, SinkError, Subscription};

/// A sink that records every event a subscription hands it, exactly as handed.
#[derive(Clone, Default)]
struct FeedLog {
    events: Arc<Mutex<Vec<FeedEvent>>>,
    checkpoint: Arc<Mutex<Checkpoint>>,
}

impl FeedLog {
    fn events(&self) -> Vec<FeedEvent> {
        self.events.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl Sink for FeedLog {
    fn name(&self) -> &str {
        "conformance_feed_log"
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        Ok(*self.checkpoint.lock().unwrap())
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        self.events.lock().unwrap().extend_from_slice(events);
        *self.checkpoint.lock().unwrap() = next;
        Ok(())
    }
}

fn checkpoints(events: &[FeedEvent]) -> Vec<Checkpoint> {
    events.iter().map(|e| e.checkpoint).collect()
}

fn envelopes(events: &[FeedEvent]) -> Vec<Envelope> {
    events.iter().map(|e| e.envelope.clone()).collect()
}

fn assert_increasing(checkpoints: &[Checkpoint]) {
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]), "checkpoints strictly increase: {checkpoints:?}");
}

/// A store without events has an empty feed: reads return nothing and stay where they
/// started, `settle` returns.
pub async fn an_empty_store_has_an_empty_feed<S: EventStore + EventFeed>(store: S) {
    store.settle().await.unwrap();
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
    assert!(batch.events.is_empty());
    assert_eq!(batch.next, Checkpoint::START, "nothing new: next is the requested checkpoint");
    assert!(feed_all(&store).await.is_empty());
}

/// The feed returns every event once, in commit order across streams, as append
/// returned it, with strictly increasing checkpoints.
pub async fn the_feed_is_in_commit_order_across_streams<S: EventStore + EventFeed>(store: S) {
    let mut written = Vec::new();
    written.extend(store.append("g-a", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap());
    written.extend(store.append("g-b", ExpectedVersion::Exact(0), events(3..=3)).await.unwrap());
    written.extend(store.append("g-a", ExpectedVersion::Exact(2), events(4..=5)).await.unwrap());
    written.extend(store.append("g-c", ExpectedVersion::Any, events(6..=6)).await.unwrap());
    let (feed, _) = drain(&store, Checkpoint::START, &Filter::all(), 100).await;
    assert_eq!(envelopes(&feed), written, "commit order, each event once, unchanged");
    let streams: Vec<&str> = feed.iter().map(|e| e.envelope.stream_id.as_str()).collect();
    assert_eq!(streams, ["g-a", "g-a", "g-b", "g-a", "g-a", "g-c"]);
    assert!(Checkpoint::START < feed[0].checkpoint, "every checkpoint is after the start");
    assert_increasing(&checkpoints(&feed));
}

/// Reads return at most `limit` events; paging with `next` returns every event exactly
/// once, in the same order whatever the limit.
pub async fn the_feed_reads_in_batches_of_at_most_the_limit<S: EventStore + EventFeed>(store: S) {
    for i in 0..10u64 {
        store.append(&format!("b-{i}"), ExpectedVersion::Exact(0), events(i * 10 + 1..=i * 10 + 7)).await.unwrap();
    }
    let (reference, _) = drain(&store, Checkpoint::START, &Filter::all(), 1000).await;
    assert_eq!(reference.len(), 70);
    for limit in [1, 3, 7, 69, 70, 71] {
        // `drain` also checks each read returns at most `limit` events and moves forward.
        let (paged, paged_end) = drain(&store, Checkpoint::START, &Filter::all(), limit).await;
        assert_eq!(paged, reference, "limit {limit}");
        assert!(paged_end >= reference[69].checkpoint, "limit {limit}: the reads end past the last event");
    }
}

/// A read says whether it stopped at its limit (`more`: read on at once) or at the end
/// of what is readable (wait for a wake-up).
pub async fn a_read_says_whether_more_follows_at_once<S: EventStore + EventFeed>(store: S) {
    store.append("m-1", ExpectedVersion::Exact(0), events(1..=10)).await.unwrap();
    store.settle().await.unwrap();
    let first = store.read_feed(Checkpoint::START, &Filter::all(), 4).await.unwrap();
    assert_eq!(first.events.len(), 4);
    assert!(first.more, "a read that stopped at its limit says more follows");
    let rest = store.read_feed(first.next, &Filter::all(), 100).await.unwrap();
    assert_eq!(rest.events.len(), 6);
    assert!(!rest.more, "a read that reached the end of what is readable says so");
    let none = store.read_feed(rest.next, &Filter::all(), 100).await.unwrap();
    assert!(none.events.is_empty() && !none.more && none.next == rest.next);
}

/// A type filter returns only those types, and `next` moves past the events it skipped:
/// a consumer with a narrow filter does not read them again, yet sees the next match.
pub async fn a_type_filter_is_pushed_down_and_next_moves_past_skipped_events<S: EventStore + EventFeed>(store: S) {
    store.append("t-1", ExpectedVersion::Exact(0), vec![noted("first"), noise("x")]).await.unwrap();
    let mut noise_batch: Vec<NewEvent> = (0..300).map(|i| noise(&format!("n{i}"))).collect();
    noise_batch.insert(150, noted("middle"));
    store.append("t-2", ExpectedVersion::Exact(0), noise_batch).await.unwrap();
    store.append("t-1", ExpectedVersion::Exact(2), vec![noise("y"), noise("z")]).await.unwrap();
    let (all, end) = drain(&store, Checkpoint::START, &Filter::all(), 1000).await;
    let last = all.last().unwrap().checkpoint;

    let filter = Filter::all().event_types(["conformance.noted"]);
    for limit in [1, 2, 1000] {
        let (matching, next) = drain(&store, Checkpoint::START, &filter, limit).await;
        let labels: Vec<&str> = matching.iter().map(|e| e.envelope.payload["label"].as_str().unwrap()).collect();
        assert_eq!(labels, ["first", "middle"], "limit {limit}");
        assert!(next >= last, "with limit {limit}, next ({next}) moved past the skipped events (to {last})");
    }
    let none = Filter::all().event_types(["conformance.never_stored"]);
    let (nothing, next) = drain(&store, Checkpoint::START, &none, 10).await;
    assert!(nothing.is_empty());
    assert!(next >= last, "a filter matching nothing still moves past every event");

    let (_, next) = drain(&store, Checkpoint::START, &filter, 10).await;
    store.append("t-3", ExpectedVersion::Exact(0), vec![noise("later"), noted("after")]).await.unwrap();
    let (after, _) = drain(&store, next, &filter, 10).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].envelope.payload["label"], "after");
    assert!(after[0].checkpoint > end);
    let mixed = Filter::all().event_types(["conformance.noted", "conformance.ignored"]);
    assert_eq!(drain(&store, Checkpoint::START, &mixed, 50).await.0.len(), all.len() + 2);
}

/// Stream and category filters, alone and with a type filter, return exactly the events
/// [`Filter::matches`] accepts: by whole stream id or `{category}-...`, never as a
/// pattern, and case-sensitively.
pub async fn stream_and_category_filters_select_exactly_the_matching_events<S: EventStore + EventFeed>(store: S) {
    let streams = [
        "cart-1",
        "cart-2",
        "cart-1-extra",
        "cartography-1",
        "wishlist-1",
        "cart",
        "cart-",
        "CART-3",
        "ca_t-1",
        "c%_-1",
        "c%_x-1",
        "b\\-1",
        "b-1",
        "ünï-1",
    ];
    for (i, stream) in streams.iter().enumerate() {
        store
            .append(stream, ExpectedVersion::Exact(0), vec![noted(&format!("{i}")), noise(&format!("{i}"))])
            .await
            .unwrap();
    }
    let (all, _) = drain(&store, Checkpoint::START, &Filter::all(), 1000).await;
    assert_eq!(all.len(), streams.len() * 2);
    let filters = [
        Filter::all().category("cart"),
        Filter::all().category("ca_t"),
        Filter::all().category("c%_"),
        Filter::all().category("c"),
        Filter::all().category("b\\"),
        Filter::all().category("ünï"),
        Filter::all().stream("cart-1"),
        Filter::all().stream("c%_-1"),
        Filter::all().stream("cart-%"),
        Filter::all().stream("nowhere"),
        Filter::all().category("cart").event_types(["conformance.noted"]),
        Filter::all().stream("cart-2").event_types(["conformance.ignored"]),
        Filter::all().category("cart").event_types(Vec::<String>::new()),
    ];
    for filter in &filters {
        let expected: Vec<FeedEvent> =
            all.iter().filter(|e| filter.matches(&e.envelope.stream_id, &e.envelope.event_type)).cloned().collect();
        for limit in [1, 100] {
            let (got, _) = drain(&store, Checkpoint::START, filter, limit).await;
            assert_eq!(got, expected, "filter {filter:?}, limit {limit}");
        }
    }
    let carts = all.iter().filter(|e| Filter::all().category("cart").matches(&e.envelope.stream_id, "")).count();
    assert_eq!(carts, 6, "cart-1, cart-2 and cart-1-extra, two events each");
}

/// The partitions of a count split the feed between them: each reads exactly the events
/// of its streams, in commit order, alone or with other filters, and together they read
/// every event once.
pub async fn partitions_split_the_feed_by_stream<S: EventStore + EventFeed>(store: S) {
    let streams: Vec<String> = (0..40).map(|n| format!("part-{n}")).collect();
    // Three rounds over every stream: each stream's events are spread over the feed.
    for round in 0..3u64 {
        for stream in &streams {
            let events = vec![noted(&format!("{stream}/{round}")), noise(&format!("{stream}/{round}"))];
            store.append(stream, ExpectedVersion::Exact(round * 2), events).await.unwrap();
        }
    }
    let (all, _) = drain(&store, Checkpoint::START, &Filter::all(), 1000).await;
    assert_eq!(all.len(), 240);
    for count in [1, 2, 3, 4] {
        let mut seen = 0;
        for partition in Partition::all(count).unwrap() {
            for (filter, limit) in [
                (Filter::all().partition(partition), 1),
                (Filter::all().partition(partition), 7),
                (Filter::all().partition(partition).event_types(["conformance.noted"]), 5),
                (Filter::all().partition(partition).category("part"), 500),
                (Filter::all().partition(partition).stream("part-7"), 2),
            ] {
                let expected: Vec<FeedEvent> = all
                    .iter()
                    .filter(|e| filter.matches(&e.envelope.stream_id, &e.envelope.event_type))
                    .cloned()
                    .collect();
                let (got, _) = drain(&store, Checkpoint::START, &filter, limit).await;
                assert_eq!(got, expected, "partition {partition}, filter {filter:?}, limit {limit}");
            }
            let (mine, _) = drain(&store, Checkpoint::START, &Filter::all().partition(partition), 100).await;
            assert!(mine.iter().all(|e| partition.contains(&e.envelope.stream_id)), "partition {partition}");
            seen += mine.len();
        }
        assert_eq!(seen, all.len(), "the {count} partitions together read every event once");
    }
    // A stream's partition reads all of it.
    let owner = Partition::of("part-7", 3).unwrap();
    let (of_seven, _) = drain(&store, Checkpoint::START, &Filter::all().partition(owner).stream("part-7"), 100).await;
    assert_eq!(of_seven.len(), 6);
}

/// A read after a checkpoint returns exactly the events after it; after the last event
/// it returns nothing and stays there.
pub async fn a_read_resumes_strictly_after_its_checkpoint<S: EventStore + EventFeed>(store: S) {
    store.append("p-1", ExpectedVersion::Exact(0), events(1..=4)).await.unwrap();
    store.append("p-2", ExpectedVersion::Exact(0), events(5..=8)).await.unwrap();
    let (all, end) = drain(&store, Checkpoint::START, &Filter::all(), 100).await;
    assert_eq!(all.len(), 8);
    for (k, at) in all.iter().enumerate() {
        let (rest, _) = drain(&store, at.checkpoint, &Filter::all(), 3).await;
        assert_eq!(rest, all[k + 1..], "after event {k}");
    }
    let last = all.last().unwrap().checkpoint;
    let batch = store.read_feed(last, &Filter::all(), 10).await.unwrap();
    assert!(batch.events.is_empty());
    assert_eq!(batch.next, last, "nothing new after the last event");
    assert!(end >= last, "reading everything ends past the last event");
    let more = store.append("p-1", ExpectedVersion::Exact(4), events(9..=9)).await.unwrap();
    let (after, _) = drain(&store, last, &Filter::all(), 10).await;
    assert_eq!(envelopes(&after), more);
}

/// Checkpoints strictly increase, are stable across reads, and a checkpoint kept as text
/// (`to_string().parse()`), as bytes or through serde resumes at the same place.
pub async fn checkpoints_increase_and_survive_text_bytes_and_serde<S: EventStore + EventFeed>(store: S) {
    for i in 0..5u64 {
        store.append(&format!("c-{i}"), ExpectedVersion::Exact(0), events(i * 3 + 1..=i * 3 + 3)).await.unwrap();
    }
    let (all, _) = drain(&store, Checkpoint::START, &Filter::all(), 4).await;
    assert_eq!(all.len(), 15);
    assert!(Checkpoint::START < all[0].checkpoint);
    assert_increasing(&checkpoints(&all));
    let (again, _) = drain(&store, Checkpoint::START, &Filter::all(), 7).await;
    assert_eq!(checkpoints(&again), checkpoints(&all), "a checkpoint names the same place on every read");
    for (k, at) in all.iter().enumerate().step_by(4) {
        let checkpoint = at.checkpoint;
        let text = checkpoint.to_string();
        let parsed: Checkpoint = text.parse().unwrap();
        assert_eq!(parsed, checkpoint, "{text}");
        assert_eq!(Checkpoint::from_bytes(checkpoint.to_bytes()), checkpoint);
        let json = serde_json::to_string(&checkpoint).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), checkpoint);
        let (rest, _) = drain(&store, parsed, &Filter::all(), 100).await;
        assert_eq!(rest, all[k + 1..], "resuming after {text}");
    }
}

/// After `settle`, reading sees every event whose append returned before it, while other
/// writers keep appending; in the end the feed holds each appended event exactly once.
pub async fn settle_then_read_sees_everything_appended_before<S: EventStore + EventFeed>(store: S) {
    store.settle().await.unwrap();
    let returned: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (store, returned) = (store.clone(), Arc::clone(&returned));
        writers.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let written = store.append(&format!("settle-{w}"), ExpectedVersion::Exact(i * 2), events(1..=2)).await;
                returned.lock().unwrap().extend(written.unwrap().iter().map(|e| e.event_id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen: Vec<Uuid> = Vec::new();
    let mut at = Checkpoint::START;
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        let before: Vec<Uuid> = returned.lock().unwrap().clone();
        let (batch, next) = drain(&store, at, &Filter::all(), 16).await;
        seen.extend(batch.iter().map(|e| e.envelope.event_id));
        at = next;
        let seen_set: HashSet<&Uuid> = seen.iter().collect();
        let missing = before.iter().filter(|id| !seen_set.contains(id)).count();
        assert_eq!(missing, 0, "{missing} events appended before `settle` were not read after it");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let (rest, _) = drain(&store, at, &Filter::all(), 16).await;
    seen.extend(rest.iter().map(|e| e.envelope.event_id));
    assert_eq!(seen.len(), 80, "every event once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 80, "no event twice");
}

/// `wakeups` yields after an append, every time.
pub async fn wakeups_fire_after_an_append<S: EventStore + EventFeed>(store: S) {
    let mut wakeups = store.wakeups().await.unwrap();
    for i in 0..3u64 {
        store.append(&format!("w-{i}"), ExpectedVersion::Exact(0), vec![event(i)]).await.unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(5), wakeups.next()).await;
        assert!(matches!(woke, Ok(Some(()))), "no wake-up within 5 s of append {i}: {woke:?}");
    }
    let mut second = store.wakeups().await.unwrap();
    store.append("w-9", ExpectedVersion::Any, vec![event(9)]).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), second.next()).await;
    assert!(matches!(woke, Ok(Some(()))), "a second listener is woken too: {woke:?}");
}

/// What one writer did: the events of its successful appends, and the ids of the events
/// of its failed ones.
#[derive(Default)]
struct Outcome {
    committed: Vec<Envelope>,
    rolled_back: Vec<Uuid>,
    conflicts: u32,
    duplicates: u32,
}

/// 8 writers append batches of 1 to 3 events to 3 shared streams with `Exact` versions,
/// so many appends fail (conflicts between racing writers, stale versions, reused ids)
/// and are rolled back, while a subscription follows live. The subscription sees every
/// committed event exactly once, in per-stream version order, and none of the failed
/// appends' events.
pub async fn concurrent_writers_with_rollbacks_are_seen_exactly_once<S: EventStore + EventFeed>(store: S) {
    const TASKS: u64 = 8;
    const ATTEMPTS: u64 = 25;
    const STREAMS: u64 = 3;
    let log = FeedLog::default();
    let mut subscription = Subscription::new(store.clone(), log.clone()).options(fast());
    let runner = tokio::spawn(async move { subscription.run().await });

    let mut writers = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            for i in 0..ATTEMPTS {
                let stream = format!("contended-{}", (task + i) % STREAMS);
                let version = store.stream_version(&stream).await.unwrap();
                tokio::task::yield_now().await;
                let mut batch: Vec<NewEvent> = (0..1 + i % 3).map(|k| event(task * 10_000 + i * 10 + k)).collect();
                let mut expected = ExpectedVersion::Exact(version);
                let mut reused = None;
                if i % 5 == 4 && version > 0 {
                    expected = ExpectedVersion::Exact(version - 1); // stale: always a conflict
                } else if i % 7 == 6 {
                    if let Some(stored) = outcome.committed.first() {
                        let mut copy = event(0);
                        copy.event_id = stored.event_id;
                        reused = Some(copy.event_id);
                        batch.push(copy); // a reused id: the whole batch must fail
                    }
                }
                let fresh: Vec<Uuid> = batch.iter().map(|e| e.event_id).filter(|id| Some(*id) != reused).collect();
                match store.append(&stream, expected, batch).await {
                    Ok(written) => {
                        assert!(reused.is_none(), "an append with a reused event id succeeded");
                        outcome.committed.extend(written);
                    }
                    Err(StoreError::Conflict { .. }) if reused.is_none() => {
                        outcome.conflicts += 1;
                        outcome.rolled_back.extend(fresh);
                    }
                    // With a reused id, the store may notice the conflict first.
                    Err(StoreError::DuplicateEventId { .. } | StoreError::Conflict { .. }) if reused.is_some() => {
                        outcome.duplicates += 1;
                        outcome.rolled_back.extend(fresh);
                    }
                    Err(e) => panic!("append failed: {e}"),
                }
            }
            outcome
        }));
    }
    let mut committed = Vec::new();
    let mut rolled_back = HashSet::new();
    let (mut conflicts, mut duplicates) = (0, 0);
    for writer in writers {
        let outcome = writer.await.unwrap();
        committed.extend(outcome.committed);
        rolled_back.extend(outcome.rolled_back);
        conflicts += outcome.conflicts;
        duplicates += outcome.duplicates;
    }
    assert!(conflicts > 0 && duplicates > 0, "the writers met conflicts ({conflicts}) and reused ids ({duplicates})");

    wait_until(&format!("the subscription saw {} events", committed.len()), || {
        log.len() >= committed.len() || runner.is_finished()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await; // anything extra would show up now
    if runner.is_finished() {
        panic!("the subscription stopped: {:?}", runner.await);
    }
    runner.abort();

    let seen = log.events();
    assert_eq!(seen.len(), committed.len(), "exactly the committed events");
    let seen_ids: HashSet<Uuid> = seen.iter().map(|e| e.envelope.event_id).collect();
    assert_eq!(seen_ids.len(), seen.len(), "no event seen twice");
    let committed_ids: HashSet<Uuid> = committed.iter().map(|e| e.event_id).collect();
    assert_eq!(seen_ids, committed_ids, "each committed event seen");
    assert!(seen_ids.is_disjoint(&rolled_back), "no event of a failed append seen");
    assert_increasing(&checkpoints(&seen));

    let mut per_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &seen {
        per_stream.entry(&e.envelope.stream_id).or_default().push(e.envelope.stream_version);
    }
    assert_eq!(per_stream.len() as u64, STREAMS);
    for (stream, seen_versions) in &per_stream {
        let length = store.stream_version(stream).await.unwrap();
        assert_eq!(*seen_versions, (1..=length).collect::<Vec<_>>(), "versions of {stream} in order, without gaps");
        let stored = read(&store, stream, ..).await;
        let seen_envelopes: Vec<Envelope> =
            seen.iter().filter(|e| e.envelope.stream_id == *stream).map(|e| e.envelope.clone()).collect();
        assert_eq!(stored, seen_envelopes, "the feed hands out what the stream stores");
    }
    let stored_ids: BTreeSet<Uuid> = feed_all(&store).await.iter().map(|e| e.event_id).collect();
    assert_eq!(stored_ids.len(), committed.len());
}

/// [`checkpoint_of`](EventFeed::checkpoint_of) places an event where the feed hands it
/// out, for the envelopes an append returned: what read-your-writes waits for.
pub async fn checkpoint_of_is_where_the_feed_hands_the_event_out<S: EventStore + EventFeed>(store: S) {
    let mut written = store.append("rw-1", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    written.extend(store.append("rw-2", ExpectedVersion::Exact(0), events(1..=1)).await.unwrap());
    store.settle().await.unwrap();
    let feed = store.read_feed(Checkpoint::START, &Filter::all(), 100).await.unwrap().events;
    assert_eq!(feed.len(), 3);
    for (event, handed_out) in written.iter().zip(&feed) {
        assert_eq!(event.event_id, handed_out.envelope.event_id);
        assert_eq!(store.checkpoint_of(event).await.unwrap(), handed_out.checkpoint, "{}", event.stream_id);
    }
}
