//! Command execution through `Repository` on the in-memory store: what lands in the
//! store, what a rejection or a decode failure looks like, and retries under contention.
#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::collections::BTreeSet;

use annals::store::{Checkpoint, EventFeed, Filter};
use annals::{
    DecodeError, Envelope, EventStore, ExecuteError, ExpectedVersion, LoadError, Metadata, NewEvent, Repository,
    RetryPolicy, StoreError, VersionRange,
};
use annals_memory::MemoryStore;
use serde_json::json;
use shopping_cart::{AddItem, Cart, CartError, Checkout, RemoveItem};

fn add(sku: &str, qty: u32) -> AddItem {
    AddItem { sku: sku.into(), qty, unit_price_cents: 100 }
}

/// Every event in the store, in commit order (through the feed).
async fn all_events(store: &MemoryStore) -> Vec<Envelope> {
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 1000).await.unwrap();
    batch.events.into_iter().map(|e| e.envelope).collect()
}

#[tokio::test]
async fn execute_appends_to_the_aggregates_stream_and_returns_what_it_stored() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let first = carts.execute("7", add("tea", 2)).await.unwrap();
    assert_eq!((first.version, first.attempts), (1, 1));
    assert_eq!(first.events.len(), 1);
    let e = &first.events[0];
    assert_eq!(
        (e.stream_id.as_str(), e.stream_version, e.event_type.as_str(), e.event_version),
        ("cart-7", 1, "cart.item_added", 1)
    );
    assert_eq!(e.payload, json!({"sku": "tea", "qty": 2, "unit_price_cents": 100}));
    assert_eq!(first.state.items["tea"].qty, 2, "the returned state includes the new event");

    let second = carts.execute("7", Checkout).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(all_events(&store).await, [first.events, second.events].concat());
    let loaded = carts.load("7").await.unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.state, second.state);
}

#[tokio::test]
async fn a_rejected_command_returns_the_domain_error_and_writes_nothing() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    carts.execute("1", add("tea", 1)).await.unwrap();
    let error = carts.execute("1", RemoveItem { sku: "tea".into(), qty: 3 }).await.unwrap_err();
    assert_eq!(error.rejection(), Some(&CartError::NotEnough { sku: "tea".into(), held: 1, wanted: 3 }));
    assert_eq!(error.to_string(), "command rejected: cannot remove 3 of `tea`: the cart holds 1");
    assert_eq!(all_events(&store).await.len(), 1);
}

#[tokio::test]
async fn aggregates_of_one_type_live_in_separate_streams() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    carts.execute("a", add("tea", 1)).await.unwrap();
    carts.execute("b", add("mug", 1)).await.unwrap();
    assert_eq!(carts.load("a").await.unwrap().state.items.keys().collect::<Vec<_>>(), ["tea"]);
    assert_eq!(carts.load("b").await.unwrap().state.items.keys().collect::<Vec<_>>(), ["mug"]);
    assert_eq!(carts.load("never-used").await.unwrap().version, 0);
}

#[tokio::test]
async fn history_and_time_travel_show_earlier_states() {
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    carts.execute("t", add("tea", 1)).await.unwrap();
    carts.execute("t", add("mug", 1)).await.unwrap();
    carts.execute("t", RemoveItem { sku: "tea".into(), qty: 1 }).await.unwrap();
    let history = carts.history("t", ..).await.unwrap();
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["cart.item_added", "cart.item_added", "cart.item_removed"]);
    let at_2 = carts.load_at_version("t", 2).await.unwrap();
    assert_eq!(at_2.version, 2);
    assert_eq!(at_2.state.items.keys().collect::<Vec<_>>(), ["mug", "tea"]);
    let at_0 = carts.load_at_version("t", 0).await.unwrap();
    assert_eq!((at_0.version, at_0.state.items.len()), (0, 0));
    assert_eq!(carts.load("t").await.unwrap().state.items.keys().collect::<Vec<_>>(), ["mug"]);
}

