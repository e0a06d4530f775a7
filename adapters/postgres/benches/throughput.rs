//! Throughput of annals on PostgreSQL against a hand-written sqlx implementation of the
//! same work, in one run: `cargo bench -p annals-postgres`.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). The raw side has a minimal events table in a schema of its
//! own and does what a hand-written store needs per command: select the stream's events,
//! decode them into the cart, insert the new event with the next version (the unique
//! `(stream_id, version)` index is the expected-version check). Both sides use the same
//! pool settings and the same cart domain.
//!
//! Ratios are annals throughput / raw throughput (for loads: raw time / annals time);
//! 1.00 means annals costs nothing extra, above 1 means annals is faster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{Aggregate, EventSet, EventStore, ExpectedVersion, Handle, NewEvent, Repository, RetryPolicy};
use annals_postgres::sqlx::postgres::PgPool;
use annals_postgres::sqlx::types::Json;
use annals_postgres::sqlx::{self, Row};
use annals_postgres::testing::{database_url, fresh_schema_name, fresh_store};
use annals_postgres::{PostgresStore, SchemaName};
use shopping_cart::{AddItem, Cart, CartEvent, CheckedOut, ItemAdded, ItemRemoved};

const ROUNDS: usize = 3;

fn add(i: u64) -> AddItem {
    AddItem { sku: format!("sku-{}", i % 7), qty: 1 + (i % 3) as u32, unit_price_cents: 100 + i % 50 }
}

/// The hand-written store: the round trips a minimal implementation needs.
#[derive(Clone)]
struct Raw {
    pool: PgPool,
    select: Arc<str>,
    /// One new event: plain `VALUES`, as one would write it by hand.
    insert_one: Arc<str>,
    insert: Arc<str>,
}

impl Raw {
    async fn new(url: &str) -> Raw {
        let pool = PostgresStore::pool_options().max_connections(8).connect(url).await.unwrap();
        let schema = SchemaName::new(format!("raw_{}", fresh_schema_name())).unwrap().quoted();
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.events (
                 global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 stream_id text NOT NULL,
                 version bigint NOT NULL,
                 event_type text NOT NULL,
                 payload jsonb NOT NULL,
                 UNIQUE (stream_id, version));"
        ))
        .execute(&pool)
        .await
        .unwrap();
        Raw {
            pool,
            select: format!(
                "SELECT version, event_type, payload FROM {schema}.events WHERE stream_id = $1 ORDER BY version"
            )
            .into(),
            insert_one: format!(
                "INSERT INTO {schema}.events (stream_id, version, event_type, payload) VALUES ($1, $2 + 1, $3, $4)"
            )
            .into(),
            insert: format!(
                "INSERT INTO {schema}.events (stream_id, version, event_type, payload) \
                 SELECT $1, $2 + n, t, p FROM unnest($3::text[], $4::jsonb[]) WITH ORDINALITY AS x(t, p, n)"
            )
            .into(),
        }
    }

    async fn load(&self, stream: &str) -> (Cart, i64) {
        let rows = sqlx::query(&self.select).bind(stream).fetch_all(&self.pool).await.unwrap();
        let mut cart = Cart::default();
        let mut version = 0;
        for row in rows {
            version = row.get::<i64, _>(0);
            let Json(payload): Json<serde_json::Value> = row.get(2);
            let event: CartEvent = match row.get::<&str, _>(1) {
                "cart.item_added" => serde_json::from_value::<ItemAdded>(payload).unwrap().into(),
                "cart.item_removed" => serde_json::from_value::<ItemRemoved>(payload).unwrap().into(),
                "cart.checked_out" => serde_json::from_value::<CheckedOut>(payload).unwrap().into(),
                other => panic!("unknown event type {other}"),
            };
            cart.apply_event(event);
        }
        (cart, version)
    }

    /// Executes `command`, retrying on a version conflict; returns the number of retries.
    async fn execute<C>(&self, stream: &str, command: &C) -> u32
    where
        Cart: Handle<C>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (cart, version) = self.load(stream).await;
            let events = cart.handle(command).unwrap();
            let inserted = match &events[..] {
                [event] => {
                    sqlx::query(&self.insert_one)
                        .bind(stream)
                        .bind(version)
                        .bind(event.event_type())
                        .bind(Json(event.to_payload().unwrap()))
                        .execute(&self.pool)
                        .await
                }
                _ => {
                    let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
                    let payloads: Vec<Json<serde_json::Value>> =
                        events.iter().map(|e| Json(e.to_payload().unwrap())).collect();
                    sqlx::query(&self.insert)
                        .bind(stream)
                        .bind(version)
                        .bind(types)
                        .bind(payloads)
                        .execute(&self.pool)
                        .await
                }
            };
            match inserted {
                Ok(_) => return attempt - 1,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    tokio::time::sleep(RetryPolicy::default().backoff_for(attempt)).await;
                }
                Err(e) => panic!("raw insert failed: {e}"),
            }
        }
    }

    async fn seed(&self, stream: &str, n: u64) {
        for chunk in (1..=n).collect::<Vec<_>>().chunks(1000) {
            let types: Vec<&str> = chunk.iter().map(|_| "cart.item_added").collect();
            let payloads: Vec<Json<serde_json::Value>> =
                chunk.iter().map(|&i| Json(serde_json::to_value(item(i)).unwrap())).collect();
            sqlx::query(&self.insert)
                .bind(stream)
                .bind(chunk[0] as i64 - 1)
                .bind(types)
                .bind(payloads)
                .execute(&self.pool)
                .await
                .unwrap();
        }
    }
}

