//! Subscriptions and in-memory projections on the in-memory store.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failed unwrap is a failed test")]

#[path = "suites/subscriptions.rs"]
mod suite;

use annals_memory::MemoryStore;

#[tokio::test]
async fn catch_up_delivers_matching_events_once_in_order() {
    suite::catch_up_delivers_matching_events_once_in_order(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_stream_filter_keeps_only_those_streams() {
    suite::a_stream_filter_keeps_only_those_streams(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_subscription_follows_concurrent_writers() {
    suite::a_running_subscription_follows_concurrent_writers(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_failing_handler_is_retried_without_double_applying() {
    suite::a_failing_handler_is_retried_without_double_applying(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_handler_that_keeps_failing_stops_visibly_and_resumes_after_a_fix() {
    suite::a_handler_that_keeps_failing_stops_visibly_and_resumes_after_a_fix(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_restarted_subscription_resumes_from_the_checkpoint() {
    suite::a_restarted_subscription_resumes_from_the_checkpoint(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_while_running_loses_and_repeats_nothing() {
    suite::a_rebuild_while_running_loses_and_repeats_nothing(MemoryStore::new()).await;
}
