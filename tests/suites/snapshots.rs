//! Snapshots and time travel, against any store that keeps snapshots. Each adapter's
//! test file includes this module and calls every function with a fresh store.

use std::time::Duration;

use annals::snapshot::{Snapshot, SnapshotPolicy, StoredSnapshot};
use annals::{Aggregate, EventStore, Repository};
use shopping_cart::{AddItem, Cart, Checkout, RemoveItem};

fn add(sku: &str) -> AddItem {
    AddItem { sku: sku.into(), qty: 1, unit_price_cents: 100 }
}

/// Waits (bounded) until the background snapshot write of `stream` reaches `version`.
async fn snapshot_at<S: EventStore>(store: &S, stream: &str, version: u64) -> StoredSnapshot {
    for _ in 0..500 {
        if let Some(s) = store.load_snapshot(stream).await.unwrap() {
            if s.stream_version >= version {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no snapshot of {stream} at version {version} after 5 s");
}

/// A doctored snapshot: if a load returns this state, it used the snapshot.
fn doctored(stream: &str, version: u64, schema_version: u32) -> StoredSnapshot {
    let mut cart = Cart::default();
    cart.items.insert("planted-by-snapshot".into(), Default::default());
    StoredSnapshot {
        stream_id: stream.into(),
        stream_version: version,
        schema_version,
        state: serde_json::to_value(&cart).unwrap(),
        taken_at: chrono::Utc::now(),
    }
}

/// `Every(n)` snapshots when a command crosses a multiple of n, and loads start there.
pub async fn every_n_events_snapshots_and_loads_from_it<S: EventStore>(store: S) {
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(10));
    for i in 0..25 {
        carts.execute("s1", add(&format!("sku-{i}"))).await.unwrap();
    }
    let snapshot = snapshot_at(&store, "cart-s1", 20).await;
    assert_eq!((snapshot.stream_version, snapshot.schema_version), (20, Cart::SNAPSHOT_VERSION));
    let from_snapshot = carts.load("s1").await.unwrap();
    let from_events = Repository::<Cart, _>::new(store.clone()).load("s1").await.unwrap();
    assert_eq!(from_snapshot, from_events, "snapshot + tail equals a full replay");
    assert_eq!(from_snapshot.state.items.len(), 25);

    // Prove loads start from the snapshot: plant a recognisable state at the head version.
    store.save_snapshot(doctored("cart-s1", 25, Cart::SNAPSHOT_VERSION)).await.unwrap();
    let planted = carts.load("s1").await.unwrap();
    assert!(planted.state.items.contains_key("planted-by-snapshot"), "the snapshot was used");
    assert_eq!(planted.version, 25);
}

/// A snapshot written by another schema version of the aggregate is ignored.
pub async fn a_snapshot_of_another_schema_version_is_ignored<S: EventStore>(store: S) {
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    carts.execute("s2", add("tea")).await.unwrap();
    carts.execute("s2", add("mug")).await.unwrap();
    store.save_snapshot(doctored("cart-s2", 2, Cart::SNAPSHOT_VERSION + 1)).await.unwrap();
    let loaded = carts.load("s2").await.unwrap();
    assert!(!loaded.state.items.contains_key("planted-by-snapshot"));
    assert_eq!(loaded.state.items.keys().collect::<Vec<_>>(), ["mug", "tea"]);
    assert_eq!(loaded.version, 2);
}

/// A snapshot that no longer deserializes is ignored, never an error.
pub async fn a_snapshot_that_does_not_decode_is_ignored<S: EventStore>(store: S) {
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    carts.execute("s3", add("tea")).await.unwrap();
    let mut broken = doctored("cart-s3", 1, Cart::SNAPSHOT_VERSION);
    broken.state = serde_json::json!({ "items": "not a map" });
    store.save_snapshot(broken).await.unwrap();
    let loaded = carts.load("s3").await.unwrap();
    assert_eq!((loaded.version, loaded.state.items.len()), (1, 1));
}

/// `AfterReading(n)` snapshots after a load that applied more than n events.
pub async fn a_long_read_triggers_a_snapshot<S: EventStore>(store: S) {
    let plain = Repository::<Cart, _>::new(store.clone());
    for i in 0..12 {
        plain.execute("s4", add(&format!("sku-{i}"))).await.unwrap();
    }
    assert!(store.load_snapshot("cart-s4").await.unwrap().is_none());
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::AfterReading(5));
    let loaded = carts.load("s4").await.unwrap();
    let snapshot = snapshot_at(&store, "cart-s4", 12).await;
    assert_eq!(snapshot.state, serde_json::to_value(&loaded.state).unwrap());
}

/// Commands keep working on top of a snapshot, and an older snapshot never replaces a
/// newer one.
pub async fn commands_after_a_snapshot_see_the_right_state<S: EventStore>(store: S) {
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(2));
    carts.execute("s5", add("tea")).await.unwrap();
    carts.execute("s5", add("mug")).await.unwrap();
    snapshot_at(&store, "cart-s5", 2).await;
    carts.execute("s5", RemoveItem { sku: "tea".into(), qty: 1 }).await.unwrap();
    let done = carts.execute("s5", Checkout).await.unwrap();
    assert_eq!(done.events[0].payload["total_cents"], 100);
    let newest = snapshot_at(&store, "cart-s5", 4).await;
    let mut stale = newest.clone();
    stale.stream_version = 2;
    store.save_snapshot(stale).await.unwrap();
    assert_eq!(store.load_snapshot("cart-s5").await.unwrap().unwrap().stream_version, 4);
}

/// Loading as of a time applies only the events recorded by then; history reads a range.
pub async fn time_travel_by_time_and_version_range<S: EventStore>(store: S) {
    let carts = Repository::<Cart, _>::new(store.clone());
    carts.execute("t1", add("tea")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    carts.execute("t1", add("mug")).await.unwrap();
    let then = carts.load_as_of("t1", between).await.unwrap();
    assert_eq!(then.version, 1);
    assert_eq!(then.state.items.keys().collect::<Vec<_>>(), ["tea"]);
    let now = carts.load_as_of("t1", chrono::Utc::now()).await.unwrap();
    assert_eq!(now.version, 2);
    let before_anything = carts.load_as_of("t1", between - chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(before_anything.version, 0);
    let second_only = carts.history("t1", 2..=2).await.unwrap();
    assert_eq!(second_only.len(), 1);
    assert_eq!(second_only[0].payload["sku"], "mug");
    assert_eq!(Cart::stream_id("t1"), "cart-t1");
}
