//! Load time of an aggregate with 100,000 events, with and without a snapshot at its
//! head: `cargo bench -p annals-postgres --bench snapshots`.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). One cart receives 100,000 `cart.item_added` events,
//! appended in batches of 1,000; then the median of 10 loads is taken by a repository
//! without snapshots (one stream read of 100,000 events) and by one with snapshots, after
//! a snapshot at the head was stored (one snapshot read, one read of the empty tail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

#[path = "support/statements.rs"]
mod statements;
use statements::reset_statements;

use std::time::{Duration, Instant};

use annals::snapshot::{Snapshot, SnapshotPolicy};
use annals::store::{SnapshotStore, StoredSnapshot};
use annals::{EventStore, ExpectedVersion, NewEvent, Repository};
use annals_postgres::sqlx::{self, postgres::PgPool};
use annals_postgres::testing::fresh_store;
use shopping_cart::{Cart, ItemAdded};

const EVENTS: u64 = 100_000;
const BATCH: u64 = 1_000;
const LOADS: usize = 10;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Statement executions (one round trip each) in `schema` since the last reset, when
/// pg_stat_statements is available.
async fn statement_calls(pool: &PgPool, schema: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT sum(calls)::int8 FROM pg_stat_statements \
         WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .ok()
    .flatten()
}
fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    let store = fresh_store().await.expect("a PostgreSQL server for the benchmark");
    let schema = store.schema().as_str().to_owned();
    println!("annals-postgres snapshots: load of one cart with {EVENTS} events, median of {LOADS} loads");
    println!(
        "server: {}",
        if std::env::var("DATABASE_URL").is_ok() { "DATABASE_URL" } else { "throwaway (fsync=off)" }
    );

    let start = Instant::now();
    for first in (1..=EVENTS).step_by(BATCH as usize) {
        let events = (first..first + BATCH)
            .map(|i| {
                let item = ItemAdded { sku: format!("sku-{}", i % 50), qty: 1, unit_price_cents: 100 + i % 50 };
                NewEvent::new("cart.item_added", 1, serde_json::to_value(item).unwrap())
            })
            .collect();
        store.append("cart-big", ExpectedVersion::Exact(first - 1), events).await.unwrap();
    }
    println!("appended {EVENTS} events in batches of {BATCH} in {:.2} s", start.elapsed().as_secs_f64());

    // Without snapshots: every load reads the whole stream.
    let plain = Repository::<Cart, _>::new(store.clone());
    let full = plain.load("big").await.unwrap(); // warm-up
    assert_eq!(full.version, EVENTS);
    let counting = reset_statements(store.pool()).await;
    let mut times = Vec::new();
    for _ in 0..LOADS {
        let start = Instant::now();
        let loaded = plain.load("big").await.unwrap();
        times.push(start.elapsed());
        assert_eq!(loaded.version, EVENTS);
    }
    let without = median(times);
    let plain_calls = if counting { statement_calls(store.pool(), &schema).await } else { None };

    // With a snapshot at the head: a policy that never writes, and one stored snapshot.
    store
        .save_snapshot(StoredSnapshot {
            stream_id: "cart-big".into(),
            stream_version: EVENTS,
            schema_version: Cart::SNAPSHOT_VERSION,
            state: serde_json::to_value(&full.state).unwrap(),
            taken_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let snapshotted = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::AfterReading(u64::MAX));
    assert_eq!(snapshotted.load("big").await.unwrap(), full, "snapshot + empty tail equals the full replay");
    let counting = reset_statements(store.pool()).await;
    let mut times = Vec::new();
    for _ in 0..LOADS {
        let start = Instant::now();
        let loaded = snapshotted.load("big").await.unwrap();
        times.push(start.elapsed());
        assert_eq!(loaded.version, EVENTS);
    }
    let with = median(times);
    let snapshot_calls = if counting { statement_calls(store.pool(), &schema).await } else { None };

    println!(
        "load without snapshot: {:>9.2} ms (reads {EVENTS} events)\n\
         load with snapshot:    {:>9.2} ms (reads the snapshot, then the events after it: none)\n\
         ratio without/with: {:.0}x faster with the snapshot",
        without.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        without.as_secs_f64() / with.as_secs_f64()
    );
    match (plain_calls, snapshot_calls) {
        (Some(plain), Some(snapshot)) => println!(
            "round trips per load (pg_stat_statements calls / {LOADS}): without snapshot {:.1}, with snapshot {:.1}",
            plain as f64 / LOADS as f64,
            snapshot as f64 / LOADS as f64
        ),
        _ => println!(
            "round trips per load: pg_stat_statements unavailable; by the code: without snapshot 1 (stream read), \
             with snapshot 2 (snapshot read, tail read)"
        ),
    }
}