#[tokio::test]
async fn command_metadata_lands_on_every_new_event() {
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    let correlation = uuid::Uuid::now_v7();
    let causation = uuid::Uuid::now_v7();
    let meta = Metadata::default().correlation_id(correlation).causation_id(causation).with("user_id", "u-1");
    let done = carts.execute_with("m", add("tea", 1), meta.clone()).await.unwrap();
    assert_eq!(done.events[0].metadata, meta);
    let stored = carts.history("m", ..).await.unwrap();
    assert_eq!(stored[0].metadata.correlation_id, Some(correlation));
    assert_eq!(stored[0].metadata.extra["user_id"], "u-1");
    // Events caused by a stored event keep its correlation and name it as their cause.
    let follow_up = Metadata::caused_by(&stored[0]);
    assert_eq!((follow_up.correlation_id, follow_up.causation_id), (Some(correlation), Some(stored[0].event_id)));
}

/// 32 tasks × 50 commands on one stream with the default policy: commands of one
/// repository take turns, so none conflicts, none fails, versions are contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_cart_all_land_with_contiguous_versions() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let mut tasks = Vec::new();
    for task in 0..32 {
        let carts = carts.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for i in 0..50 {
                let done = carts.execute("hot", add(&format!("sku-{task}-{i}"), 1)).await.unwrap();
                retries += done.attempts - 1;
            }
            retries
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    assert_eq!(retries, 0, "commands of one repository take turns instead of conflicting");
    let history = carts.history("hot", ..).await.unwrap();
    assert_eq!(history.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=1600).collect::<Vec<_>>());
    let skus: BTreeSet<String> = history.iter().map(|e| e.payload["sku"].as_str().unwrap().to_owned()).collect();
    assert_eq!(skus.len(), 1600, "every command landed exactly once");
    assert_eq!(carts.load("hot").await.unwrap().state.items.len(), 1600);
}

/// A store where another writer always appends to the stream just before us.
#[derive(Clone)]
struct AlwaysContended(MemoryStore);

impl EventStore for AlwaysContended {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let rival = NewEvent::new("cart.item_added", 1, json!({"sku": "rival", "qty": 1, "unit_price_cents": 1}));
        self.0.append(stream, ExpectedVersion::Any, vec![rival]).await?;
        self.0.append(stream, expected, events).await
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        versions: VersionRange,
    ) -> futures::stream::BoxStream<'a, Result<Envelope, StoreError>> {
        self.0.read_stream(stream, versions)
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.0.stream_version(stream).await
    }
}

#[tokio::test]
async fn conflicts_are_retried_up_to_the_policy_then_reported() {
    let inner = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(AlwaysContended(inner.clone()))
        .with_retry(RetryPolicy { max_attempts: 3, ..Default::default() });
    match carts.execute("c", add("tea", 1)).await {
        Err(ExecuteError::Conflict { stream, attempts, .. }) => assert_eq!((stream.as_str(), attempts), ("cart-c", 3)),
        other => panic!("expected a conflict after 3 attempts, got {other:?}"),
    }
    // Only the rival's three events are stored: none of ours.
    let stored = all_events(&inner).await;
    assert_eq!(stored.iter().filter(|e| e.payload["sku"] == "rival").count(), 3);
    assert_eq!(stored.len(), 3);

    let never = Repository::<Cart, _>::new(AlwaysContended(MemoryStore::new())).with_retry(RetryPolicy::never());
    assert!(matches!(never.execute("c", add("tea", 1)).await, Err(ExecuteError::Conflict { attempts: 1, .. })));
}

/// With the default policy, conflicts from other writers are retried for the policy's
/// time budget, not a fixed handful of attempts.
#[tokio::test]
async fn the_default_policy_retries_conflicts_until_its_time_budget_is_spent() {
    let budget = std::time::Duration::from_millis(200);
    let carts = Repository::<Cart, _>::new(AlwaysContended(MemoryStore::new()))
        .with_retry(RetryPolicy { budget: Some(budget), ..RetryPolicy::default() });
    let started = std::time::Instant::now();
    match carts.execute("c", add("tea", 1)).await {
        Err(ExecuteError::Conflict { attempts, waited, .. }) => {
            assert!(attempts > 5, "only {attempts} attempts in {waited:?}");
            assert!(waited < budget * 2, "{waited:?}");
        }
        other => panic!("expected a conflict once the budget was spent, got {other:?}"),
    }
    assert!(started.elapsed() < budget * 3);
}

