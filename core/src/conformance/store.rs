//! The [`EventStore`] suite: appends with optimistic concurrency, stream reads,
//! idempotent re-appends, failed appends that leave the store as it was (checked through
//! [`read_stream`](EventStore::read_stream) and the [`EventFeed`]), exact round trips and
//! concurrent writers. Run it with
//! [`store_conformance_tests!`](crate::store_conformance_tests).

use std::collections::BTreeSet;

use futures::TryStreamExt;
use serde_json::json;

use super::support::{event, events, feed_all, nested, numbers, read, versions};
use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::store::kit::{MAX_EVENT_TYPE_BYTES, MAX_JSON_DEPTH, MAX_STREAM_ID_BYTES};
use crate::store::{EventFeed, EventStore, ExpectedVersion, StoreError, VersionRange};

fn assert_conflict(result: Result<Vec<Envelope>, StoreError>, stream: &str, expected: ExpectedVersion, actual: u64) {
    match result {
        Err(StoreError::Conflict { stream: s, expected: e, actual: a }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict fields")
        }
        other => panic!("expected a conflict on {stream} (expected {expected}, actual {actual}), got {other:?}"),
    }
}

fn assert_duplicate(result: Result<Vec<Envelope>, StoreError>, id: uuid::Uuid, stream: &str, at: (&str, u64)) {
    match result {
        Err(StoreError::DuplicateEventId { event_id, stream: s, existing_stream, existing_version }) => {
            assert_eq!(
                (event_id, s.as_str(), existing_stream.as_str(), existing_version),
                (id, stream, at.0, at.1),
                "duplicate fields"
            )
        }
        other => panic!("expected DuplicateEventId for {id} appended to {stream}, got {other:?}"),
    }
}

