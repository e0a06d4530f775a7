//! Catch-up over a freshly loaded events table that was never analyzed (a bulk load, a
//! restore, autovacuum off or not run yet) against the same table analyzed, in one run:
//! `cargo bench -p annals-postgres --bench catch_up_unanalyzed`.
//!
//! 206,000 `cart.item_added` events appended in batches of 1,000 into two fresh schemas;
//! autovacuum is disabled on the first one's events table, so it has no statistics at
//! all; the second one is analyzed. Each is caught up through `Subscription` into an
//! `InMemoryProjection`, pages of 500 (the default). Best of 2 rounds each; the plan of a
//! page read is printed for both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::subscription::{InMemoryProjection, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_postgres::sqlx;
use annals_postgres::testing::fresh_store;
use annals_postgres::PostgresStore;
use shopping_cart::ItemAdded;

const EVENTS: u64 = 206_000;
const ROUNDS: usize = 2;

#[derive(Projection, Default)]
#[projection(name = "units_in_memory", events(ItemAdded))]
struct UnitsInMemory {
    units: u64,
}

impl On<ItemAdded> for UnitsInMemory {
    async fn on(&mut self, e: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        self.units += u64::from(e.qty);
        Ok(())
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn load(store: &PostgresStore) {
    let writers = (0..4u64).map(|w| {
        let store = store.clone();
        async move {
            for chunk in (w..EVENTS / 1000).step_by(4) {
                let events = (0..1000)
                    .map(|i| {
                        let e =
                            ItemAdded { sku: format!("sku-{}", i % 7), qty: 1 + (i % 3) as u32, unit_price_cents: 100 };
                        NewEvent::new("cart.item_added", 1, serde_json::to_value(e).unwrap())
                    })
                    .collect();
                store.append(&format!("cart-{}", chunk % 100), ExpectedVersion::Any, events).await.unwrap();
            }
        }
    });
    futures::future::join_all(writers).await;
}

/// Catches up `rounds` times; the best time.
async fn catch_up(store: &PostgresStore, expected: u64) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let view = InMemoryProjection::new(UnitsInMemory::default());
        Subscription::new(store.clone(), view.clone())
            .options(SubscriptionOptions::default())
            .catch_up()
            .await
            .unwrap();
        best = best.min(start.elapsed());
        assert_eq!(view.read().await.units, expected);
    }
    best
}

/// The plan of the first page read of a catch-up (from the start, filtered by event type as
/// a projection's subscription is), planned for the bound values (`plan_cache_mode`).
async fn plan(store: &PostgresStore, mode: &str) -> String {
    let mut conn = store.pool().acquire().await.unwrap();
    let feed = annals_postgres::feed::page_sql_for_benchmarks(store, false, 500);
    sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}")).execute(&mut *conn).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {feed}"))
        .bind(0i64)
        .bind(0i64)
        .bind(vec!["cart.item_added".to_owned()])
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql("RESET plan_cache_mode").execute(&mut *conn).await.unwrap();
    rows.into_iter()
        .filter(|l| l.contains("Scan") || l.contains("Sort") || l.contains("Execution"))
        .map(|l| format!("    {}", l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn bench() {
    println!("annals-postgres catch-up over {EVENTS} events, never analyzed vs analyzed, best of {ROUNDS}");
    let unanalyzed = fresh_store().await.unwrap();
    let analyzed = fresh_store().await.unwrap();
    let events = format!("{}.events", unanalyzed.schema().quoted());
    sqlx::raw_sql(&format!("ALTER TABLE {events} SET (autovacuum_enabled = false)"))
        .execute(unanalyzed.pool())
        .await
        .unwrap();
    load(&unanalyzed).await;
    load(&analyzed).await;
    sqlx::raw_sql(&format!("VACUUM ANALYZE {}.events", analyzed.schema().quoted()))
        .execute(analyzed.pool())
        .await
        .unwrap();
    let never: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(&format!(
        "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables WHERE relid = '{events}'::regclass"
    ))
    .fetch_one(unanalyzed.pool())
    .await
    .unwrap();
    assert!(never.is_none(), "the first table must never have been analyzed");

    let expected: u64 = (0..1000u64).map(|i| 1 + i % 3).sum::<u64>() * (EVENTS / 1000);
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        println!("page plan ({mode}), never analyzed:\n{}", plan(&unanalyzed, mode).await);
        println!("page plan ({mode}), analyzed:\n{}", plan(&analyzed, mode).await);
    }
    let slow = catch_up(&unanalyzed, expected).await;
    let fast = catch_up(&analyzed, expected).await;
    println!("never analyzed: {:>8.0} events/s ({:>7.1} ms)", rate(slow), slow.as_secs_f64() * 1e3);
    println!("analyzed:       {:>8.0} events/s ({:>7.1} ms)", rate(fast), fast.as_secs_f64() * 1e3);
    println!("never analyzed / analyzed: {:.2}", rate(slow) / rate(fast));
}