async fn store_with(event_type: &str, version: u32, payload: serde_json::Value) -> MemoryStore {
    let store = MemoryStore::new();
    let good = NewEvent::new("cart.item_added", 1, json!({"sku": "tea", "qty": 1, "unit_price_cents": 1}));
    store
        .append("cart-bad", ExpectedVersion::Exact(0), vec![good, NewEvent::new(event_type, version, payload)])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn an_unknown_event_type_is_a_typed_error_naming_stream_version_and_type() {
    let carts = Repository::<Cart, _>::new(store_with("cart.gift_wrapped", 1, json!({})).await);
    match carts.load("bad").await {
        Err(LoadError::Decode(e @ DecodeError::UnknownEventType { .. })) => {
            let text = e.to_string();
            assert!(text.contains("`cart-bad` version 2") && text.contains("cart.gift_wrapped"), "{text}");
            assert!(text.contains("cart.item_added, cart.item_removed, cart.checked_out"), "{text}");
        }
        other => panic!("expected UnknownEventType, got {other:?}"),
    }
}

#[tokio::test]
async fn a_payload_that_does_not_decode_is_a_typed_error() {
    let carts = Repository::<Cart, _>::new(store_with("cart.item_removed", 1, json!({"sku": 5})).await);
    match carts.load("bad").await {
        Err(LoadError::Decode(DecodeError::Payload { stream, version, event_type, event_version, .. })) => {
            assert_eq!(
                (stream.as_str(), version, event_type.as_str(), event_version),
                ("cart-bad", 2, "cart.item_removed", 1)
            )
        }
        other => panic!("expected a payload error, got {other:?}"),
    }
    // Executing a command on it fails the same way and appends nothing.
    let error = carts.execute("bad", Checkout).await.unwrap_err();
    assert!(matches!(error, ExecuteError::Decode(DecodeError::Payload { .. })), "{error:?}");
    assert_eq!(all_events(carts.store()).await.len(), 2);
}

#[tokio::test]
async fn an_event_written_by_newer_code_is_refused_with_its_versions() {
    let carts = Repository::<Cart, _>::new(store_with("cart.checked_out", 2, json!({"total_cents": 1})).await);
    match carts.load("bad").await {
        Err(LoadError::Decode(DecodeError::VersionTooNew { stored_version, known_version, .. })) => {
            assert_eq!((stored_version, known_version), (2, 1))
        }
        other => panic!("expected VersionTooNew, got {other:?}"),
    }
}

fn unavailable(operation: &str) -> StoreError {
    StoreError::Unavailable { operation: operation.into(), source: "connection reset by peer".into() }
}

/// A store whose connection drops right after the first append commits (the caller never
/// hears back), and whose first stream read fails.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    lose_next_reply: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fail_next_read: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Flaky {
    fn new(inner: MemoryStore) -> Self {
        Flaky { inner, lose_next_reply: Default::default(), fail_next_read: Default::default() }
    }
}

impl EventStore for Flaky {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let stored = self.inner.append(stream, expected, events).await?;
        if self.lose_next_reply.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable("appending (reply lost)"));
        }
        Ok(stored)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        versions: VersionRange,
    ) -> futures::stream::BoxStream<'a, Result<Envelope, StoreError>> {
        if self.fail_next_read.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(futures::stream::once(async { Err(unavailable("reading")) }));
        }
        self.inner.read_stream(stream, versions)
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }
}

#[tokio::test]
async fn a_lost_append_reply_is_retried_with_the_same_events_and_stored_once() {
    let inner = MemoryStore::new();
    let flaky = Flaky::new(inner.clone());
    let carts = Repository::<Cart, _>::new(flaky.clone());
    carts.execute("f", add("tea", 1)).await.unwrap();
    flaky.lose_next_reply.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = carts.execute("f", add("mug", 1)).await.unwrap();
    assert_eq!(done.version, 2);
    let stored = all_events(&inner).await;
    assert_eq!(stored.len(), 2, "the re-sent append was recognised, not written twice");
    assert_eq!(done.events, stored[1..], "the caller gets the events that were stored");
}

#[tokio::test]
async fn a_transient_read_failure_is_retried() {
    let flaky = Flaky::new(MemoryStore::new());
    let carts = Repository::<Cart, _>::new(flaky.clone());
    carts.execute("r", add("tea", 1)).await.unwrap();
    flaky.fail_next_read.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(carts.execute("r", add("mug", 1)).await.unwrap().version, 2);
}

