//! The [`SnapshotStore`] suite: snapshots round-trip and never go back to an older
//! version; a [`Repository`] with snapshots loads from them, takes them by policy and
//! ignores the ones it cannot use; and time travel by time and version range. Run it with
//! [`snapshot_conformance_tests!`](crate::snapshot_conformance_tests).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aggregate::{Aggregate, Apply, Decision, Handle};
use crate::repository::Repository;
use crate::snapshot::{Snapshot, SnapshotPolicy};
use crate::store::{SnapshotStore, StoredSnapshot};

/// An item went into the basket.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "basket.item_added")]
struct ItemAdded {
    item: String,
}

/// An item came out of the basket.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "basket.item_removed")]
struct ItemRemoved {
    item: String,
}

/// The basket was closed with this many items.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "basket.closed")]
struct Closed {
    items: u32,
}

struct Add(String);
struct Remove(String);
struct Close;

#[derive(Debug, thiserror::Error)]
enum BasketError {
    #[error("the basket holds no `{0}`")]
    Missing(String),
    #[error("the basket is closed")]
    Closed,
}

/// A basket of items: how many of each, and whether it is closed.
#[derive(crate::Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "basket",
    events(ItemAdded, ItemRemoved, Closed),
    commands(Add, Remove, Close),
    error = BasketError
)]
struct Basket {
    items: BTreeMap<String, u32>,
    closed: bool,
}

impl Snapshot for Basket {
    const SNAPSHOT_VERSION: u32 = 1;
}

impl Basket {
    fn count(&self) -> u32 {
        self.items.values().sum()
    }

    fn open(&self) -> Result<(), BasketError> {
        if self.closed {
            return Err(BasketError::Closed);
        }
        Ok(())
    }
}

impl Handle<Add> for Basket {
    fn handle(&self, c: &Add) -> Decision<Self> {
        self.open()?;
        Ok(vec![ItemAdded { item: c.0.clone() }.into()])
    }
}

impl Handle<Remove> for Basket {
    fn handle(&self, c: &Remove) -> Decision<Self> {
        self.open()?;
        if !self.items.contains_key(&c.0) {
            return Err(BasketError::Missing(c.0.clone()));
        }
        Ok(vec![ItemRemoved { item: c.0.clone() }.into()])
    }
}

impl Handle<Close> for Basket {
    fn handle(&self, _: &Close) -> Decision<Self> {
        self.open()?;
        Ok(vec![Closed { items: self.count() }.into()])
    }
}

impl Apply<ItemAdded> for Basket {
    fn apply(&mut self, e: ItemAdded) {
        *self.items.entry(e.item).or_default() += 1;
    }
}

impl Apply<ItemRemoved> for Basket {
    fn apply(&mut self, e: ItemRemoved) {
        if let Some(n) = self.items.get_mut(&e.item) {
            *n -= 1;
            if *n == 0 {
                self.items.remove(&e.item);
            }
        }
    }
}

impl Apply<Closed> for Basket {
    fn apply(&mut self, _: Closed) {
        self.closed = true;
    }
}

fn add(item: &str) -> Add {
    Add(item.to_owned())
}

