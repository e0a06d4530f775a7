//! Every conformance suite of annals, against the in-memory store.

annals::conformance_tests!(async { annals_memory::MemoryStore::new() });