#[tokio::test]
async fn without_retries_a_transient_failure_is_reported_as_transient() {
    let flaky = Flaky::new(MemoryStore::new());
    let carts = Repository::<Cart, _>::new(flaky.clone()).with_retry(RetryPolicy::never());
    flaky.lose_next_reply.store(true, std::sync::atomic::Ordering::SeqCst);
    match carts.execute("n", add("tea", 1)).await {
        Err(ExecuteError::Store(e)) => assert!(e.is_transient() && !e.is_conflict(), "{e}"),
        other => panic!("expected a transient store error, got {other:?}"),
    }
}

/// A caller who does not learn whether its command went through (here: the reply is
/// lost and the caller does not retry) sends it again with the same idempotency key and
/// gets the first execution's events: one copy, even for a command that the new state
/// would reject.
#[tokio::test]
async fn a_command_sent_again_with_its_idempotency_key_is_stored_once() {
    let inner = MemoryStore::new();
    let flaky = Flaky::new(inner.clone());
    let carts = Repository::<Cart, _>::new(flaky.clone()).with_retry(RetryPolicy::never());
    carts.execute("k", add("tea", 1)).await.unwrap();

    let request = || Metadata::default().idempotency_key("request-17");
    flaky.lose_next_reply.store(true, std::sync::atomic::Ordering::SeqCst);
    let unknown = carts.execute_with("k", Checkout, request()).await;
    assert!(matches!(unknown, Err(ExecuteError::Store(ref e)) if e.is_transient()), "{unknown:?}");

    // Checkout again would be refused (the cart is checked out): the key returns the first outcome.
    let again = carts.execute_with("k", Checkout, request()).await.unwrap();
    assert_eq!((again.version, again.attempts, again.events.len()), (2, 0, 1));
    assert_eq!(again.events[0].event_type, "cart.checked_out");
    assert_eq!(again.events[0].metadata.extra[Metadata::IDEMPOTENCY_KEY], "request-17");
    let stored = all_events(&inner).await;
    assert_eq!(stored.len(), 2, "one checkout stored");
    assert_eq!(again.events[..], stored[1..]);

    // Another key is another command: refused, as the cart is checked out.
    let other = carts.execute_with("k", Checkout, Metadata::default().idempotency_key("request-18")).await;
    assert!(matches!(other, Err(ExecuteError::Rejected(CartError::AlreadyCheckedOut))), "{other:?}");
}

/// The same, when the repository loads from snapshots taken after the first execution:
/// the re-sent command is found by its ids.
#[tokio::test]
async fn an_idempotency_key_is_recognised_behind_a_snapshot() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(annals::snapshot::SnapshotPolicy::Every(2));
    let key = || Metadata::default().idempotency_key("add-mug");
    let first = carts.execute_with("s", add("mug", 1), key()).await.unwrap();
    carts.execute("s", add("tea", 1)).await.unwrap();
    carts.execute("s", add("pot", 1)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await; // the background snapshot
    let again = carts.execute_with("s", add("mug", 1), key()).await.unwrap();
    assert_eq!((again.events.clone(), again.attempts), (first.events, 0));
    assert_eq!(all_events(&store).await.len(), 3);
}

/// A store whose stream reads skip one stored version, as a row deleted by hand would.
#[derive(Clone)]
struct MissingVersion(MemoryStore, u64);

impl EventStore for MissingVersion {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.0.append(stream, expected, events).await
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        versions: VersionRange,
    ) -> futures::stream::BoxStream<'a, Result<Envelope, StoreError>> {
        use futures::StreamExt;
        let missing = self.1;
        self.0
            .read_stream(stream, versions)
            .filter(move |e| std::future::ready(e.as_ref().map_or(true, |e| e.stream_version != missing)))
            .boxed()
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.0.stream_version(stream).await
    }
}

