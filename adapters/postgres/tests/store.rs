//! What only the PostgreSQL store can get wrong, beyond the suites of `conformance.rs`:
//! migrations and schemas, rows PostgreSQL holds but annals never writes,
//! every append statement, indexed correlation and causation ids, connection failures,
//! and the tables behind snapshots and checkpoints.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use annals::store::{Checkpoint, CheckpointStore, EventFeed, Filter, SnapshotStore, StoredSnapshot};
use annals::{
    DecodeError, EventStore, ExpectedVersion, LoadError, Metadata, NewEvent, Repository, StoreError, VersionRange,
};
use annals_postgres::sqlx;
use annals_postgres::testing::fresh_store;
use annals_postgres::PostgresStore;
use futures::TryStreamExt;
use serde_json::json;
use shopping_cart::{AddItem, Cart};

async fn store() -> PostgresStore {
    fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

fn table(store: &PostgresStore, name: &str) -> String {
    format!("{}.{name}", store.schema().quoted())
}

async fn count(store: &PostgresStore, name: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table(store, name))).fetch_one(store.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_recorded() {
    let store = store().await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let versions: Vec<i32> =
        sqlx::query_scalar(&format!("SELECT version FROM {} ORDER BY version", table(&store, "annals_migrations")))
            .fetch_all(store.pool())
            .await
            .unwrap();
    let known: Vec<i32> = annals_postgres::migrations().iter().map(|m| m.version).collect();
    assert_eq!(versions, known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_isolated() {
    let a = store().await;
    let b = store().await;
    a.append("s", ExpectedVersion::Exact(0), vec![NewEvent::new("e", 1, json!({}))]).await.unwrap();
    assert_eq!(b.stream_version("s").await.unwrap(), 0);
    assert_eq!((count(&a, "events").await, count(&b, "events").await), (1, 0));
    assert!(b.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap().events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_does_not_match_the_event_type_loads_as_a_decode_error() {
    let store = store().await;
    sqlx::query(&format!(
        "INSERT INTO {} (stream_id, stream_version, event_type, event_version, payload, event_id) \
         VALUES ($1, 1, 'cart.item_added', 1, '{{\"sku\": 5}}', gen_random_uuid())",
        table(&store, "events")
    ))
    .bind("cart-bad")
    .execute(store.pool())
    .await
    .unwrap();
    let carts = Repository::<Cart, _>::new(store);
    match carts.load("bad").await {
        Err(LoadError::Decode(DecodeError::Payload { stream, version, event_type, event_version, .. })) => {
            assert_eq!(
                (stream.as_str(), version, event_type.as_str(), event_version),
                ("cart-bad", 1, "cart.item_added", 1)
            );
        }
        other => panic!("expected a payload decode error, got {other:?}"),
    }
}

/// A row annals never writes (a version below 1) is a `Corrupt` error naming the stream
/// and the value, whichever read meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_an_invalid_version_is_a_backend_error_naming_stream_and_version() {
    let store = store().await;
    let events = table(&store, "events");
    sqlx::query(&format!("ALTER TABLE {events} DROP CONSTRAINT events_stream_version_positive"))
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {events} (stream_id, stream_version, event_type, event_version, payload, event_id) \
         VALUES ('broken', -3, 'e', 1, '{{}}', gen_random_uuid())"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let read: Result<Vec<_>, _> = store.read_stream("broken", VersionRange::ALL).try_collect().await;
    let read = read.map(|events| events.len() as u64);
    let version = store.stream_version("broken").await;
    store.settle().await.unwrap();
    let feed = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.map(|batch| batch.events.len() as u64);
    // The stream read asks for versions from 1: the row is not among them.
    assert_eq!(read.unwrap(), 0);
    for result in [version, feed] {
        match result {
            Err(error @ StoreError::Corrupt { .. }) => {
                let message = error.to_string();
                assert!(message.contains("`broken`") && message.contains("-3"), "{message}");
                assert!(!error.is_transient());
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_and_causation_ids_are_indexed_columns() {
    let store = store().await;
    let (correlation, causation) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let meta = Metadata::default().correlation_id(correlation).causation_id(causation).with("user", "u-1");
    store
        .append("c", ExpectedVersion::Exact(0), vec![NewEvent::new("e", 1, json!({})).with_metadata(meta)])
        .await
        .unwrap();
    let (found_causation, metadata): (uuid::Uuid, serde_json::Value) = sqlx::query_as(&format!(
        "SELECT causation_id, metadata FROM {} WHERE correlation_id = $1",
        table(&store, "events")
    ))
    .bind(correlation)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(found_causation, causation);
    assert_eq!(metadata, json!({ "user": "u-1" }));
}

/// Appends with any version retry when a concurrent writer takes their versions first;
/// each append's events stay adjacent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_with_any_version_all_land() {
    let store = store().await;
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let events =
                    vec![NewEvent::new("e", 1, json!({ "n": task * 100 + i })), NewEvent::new("e", 1, json!({}))];
                store.append("any", ExpectedVersion::Any, events).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored: Vec<_> = store.read_stream("any", VersionRange::ALL).try_collect().await.unwrap();
    let versions: Vec<u64> = stored.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=320).collect::<Vec<_>>());
    assert!(stored.chunks(2).all(|pair| !pair[0].payload["n"].is_null() && pair[1].payload == json!({})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable_and_transient() {
    // Nothing listens on port 1.
    let url = "postgres://postgres@127.0.0.1:1/test";
    let options = PostgresStore::pool_options().acquire_timeout(Duration::from_secs(1));
    match PostgresStore::connect_with(options, url).await {
        Err(error @ StoreError::Unavailable { .. }) => assert!(error.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let lazy = PostgresStore::pool_options().acquire_timeout(Duration::from_secs(1)).connect_lazy(url).unwrap();
    let store = PostgresStore::new(lazy);
    match store.stream_version("cart-1").await {
        Err(error @ StoreError::Unavailable { .. }) => {
            assert!(error.is_transient());
            assert!(error.to_string().contains("stream `cart-1`"), "{error}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let append = store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("e", 1, json!({}))]).await;
    assert!(append.as_ref().is_err_and(StoreError::is_transient), "{append:?}");
    let feed = store.read_feed(Checkpoint::START, &Filter::all(), 10).await;
    assert!(feed.as_ref().is_err_and(StoreError::is_transient), "{feed:?}");
    let checkpoint = store.load_checkpoint("consumer").await;
    assert!(checkpoint.as_ref().is_err_and(StoreError::is_transient), "{checkpoint:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_found_by_correlation_and_causation_id() {
    let store = store().await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let (request, other, cause) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let add = |sku: &str| AddItem { sku: sku.into(), qty: 1, unit_price_cents: 100 };
    let in_request = Metadata::default().correlation_id(request);
    let mut expected = Vec::new();
    for (cart, sku, metadata) in [
        ("a", "tea", in_request.clone()),
        ("b", "mug", Metadata::default().correlation_id(other)),
        ("b", "tea", in_request.clone().causation_id(cause)),
        ("a", "pot", Metadata::default()),
        ("a", "cup", in_request.clone()),
    ] {
        let done = carts.execute_with(cart, add(sku), metadata.clone()).await.unwrap();
        if metadata.correlation_id == Some(request) {
            expected.extend(done.events);
        }
    }
    let found = store.events_by_correlation(request).await.unwrap();
    assert_eq!(found, expected, "exactly the request's events, in global order");
    let streams: Vec<(&str, u64)> = found.iter().map(|e| (e.stream_id.as_str(), e.stream_version)).collect();
    assert_eq!(streams, [("cart-a", 1), ("cart-b", 2), ("cart-a", 3)]);
    assert_eq!(store.events_by_correlation(other).await.unwrap().len(), 1);
    assert!(store.events_by_correlation(uuid::Uuid::now_v7()).await.unwrap().is_empty());
    let caused = store.events_by_causation(cause).await.unwrap();
    assert_eq!(caused, expected[1..2]);

    // The partial indexes serve these queries (forced here: on a table this small a
    // sequential scan is cheaper, and the planner rightly prefers it).
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.unwrap();
    for (column, index) in
        [("correlation_id", "events_correlation_id_idx"), ("causation_id", "events_causation_id_idx")]
    {
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN SELECT * FROM {} WHERE {column} = $1 ORDER BY global_position",
            table(&store, "events")
        ))
        .bind(request)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert!(plan.iter().any(|line| line.contains(index)), "{column}: {plan:#?}");
    }
}

/// One event on a new stream, one on an existing stream (exact and any version), and
/// batches, each with and without free-form metadata: the four append statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trips_on_every_append_path() {
    let store = store().await;
    let with_extra = || Metadata::default().correlation_id(uuid::Uuid::now_v7()).with("user", "u-1");
    let plain = |n: u64| NewEvent::new("e", 1, json!({ "n": n }));
    let appends = [
        (ExpectedVersion::Exact(0), vec![plain(1).with_metadata(with_extra())]),
        (ExpectedVersion::Exact(1), vec![plain(2)]),
        (ExpectedVersion::Any, vec![plain(3).with_metadata(with_extra())]),
        (ExpectedVersion::Exact(3), vec![plain(4), plain(5).with_metadata(with_extra()), plain(6)]),
    ];
    let mut written = Vec::new();
    for (expected, events) in appends {
        written.extend(store.append("m", expected, events).await.unwrap());
    }
    let read: Vec<_> = store.read_stream("m", VersionRange::ALL).try_collect().await.unwrap();
    assert_eq!(read, written);
    assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    let stored: Vec<serde_json::Value> = sqlx::query_scalar(&format!(
        "SELECT metadata FROM {} WHERE stream_id = 'm' ORDER BY stream_version",
        table(&store, "events")
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let (user, empty) = (json!({ "user": "u-1" }), json!({}));
    assert_eq!(stored, [user.clone(), empty.clone(), user.clone(), empty.clone(), user, empty]);
    // A single-event append on a new stream that already exists is a conflict.
    match store.append("m", ExpectedVersion::Exact(0), vec![plain(7)]).await {
        Err(StoreError::Conflict { actual: 6, .. }) => {}
        other => panic!("expected a conflict at version 6, got {other:?}"),
    }
    // An expected version no stream can reach is a conflict too.
    match store.append("m", ExpectedVersion::Exact(u64::MAX), vec![plain(8)]).await {
        Err(StoreError::Conflict { actual: 6, .. }) => {}
        other => panic!("expected a conflict at version 6, got {other:?}"),
    }
}

fn snapshot(stream: &str, version: u64, schema_version: u32, state: serde_json::Value) -> StoredSnapshot {
    StoredSnapshot {
        stream_id: stream.into(),
        stream_version: version,
        schema_version,
        state,
        taken_at: chrono::Utc::now(),
    }
}

/// A snapshot at the same version by another schema version of the aggregate replaces
/// the stored one (after an upgrade the old one is useless); times keep microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_new_schema_version_replaces_one_at_the_same_version() {
    let store = store().await;
    let stored = snapshot("s", 9, 1, json!({ "n": 9 }));
    store.save_snapshot(stored.clone()).await.unwrap();
    let loaded = store.load_snapshot("s").await.unwrap().unwrap();
    assert!((loaded.taken_at - stored.taken_at).num_microseconds().unwrap().abs() <= 1);
    store.save_snapshot(snapshot("s", 9, 2, json!({ "n": "9 v2" }))).await.unwrap();
    let upgraded = store.load_snapshot("s").await.unwrap().unwrap();
    assert_eq!((upgraded.schema_version, upgraded.state), (2, json!({ "n": "9 v2" })));
    store.save_snapshot(snapshot("s", 8, 3, json!({ "n": 8 }))).await.unwrap();
    assert_eq!(store.load_snapshot("s").await.unwrap().unwrap().stream_version, 9, "never an older version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_a_snapshot_stream_id_is_refused() {
    let store = store().await;
    assert!(matches!(
        store.save_snapshot(snapshot("a\u{0}b", 1, 1, json!({}))).await,
        Err(StoreError::InvalidStreamId { .. })
    ));
    assert_eq!(store.load_snapshot("a\u{0}b").await.unwrap(), None);
}

/// A checkpoint's parts are the `commit` and `position` columns of its consumer's row, so
/// checkpoints written before the opaque `Checkpoint` load unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_stored_as_commit_and_position() {
    let store = store().await;
    let at = Checkpoint::from_parts(771, 42);
    let mut tx = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut tx, "c", None, at).await.unwrap());
    store.commit(tx).await.unwrap();
    let stored: (i64, i64) = sqlx::query_as(&format!(
        "SELECT commit, position FROM {} WHERE name = 'c'",
        table(&store, "projection_checkpoints")
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(stored, (771, 42));
    sqlx::query(&format!(
        "INSERT INTO {} (name, commit, position) VALUES ('older', 5, 7)",
        table(&store, "projection_checkpoints")
    ))
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(store.load_checkpoint("older").await.unwrap(), Some(Checkpoint::from_parts(5, 7)));
    let mut tx = store.begin().await.unwrap();
    match store.move_checkpoint(&mut tx, "c", Some(at), Checkpoint::from_parts(u64::MAX, 0)).await {
        Err(error @ StoreError::Backend { .. }) => assert!(error.to_string().contains("out of range"), "{error}"),
        other => panic!("expected an out-of-range checkpoint to be refused, got {other:?}"),
    }
}

/// Two processes' cached repositories (two stores on pools of their own, one schema)
/// write the same carts at once: a cache made stale by the other process turns into a
/// conflict, a reload and a new decision, so every command lands exactly once and each
/// cart holds exactly what both wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_repositories_of_two_processes_never_build_a_wrong_state() {
    let first = store().await;
    let pool = PostgresStore::pool_options().connect_with((*first.pool().connect_options()).clone()).await.unwrap();
    let second = PostgresStore::new(pool).with_schema(first.schema().clone());
    let tasks: Vec<_> = [first.clone(), second]
        .into_iter()
        .enumerate()
        .flat_map(|(process, store)| {
            let carts = Repository::<Cart, _>::new(store).with_cache(100);
            (0..2).map(move |task| {
                let carts = carts.clone();
                tokio::spawn(async move {
                    let mut retries = 0;
                    for n in 0..100u32 {
                        let sku = format!("p{process}-t{task}");
                        let done = carts
                            .execute(&format!("c{}", n % 5), AddItem { sku, qty: 1, unit_price_cents: 1 })
                            .await
                            .unwrap();
                        retries += done.attempts - 1;
                    }
                    retries
                })
            })
        })
        .collect();
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let carts = Repository::<Cart, _>::new(first);
    for cart in 0..5 {
        let loaded = carts.load(&format!("c{cart}")).await.unwrap();
        assert_eq!(loaded.version, 80, "c{cart}: 4 tasks × 20 commands");
        assert_eq!(loaded.state.items.len(), 4);
        assert!(loaded.state.items.values().all(|line| line.qty == 20), "c{cart}: {:?}", loaded.state.items);
    }
    assert!(retries > 0, "the processes made each other's caches stale");
    println!("{retries} conflicts retried");
}

/// `Inspect::consumers` names the session that holds a consumer's runner lock (the lock
/// `PgProjectionRunner` takes: `pg_try_advisory_lock` on the consumer's key), and nobody
/// once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_name_who_holds_their_runner_lock() {
    use annals::store::Inspect;
    let store = store().await;
    let mut transaction = store.begin().await.unwrap();
    assert!(store.move_checkpoint(&mut transaction, "ledger", None, Checkpoint::from_parts(1, 2)).await.unwrap());
    store.commit(transaction).await.unwrap();
    let mut holder = store.pool().acquire().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *holder).await.unwrap();
    let key = format!("annals projection {}.ledger", store.schema().as_str());
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(locked);
    let consumers = store.consumers().await.unwrap();
    assert_eq!(consumers.len(), 1);
    let held_by = consumers[0].held_by.clone().unwrap_or_default();
    assert!(held_by.starts_with(&format!("pid {pid} (")), "{held_by}");
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(&key)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert_eq!(store.consumers().await.unwrap()[0].held_by, None);
}

/// Two processes (stores on pools of their own) with 8 tasks each, 800 commands on 40
/// carts they share: group commits write many appends per transaction, and one process's
/// writes make the other's groups fail as a whole (a version taken between its read and
/// its insert); every command lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_of_two_processes_lose_and_duplicate_nothing() {
    let first = store().await;
    let pool = PostgresStore::pool_options().connect_with((*first.pool().connect_options()).clone()).await.unwrap();
    let second = PostgresStore::new(pool).with_schema(first.schema().clone());
    let cart = |task: u32, n: u32| format!("c{}", (task * 7 + n) % 40);
    let tasks: Vec<_> = [first.clone(), second]
        .into_iter()
        .enumerate()
        .flat_map(|(process, store)| {
            let carts = Repository::<Cart, _>::new(store);
            (0..8u32).map(move |task| {
                let carts = carts.clone();
                tokio::spawn(async move {
                    for n in 0..50u32 {
                        let sku = format!("p{process}-t{task}");
                        carts.execute(&cart(task, n), AddItem { sku, qty: 1, unit_price_cents: 1 }).await.unwrap();
                    }
                })
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for task in 0..8 {
        for n in 0..50 {
            *expected.entry(cart(task, n)).or_default() += 2; // once per process
        }
    }
    let carts = Repository::<Cart, _>::new(first.clone());
    for (id, commands) in &expected {
        let loaded = carts.load(id).await.unwrap();
        assert_eq!(loaded.version, *commands, "{id}");
        let history = carts.history(id, ..).await.unwrap();
        assert_eq!(history.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=*commands).collect::<Vec<_>>());
        let qty: u32 = loaded.state.items.values().map(|line| line.qty).sum();
        assert_eq!(u64::from(qty), *commands, "{id}: one item per command");
    }
    let (events, transactions): (i64, i64) =
        sqlx::query_as(&format!("SELECT count(*), count(DISTINCT transaction_id) FROM {}", table(&first, "events")))
            .fetch_one(first.pool())
            .await
            .unwrap();
    assert_eq!(events, 800);
    assert!(transactions < events, "group commits wrote several appends per transaction: {transactions} for {events}");
    println!("{events} events in {transactions} transactions");
}
