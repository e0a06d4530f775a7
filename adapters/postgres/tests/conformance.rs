//! Every conformance suite of annals against PostgreSQL, each case in a fresh schema on
//! the test server (`DATABASE_URL`, or a throwaway server: see `annals_postgres::testing`).
#![allow(clippy::expect_used, reason = "test code: a failed expect is a failed test")]

annals::conformance_tests!(async {
    annals_postgres::testing::fresh_store().await.expect("a PostgreSQL store in a fresh schema")
});