/// Waits (bounded) until the background snapshot write of `stream` reaches `version`.
async fn snapshot_at<S: SnapshotStore>(store: &S, stream: &str, version: u64) -> StoredSnapshot {
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

/// A whole-second time, which every store keeps exactly.
fn taken_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// A doctored snapshot: if a load returns this state, it used the snapshot.
fn doctored(stream: &str, version: u64, schema_version: u32) -> StoredSnapshot {
    let mut basket = Basket::default();
    basket.items.insert("planted-by-snapshot".into(), 1);
    StoredSnapshot {
        stream_id: stream.into(),
        stream_version: version,
        schema_version,
        state: serde_json::to_value(&basket).unwrap(),
        taken_at: taken_at(),
    }
}

/// A stream without a snapshot loads `None`; a saved snapshot loads back exactly,
/// unicode, NUL characters, nesting, large integers and `-0.0` included; streams keep
/// their own snapshots.
pub async fn a_saved_snapshot_loads_back_exactly<S: SnapshotStore>(store: S) {
    assert_eq!(store.load_snapshot("basket-none").await.unwrap(), None);
    let snapshot = StoredSnapshot {
        stream_id: "basket-ünï-🧺".into(),
        stream_version: 7,
        schema_version: 3,
        state: json!({ "items": { "tea 🍵": 2, "käse": u64::MAX }, "nested": [[{ "x": -1 }], null], "s": "\"q\" \\",
                      "nul\u{0}": "a\u{0}b", "doubles": [-0.0, 1e300, 1e-30, f64::MAX] }),
        taken_at: taken_at(),
    };
    store.save_snapshot(snapshot.clone()).await.unwrap();
    assert_eq!(store.load_snapshot("basket-ünï-🧺").await.unwrap(), Some(snapshot.clone()));
    let other = StoredSnapshot { stream_id: "basket-other".into(), stream_version: 1, ..snapshot.clone() };
    store.save_snapshot(other.clone()).await.unwrap();
    assert_eq!(store.load_snapshot("basket-other").await.unwrap(), Some(other));
    assert_eq!(store.load_snapshot("basket-ünï-🧺").await.unwrap(), Some(snapshot));
    assert_eq!(store.load_snapshot("basket-none").await.unwrap(), None);
}

/// A snapshot at a later version replaces the stored one; one at an earlier version
/// never does.
pub async fn an_older_snapshot_never_replaces_a_newer_one<S: SnapshotStore>(store: S) {
    let at = |version: u64, marker: &str| StoredSnapshot {
        stream_id: "basket-v".into(),
        stream_version: version,
        schema_version: 1,
        state: json!({ "marker": marker }),
        taken_at: taken_at(),
    };
    store.save_snapshot(at(5, "five")).await.unwrap();
    store.save_snapshot(at(9, "nine")).await.unwrap();
    assert_eq!(store.load_snapshot("basket-v").await.unwrap(), Some(at(9, "nine")));
    store.save_snapshot(at(3, "three")).await.unwrap();
    store.save_snapshot(at(8, "eight")).await.unwrap();
    assert_eq!(store.load_snapshot("basket-v").await.unwrap(), Some(at(9, "nine")));
    store.save_snapshot(at(12, "twelve")).await.unwrap();
    assert_eq!(store.load_snapshot("basket-v").await.unwrap(), Some(at(12, "twelve")));
}

/// `Every(n)` snapshots when a command crosses a multiple of n, and loads start there.
pub async fn every_n_events_snapshots_and_loads_from_it<S: SnapshotStore>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(10));
    for i in 0..25 {
        baskets.execute("s1", add(&format!("item-{i}"))).await.unwrap();
    }
    let snapshot = snapshot_at(&store, "basket-s1", 20).await;
    assert_eq!((snapshot.stream_version, snapshot.schema_version), (20, Basket::SNAPSHOT_VERSION));
    let from_snapshot = baskets.load("s1").await.unwrap();
    let from_events = Repository::<Basket, _>::new(store.clone()).load("s1").await.unwrap();
    assert_eq!(from_snapshot, from_events, "snapshot + tail equals a full replay");
    assert_eq!(from_snapshot.state.items.len(), 25);

    // Prove loads start from the snapshot: plant a recognisable state at the head version.
    store.save_snapshot(doctored("basket-s1", 25, Basket::SNAPSHOT_VERSION)).await.unwrap();
    let planted = baskets.load("s1").await.unwrap();
    assert!(planted.state.items.contains_key("planted-by-snapshot"), "the snapshot was used");
    assert_eq!(planted.version, 25);
}

/// A snapshot written by another schema version of the aggregate is ignored.
pub async fn a_snapshot_of_another_schema_version_is_ignored<S: SnapshotStore>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    baskets.execute("s2", add("tea")).await.unwrap();
    baskets.execute("s2", add("mug")).await.unwrap();
    store.save_snapshot(doctored("basket-s2", 2, Basket::SNAPSHOT_VERSION + 1)).await.unwrap();
    let loaded = baskets.load("s2").await.unwrap();
    assert!(!loaded.state.items.contains_key("planted-by-snapshot"));
    assert_eq!(loaded.state.items.keys().collect::<Vec<_>>(), ["mug", "tea"]);
    assert_eq!(loaded.version, 2);
}