/// A gap in a stream's versions is a typed error naming where, never a wrong state.
#[tokio::test]
async fn a_gap_in_a_stream_is_an_error_not_a_wrong_state() {
    let inner = MemoryStore::new();
    let writer = Repository::<Cart, _>::new(inner.clone());
    for sku in ["a", "b", "c", "d"] {
        writer.execute("g", add(sku, 1)).await.unwrap();
    }
    let carts = Repository::<Cart, _>::new(MissingVersion(inner, 2));
    match carts.load("g").await {
        Err(LoadError::Store(StoreError::Corrupt { stream, version, position, detail })) => {
            assert_eq!((stream.as_str(), version, position), ("cart-g", Some(3), Some(3)));
            assert!(detail.contains("from version 1 to version 3"), "{detail}");
        }
        other => panic!("expected a gap to be reported, got {other:?}"),
    }
    let refused = carts.execute("g", add("e", 1)).await;
    assert!(matches!(refused, Err(ExecuteError::Store(StoreError::Corrupt { .. }))), "{refused:?}");
}

/// A snapshot ahead of its stream (restored from another database, say) is ignored: the
/// state is rebuilt from the events, and commands keep working.
#[tokio::test]
async fn a_snapshot_ahead_of_its_stream_is_ignored() {
    use annals::store::{SnapshotStore, StoredSnapshot};
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(annals::snapshot::SnapshotPolicy::Every(1000));
    carts.execute("ahead", add("tea", 1)).await.unwrap();
    let bogus = serde_json::to_value(Cart::default()).unwrap();
    store
        .save_snapshot(StoredSnapshot {
            stream_id: "cart-ahead".into(),
            stream_version: 1000,
            schema_version: <Cart as annals::snapshot::Snapshot>::SNAPSHOT_VERSION,
            state: bogus,
            taken_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let loaded = carts.load("ahead").await.unwrap();
    assert_eq!((loaded.version, loaded.state.items.len()), (1, 1));
    assert_eq!(carts.execute("ahead", add("mug", 1)).await.unwrap().version, 2);
}

/// A store that counts its stream reads and appends (refused ones too): the real
/// in-memory store underneath.
#[derive(Clone, Default)]
struct Counting {
    store: MemoryStore,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    appends: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counting {
    fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// (reads, appends) so far.
    fn counts(&self) -> (u64, u64) {
        (self.reads(), self.appends.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl EventStore for Counting {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.append(stream_id, expected, events).await
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        range: VersionRange,
    ) -> futures::stream::BoxStream<'a, Result<Envelope, StoreError>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.read_stream(stream_id, range)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.store.stream_version(stream_id).await
    }
}

/// With a cache, a command on an aggregate the repository used before does not read its
/// stream: it starts from the state the last command left. Rejections and commands that
/// change nothing keep the entry; loads never use it.
#[tokio::test]
async fn a_cached_aggregate_is_not_read_again() {
    let store = Counting::default();
    let carts = Repository::<Cart, _>::new(store.clone()).with_cache(100);
    carts.execute("c", add("tea", 1)).await.unwrap();
    assert_eq!(store.reads(), 1, "the first command loads");
    for n in 2..=10 {
        let done = carts.execute("c", add("tea", 1)).await.unwrap();
        assert_eq!((done.version, done.state.items["tea"].qty), (n, u32::try_from(n).unwrap()));
    }
    assert!(matches!(
        carts.execute("c", RemoveItem { sku: "mug".into(), qty: 1 }).await,
        Err(ExecuteError::Rejected(_))
    ));
    carts.clone().execute("c", add("mug", 1)).await.unwrap(); // clones share the cache
    assert_eq!(store.reads(), 1, "none of the later commands read the stream");
    let loaded = carts.load("c").await.unwrap();
    assert_eq!((loaded.version, store.reads()), (11, 2), "a load reads");
}

/// Two "processes" (two repositories, each with its own cache) write the same carts in
/// turns: every stale cache entry turns into a conflict, a reload and a new decision, so
/// every command succeeds, once, and each cart holds exactly what both wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cache_entries_of_another_writer_end_in_a_reload_never_a_wrong_state() {
    let store = MemoryStore::new();
    let (a, b) = (
        Repository::<Cart, _>::new(store.clone()).with_cache(10),
        Repository::<Cart, _>::new(store.clone()).with_cache(10),
    );
    let mut retried = 0;
    for round in 0..50u32 {
        for (n, carts) in [&a, &b].into_iter().enumerate() {
            let cart = format!("c{}", round % 7);
            let done = carts.execute(&cart, add(&format!("sku-{n}"), 1)).await.unwrap();
            retried += done.attempts - 1;
        }
    }
    // Each writer's first command on each of the 7 carts loads; every later one starts
    // from an entry the other writer has made stale since.
    assert_eq!(retried, 2 * (50 - 7), "one conflict and reload per stale entry");
    for cart in 0..7 {
        let loaded = Repository::<Cart, _>::new(store.clone()).load(&format!("c{cart}")).await.unwrap();
        let rounds = (0..50).filter(|r| r % 7 == cart).count();
        assert_eq!(loaded.version, u64::try_from(2 * rounds).unwrap());
        for sku in ["sku-0", "sku-1"] {
            assert_eq!(loaded.state.items[sku].qty, u32::try_from(rounds).unwrap(), "c{cart} {sku}");
        }
    }
}

/// 32 tasks × 50 commands on one stream through one cached repository: none fails, the
/// versions are contiguous, and only the first command reads the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_stream_through_a_cached_repository_reads_once() {
    let store = Counting::default();
    let carts = Repository::<Cart, _>::new(store.clone()).with_cache(10);
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let carts = carts.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    carts.execute("hot", add(&format!("sku-{t}-{n}"), 1)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let versions: Vec<u64> = carts.history("hot", ..).await.unwrap().iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=1600).collect::<Vec<u64>>());
    assert_eq!(store.reads(), 2, "the first command's load, and the history above");
}

#[tokio::test]
async fn create_on_a_new_stream_appends_without_reading_it() {
    let store = Counting::default();
    let carts = Repository::<Cart, _>::new(store.clone()).with_retry(RetryPolicy::never());
    let created = carts.create("new", add("tea", 2)).await.unwrap();
    assert_eq!((created.version, created.attempts, created.events.len()), (1, 1, 1));
    assert_eq!(store.counts(), (0, 1), "no read, one append");
    assert_eq!(carts.load("new").await.unwrap().state, created.state);
}

/// `create` on a stream that has events is `execute`: a command the initial state would
/// accept is refused by the store and decided again on the loaded state; one the initial
/// state rejects is decided again on the loaded state, which may accept it. Neither
/// waits for or spends a retry.
#[tokio::test]
async fn create_on_a_stream_that_exists_decides_again_on_its_events() {
    let store = Counting::default();
    let carts = Repository::<Cart, _>::new(store.clone()).with_retry(RetryPolicy::never());
    carts.execute("old", add("tea", 1)).await.unwrap();
    assert_eq!(store.counts(), (1, 1));

    // Accepted on the initial state, refused by the store (version 0 expected), decided again.
    let added = carts.create("old", add("pen", 1)).await.unwrap();
    assert_eq!((added.version, added.attempts), (2, 2));
    assert_eq!(added.state.items.len(), 2, "decided on the stored cart: {:?}", added.state);
    assert_eq!(store.counts(), (2, 3), "one read, a refused append and the append");

    // Rejected on the initial state (an empty cart cannot check out), accepted on the stored one.
    let checked_out = carts.create("old", Checkout).await.unwrap();
    assert_eq!((checked_out.version, checked_out.events[0].event_type.as_str()), (3, "cart.checked_out"));
    assert_eq!(store.counts(), (3, 4), "no append on the guess it rejected");

    // Rejected on the stored state too: the stored state's rejection is the answer.
    let refused = carts.create("old", add("mug", 1)).await.unwrap_err();
    assert!(matches!(refused, ExecuteError::Rejected(CartError::AlreadyCheckedOut)), "{refused:?}");
    assert_eq!(all_events(&store.store).await.len(), 3);
}

#[tokio::test]
async fn a_create_sent_again_with_its_idempotency_key_is_stored_once() {
    let inner = MemoryStore::new();
    let flaky = Flaky::new(inner.clone());
    let carts = Repository::<Cart, _>::new(flaky.clone()).with_retry(RetryPolicy::never());
    let request = || Metadata::default().idempotency_key("open-9");
    flaky.lose_next_reply.store(true, std::sync::atomic::Ordering::SeqCst);
    let unknown = carts.create_with("9", add("tea", 1), request()).await;
    assert!(matches!(unknown, Err(ExecuteError::Store(ref e)) if e.is_transient()), "{unknown:?}");
    let again = carts.create_with("9", add("tea", 1), request()).await.unwrap();
    assert_eq!((again.version, again.events.len()), (1, 1));
    assert_eq!(all_events(&inner).await.len(), 1, "stored once");
    assert_eq!(again.events[..], all_events(&inner).await[..]);
}

/// The in-memory store, with every append held up for `delay` (the first `slow` appends
/// only, if set) and each append's events counted; the first held append may be beaten
/// by a rival writer who adds `rival` to the stream while it waits.
#[derive(Clone)]
struct Held {
    store: MemoryStore,
    delay: std::time::Duration,
    slow: Option<usize>,
    rival: std::sync::Arc<std::sync::Mutex<Option<NewEvent>>>,
    appends: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Held {
    fn new(delay_ms: u64, slow: Option<usize>) -> Self {
        Held {
            store: MemoryStore::new(),
            delay: std::time::Duration::from_millis(delay_ms),
            slow,
            rival: Default::default(),
            appends: Default::default(),
        }
    }

    /// How many events each append (refused ones too) carried, in order.
    fn appends(&self) -> Vec<usize> {
        self.appends.lock().unwrap().clone()
    }
}

impl EventStore for Held {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let nth = {
            let mut appends = self.appends.lock().unwrap();
            appends.push(events.len());
            appends.len()
        };
        if self.slow.is_none_or(|slow| nth <= slow) {
            tokio::time::sleep(self.delay).await;
        }
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            self.store.append(stream, ExpectedVersion::Any, vec![rival]).await?;
        }
        self.store.append(stream, expected, events).await
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        versions: VersionRange,
    ) -> futures::stream::BoxStream<'a, Result<Envelope, StoreError>> {
        self.store.read_stream(stream, versions)
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.store.stream_version(stream).await
    }
}

