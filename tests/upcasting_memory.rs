//! Schema evolution on the in-memory store: events stored by older code (older versions,
//! older names) load through today's event types. The scenarios live in
//! `suites/upcasting.rs`, generic over the store.

#[path = "suites/upcasting.rs"]
mod upcasting;

use annals_memory::MemoryStore;

#[tokio::test]
async fn old_versions_and_names_upcast() {
    upcasting::old_versions_and_names_upcast(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_newer_version_is_rejected() {
    upcasting::a_newer_version_is_rejected(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_failing_upcaster_names_the_event() {
    upcasting::a_failing_upcaster_names_the_event(MemoryStore::new()).await;
}