/// A snapshot that no longer deserializes is ignored, never an error.
pub async fn a_snapshot_that_does_not_decode_is_ignored<S: SnapshotStore>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    baskets.execute("s3", add("tea")).await.unwrap();
    let mut broken = doctored("basket-s3", 1, Basket::SNAPSHOT_VERSION);
    broken.state = json!({ "items": "not a map" });
    store.save_snapshot(broken).await.unwrap();
    let loaded = baskets.load("s3").await.unwrap();
    assert_eq!((loaded.version, loaded.state.items.len()), (1, 1));
}

/// `AfterReading(n)` snapshots after a load that applied more than n events.
pub async fn a_long_read_triggers_a_snapshot<S: SnapshotStore>(store: S) {
    let plain = Repository::<Basket, _>::new(store.clone());
    for i in 0..12 {
        plain.execute("s4", add(&format!("item-{i}"))).await.unwrap();
    }
    assert!(store.load_snapshot("basket-s4").await.unwrap().is_none());
    let baskets = Repository::<Basket, _>::new(store.clone()).with_snapshots(SnapshotPolicy::AfterReading(5));
    let loaded = baskets.load("s4").await.unwrap();
    let snapshot = snapshot_at(&store, "basket-s4", 12).await;
    assert_eq!(snapshot.stream_version, 12);
    assert_eq!(snapshot.state, serde_json::to_value(&loaded.state).unwrap());
}

/// Commands keep working on top of a snapshot, and an older snapshot never replaces a
/// newer one.
pub async fn commands_after_a_snapshot_see_the_right_state<S: SnapshotStore>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(2));
    baskets.execute("s5", add("tea")).await.unwrap();
    baskets.execute("s5", add("mug")).await.unwrap();
    snapshot_at(&store, "basket-s5", 2).await;
    baskets.execute("s5", Remove("tea".into())).await.unwrap();
    let missing = baskets.execute("s5", Remove("tea".into())).await.unwrap_err();
    assert!(matches!(missing.rejection(), Some(BasketError::Missing(item)) if item == "tea"), "{missing}");
    let done = baskets.execute("s5", Close).await.unwrap();
    assert_eq!(done.events[0].payload["items"], 1);
    let newest = snapshot_at(&store, "basket-s5", 4).await;
    let mut stale = newest.clone();
    stale.stream_version = 2;
    store.save_snapshot(stale).await.unwrap();
    assert_eq!(store.load_snapshot("basket-s5").await.unwrap().unwrap().stream_version, 4);
    let closed = baskets.execute("s5", add("late")).await.unwrap_err();
    assert!(matches!(closed.rejection(), Some(BasketError::Closed)), "{closed}");
}

/// Loading as of a time applies only the events recorded by then; history reads a range.
pub async fn time_travel_by_time_and_version_range<S: SnapshotStore>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone());
    baskets.execute("t1", add("tea")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    baskets.execute("t1", add("mug")).await.unwrap();
    let then = baskets.load_as_of("t1", between).await.unwrap();
    assert_eq!(then.version, 1);
    assert_eq!(then.state.items.keys().collect::<Vec<_>>(), ["tea"]);
    let now = baskets.load_as_of("t1", chrono::Utc::now()).await.unwrap();
    assert_eq!(now.version, 2);
    let before_anything = baskets.load_as_of("t1", between - chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(before_anything.version, 0);
    let at_one = baskets.load_at_version("t1", 1).await.unwrap();
    assert_eq!((at_one.version, at_one.state.items.len()), (1, 1));
    let second_only = baskets.history("t1", 2..=2).await.unwrap();
    assert_eq!(second_only.len(), 1);
    assert_eq!(second_only[0].payload["item"], "mug");
    assert_eq!(Basket::stream_id("t1"), "basket-t1");
}
