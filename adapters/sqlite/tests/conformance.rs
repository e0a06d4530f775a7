//! Every conformance suite of annals, against a fresh SQLite store in a temporary file.

annals::conformance_tests!(async { annals_sqlite::testing::fresh_store().await });
