//! The store conformance suite: the behaviour every [`EventStore`] adapter must show.
//!
//! An adapter runs it against itself with one line in an integration test:
//!
//! ```no_run
//! annals::conformance_tests!(async { annals_memory::MemoryStore::new() });
//! # fn main() {}
//! ```
//!
//! The macro expands to one `#[test]` per case, each with a fresh store from the given
//! `async` expression, on a multi-threaded runtime. Cases assert through panics, like
//! any test.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test assertions report failure by panicking"
)]

use std::collections::BTreeSet;
use std::future::Future;

use futures::TryStreamExt;
use serde_json::json;

use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::store::{EventStore, ExpectedVersion, StoreError, VersionRange};

/// Expands to one `#[test]` per conformance case; see the [module docs](self).
#[macro_export]
macro_rules! conformance_tests {
    ($make_store:expr) => {
        $crate::conformance_tests!(@cases $make_store;
            append_to_new_stream_numbers_from_one,
            append_many_is_contiguous_and_ordered,
            expected_version_exact,
            expected_version_no_stream,
            expected_version_any,
            failed_append_writes_nothing,
            empty_append_only_checks_the_version,
            read_stream_ranges,
            missing_stream_reads_empty,
            read_all_in_global_order_across_streams,
            read_all_in_small_batches,
            read_all_after_a_position,
            head_position_and_stream_version,
            payload_and_metadata_round_trip,
            awkward_stream_ids_round_trip,
            invalid_stream_ids_are_rejected,
            reappending_the_same_events_is_idempotent,
            reusing_an_event_id_elsewhere_is_an_error,
            repeating_an_event_id_in_one_append_is_an_error,
            concurrent_writers_on_one_stream_lose_nothing,
            concurrent_writers_on_many_streams_get_unique_positions
        );
    };
    (@cases $make_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run(async {
                    let store = $make_store.await;
                    $crate::conformance::$case(store).await;
                });
            }
        )*
    };
}

/// Runs `test` to completion on a fresh multi-threaded runtime.
pub fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance test")
        .block_on(test)
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("conformance.happened", 1, json!({ "n": n }))
}

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<NewEvent> {
    range.map(event).collect()
}

async fn read<S: EventStore>(store: &S, stream: &str, versions: impl Into<VersionRange>) -> Vec<Envelope> {
    store.read_stream(stream, versions.into()).try_collect().await.expect("read_stream")
}

async fn read_all<S: EventStore>(store: &S, after: u64, batch: usize) -> Vec<Envelope> {
    store.read_all(after, batch).try_collect().await.expect("read_all")
}

fn numbers(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.payload["n"].as_u64().expect("payload n")).collect()
}

fn versions(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.stream_version).collect()
}

fn assert_conflict(result: Result<Vec<Envelope>, StoreError>, stream: &str, expected: ExpectedVersion, actual: u64) {
    match result {
        Err(StoreError::Conflict { stream: s, expected: e, actual: a }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict fields")
        }
        other => panic!("expected a conflict on {stream} (expected {expected}, actual {actual}), got {other:?}"),
    }
}