/// The first append to a stream (`Exact(0)`) gets version 1, the next ones follow on.
pub async fn append_to_new_stream_numbers_from_one<S: EventStore>(store: S) {
    let first = store.append("s-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    assert_eq!(versions(&first), [1]);
    assert_eq!(first[0].stream_id, "s-1");
    assert!(first[0].global_position >= 1);
    let second = store.append("s-1", ExpectedVersion::Exact(1), vec![event(2)]).await.unwrap();
    assert_eq!(versions(&second), [2]);
    assert!(second[0].global_position > first[0].global_position);
}

/// Many events in one append get contiguous versions and increasing positions, in order,
/// and read back equal to what the append returned.
pub async fn append_many_is_contiguous_and_ordered<S: EventStore>(store: S) {
    let written = store.append("s-many", ExpectedVersion::Exact(0), events(1..=50)).await.unwrap();
    assert_eq!(versions(&written), (1..=50).collect::<Vec<_>>());
    assert_eq!(numbers(&written), (1..=50).collect::<Vec<_>>());
    assert!(written.windows(2).all(|w| w[0].global_position < w[1].global_position));
    assert_eq!(read(&store, "s-many", ..).await, written, "what is read back equals what append returned");
}

/// `Exact(n)` appends only when the stream is at `n`; the conflict names the stream, the
/// expectation and the actual version.
pub async fn expected_version_exact<S: EventStore>(store: S) {
    store.append("s-x", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    let stale = store.append("s-x", ExpectedVersion::Exact(1), vec![event(3)]).await;
    assert_conflict(stale, "s-x", ExpectedVersion::Exact(1), 2);
    let ahead = store.append("s-x", ExpectedVersion::Exact(3), vec![event(3)]).await;
    assert_conflict(ahead, "s-x", ExpectedVersion::Exact(3), 2);
    let missing = store.append("s-new", ExpectedVersion::Exact(4), vec![event(1)]).await;
    assert_conflict(missing, "s-new", ExpectedVersion::Exact(4), 0);
    let ok = store.append("s-x", ExpectedVersion::Exact(2), vec![event(3)]).await.unwrap();
    assert_eq!(versions(&ok), [3]);
}

/// `Exact(0)` appends only to a stream without events.
pub async fn expected_version_zero_means_no_stream<S: EventStore>(store: S) {
    store.append("s-n", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    let again = store.append("s-n", ExpectedVersion::Exact(0), vec![event(2)]).await;
    assert_conflict(again, "s-n", ExpectedVersion::Exact(0), 1);
    assert_eq!(store.stream_version("s-n").await.unwrap(), 1);
}

/// `Any` always appends, after whatever is there.
pub async fn expected_version_any<S: EventStore>(store: S) {
    let first = store.append("s-a", ExpectedVersion::Any, vec![event(1)]).await.unwrap();
    assert_eq!(versions(&first), [1]);
    let second = store.append("s-a", ExpectedVersion::Any, events(2..=3)).await.unwrap();
    assert_eq!(versions(&second), [2, 3]);
}

/// A rejected append of many events leaves the store exactly as it was: the stream, its
/// version and the feed; the next append continues right after the stored events.
pub async fn failed_append_writes_nothing<S: EventStore + EventFeed>(store: S) {
    store.append("s-f", ExpectedVersion::Exact(0), events(1..=3)).await.unwrap();
    store.append("s-g", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    let stream_before = read(&store, "s-f", ..).await;
    let feed_before = feed_all(&store).await;
    let rejected = store.append("s-f", ExpectedVersion::Exact(1), events(4..=10)).await;
    assert_conflict(rejected, "s-f", ExpectedVersion::Exact(1), 3);
    assert_eq!(store.stream_version("s-f").await.unwrap(), 3);
    assert_eq!(read(&store, "s-f", ..).await, stream_before);
    assert_eq!(feed_all(&store).await, feed_before);
    let next = store.append("s-f", ExpectedVersion::Exact(3), vec![event(4)]).await.unwrap();
    assert_eq!(versions(&next), [4]);
    assert!(next[0].global_position > feed_before.last().unwrap().global_position);
    assert_eq!(feed_all(&store).await.len(), feed_before.len() + 1);
}

/// Appending no events checks the expected version and writes nothing.
pub async fn empty_append_only_checks_the_version<S: EventStore + EventFeed>(store: S) {
    assert!(store.append("s-e", ExpectedVersion::Exact(0), vec![]).await.unwrap().is_empty());
    assert!(store.append("s-e", ExpectedVersion::Any, vec![]).await.unwrap().is_empty());
    assert_eq!(store.stream_version("s-e").await.unwrap(), 0);
    assert_conflict(store.append("s-e", ExpectedVersion::Exact(2), vec![]).await, "s-e", ExpectedVersion::Exact(2), 0);
    assert!(feed_all(&store).await.is_empty());
}

/// Stream reads honour `from`, `to`, and both, and only return the stream asked for.
pub async fn read_stream_ranges<S: EventStore>(store: S) {
    store.append("s-r", ExpectedVersion::Exact(0), events(1..=10)).await.unwrap();
    store.append("other", ExpectedVersion::Exact(0), events(100..=105)).await.unwrap();
    assert_eq!(numbers(&read(&store, "s-r", ..).await), (1..=10).collect::<Vec<_>>());
    assert_eq!(versions(&read(&store, "s-r", 4..).await), (4..=10).collect::<Vec<_>>());
    assert_eq!(versions(&read(&store, "s-r", ..=3).await), [1, 2, 3]);
    assert_eq!(versions(&read(&store, "s-r", 5..=6).await), [5, 6]);
    assert_eq!(versions(&read(&store, "s-r", 10..=20).await), [10]);
    assert!(read(&store, "s-r", 11..).await.is_empty());
    assert!(read(&store, "s-r", 0..=0).await.is_empty());
    assert!(read(&store, "s-r", VersionRange { from: 7, to: Some(6) }).await.is_empty());
    assert_eq!(versions(&read(&store, "s-r", u64::MAX..).await), Vec::<u64>::new());
    assert_eq!(versions(&read(&store, "s-r", 9..=u64::MAX).await), [9, 10]);
}

/// A stream longer than any read batch reads back whole, in order, also from the middle.
pub async fn long_streams_read_back_whole_and_in_order<S: EventStore>(store: S) {
    let mut written = Vec::new();
    for chunk in 0..3u64 {
        let first = chunk * 250 + 1;
        let expected = ExpectedVersion::Exact(chunk * 250);
        written.extend(store.append("long", expected, events(first..=first + 249)).await.unwrap());
    }
    let all = read(&store, "long", ..).await;
    assert_eq!(all, written);
    assert_eq!(versions(&all), (1..=750).collect::<Vec<_>>());
    assert_eq!(versions(&read(&store, "long", 200..=600).await), (200..=600).collect::<Vec<_>>());
    assert_eq!(read(&store, "long", 700..).await.len(), 51);
}

/// The read to fold a stream returns what [`EventStore::read_stream`] does of each event:
/// stream, versions, position, type, schema version and payload, over any range.
pub async fn reads_to_fold_return_what_a_fold_needs<S: EventStore>(store: S) {
    let sent: Vec<NewEvent> = events(1..=620)
        .into_iter()
        .enumerate()
        .map(|(i, event)| NewEvent { event_version: u32::try_from(i % 3).unwrap() + 1, ..event })
        .collect();
    store.append("fold", ExpectedVersion::Exact(0), sent).await.unwrap();
    store.append("other", ExpectedVersion::Exact(0), events(1..=3)).await.unwrap();
    let needed = |e: &Envelope| {
        (
            e.stream_id.clone(),
            e.stream_version,
            e.global_position,
            e.event_type.clone(),
            e.event_version,
            e.payload.clone(),
        )
    };
    for range in [VersionRange::ALL, (300..).into(), (2..=5).into(), (700..).into()] {
        let whole: Vec<_> = read(&store, "fold", range).await.iter().map(needed).collect();
        let folded: Vec<Envelope> = store.read_stream_to_fold("fold", range).try_collect().await.unwrap();
        assert_eq!(folded.iter().map(needed).collect::<Vec<_>>(), whole, "{range:?}");
    }
    let missing: Vec<Envelope> = store.read_stream_to_fold("missing", VersionRange::ALL).try_collect().await.unwrap();
    assert!(missing.is_empty());
}

/// A stream that was never written reads as empty, at version 0.
pub async fn missing_stream_reads_empty<S: EventStore>(store: S) {
    store.append("somebody", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    assert!(read(&store, "nobody-here", ..).await.is_empty());
    assert!(read(&store, "somebody-else", 1..).await.is_empty());
    assert_eq!(store.stream_version("nobody-here").await.unwrap(), 0);
}

/// Appends one after the other, to different streams, get ever larger global positions,
/// and each stream reads back its own events with them.
pub async fn global_positions_grow_across_streams<S: EventStore>(store: S) {
    let mut written = Vec::new();
    written.extend(store.append("g-a", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap());
    written.extend(store.append("g-b", ExpectedVersion::Exact(0), events(3..=3)).await.unwrap());
    written.extend(store.append("g-a", ExpectedVersion::Exact(2), events(4..=5)).await.unwrap());
    written.extend(store.append("g-c", ExpectedVersion::Any, events(6..=6)).await.unwrap());
    assert!(written.windows(2).all(|w| w[0].global_position < w[1].global_position), "{written:?}");
    let a: Vec<Envelope> = written.iter().filter(|e| e.stream_id == "g-a").cloned().collect();
    assert_eq!(read(&store, "g-a", ..).await, a);
    assert_eq!(numbers(&read(&store, "g-b", ..).await), [3]);
    assert_eq!(versions(&read(&store, "g-c", ..).await), [1]);
}

/// `stream_version` tracks appends per stream, without reading events.
pub async fn stream_version_tracks_appends<S: EventStore>(store: S) {
    assert_eq!(store.stream_version("h-1").await.unwrap(), 0);
    store.append("h-1", ExpectedVersion::Exact(0), events(1..=3)).await.unwrap();
    store.append("h-2", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    assert_eq!(store.stream_version("h-1").await.unwrap(), 3);
    assert_eq!(store.stream_version("h-2").await.unwrap(), 2);
    store.append("h-1", ExpectedVersion::Any, events(4..=4)).await.unwrap();
    assert_eq!(store.stream_version("h-1").await.unwrap(), 4);
    assert_eq!(store.stream_version("h-2").await.unwrap(), 2);
}

/// Payloads, names, versions, ids and metadata come back exactly as written: unicode and
/// escapes, nested objects and arrays, large and negative integers, fractions, and
/// payloads that are not objects.
pub async fn payload_and_metadata_round_trip_exactly<S: EventStore + EventFeed>(store: S) {
    let payloads = [
        json!({
            "text": "quote \" backslash \\ apostrophe ' emoji 🛒 ünïcödé 购物车 \u{1F600} line\nbreak\ttab \u{1} \u{7f}",
            "ключ 🔑": "unicode keys",
            "nested": { "list": [1, 2.5, null, true, false, "", [], {}], "deeper": { "deepest": [[[{ "x": -0.125 }]]] } },
            "big": u64::MAX,
            "max_i64": i64::MAX,
            "min_i64": i64::MIN,
            "max_safe": 9_007_199_254_740_993u64,
            "fraction": 0.1,
            "zero": 0,
            "empty": "",
        }),
        json!(null),
        json!([1, "two", { "three": 3 }]),
        json!("just a string: ✓"),
        json!(u64::MAX),
        json!(-42),
        json!(true),
    ];
    let metadata = Metadata::default()
        .correlation_id(uuid::Uuid::now_v7())
        .causation_id(uuid::Uuid::now_v7())
        .with("user_id", "u-7 ünï")
        .with("tenant", json!({ "id": u64::MAX, "tags": ["a", "ß"], "none": null }));
    let new: Vec<NewEvent> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let event = NewEvent::new(format!("conformance.round_trip_{i}.ünï"), 3 + i as u32, payload.clone());
            if i == 0 {
                event.with_metadata(metadata.clone())
            } else {
                event
            }
        })
        .collect();
    let before = chrono::Utc::now();
    let written = store.append("m-1", ExpectedVersion::Exact(0), new.clone()).await.unwrap();
    let read_back = read(&store, "m-1", ..).await;
    assert_eq!(read_back, written, "read_stream returns what append returned");
    assert_eq!(feed_all(&store).await, written, "the feed returns what append returned");
    for (stored, sent) in read_back.iter().zip(&new) {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.event_version, sent.event_version);
        assert_eq!(stored.payload, sent.payload, "payload of {}", sent.event_type);
        assert_eq!(stored.metadata, sent.metadata);
    }
    let big = &read_back[0].payload;
    assert_eq!((big["big"].as_u64(), big["min_i64"].as_i64()), (Some(u64::MAX), Some(i64::MIN)));
    assert_eq!(big["max_safe"].as_u64(), Some(9_007_199_254_740_993), "integers beyond 2^53 stay exact");
    let skew = chrono::Duration::seconds(5);
    let e = &read_back[0];
    assert!(
        e.recorded_at >= before - skew && e.recorded_at <= chrono::Utc::now() + skew,
        "recorded_at is the time of the append"
    );
}

/// Stream ids with quotes, unicode, SQL-looking text, wildcards and 1,000 characters
/// round-trip, and are never matched as patterns.
pub async fn awkward_stream_ids_round_trip<S: EventStore>(store: S) {
    let long = "x".repeat(1000);
    let ids = [
        "cart-'; DROP TABLE events; --",
        "cart-\"quoted\"",
        "cart-ünïcödé-🛒-购物车",
        "cart with spaces\tand\ttabs",
        "cart-%_wildcards_%",
        "cart-back\\slash",
        long.as_str(),
    ];
    for (i, id) in ids.iter().enumerate() {
        store.append(id, ExpectedVersion::Exact(0), vec![event(i as u64)]).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let stored = read(&store, id, ..).await;
        assert_eq!(stored.len(), 1, "stream {id:?}");
        assert_eq!(stored[0].stream_id, *id);
        assert_eq!(numbers(&stored), [i as u64]);
        assert_eq!(store.stream_version(id).await.unwrap(), 1);
    }
    // `%`, `_` and `\` are not wildcards or escapes: a pattern names another stream.
    assert!(read(&store, "cart-%", ..).await.is_empty());
    assert!(read(&store, "cart-_quoted_", ..).await.is_empty());
    assert_eq!(store.stream_version("cart-%").await.unwrap(), 0);
}

/// Empty ids and NUL characters are rejected with a typed error, and nothing is written.
pub async fn invalid_stream_ids_are_rejected<S: EventStore + EventFeed>(store: S) {
    for id in ["", "nul\0inside"] {
        match store.append(id, ExpectedVersion::Any, vec![event(1)]).await {
            Err(StoreError::InvalidStreamId { stream, .. }) => assert_eq!(stream, id),
            other => panic!("expected InvalidStreamId for {id:?}, got {other:?}"),
        }
    }
    assert!(feed_all(&store).await.is_empty());
}

/// Stream ids of exactly [`MAX_STREAM_ID_BYTES`] bytes (ASCII, two- and four-byte
/// characters, incompressible text) are accepted and read back; one byte more is
/// [`StoreError::InvalidStreamId`] naming the limit, and nothing is written.
pub async fn stream_ids_up_to_the_limit_are_accepted_and_longer_ones_refused<S: EventStore + EventFeed>(store: S) {
    let mut rng = fastrand::Rng::with_seed(11);
    let random: String = (0..MAX_STREAM_ID_BYTES).map(|_| rng.alphanumeric()).collect();
    let at_limit = [
        "x".repeat(MAX_STREAM_ID_BYTES),
        "ü".repeat(MAX_STREAM_ID_BYTES / 2),
        "🛒".repeat(MAX_STREAM_ID_BYTES / 4),
        random.clone(),
    ];
    for (i, id) in at_limit.iter().enumerate() {
        assert_eq!(id.len(), MAX_STREAM_ID_BYTES);
        let stored = store.append(id, ExpectedVersion::Exact(0), vec![event(i as u64)]).await.unwrap();
        assert_eq!(read(&store, id, ..).await, stored, "a stream id of {} bytes reads back", id.len());
        assert_eq!(store.stream_version(id).await.unwrap(), 1);
    }
    let feed_before = feed_all(&store).await;
    assert_eq!(feed_before.len(), at_limit.len());
    let over = ["x".repeat(MAX_STREAM_ID_BYTES + 1), format!("{}x", "ü".repeat(MAX_STREAM_ID_BYTES / 2)), {
        let mut longer = random;
        longer.push('y');
        longer
    }];
    for id in &over {
        match store.append(id, ExpectedVersion::Any, vec![event(9)]).await {
            Err(StoreError::InvalidStreamId { stream, reason }) => {
                assert_eq!(&stream, id);
                assert!(reason.contains(&MAX_STREAM_ID_BYTES.to_string()), "the error names the limit: {reason}");
            }
            other => panic!("expected InvalidStreamId for a stream id of {} bytes, got {other:?}", id.len()),
        }
    }
    assert_eq!(feed_all(&store).await, feed_before, "nothing was written");
}

/// Expects [`StoreError::InvalidEvent`] for the event at `index` of an append to
/// `stream`, whose reason contains `says`.
fn assert_invalid_event(
    result: Result<Vec<Envelope>, StoreError>,
    stream: &str,
    index: usize,
    event: &NewEvent,
    says: &str,
) {
    match result {
        Err(StoreError::InvalidEvent { stream: s, index: i, event_id, reason }) => {
            assert_eq!((s.as_str(), i, event_id), (stream, index, event.event_id), "InvalidEvent fields: {reason}");
            assert!(reason.contains(says), "the reason says {says:?}: {reason}");
        }
        other => panic!("expected InvalidEvent for event {index} of an append to {stream}, got {other:?}"),
    }
}

/// Event types must not be empty, hold a NUL or be longer than
/// [`MAX_EVENT_TYPE_BYTES`]: [`StoreError::InvalidEvent`] names the stream, the event's
/// index and id, and nothing is written. A type of exactly the limit round-trips.
pub async fn invalid_event_types_are_rejected<S: EventStore + EventFeed>(store: S) {
    let longest = "t".repeat(MAX_EVENT_TYPE_BYTES);
    let stored =
        store.append("et-1", ExpectedVersion::Exact(0), vec![NewEvent::new(longest.clone(), 1, json!(1))]).await;
    let stored = stored.unwrap();
    assert_eq!(read(&store, "et-1", ..).await, stored);
    assert_eq!(stored[0].event_type, longest);
    let feed_before = feed_all(&store).await;
    let bad = [
        (String::new(), "empty"),
        ("cart.item\0added".to_owned(), "NUL"),
        ("t".repeat(MAX_EVENT_TYPE_BYTES + 1), "at most 255 bytes"),
        ("ü".repeat(MAX_EVENT_TYPE_BYTES / 2 + 1), "at most 255 bytes"),
    ];
    for (event_type, says) in bad {
        let invalid = NewEvent::new(event_type, 1, json!(2));
        let batch = vec![event(1), invalid.clone()];
        let result = store.append("et-1", ExpectedVersion::Exact(1), batch).await;
        assert_invalid_event(result, "et-1", 1, &invalid, says);
    }
    assert_eq!(store.stream_version("et-1").await.unwrap(), 1);
    assert_eq!(feed_all(&store).await, feed_before, "nothing was written");
}

/// A payload or metadata nested deeper than [`MAX_JSON_DEPTH`] (which serde_json could
/// not read back) is refused at append time with [`StoreError::InvalidEvent`] naming
/// the stream, the event's index and id and the depth; nothing is written, and the
/// stream still loads.
pub async fn json_nested_deeper_than_stores_read_back_is_refused<S: EventStore + EventFeed>(store: S) {
    let first = store.append("deep-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    let feed_before = feed_all(&store).await;
    let too_deep = MAX_JSON_DEPTH + 1;
    let payload = NewEvent::new("conformance.deep", 1, nested(too_deep));
    let result = store.append("deep-1", ExpectedVersion::Exact(1), vec![event(2), event(3), payload.clone()]).await;
    assert_invalid_event(result, "deep-1", 2, &payload, &format!("payload is nested {too_deep} levels deep"));
    let far = NewEvent::new("conformance.deep", 1, nested(1_000));
    let result = store.append("deep-1", ExpectedVersion::Any, vec![far.clone()]).await;
    assert_invalid_event(result, "deep-1", 0, &far, "payload is nested 1000 levels deep");
    // The metadata's keys are one object: a value in it has one level less.
    let metadata = Metadata::default().with("deep", nested(MAX_JSON_DEPTH));
    let in_metadata = NewEvent::new("conformance.deep", 1, json!({})).with_metadata(metadata);
    let result = store.append("deep-2", ExpectedVersion::Exact(0), vec![in_metadata.clone()]).await;
    assert_invalid_event(result, "deep-2", 0, &in_metadata, &format!("metadata is nested {too_deep} levels deep"));
    assert_eq!(store.stream_version("deep-1").await.unwrap(), 1);
    assert_eq!(store.stream_version("deep-2").await.unwrap(), 0);
    assert_eq!(read(&store, "deep-1", ..).await, first, "the stream still reads back");
    assert_eq!(feed_all(&store).await, feed_before, "nothing was written");
}

/// A payload nested exactly [`MAX_JSON_DEPTH`] levels deep, and metadata as deep, are
/// accepted and read back equal through [`read_stream`](EventStore::read_stream) and the
/// feed.
pub async fn json_nested_to_the_limit_round_trips<S: EventStore + EventFeed>(store: S) {
    let metadata = Metadata::default().with("deep", nested(MAX_JSON_DEPTH - 1)).with("flat", 1);
    let deepest = NewEvent::new("conformance.deep", 1, nested(MAX_JSON_DEPTH)).with_metadata(metadata);
    assert_eq!(crate::store::kit::json_depth(&deepest.payload), MAX_JSON_DEPTH);
    let written = store.append("deep-ok", ExpectedVersion::Exact(0), vec![deepest.clone(), event(2)]).await.unwrap();
    let read_back = read(&store, "deep-ok", ..).await;
    assert_eq!(read_back, written, "read_stream returns what append returned");
    assert_eq!(read_back[0].payload, deepest.payload);
    assert_eq!(read_back[0].metadata, deepest.metadata);
    assert_eq!(feed_all(&store).await, written, "the feed returns what append returned");
}

/// 2,000 doubles (seeded random bit patterns and fractions, and the awkward ones:
/// `1e-30`, `f64::MAX`, `f64::MIN_POSITIVE`, subnormals, `-0.0`) in payloads and
/// metadata come back bit for bit, through [`read_stream`](EventStore::read_stream) and
/// the feed.
pub async fn doubles_round_trip_bit_for_bit<S: EventStore + EventFeed>(store: S) {
    const COUNT: usize = 2_000;
    const PER_EVENT: usize = 250;
    let mut doubles = vec![
        1e-30,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::from_bits(1),
        -f64::from_bits(1),
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::EPSILON,
        0.1,
        1.0 / 3.0,
        0.0,
        -0.0,
        1.0,
        1e20,
        1e300,
        2.5e-8,
        123_456.789,
        9_007_199_254_740_993.0,
    ];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    while doubles.len() < COUNT {
        let double = match doubles.len() % 3 {
            0 => f64::from_bits(rng.u64(..)),
            1 => rng.f64(),
            _ => (rng.f64() - 0.5) * 10f64.powi(rng.i32(-40..40)),
        };
        if double.is_finite() {
            doubles.push(double);
        }
    }
    let new: Vec<NewEvent> = doubles
        .chunks(PER_EVENT)
        .map(|chunk| {
            let metadata = Metadata::default().with("doubles", chunk.iter().take(20).copied().collect::<Vec<_>>());
            NewEvent::new("conformance.doubles", 1, json!({ "doubles": chunk })).with_metadata(metadata)
        })
        .collect();
    let written = store.append("doubles-1", ExpectedVersion::Exact(0), new.clone()).await.unwrap();
    let check = |how: &str, read_back: &[Envelope]| {
        assert_eq!(read_back.len(), new.len(), "{how}");
        let mut changed = Vec::new();
        for (stored, sent) in read_back.iter().zip(&new) {
            let pairs = [(&stored.payload["doubles"], &sent.payload["doubles"])]
                .into_iter()
                .chain([(&stored.metadata.extra["doubles"], &sent.metadata.extra["doubles"])]);
            for (got, want) in pairs {
                let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
                assert_eq!(got.len(), want.len(), "{how}");
                for (g, w) in got.iter().zip(want) {
                    let w = w.as_f64().unwrap();
                    if !g.is_f64() || g.as_f64().map(f64::to_bits) != Some(w.to_bits()) {
                        changed.push(format!("{w:e} came back as {g}"));
                    }
                }
            }
        }
        assert!(
            changed.is_empty(),
            "{how}: {} doubles changed, e.g. {:?}",
            changed.len(),
            &changed[..changed.len().min(5)]
        );
    };
    check("the append's envelopes", &written);
    check("read_stream", &read(&store, "doubles-1", ..).await);
    check("the feed", &feed_all(&store).await);
}

/// Strings and keys holding a NUL character (`\u0000`) and other control characters, in
/// payloads and metadata, come back unchanged through
/// [`read_stream`](EventStore::read_stream) and the feed.
pub async fn nul_characters_in_json_round_trip<S: EventStore + EventFeed>(store: S) {
    let sent = vec![
        NewEvent::new("conformance.nul", 1, json!({ "text": "a\u{0}b", "bell": "\u{7}\u{1b}[0m" })),
        NewEvent::new("conformance.nul", 1, json!({ "list": [{ "k\u{0}": "\u{0}" }] }))
            .with_metadata(Metadata::default().with("user\u{0}", "u\u{0}")),
    ];
    let written = store.append("nul-1", ExpectedVersion::Exact(0), sent.clone()).await.unwrap();
    for (how, read_back) in [("read_stream", read(&store, "nul-1", ..).await), ("the feed", feed_all(&store).await)] {
        assert_eq!(read_back, written, "{how} returns what append returned");
        for (stored, sent) in read_back.iter().zip(&sent) {
            assert_eq!(stored.payload, sent.payload, "{how}");
            assert_eq!(stored.metadata, sent.metadata, "{how}");
        }
    }
}

/// Appending events whose ids are already stored at that place (a retry after a lost
/// reply) returns the stored envelopes and writes nothing twice.
pub async fn reappending_the_same_events_is_idempotent<S: EventStore + EventFeed>(store: S) {
    let batch = events(1..=3);
    let first = store.append("i-1", ExpectedVersion::Exact(0), batch.clone()).await.unwrap();
    store.append("i-1", ExpectedVersion::Exact(3), vec![event(4)]).await.unwrap();
    // The retry still carries the expected version of the first attempt.
    let again = store.append("i-1", ExpectedVersion::Exact(0), batch.clone()).await.unwrap();
    assert_eq!(again, first);
    let again_any = store.append("i-1", ExpectedVersion::Any, batch.clone()).await.unwrap();
    assert_eq!(again_any, first);
    // A later part of an append, re-sent on its own, is where `Exact` puts it, too.
    let tail = store.append("i-1", ExpectedVersion::Exact(1), batch[1..].to_vec()).await.unwrap();
    assert_eq!(tail, first[1..]);
    assert_eq!(store.stream_version("i-1").await.unwrap(), 4);
    assert_eq!(feed_all(&store).await.len(), 4);
    assert_eq!(numbers(&read(&store, "i-1", ..).await), [1, 2, 3, 4]);
}

/// Re-appending stored ids with an `Exact` version that does not put them where they are
/// stored is `DuplicateEventId` (not a conflict, not a success), and writes nothing.
pub async fn reappending_at_another_expected_version_is_a_duplicate<S: EventStore + EventFeed>(store: S) {
    let batch = events(1..=2);
    let stored = store.append("dv-1", ExpectedVersion::Exact(0), batch.clone()).await.unwrap();
    store.append("dv-1", ExpectedVersion::Exact(2), events(3..=4)).await.unwrap();
    let feed_before = feed_all(&store).await;
    let first_id = stored[0].event_id;
    for version in [1, 2, 3, 4, 9] {
        let result = store.append("dv-1", ExpectedVersion::Exact(version), batch.clone()).await;
        assert_duplicate(result, first_id, "dv-1", ("dv-1", 1));
    }
    // The same ids in another order are not the stored append either.
    let reversed: Vec<NewEvent> = batch.iter().rev().cloned().collect();
    let result = store.append("dv-1", ExpectedVersion::Exact(0), reversed).await;
    match result {
        Err(StoreError::DuplicateEventId { existing_stream, .. }) => assert_eq!(existing_stream, "dv-1"),
        other => panic!("expected DuplicateEventId for a reordered re-append, got {other:?}"),
    }
    assert_eq!(store.stream_version("dv-1").await.unwrap(), 4);
    assert_eq!(feed_all(&store).await, feed_before);
}

/// An id stored in one stream cannot be appended to another, or mixed with new events;
/// the error names where it is stored, and nothing is written.
pub async fn reusing_an_event_id_elsewhere_is_an_error<S: EventStore + EventFeed>(store: S) {
    let stored = store.append("d-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    let mut copy = event(2);
    copy.event_id = stored[0].event_id;
    let result = store.append("d-2", ExpectedVersion::Any, vec![event(3), copy.clone()]).await;
    assert_duplicate(result, stored[0].event_id, "d-2", ("d-1", 1));
    let result = store.append("d-1", ExpectedVersion::Exact(1), vec![event(4), copy]).await;
    assert_duplicate(result, stored[0].event_id, "d-1", ("d-1", 1));
    assert_eq!(store.stream_version("d-2").await.unwrap(), 0, "the failed append wrote nothing");
    assert_eq!(store.stream_version("d-1").await.unwrap(), 1);
    assert_eq!(feed_all(&store).await, stored);
}

/// The same id twice in one append is refused, naming the id, and nothing is written.
pub async fn repeating_an_event_id_in_one_append_is_an_error<S: EventStore + EventFeed>(store: S) {
    let first = event(1);
    let mut again = event(2);
    again.event_id = first.event_id;
    match store.append("r-1", ExpectedVersion::Exact(0), vec![first.clone(), event(3), again]).await {
        Err(StoreError::RepeatedEventId { stream, event_id }) => {
            assert_eq!((stream.as_str(), event_id), ("r-1", first.event_id))
        }
        other => panic!("expected RepeatedEventId, got {other:?}"),
    }
    assert_eq!(store.stream_version("r-1").await.unwrap(), 0);
    assert!(feed_all(&store).await.is_empty());
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
            for i in 0..PER_TASK {
                loop {
                    let version = store.stream_version("hot").await.unwrap();
                    let n = task * 1000 + i;
                    match store.append("hot", ExpectedVersion::Exact(version), vec![event(n)]).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let stored = read(&store, "hot", ..).await;
    assert_eq!(versions(&stored), (1..=TASKS * PER_TASK).collect::<Vec<_>>(), "versions are contiguous");
    let expected: BTreeSet<u64> = (0..TASKS).flat_map(|t| (0..PER_TASK).map(move |i| t * 1000 + i)).collect();
    assert_eq!(numbers(&stored).into_iter().collect::<BTreeSet<_>>(), expected, "every append landed exactly once");
    assert!(stored.windows(2).all(|w| w[0].global_position < w[1].global_position));
}

/// Writers on different streams never lose events or share global positions.
pub async fn concurrent_writers_on_many_streams_get_unique_positions<S: EventStore>(store: S) {
    const TASKS: u64 = 8;
    const APPENDS: u64 = 20;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let stream = format!("many-{task}");
            for i in 0..APPENDS {
                store.append(&stream, ExpectedVersion::Exact(i * 2), events(1..=2)).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut positions = BTreeSet::new();
    for task in 0..TASKS {
        let stream = read(&store, &format!("many-{task}"), ..).await;
        assert_eq!(versions(&stream), (1..=APPENDS * 2).collect::<Vec<_>>());
        assert!(stream.windows(2).all(|w| w[0].global_position < w[1].global_position));
        positions.extend(stream.iter().map(|e| e.global_position));
    }
    assert_eq!(positions.len() as u64, TASKS * APPENDS * 2, "positions are unique");
}
