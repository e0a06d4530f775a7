//! Schema evolution on PostgreSQL: events stored by older code (older versions,
//! older names) load through today's event types. The scenarios live in
//! `suites/upcasting.rs`, generic over the store.
#![allow(clippy::expect_used, reason = "test code: a failed expect is a failed test")]

#[path = "suites/upcasting.rs"]
mod upcasting;

use annals_postgres::PostgresStore;

async fn store() -> PostgresStore {
    annals_postgres::testing::fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

#[tokio::test]
async fn old_versions_and_names_upcast() {
    upcasting::old_versions_and_names_upcast(store().await).await;
}

#[tokio::test]
async fn a_newer_version_is_rejected() {
    upcasting::a_newer_version_is_rejected(store().await).await;
}

#[tokio::test]
async fn a_failing_upcaster_names_the_event() {
    upcasting::a_failing_upcaster_names_the_event(store().await).await;
}
