//! The inspection suite: [`Inspect`] lists the streams (by id, by category, up to a
//! limit) and the consumers with their checkpoints. Run it with
//! [`inspect_conformance_tests!`](crate::inspect_conformance_tests).

use super::support::{event, events};
use crate::envelope::Metadata;
use crate::store::{Checkpoint, CheckpointStore, EventFeed, EventStore, ExpectedVersion, Inspect};

/// Streams are listed by id with their versions and newest times; a category keeps its
/// own streams only (not `cartography-1` for `cart`); the limit holds.
pub async fn streams_are_listed_by_id_and_category<S: EventStore + Inspect>(store: S) {
    assert!(store.streams(None, 100).await.unwrap().is_empty());
    store.append("cart-2", ExpectedVersion::Exact(0), events(1..=1)).await.unwrap();
    let written = store.append("cart-1", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    store.append("cartography-1", ExpectedVersion::Exact(0), events(1..=1)).await.unwrap();
    store.append("order-1", ExpectedVersion::Exact(0), events(1..=3)).await.unwrap();
    let all = store.streams(None, 100).await.unwrap();
    let listed: Vec<(&str, u64)> = all.iter().map(|s| (s.stream_id.as_str(), s.version)).collect();
    assert_eq!(listed, [("cart-1", 2), ("cart-2", 1), ("cartography-1", 1), ("order-1", 3)]);
    let newest = written.iter().map(|e| e.recorded_at).max().unwrap();
    assert!((all[0].last_recorded_at - newest).num_milliseconds().abs() <= 1, "{all:?}");
    let carts = store.streams(Some("cart"), 100).await.unwrap();
    assert_eq!(carts.iter().map(|s| s.stream_id.as_str()).collect::<Vec<_>>(), ["cart-1", "cart-2"]);
    assert_eq!(store.streams(None, 1).await.unwrap().len(), 1);
}

/// Consumers are listed by name with their checkpoints.
pub async fn consumers_are_listed_with_their_checkpoints<S: CheckpointStore + Inspect>(store: S) {
    assert!(store.consumers().await.unwrap().is_empty());
    for (name, at) in [("views", 7), ("mailer", 3)] {
        let mut transaction = store.begin().await.unwrap();
        assert!(store.move_checkpoint(&mut transaction, name, None, Checkpoint::from_parts(0, at)).await.unwrap());
        store.commit(transaction).await.unwrap();
    }
    let consumers = store.consumers().await.unwrap();
    let listed: Vec<(&str, Checkpoint)> = consumers.iter().map(|c| (c.name.as_str(), c.checkpoint)).collect();
    assert_eq!(listed, [("mailer", Checkpoint::from_parts(0, 3)), ("views", Checkpoint::from_parts(0, 7))]);
}

/// Each listed consumer says how many events the feed holds after its checkpoint: its lag.
pub async fn consumers_are_listed_with_the_events_after_their_checkpoints<S>(store: S)
where
    S: EventStore + EventFeed + CheckpointStore + Inspect,
{
    let written = store.append("cart-1", ExpectedVersion::Exact(0), events(1..=3)).await.unwrap();
    store.append("order-1", ExpectedVersion::Exact(0), events(1..=2)).await.unwrap();
    let last = store.append("cart-1", ExpectedVersion::Exact(3), events(4..=4)).await.unwrap();
    for (name, at) in [("early", &written[1]), ("done", &last[0])] {
        let at = store.checkpoint_of(at).await.unwrap();
        let mut transaction = store.begin().await.unwrap();
        assert!(store.move_checkpoint(&mut transaction, name, None, at).await.unwrap());
        store.commit(transaction).await.unwrap();
    }
    let consumers = store.consumers().await.unwrap();
    let listed: Vec<(&str, u64)> = consumers.iter().map(|c| (c.name.as_str(), c.behind)).collect();
    assert_eq!(listed, [("done", 0), ("early", 4)]);
}

/// The events of one correlation id, across streams, in global order; none for an
/// unknown id.
pub async fn events_are_found_by_correlation_id<S: EventStore + Inspect>(store: S) {
    let (request, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let tagged = |n: u64, id: uuid::Uuid| event(n).with_metadata(Metadata::default().correlation_id(id));
    store.append("cart-1", ExpectedVersion::Exact(0), vec![tagged(1, request), tagged(2, other)]).await.unwrap();
    store.append("order-1", ExpectedVersion::Exact(0), vec![event(1), tagged(2, request)]).await.unwrap();
    let found = store.correlated(request).await.unwrap();
    let places: Vec<(&str, u64)> = found.iter().map(|e| (e.stream_id.as_str(), e.stream_version)).collect();
    assert_eq!(places, [("cart-1", 1), ("order-1", 2)]);
    assert!(store.correlated(uuid::Uuid::now_v7()).await.unwrap().is_empty());
}
