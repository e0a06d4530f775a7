//! Rows PostgreSQL holds but annals never writes (edited by hand, restored from an old
//! backup, written by another tool): every read reports them as a typed
//! `StoreError::Corrupt` naming stream, version and position, never a panic (a payload
//! PostgreSQL accepts as JSON but serde_json cannot read fails where it is decoded, as a
//! `DecodeError` naming the event); the schema refuses new ones; the feed delivers a bad
//! row in its place as a damaged event, which consumers stop at or park.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use annals::snapshot::SnapshotPolicy;
use annals::store::{Checkpoint, EventFeed, Filter};
use annals::{EventStore, LoadError, Repository, StoreError, VersionRange};
use annals_postgres::testing::{fresh_store, insert_event_row};
use annals_postgres::{sqlx, PostgresStore, SchemaName};
use futures::TryStreamExt;
use shopping_cart::{AddItem, Cart};

async fn store() -> PostgresStore {
    fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

fn add(sku: &str) -> AddItem {
    AddItem { sku: sku.into(), qty: 1, unit_price_cents: 100 }
}

async fn execute(store: &PostgresStore, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sql.replace("{schema}", &store.schema().quoted());
    sqlx::raw_sql(&sql).execute(store.pool()).await.map(|_| ())
}

/// `'infinity'`, `'-infinity'` and a year chrono cannot hold, in `recorded_at` of a row
/// stored before the schema refused them: stream reads, loads as of a time and the feed
/// report the event as corrupt (sqlx's own chrono decoding panics on these); the good
/// event before it is still in the feed; a load, which does not read times, is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_annals_cannot_represent_are_corrupt_events_not_panics() {
    for (n, time) in ["'infinity'", "'-infinity'", "'270000-01-01'"].into_iter().enumerate() {
        let store = store().await;
        let carts = Repository::<Cart, _>::new(store.clone());
        carts.execute("t", add("tea")).await.unwrap();
        carts.execute("t", add("mug")).await.unwrap();
        // The schema refuses such a time now ...
        let refused =
            execute(&store, &format!("UPDATE {{schema}}.events SET recorded_at = {time} WHERE stream_version = 2"))
                .await;
        assert!(refused.is_err_and(|e| e.to_string().contains("events_recorded_at_finite")), "{time}");
        // ... so make it as an old row would be.
        execute(&store, "ALTER TABLE {schema}.events DROP CONSTRAINT events_recorded_at_finite").await.unwrap();
        execute(&store, &format!("UPDATE {{schema}}.events SET recorded_at = {time} WHERE stream_version = 2"))
            .await
            .unwrap();

        // A read of the events, and a load as of a time, which reads the times.
        let read: Result<Vec<_>, _> = store.read_stream("cart-t", VersionRange::ALL).try_collect().await;
        let as_of = carts.load_as_of("t", chrono::Utc::now()).await.map(|loaded| loaded.version);
        for result in [read.map(|events| events.len() as u64).map_err(LoadError::Store), as_of] {
            match result {
                Err(LoadError::Store(StoreError::Corrupt { stream, version, position, detail })) => {
                    assert_eq!((stream.as_str(), version, position), ("cart-t", Some(2), Some(2)), "{time}");
                    assert!(detail.contains("recorded_at"), "{time}: {detail}");
                }
                other => panic!("{time}: expected a corrupt event, got {other:?}"),
            }
        }
        // A load folds the events without reading their times: the state is whole.
        let loaded = carts.load("t").await.unwrap();
        assert_eq!((loaded.version, loaded.state.items.len()), (2, 2), "{time}");
        // The feed delivers the good event and the bad one in its place, as damaged.
        let feed = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
        let damage: Vec<_> = feed.events.iter().map(|e| e.damage.as_deref()).collect();
        assert!(matches!(damage[..], [None, Some(d)] if d.contains("recorded_at")), "{time} ({n}): {damage:?}");
    }
}

/// Metadata that does not read back is a corrupt event naming where it is, for every read
/// that returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_and_metadata_that_do_not_read_back_are_corrupt() {
    let store = store().await;
    let carts = Repository::<Cart, _>::new(store.clone());
    carts.execute("m", add("tea")).await.unwrap();
    execute(&store, "ALTER TABLE {schema}.events DROP CONSTRAINT events_metadata_is_object").await.unwrap();
    execute(&store, "UPDATE {schema}.events SET metadata = '[]'").await.unwrap();
    let read: Result<Vec<_>, _> = store.read_stream("cart-m", VersionRange::ALL).try_collect().await;
    match read {
        Err(StoreError::Corrupt { stream, version, detail, .. }) => {
            assert_eq!((stream.as_str(), version), ("cart-m", Some(1)));
            assert!(detail.contains("metadata"), "{detail}");
        }
        other => panic!("expected a corrupt event, got {other:?}"),
    }
    // A load folds the events without reading their metadata.
    assert_eq!(carts.load("m").await.unwrap().version, 1);
}