/// The first append to a stream gets version 1, the next ones follow on.
pub async fn append_to_new_stream_numbers_from_one<S: EventStore>(store: S) {
    let first = store.append("s-1", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
    assert_eq!(versions(&first), [1]);
    assert_eq!(first[0].stream_id, "s-1");
    assert!(first[0].global_position >= 1);
    let second = store.append("s-1", ExpectedVersion::Exact(1), vec![event(2)]).await.unwrap();
    assert_eq!(versions(&second), [2]);
    assert!(second[0].global_position > first[0].global_position);
}

/// Many events in one append get contiguous versions and increasing positions, in order.
pub async fn append_many_is_contiguous_and_ordered<S: EventStore>(store: S) {
    let written = store.append("s-many", ExpectedVersion::NoStream, events(1..=50)).await.unwrap();
    assert_eq!(versions(&written), (1..=50).collect::<Vec<_>>());
    assert_eq!(numbers(&written), (1..=50).collect::<Vec<_>>());
    assert!(written.windows(2).all(|w| w[0].global_position < w[1].global_position));
    let stored = read(&store, "s-many", ..).await;
    assert_eq!(stored, written, "what is read back equals what append returned");
}

/// `Exact(n)` appends only when the stream is at `n`.
pub async fn expected_version_exact<S: EventStore>(store: S) {
    store.append("s-x", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    assert_conflict(
        store.append("s-x", ExpectedVersion::Exact(1), vec![event(3)]).await,
        "s-x",
        ExpectedVersion::Exact(1),
        2,
    );
    assert_conflict(
        store.append("s-x", ExpectedVersion::Exact(3), vec![event(3)]).await,
        "s-x",
        ExpectedVersion::Exact(3),
        2,
    );
    assert_conflict(
        store.append("s-new", ExpectedVersion::Exact(4), vec![event(1)]).await,
        "s-new",
        ExpectedVersion::Exact(4),
        0,
    );
    let ok = store.append("s-x", ExpectedVersion::Exact(2), vec![event(3)]).await.unwrap();
    assert_eq!(versions(&ok), [3]);
}

/// `NoStream` appends only to a stream without events.
pub async fn expected_version_no_stream<S: EventStore>(store: S) {
    store.append("s-n", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
    assert_conflict(
        store.append("s-n", ExpectedVersion::NoStream, vec![event(2)]).await,
        "s-n",
        ExpectedVersion::NoStream,
        1,
    );
}

/// `Any` always appends, after whatever is there.
pub async fn expected_version_any<S: EventStore>(store: S) {
    store.append("s-a", ExpectedVersion::Any, vec![event(1)]).await.unwrap();
    let second = store.append("s-a", ExpectedVersion::Any, events(2..=3)).await.unwrap();
    assert_eq!(versions(&second), [2, 3]);
}

/// A rejected append of many events leaves the store exactly as it was.
pub async fn failed_append_writes_nothing<S: EventStore>(store: S) {
    store.append("s-f", ExpectedVersion::NoStream, events(1..=3)).await.unwrap();
    let head = store.head_position().await.unwrap();
    let before = read_all(&store, 0, 100).await;
    assert_conflict(
        store.append("s-f", ExpectedVersion::Exact(1), events(4..=10)).await,
        "s-f",
        ExpectedVersion::Exact(1),
        3,
    );
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(store.stream_version("s-f").await.unwrap(), 3);
    assert_eq!(read_all(&store, 0, 100).await, before);
    // The next successful append continues right after the existing events.
    let next = store.append("s-f", ExpectedVersion::Exact(3), vec![event(4)]).await.unwrap();
    assert_eq!(versions(&next), [4]);
}

/// Appending no events checks the expected version and writes nothing.
pub async fn empty_append_only_checks_the_version<S: EventStore>(store: S) {
    assert!(store.append("s-e", ExpectedVersion::NoStream, vec![]).await.unwrap().is_empty());
    assert_eq!(store.stream_version("s-e").await.unwrap(), 0);
    assert_conflict(store.append("s-e", ExpectedVersion::Exact(2), vec![]).await, "s-e", ExpectedVersion::Exact(2), 0);
}

/// Stream reads honour `from`, `to`, and both.
pub async fn read_stream_ranges<S: EventStore>(store: S) {
    store.append("s-r", ExpectedVersion::NoStream, events(1..=10)).await.unwrap();
    store.append("other", ExpectedVersion::NoStream, events(100..=105)).await.unwrap();
    assert_eq!(numbers(&read(&store, "s-r", ..).await), (1..=10).collect::<Vec<_>>());
    assert_eq!(versions(&read(&store, "s-r", 4..).await), (4..=10).collect::<Vec<_>>());
    assert_eq!(versions(&read(&store, "s-r", ..=3).await), [1, 2, 3]);
    assert_eq!(versions(&read(&store, "s-r", 5..=6).await), [5, 6]);
    assert!(read(&store, "s-r", 11..).await.is_empty());
    assert!(read(&store, "s-r", 0..=0).await.is_empty());
}

/// A stream that was never written reads as empty, at version 0.
pub async fn missing_stream_reads_empty<S: EventStore>(store: S) {
    assert!(read(&store, "nobody-here", ..).await.is_empty());
    assert_eq!(store.stream_version("nobody-here").await.unwrap(), 0);
}

/// `read_all` interleaves streams in commit order with strictly increasing positions.
pub async fn read_all_in_global_order_across_streams<S: EventStore>(store: S) {
    store.append("g-a", ExpectedVersion::NoStream, events(1..=2)).await.unwrap();
    store.append("g-b", ExpectedVersion::NoStream, events(3..=3)).await.unwrap();
    store.append("g-a", ExpectedVersion::Exact(2), events(4..=5)).await.unwrap();
    let all = read_all(&store, 0, 100).await;
    assert_eq!(numbers(&all), [1, 2, 3, 4, 5]);
    let streams: Vec<&str> = all.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["g-a", "g-a", "g-b", "g-a", "g-a"]);
    assert!(all.windows(2).all(|w| w[0].global_position < w[1].global_position));
}

/// Reading in batches smaller than the store returns every event once.
pub async fn read_all_in_small_batches<S: EventStore>(store: S) {
    for i in 0..10u64 {
        store.append(&format!("b-{i}"), ExpectedVersion::NoStream, events(i * 10 + 1..=i * 10 + 7)).await.unwrap();
    }
    for batch in [1, 3, 7, 69, 70, 71, 1000] {
        let all = read_all(&store, 0, batch).await;
        assert_eq!(all.len(), 70, "batch size {batch}");
        let positions: BTreeSet<u64> = all.iter().map(|e| e.global_position).collect();
        assert_eq!(positions.len(), 70, "no duplicates with batch size {batch}");
        assert!(all.windows(2).all(|w| w[0].global_position < w[1].global_position));
    }
}

/// `read_all(after)` starts strictly after the given position.
pub async fn read_all_after_a_position<S: EventStore>(store: S) {
    let written = store.append("p", ExpectedVersion::NoStream, events(1..=6)).await.unwrap();
    let after = written[2].global_position;
    let rest = read_all(&store, after, 2).await;
    assert_eq!(numbers(&rest), [4, 5, 6]);
    assert!(read_all(&store, written[5].global_position, 2).await.is_empty());
}

/// Head position and stream versions track appends.
pub async fn head_position_and_stream_version<S: EventStore>(store: S) {
    assert_eq!(store.head_position().await.unwrap(), 0);
    store.append("h-1", ExpectedVersion::NoStream, events(1..=3)).await.unwrap();
    let last = store.append("h-2", ExpectedVersion::NoStream, events(1..=2)).await.unwrap();
    assert_eq!(store.head_position().await.unwrap(), last[1].global_position);
    assert_eq!(store.stream_version("h-1").await.unwrap(), 3);
    assert_eq!(store.stream_version("h-2").await.unwrap(), 2);
}

/// Payloads, names, versions, ids and metadata come back exactly as written.
pub async fn payload_and_metadata_round_trip<S: EventStore>(store: S) {
    let payload = json!({
        "text": "quote \" backslash \\ apostrophe ' emoji 🛒 nul-free ünïcödé",
        "nested": { "list": [1, 2.5, null, true], "big": 9007199254740991u64 },
    });
    let metadata = Metadata::default()
        .correlation_id(uuid::Uuid::now_v7())
        .causation_id(uuid::Uuid::now_v7())
        .with("user_id", "u-7")
        .with("tenant", json!({ "id": 3 }));
    let new = NewEvent::new("cart.item_added", 3, payload.clone()).with_metadata(metadata.clone());
    let id = new.event_id;
    let before = chrono::Utc::now();
    let written = store.append("m-1", ExpectedVersion::NoStream, vec![new]).await.unwrap();
    let read_back = read(&store, "m-1", ..).await;
    assert_eq!(read_back, written);
    let e = &read_back[0];
    assert_eq!((e.event_id, e.event_type.as_str(), e.event_version), (id, "cart.item_added", 3));
    assert_eq!(e.payload, payload);
    assert_eq!(e.metadata, metadata);
    let skew = chrono::Duration::seconds(5);
    assert!(
        e.recorded_at >= before - skew && e.recorded_at <= chrono::Utc::now() + skew,
        "recorded_at is the time of the append"
    );
}

/// Stream ids with quotes, unicode, SQL-looking text and 1,000 characters round-trip.
pub async fn awkward_stream_ids_round_trip<S: EventStore>(store: S) {
    let long = "x".repeat(1000);
    let ids = [
        "cart-'; DROP TABLE events; --",
        "cart-\"quoted\"",
        "cart-ünïcödé-🛒-购物车",
        "cart with spaces\tand\ttabs",
        "cart-%_wildcards_%",
        long.as_str(),
    ];
    for (i, id) in ids.iter().enumerate() {
        store.append(id, ExpectedVersion::NoStream, vec![event(i as u64)]).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let stored = read(&store, id, ..).await;
        assert_eq!(stored.len(), 1, "stream {id:?}");
        assert_eq!(stored[0].stream_id, *id);
        assert_eq!(numbers(&stored), [i as u64]);
        assert_eq!(store.stream_version(id).await.unwrap(), 1);
    }
    // `%` and `_` are not wildcards: a prefix of the id names another stream.
    assert!(read(&store, "cart-%", ..).await.is_empty());
}

/// Empty ids and NUL characters are rejected with a typed error, and nothing is written.
pub async fn invalid_stream_ids_are_rejected<S: EventStore>(store: S) {
    for id in ["", "nul\0inside"] {
        match store.append(id, ExpectedVersion::Any, vec![event(1)]).await {
            Err(StoreError::InvalidStreamId { stream, .. }) => assert_eq!(stream, id),
            other => panic!("expected InvalidStreamId for {id:?}, got {other:?}"),
        }
    }
    assert_eq!(store.head_position().await.unwrap(), 0);
}

/// Appending events whose ids are already stored at that place (a retry after a lost
/// reply) returns the stored envelopes and writes nothing twice.
pub async fn reappending_the_same_events_is_idempotent<S: EventStore>(store: S) {
    let batch = events(1..=3);
    let first = store.append("i-1", ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    store.append("i-1", ExpectedVersion::Exact(3), vec![event(4)]).await.unwrap();
    // The retry still carries the expected version of the first attempt.
    let again = store.append("i-1", ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert_eq!(again, first);
    let again_any = store.append("i-1", ExpectedVersion::Any, batch).await.unwrap();
    assert_eq!(again_any, first);
    assert_eq!(store.stream_version("i-1").await.unwrap(), 4);
    assert_eq!(read_all(&store, 0, 100).await.len(), 4);
}

/// An id stored in one stream cannot be appended to another, or mixed with new events.
pub async fn reusing_an_event_id_elsewhere_is_an_error<S: EventStore>(store: S) {
    let stored = store.append("d-1", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
    let mut copy = event(2);
    copy.event_id = stored[0].event_id;
    match store.append("d-2", ExpectedVersion::Any, vec![event(3), copy.clone()]).await {
        Err(StoreError::DuplicateEventId { event_id, existing_stream, existing_version, .. }) => {
            assert_eq!((event_id, existing_stream.as_str(), existing_version), (stored[0].event_id, "d-1", 1));
        }
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    assert_eq!(store.stream_version("d-2").await.unwrap(), 0, "the failed append wrote nothing");
    assert_eq!(store.head_position().await.unwrap(), stored[0].global_position);
}

/// The same id twice in one append is refused, naming the id, and nothing is written.
pub async fn repeating_an_event_id_in_one_append_is_an_error<S: EventStore>(store: S) {
    let first = event(1);
    let mut again = event(2);
    again.event_id = first.event_id;
    match store.append("r-1", ExpectedVersion::NoStream, vec![first.clone(), again]).await {
        Err(StoreError::RepeatedEventId { stream, event_id }) => {
            assert_eq!((stream.as_str(), event_id), ("r-1", first.event_id))
        }
        other => panic!("expected RepeatedEventId, got {other:?}"),
    }
    assert_eq!(store.head_position().await.unwrap(), 0);
}

/// 8 tasks append to one stream, each re-reading the version after a conflict: every
/// append lands once and the versions are contiguous.
pub async fn concurrent_writers_on_one_stream_lose_nothing<S: EventStore>(store: S) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for i in 0..PER_TASK {
                loop {
                    let version = store.stream_version("hot").await.unwrap();
                    let n = task * 1000 + i;
                    match store.append("hot", ExpectedVersion::Exact(version), vec![event(n)]).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => conflicts += 1,
                        Err(e) => panic!("append failed: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
            }
            conflicts
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let stored = read(&store, "hot", ..).await;
    assert_eq!(versions(&stored), (1..=TASKS * PER_TASK).collect::<Vec<_>>(), "versions are contiguous");
    let expected: BTreeSet<u64> = (0..TASKS).flat_map(|t| (0..PER_TASK).map(move |i| t * 1000 + i)).collect();
    assert_eq!(numbers(&stored).into_iter().collect::<BTreeSet<_>>(), expected, "every append landed exactly once");
    assert_eq!(stored.len() as u64, TASKS * PER_TASK);
}

/// Writers on different streams never block each other into losing or sharing positions.
pub async fn concurrent_writers_on_many_streams_get_unique_positions<S: EventStore>(store: S) {
    let mut handles = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let stream = format!("many-{task}");
                store.append(&stream, ExpectedVersion::Exact(i * 2), events(1..=2)).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let all = read_all(&store, 0, 64).await;
    assert_eq!(all.len(), 8 * 20 * 2);
    let positions: BTreeSet<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions.len(), all.len(), "positions are unique");
    for task in 0..8u64 {
        let stream = read(&store, &format!("many-{task}"), ..).await;
        assert_eq!(versions(&stream), (1..=40).collect::<Vec<_>>());
    }
}
