//! Snapshots and time travel on the in-memory store.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failed unwrap is a failed test")]

#[path = "suites/snapshots.rs"]
mod suite;

use annals_memory::MemoryStore;

#[tokio::test]
async fn every_n_events_snapshots_and_loads_from_it() {
    suite::every_n_events_snapshots_and_loads_from_it(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_snapshot_of_another_schema_version_is_ignored() {
    suite::a_snapshot_of_another_schema_version_is_ignored(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_snapshot_that_does_not_decode_is_ignored() {
    suite::a_snapshot_that_does_not_decode_is_ignored(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_long_read_triggers_a_snapshot() {
    suite::a_long_read_triggers_a_snapshot(MemoryStore::new()).await;
}

#[tokio::test]
async fn commands_after_a_snapshot_see_the_right_state() {
    suite::commands_after_a_snapshot_see_the_right_state(MemoryStore::new()).await;
}

#[tokio::test]
async fn time_travel_by_time_and_version_range() {
    suite::time_travel_by_time_and_version_range(MemoryStore::new()).await;
}