/// Starts `command` on cart `id` and gives the scheduler a moment, so that it has
/// decided (and joined the next append) before the caller goes on.
async fn started<C: Send + 'static>(
    carts: &Repository<Cart, Held>,
    id: &str,
    command: C,
    metadata: Metadata,
) -> tokio::task::JoinHandle<Result<annals::Committed<Cart>, ExecuteError<CartError>>>
where
    Cart: annals::Handle<C>,
{
    let (carts, id) = (carts.clone(), id.to_owned());
    let task = tokio::spawn(async move { carts.execute_with(&id, command, metadata).await });
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    task
}

/// With a cache, commands that queue on a stream while an append is in flight decide on
/// the state the commands before them leave and go together in the next append: one
/// round trip for all of them. Each gets its own events back, at its own versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_on_a_hot_stream_are_appended_together() {
    let held = Held::new(600, Some(1));
    let carts = Repository::<Cart, _>::new(held.clone()).with_cache(10);
    let mut tasks = Vec::new();
    for n in 0..8u32 {
        tasks.push(started(&carts, "hot", add(&format!("sku-{n}"), n + 1), Metadata::default()).await);
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    let stored = carts.history("hot", ..).await.unwrap();
    let mut versions = BTreeSet::new();
    for (n, done) in (0..8u32).zip(results) {
        let at = usize::try_from(done.version).unwrap();
        assert!(versions.insert(done.version), "two commands at version {}", done.version);
        assert_eq!(done.events, stored[at - 1..at], "its own event, as stored");
        assert_eq!(done.events[0].payload["sku"], format!("sku-{n}"));
        assert_eq!(done.state.items.len(), at, "the state after its own event");
        assert_eq!(done.attempts, 1);
    }
    assert_eq!(versions, (1..=8).collect::<BTreeSet<u64>>());
    assert_eq!(held.appends(), [1, 7], "the first command alone, the seven that queued behind it together");
    assert_eq!(stored.len(), 8);
}