trait Backoff {
    fn backoff_for(&self, attempt: u32) -> Duration;
}

impl Backoff for RetryPolicy {
    /// The same randomised exponential back-off the repository uses.
    fn backoff_for(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

fn item(i: u64) -> ItemAdded {
    ItemAdded { sku: format!("sku-{}", i % 7), qty: 1, unit_price_cents: 100 + i % 50 }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ratio(annals: Duration, raw: Duration) -> f64 {
    raw.as_secs_f64() / annals.as_secs_f64()
}

/// Statement executions (each one client/server round trip) of the statements naming
/// `schema`, when pg_stat_statements is available.
async fn statement_calls(pool: &PgPool, schema: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT sum(calls)::int8 FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .ok()
    .flatten()
}

/// Prints the server time per call of the statements executed at least `min_calls` times
/// since the last reset, most called first, when pg_stat_statements is available.
async fn print_server_times(pool: &PgPool, min_calls: i64) {
    let rows: Vec<(String, i64, f64, i64)> = sqlx::query_as(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls, (total_exec_time + total_plan_time) / calls, plans \
         FROM pg_stat_statements WHERE calls >= $1 AND query NOT LIKE '%pg_stat_statements%' \
         ORDER BY calls DESC, query LIMIT 6",
    )
    .bind(min_calls)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for (query, calls, mean, plans) in rows {
        println!("   {calls:>6} calls, {plans:>5} plans, {:>7.1} µs server time per call: {query}", mean * 1e3);
    }
}

async fn reset_statements(pool: &PgPool) -> bool {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(pool).await.is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await.is_ok()
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    let url = database_url().expect("a PostgreSQL server for the benchmark");
    let store = fresh_store().await.unwrap();
    let raw = Raw::new(&url).await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let annals_schema = store.schema().as_str().to_owned();
    println!(
        "annals-postgres throughput: annals (Repository<Cart, PostgresStore>) vs raw sqlx, {} round(s) each, median",
        ROUNDS
    );
    println!(
        "server: {}",
        if std::env::var("DATABASE_URL").is_ok() { "DATABASE_URL" } else { "throwaway (fsync=off)" }
    );

    // Warm up: prepare statements on every connection of both pools.
    for i in 0..200 {
        carts.execute(&format!("warm-{i}"), add(i)).await.unwrap();
        raw.execute(&format!("cart-warm-{i}"), &add(i)).await;
    }

    // 1) 2,000 commands, each on a new stream, one after the other.
    let mut times = (Vec::new(), Vec::new());
    let mut calls = None;
    for round in 0..ROUNDS {
        let counting = round == 0 && reset_statements(store.pool()).await;
        let start = Instant::now();
        for i in 0..2000u64 {
            carts.execute(&format!("w1-{round}-{i}"), add(i)).await.unwrap();
        }
        times.0.push(start.elapsed());
        let start = Instant::now();
        for i in 0..2000u64 {
            raw.execute(&format!("cart-w1-{round}-{i}"), &add(i)).await;
        }
        times.1.push(start.elapsed());
        if counting {
            let schema_raw = raw.select.split('"').nth(1).unwrap_or_default().to_owned();
            calls = Some((
                statement_calls(store.pool(), &annals_schema).await,
                statement_calls(store.pool(), &schema_raw).await,
            ));
        }
    }
    let (a, r) = (median(times.0), median(times.1));
    println!(
        "1) 2,000 commands, each on a new stream, sequential: annals {:>7.1} ms ({:>6.0}/s), raw {:>7.1} ms ({:>6.0}/s), ratio annals/raw {:.2}",
        a.as_secs_f64() * 1e3,
        2000.0 / a.as_secs_f64(),
        r.as_secs_f64() * 1e3,
        2000.0 / r.as_secs_f64(),
        ratio(a, r)
    );
    match calls {
        Some((Some(annals), Some(raw))) => {
            println!(
                "   round trips per command (pg_stat_statements calls / 2,000): annals {:.2}, raw {:.2}",
                annals as f64 / 2000.0,
                raw as f64 / 2000.0
            );
            print_server_times(store.pool(), 100).await;
        }
        _ => println!("   round trips per command: pg_stat_statements unavailable; by the code: annals 2 (read stream, append), raw 2"),
    }

    // 2) 4,000 commands over 400 streams from 8 concurrent tasks.
    let mut times = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let start = Instant::now();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let carts = carts.clone();
                tokio::spawn(async move {
                    for i in 0..500u64 {
                        carts.execute(&format!("w2-{round}-{}", t * 50 + i % 50), add(i)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        times.0.push(start.elapsed());
        let start = Instant::now();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let raw = raw.clone();
                tokio::spawn(async move {
                    for i in 0..500u64 {
                        raw.execute(&format!("cart-w2-{round}-{}", t * 50 + i % 50), &add(i)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        times.1.push(start.elapsed());
    }
    let (a, r) = (median(times.0), median(times.1));
    println!(
        "2) 4,000 commands over 400 streams, 8 tasks:         annals {:>7.1} ms ({:>6.0}/s), raw {:>7.1} ms ({:>6.0}/s), ratio annals/raw {:.2}",
        a.as_secs_f64() * 1e3,
        4000.0 / a.as_secs_f64(),
        r.as_secs_f64() * 1e3,
        4000.0 / r.as_secs_f64(),
        ratio(a, r)
    );

    // 3) Loading an aggregate with 5,000 events, median of 20 loads.
    for chunk in (1..=5000u64).collect::<Vec<_>>().chunks(1000) {
        let events = chunk
            .iter()
            .map(|&i| NewEvent::new("cart.item_added", 1, serde_json::to_value(item(i)).unwrap()))
            .collect();
        store.append("cart-big", ExpectedVersion::Exact(chunk[0] - 1), events).await.unwrap();
    }
    raw.seed("cart-big", 5000).await;
    let (mut annals_loads, mut raw_loads) = (Vec::new(), Vec::new());
    let counting = reset_statements(store.pool()).await;
    for _ in 0..20 {
        let start = Instant::now();
        let loaded = carts.load("big").await.unwrap();
        annals_loads.push(start.elapsed());
        assert_eq!(loaded.version, 5000);
        let start = Instant::now();
        let (cart, version) = raw.load("cart-big").await;
        raw_loads.push(start.elapsed());
        assert_eq!((version, &cart), (5000, &loaded.state));
    }
    let (a, r) = (median(annals_loads), median(raw_loads));
    println!(
        "3) load an aggregate of 5,000 events (median of 20): annals {:>7.2} ms, raw {:>7.2} ms, ratio annals/raw {:.2}",
        a.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        ratio(a, r)
    );
    if counting {
        print_server_times(store.pool(), 20).await;
    }

    // 4) 8 tasks × 100 commands on one stream, retrying on conflicts.
    let contended = carts.clone().with_retry(RetryPolicy { max_attempts: 10_000, ..RetryPolicy::default() });
    let retries = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (carts, retries) = (contended.clone(), retries.clone());
            tokio::spawn(async move {
                for i in 0..100u64 {
                    let done = carts.execute("hot", add(t * 100 + i)).await.unwrap();
                    retries.fetch_add(u64::from(done.attempts - 1), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let a = start.elapsed();
    let annals_retries = retries.load(Ordering::Relaxed);
    let versions: Vec<u64> = carts.history("hot", ..).await.unwrap().iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=800).collect::<Vec<_>>(), "annals: exactly 800 events, contiguous versions");
    let raw_retries = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (raw, retries) = (raw.clone(), raw_retries.clone());
            tokio::spawn(async move {
                for i in 0..100u64 {
                    let r = raw.execute("cart-hot", &add(t * 100 + i)).await;
                    retries.fetch_add(u64::from(r), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let r = start.elapsed();
    let (_, raw_version) = raw.load("cart-hot").await;
    let raw_count: i64 = sqlx::query_scalar(
        &raw.select.replace("version, event_type, payload", "count(*)").replace(" ORDER BY version", ""),
    )
    .bind("cart-hot")
    .fetch_one(&raw.pool)
    .await
    .unwrap();
    assert_eq!((raw_version, raw_count), (800, 800), "raw: exactly 800 events, contiguous versions");
    println!(
        "4) 8 tasks x 100 commands on one stream, retrying: annals {:>7.1} ms ({} retries), raw {:>7.1} ms ({} retries), ratio annals/raw {:.2}; both: 800 events, versions 1..=800",
        a.as_secs_f64() * 1e3,
        annals_retries,
        r.as_secs_f64() * 1e3,
        raw_retries.load(Ordering::Relaxed),
        ratio(a, r)
    );
}