/// A snapshot whose `taken_at` is `'infinity'` is reported by the store as corrupt and
/// ignored by the repository, which rebuilds the state from the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_is_ignored() {
    let store = store().await;
    let carts = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1));
    carts.execute("s", add("tea")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // the background snapshot
    execute(&store, "ALTER TABLE {schema}.snapshots DROP CONSTRAINT snapshots_taken_at_finite").await.unwrap();
    execute(&store, "UPDATE {schema}.snapshots SET taken_at = 'infinity'").await.unwrap();
    let loaded = carts.load("s").await.unwrap();
    assert_eq!((loaded.version, loaded.state.items["tea"].qty), (1, 1));
    assert_eq!(carts.execute("s", add("mug")).await.unwrap().version, 2);
}

/// PostgreSQL's own schemas, and the shared `public`, are refused as the store's schema.
#[test]
fn system_schemas_are_refused() {
    for name in ["information_schema", "public", "pg_catalog", "pg_toast"] {
        let error = SchemaName::new(name).unwrap_err();
        assert!(error.to_string().contains(name), "{error}");
    }
}

/// The store's futures are `Send`: they run in `tokio::spawn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_futures_can_be_spawned() {
    let store = store().await;
    let migrated = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    migrated.await.unwrap().unwrap();
    let appended = tokio::spawn(async move {
        Repository::<Cart, _>::new(store).execute("spawned", add("tea")).await.map(|done| done.version)
    });
    assert_eq!(appended.await.unwrap().unwrap(), 1);
}

/// A row whose metadata is not an object (stored before migration 5 refused it) is a
/// damaged event in the feed: a consumer stops at it or parks it, and after the row is
/// repaired, retrying applies it (the shared case of `annals::conformance::poison`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_is_parked_and_retried_after_a_repair() {
    let store = store().await;
    annals::conformance::poison::a_damaged_row_stops_a_consumer_or_is_parked_and_retried_after_a_repair(
        store,
        async |store: &PostgresStore| {
            execute(store, "ALTER TABLE {schema}.events DROP CONSTRAINT events_metadata_is_object").await.unwrap();
            execute(store, "UPDATE {schema}.events SET metadata = '[]' WHERE stream_id = 's-1' AND stream_version = 2")
                .await
                .unwrap();
        },
        async |store: &PostgresStore| {
            execute(store, "UPDATE {schema}.events SET metadata = '{}' WHERE stream_id = 's-1' AND stream_version = 2")
                .await
                .unwrap();
        },
    )
    .await;
}

/// A payload is returned as the text PostgreSQL's `json` column keeps, byte for byte, and
/// parsed only when the event is decoded. Text PostgreSQL accepts as JSON but serde_json
/// cannot read (a number beyond `f64`, a lone surrogate) therefore does not stop a read:
/// the load fails at that event with a decode error naming it, the feed delivers it
/// undamaged, and a consumer decoding it gets the same error (and parks or stops there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_returned_as_stored_and_unreadable_ones_fail_where_decoded() {
    use annals::DecodeError;
    for (n, unreadable, says) in
        [(0, r#"{"sku": "tea", "qty": 1e400}"#, "number out of range"), (1, r#"{"sku": "\ud800"}"#, "escape")]
    {
        let store = store().await;
        let carts = Repository::<Cart, _>::new(store.clone());
        carts.execute("p", add("tea")).await.unwrap();
        let spaced = r#"{ "sku" : "mug",  "qty": 2, "unit_price_cents": 300 }"#;
        for (version, payload) in [(2, spaced), (3, unreadable)] {
            insert_event_row(&store, "cart-p", version, payload).await.unwrap();
        }
        match carts.load("p").await {
            Err(LoadError::Decode(DecodeError::Payload { stream, version, event_type, source, .. })) => {
                assert_eq!((stream.as_str(), version, event_type.as_str()), ("cart-p", 3, "cart.item_added"), "{n}");
                assert!(source.to_string().contains(says), "{n}: {source}");
            }
            other => panic!("{n}: expected a payload decode error, got {other:?}"),
        }
        // Other tests' open transactions on the shared server hold the feed's horizon back
        // for a moment: wait until the three events are readable.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let feed = loop {
            let feed = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
            if feed.events.len() == 3 || std::time::Instant::now() > deadline {
                break feed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(feed.events.iter().all(|e| e.damage.is_none()), "{n}: nothing is damaged");
        let payloads: Vec<_> = feed.events.iter().map(|e| e.envelope.payload.json_text().into_owned()).collect();
        assert_eq!(payloads[1..], [spaced.to_owned(), unreadable.to_owned()], "{n}: the stored text, as stored");
        let decoded = feed.events[1].envelope.decode::<shopping_cart::ItemAdded>().unwrap();
        assert_eq!((decoded.sku.as_str(), decoded.qty), ("mug", 2), "{n}");
        let error = feed.events[2].envelope.decode::<shopping_cart::ItemAdded>().unwrap_err();
        assert!(matches!(error, DecodeError::Payload { version: 3, .. }), "{n}: {error}");
    }
}