/// A command decided on events still in flight stands only if they are stored: here the
/// first append loses to a rival writer, so a rejection decided on it ("the cart holds
/// 1 tea") is not reported, and a command queued behind it is not sent; both decide again
/// on what is stored, and every command lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_on_an_append_that_fails_are_made_again() {
    let held = Held::new(600, Some(1));
    let rival = NewEvent::new("cart.item_added", 1, json!({"sku": "tea", "qty": 5, "unit_price_cents": 1}));
    *held.rival.lock().unwrap() = Some(rival);
    let carts = Repository::<Cart, _>::new(held.clone()).with_cache(10);
    let first = started(&carts, "c", add("tea", 1), Metadata::default()).await;
    let remove = started(&carts, "c", RemoveItem { sku: "tea".into(), qty: 3 }, Metadata::default()).await;
    let queued = started(&carts, "c", add("mug", 1), Metadata::default()).await;
    let removed = remove.await.unwrap().expect("decided again on the rival's 5 tea, not rejected on 1");
    assert_eq!(removed.attempts, 2);
    let first = first.await.unwrap().unwrap();
    let queued = queued.await.unwrap().unwrap();
    assert_eq!((first.attempts, queued.attempts), (2, 2));
    let stored = carts.history("c", ..).await.unwrap();
    let skus: Vec<(String, u64)> =
        stored.iter().map(|e| (format!("{}:{}", e.event_type, e.payload["sku"]), e.stream_version)).collect();
    assert_eq!(stored.len(), 4, "the rival's event and each command's once: {skus:?}");
    let mut mine: Vec<Envelope> = [first.events, removed.events, queued.events].concat();
    mine.sort_by_key(|e| e.stream_version);
    assert_eq!(mine, stored[1..]);
    assert_eq!(carts.load("c").await.unwrap().state.items["tea"].qty, 5 - 3 + 1);
}

