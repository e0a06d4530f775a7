//! Snapshots and time travel on PostgreSQL, plus what only this store can get wrong:
//! stale writes, NUL characters, and the round trips of a load from a snapshot.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "suites/snapshots.rs"]
mod suite;

use annals::snapshot::StoredSnapshot;
use annals::{EventStore, StoreError};
use annals_postgres::testing::fresh_store;
use annals_postgres::PostgresStore;
use serde_json::json;

async fn store() -> PostgresStore {
    fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_n_events_snapshots_and_loads_from_it() {
    suite::every_n_events_snapshots_and_loads_from_it(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_schema_version_is_ignored() {
    suite::a_snapshot_of_another_schema_version_is_ignored(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_decode_is_ignored() {
    suite::a_snapshot_that_does_not_decode_is_ignored(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_triggers_a_snapshot() {
    suite::a_long_read_triggers_a_snapshot(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_after_a_snapshot_see_the_right_state() {
    suite::commands_after_a_snapshot_see_the_right_state(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_time_and_version_range() {
    suite::time_travel_by_time_and_version_range(store().await).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_write_never_replaces_a_newer_snapshot() {
    let store = store().await;
    assert_eq!(store.load_snapshot("s").await.unwrap(), None);
    let newer = snapshot("s", 7, 1, json!({ "n": 7 }));
    store.save_snapshot(newer.clone()).await.unwrap();
    store.save_snapshot(snapshot("s", 3, 1, json!({ "n": 3 }))).await.unwrap();
    let stored = store.load_snapshot("s").await.unwrap().unwrap();
    assert_eq!((stored.stream_version, &stored.state), (7, &newer.state));
    // PostgreSQL keeps microseconds.
    assert!((stored.taken_at - newer.taken_at).num_microseconds().unwrap().abs() <= 1);

    // A newer snapshot replaces it; so does one at the same version by another schema
    // version of the aggregate (after an upgrade, the old one is useless).
    store.save_snapshot(snapshot("s", 9, 1, json!({ "n": 9 }))).await.unwrap();
    assert_eq!(store.load_snapshot("s").await.unwrap().unwrap().state, json!({ "n": 9 }));
    store.save_snapshot(snapshot("s", 9, 2, json!({ "n": "9 v2" }))).await.unwrap();
    let upgraded = store.load_snapshot("s").await.unwrap().unwrap();
    assert_eq!((upgraded.schema_version, upgraded.state), (2, json!({ "n": "9 v2" })));
    // Other streams are untouched.
    assert_eq!(store.load_snapshot("t").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_a_snapshot_are_a_typed_error() {
    let store = store().await;
    for state in [json!({ "text": "a\u{0}b" }), json!({ "list": [{ "k\u{0}": 1 }] })] {
        match store.save_snapshot(snapshot("nul", 1, 1, state)).await {
            Err(error @ StoreError::Backend { .. }) => {
                let message = error.to_string();
                assert!(message.contains("NUL") && message.contains("stream `nul`"), "{message}");
                assert!(!error.is_transient());
            }
            other => panic!("expected a backend error about NUL, got {other:?}"),
        }
    }
    assert_eq!(store.load_snapshot("nul").await.unwrap(), None);
    assert!(matches!(
        store.save_snapshot(snapshot("a\u{0}b", 1, 1, json!({}))).await,
        Err(StoreError::InvalidStreamId { .. })
    ));
    assert_eq!(store.load_snapshot("a\u{0}b").await.unwrap(), None);
}