/// One command whose event the store refuses does not fail the commands appended with
/// it: the batch fails as a whole, and each of its commands runs again alone, so the bad
/// one gets the store's error about its own event and the others are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_fails_its_own_command_not_the_ones_appended_with_it() {
    let held = Held::new(600, Some(1));
    let carts = Repository::<Cart, _>::new(held.clone()).with_cache(10);
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let first = started(&carts, "b", add("tea", 1), Metadata::default()).await;
    let before = started(&carts, "b", add("cup", 1), Metadata::default()).await;
    let bad = started(&carts, "b", add("mug", 1), Metadata::default().with("deep", deep)).await;
    let after = started(&carts, "b", add("pot", 1), Metadata::default()).await;
    first.await.unwrap().unwrap();
    match bad.await.unwrap() {
        Err(ExecuteError::Store(StoreError::InvalidEvent { stream, index: 0, .. })) => assert_eq!(stream, "cart-b"),
        other => panic!("expected the store's refusal of the bad event alone, got {other:?}"),
    }
    let (before, after) = (before.await.unwrap().unwrap(), after.await.unwrap().unwrap());
    let stored = carts.history("b", ..).await.unwrap();
    let skus: BTreeSet<&str> = stored.iter().map(|e| e.payload["sku"].as_str().unwrap()).collect();
    assert_eq!((stored.len(), skus), (3, BTreeSet::from(["tea", "cup", "pot"])), "each good command once");
    let mut mine = [before.events, after.events].concat();
    mine.sort_by_key(|e| e.stream_version);
    assert_eq!(mine, stored[1..], "each gets its own event, as stored");
    assert_eq!(held.appends(), [1, 3, 1, 1, 1], "the first, the three together, then each alone");
    assert_eq!(carts.load("b").await.unwrap().version, 3);
}

/// An append carries at most 64 commands: of 100 commands queued behind a slow append,
/// 64 go in the next one and the rest in the appends after it; each lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_append_carries_at_most_64_commands() {
    let held = Held::new(600, Some(1));
    let carts = Repository::<Cart, _>::new(held.clone()).with_cache(10);
    let first = started(&carts, "big", add("sku-0", 1), Metadata::default()).await;
    let rest: Vec<_> = (1..100u32)
        .map(|n| {
            let carts = carts.clone();
            tokio::spawn(async move { carts.execute("big", add(&format!("sku-{n}"), 1)).await })
        })
        .collect();
    first.await.unwrap().unwrap();
    for task in rest {
        task.await.unwrap().unwrap();
    }
    let appends = held.appends();
    assert_eq!(appends[..2], [1, 64], "{appends:?}");
    assert!(appends.iter().all(|&events| events <= 64), "{appends:?}");
    assert_eq!(appends.iter().sum::<usize>(), 100, "{appends:?}");
    let stored = carts.history("big", ..).await.unwrap();
    let skus: BTreeSet<String> = stored.iter().map(|e| e.payload["sku"].as_str().unwrap().to_owned()).collect();
    assert_eq!((stored.len(), skus.len()), (100, 100), "each command once");
}
