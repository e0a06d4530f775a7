//! Throughput of annals on SQLite against hand-written sqlx doing the same work, in one
//! run: `cargo bench -p annals-sqlite`.
//!
//! Both sides run on files in the system's temporary directory with the store's
//! connection settings (WAL, `synchronous = FULL`: an fsync per commit, busy timeout
//! 5 s) and pool settings, on the shopping-cart domain:
//!
//! - **annals**: `Repository<Cart, SqliteStore>`, `Subscription` into an
//!   `InMemoryProjection`;
//! - **raw**: a minimal events table (position, stream, version, type, payload; unique
//!   `(stream, version)`), and what a careful hand-written store does per command: select
//!   the stream's events, decode them into the cart, decide, insert the new event at the
//!   next version in one autocommit statement (the unique index is the expected-version
//!   check; a violation reloads and retries). Its writers take turns on an async mutex,
//!   as annals' do, instead of sleeping in SQLite's busy handler.
//!
//! A ratio is annals / raw in throughput: 1.00 means annals costs nothing over the
//! hand-written code. Statement counts are per operation, by construction of each side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::subscription::{InMemoryProjection, Subscription};
use annals::{NewEvent, RetryPolicy};
use annals_sqlite::sqlx::sqlite::SqlitePool;
use annals_sqlite::sqlx::{self, Row};
use annals_sqlite::testing::{fresh_store, TempDir};
use annals_sqlite::SqliteStore;
use shopping_cart::{AddItem, Cart, CartEvent, CheckedOut, ItemAdded, ItemRemoved};

/// Workload 1: commands, each on a new cart.
const SEQUENTIAL: u64 = 2_000;
/// Workload 2: tasks, streams and commands per task.
const TASKS: u64 = 8;
const STREAMS: u64 = 400;
const PER_TASK: u64 = 400;
/// Workload 3: events of the hydrated cart, and loads measured.
const HYDRATE: u64 = 10_000;
const LOADS: usize = 11;
/// Workload 4: events caught up with, in carts of `CATCH_UP_PER_CART`.
const CATCH_UP: u64 = 100_000;
const CATCH_UP_PER_CART: u64 = 100;
/// Rounds of workloads 1, 2 and 4.
const ROUNDS: usize = 3;

fn add(i: u64) -> AddItem {
    AddItem { sku: format!("sku-{}", i % 7), qty: 1 + u32::try_from(i % 3).unwrap(), unit_price_cents: 100 + i % 50 }
}

fn added(i: u64) -> ItemAdded {
    let AddItem { sku, qty, unit_price_cents } = add(i);
    ItemAdded { sku, qty, unit_price_cents }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The hand-written store.
#[derive(Clone)]
struct Raw {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    _dir: Arc<TempDir>,
}

impl Raw {
    async fn new() -> Raw {
        let dir = TempDir::new().unwrap();
        let pool = SqliteStore::pool_options().connect_with(SqliteStore::file_options(dir.database())).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE events (
                 position INTEGER PRIMARY KEY,
                 stream_id TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 event_type TEXT NOT NULL,
                 payload TEXT NOT NULL,
                 UNIQUE (stream_id, version))",
        )
        .execute(&pool)
        .await
        .unwrap();
        Raw { pool, writer: Arc::default(), _dir: Arc::new(dir) }
    }

    fn decode(event_type: &str, payload: &str) -> CartEvent {
        match event_type {
            "cart.item_added" => serde_json::from_str::<ItemAdded>(payload).unwrap().into(),
            "cart.item_removed" => serde_json::from_str::<ItemRemoved>(payload).unwrap().into(),
            "cart.checked_out" => serde_json::from_str::<CheckedOut>(payload).unwrap().into(),
            other => panic!("unknown event type {other}"),
        }
    }

    /// 1 statement.
    async fn load(&self, stream: &str) -> (Cart, i64) {
        let rows = sqlx::query("SELECT version, event_type, payload FROM events WHERE stream_id = ?1 ORDER BY version")
            .bind(stream)
            .fetch_all(&self.pool)
            .await
            .unwrap();
        let mut cart = Cart::default();
        let mut version = 0;
        for row in &rows {
            version = row.get("version");
            cart.apply_event(Self::decode(row.get("event_type"), row.get("payload")));
        }
        (cart, version)
    }

    /// Load, decide, insert: 2 statements, more on a conflict.
    async fn execute(&self, stream: &str, command: &AddItem) {
        loop {
            let (cart, version) = self.load(stream).await;
            let events = cart.handle(command).unwrap();
            let _writer = self.writer.lock().await;
            let mut conflict = false;
            for (offset, event) in (1..).zip(&events) {
                let inserted =
                    sqlx::query("INSERT INTO events (stream_id, version, event_type, payload) VALUES (?1, ?2, ?3, ?4)")
                        .bind(stream)
                        .bind(version + offset)
                        .bind(event.event_type())
                        .bind(serde_json::to_string(&event.to_payload().unwrap()).unwrap())
                        .execute(&self.pool)
                        .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => conflict = true,
                    Err(e) => panic!("{e}"),
                }
            }
            if !conflict {
                return;
            }
        }
    }

    /// Inserts `count` item-added events into `stream` in one transaction.
    async fn insert_many(&self, stream: &str, first: u64, count: u64) {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let start: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = ?1")
            .bind(stream)
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
        for i in 0..count {
            sqlx::query("INSERT INTO events (stream_id, version, event_type, payload) VALUES (?1, ?2, ?3, ?4)")
                .bind(stream)
                .bind(start + i64::try_from(i).unwrap() + 1)
                .bind("cart.item_added")
                .bind(serde_json::to_string(&added(first + i)).unwrap())
                .execute(&mut *transaction)
                .await
                .unwrap();
        }
        transaction.commit().await.unwrap();
    }
}

/// What the catch-up feeds: units per cart and the number of checkouts.
#[derive(Projection, Default)]
#[projection(name = "cart_units", events(ItemAdded, ItemRemoved, CheckedOut))]
struct CartUnits {
    units: HashMap<String, i64>,
    checkouts: u64,
}

impl CartUnits {
    fn apply(&mut self, stream: &str, event: CartEvent) {
        match event {
            CartEvent::ItemAdded(e) => *self.units.entry(stream.to_owned()).or_default() += i64::from(e.qty),
            CartEvent::ItemRemoved(e) => *self.units.entry(stream.to_owned()).or_default() -= i64::from(e.qty),
            CartEvent::CheckedOut(_) => self.checkouts += 1,
        }
    }
}

impl On<ItemAdded> for CartUnits {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.apply(&envelope.stream_id, e.into());
        Ok(())
    }
}

impl On<ItemRemoved> for CartUnits {
    async fn on(&mut self, e: ItemRemoved, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.apply(&envelope.stream_id, e.into());
        Ok(())
    }
}

impl On<CheckedOut> for CartUnits {
    async fn on(&mut self, e: CheckedOut, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.apply(&envelope.stream_id, e.into());
        Ok(())
    }
}

fn line(label: &str, annals: f64, raw: f64, unit: &str) {
    println!("{label:<50} annals {annals:>9.0} {unit}  raw {raw:>9.0} {unit}  ratio {:.2}", annals / raw);
}

/// The median of `ROUNDS` throughputs.
fn median_rate(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Workload 1 on annals: commands, each on a new cart, one after the other.
async fn sequential_annals() -> f64 {
    let carts = Repository::<Cart, _>::new(fresh_store().await);
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        carts.execute(&i.to_string(), add(i)).await.unwrap();
    }
    per_second(SEQUENTIAL, started.elapsed())
}

async fn sequential_raw() -> f64 {
    let raw = Raw::new().await;
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        raw.execute(&format!("cart-{i}"), &add(i)).await;
    }
    per_second(SEQUENTIAL, started.elapsed())
}

/// Workload 2 on annals: commands over `STREAMS` carts from `TASKS` tasks; returns the
/// throughput and the commands retried after a conflict.
async fn concurrent_annals() -> (f64, u32) {
    let carts = Repository::<Cart, _>::new(fresh_store().await).with_retry(RetryPolicy {
        max_attempts: 100,
        backoff: Duration::from_micros(100),
        ..RetryPolicy::default()
    });
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let carts = carts.clone();
        handles.push(tokio::spawn(async move {
            let mut retries = 0;
            for i in 0..PER_TASK {
                let committed = carts.execute(&((t * PER_TASK + i) % STREAMS).to_string(), add(i)).await.unwrap();
                retries += committed.attempts - 1;
            }
            retries
        }));
    }
    let mut retries = 0;
    for handle in handles {
        retries += handle.await.unwrap();
    }
    (per_second(TASKS * PER_TASK, started.elapsed()), retries)
}

async fn concurrent_raw() -> f64 {
    let raw = Raw::new().await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let raw = raw.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                raw.execute(&format!("cart-{}", (t * PER_TASK + i) % STREAMS), &add(i)).await;
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    per_second(TASKS * PER_TASK, started.elapsed())
}

/// Workload 5: `TASKS` tasks × 100 commands on one cart, through a repository with a
/// cache if `cached`; returns the throughput and the commands decided again.
async fn hot_annals(cached: bool) -> (f64, u32) {
    let store = fresh_store().await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let carts = if cached { carts.with_cache(10) } else { carts };
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let carts = carts.clone();
        handles.push(tokio::spawn(async move {
            let mut retries = 0;
            for i in 0..100 {
                retries += carts.execute("hot", add(t * 100 + i)).await.unwrap().attempts - 1;
            }
            retries
        }));
    }
    let mut retries = 0;
    for handle in handles {
        retries += handle.await.unwrap();
    }
    let rate = per_second(TASKS * 100, started.elapsed());
    assert_eq!(store.stream_version("cart-hot").await.unwrap(), TASKS * 100);
    (rate, retries)
}

async fn hot_raw() -> f64 {
    let raw = Raw::new().await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let raw = raw.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..100 {
                raw.execute("cart-hot", &add(t * 100 + i)).await;
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    per_second(TASKS * 100, started.elapsed())
}

/// Workload 4 on annals: a subscription catching up with every event of `store` into a
/// fresh in-memory projection.
async fn catch_up_annals(store: &SqliteStore) -> Duration {
    let view = InMemoryProjection::new(CartUnits::default());
    let started = Instant::now();
    Subscription::new(store.clone(), view.clone()).catch_up().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(view.read().await.units.len(), usize::try_from(CATCH_UP / CATCH_UP_PER_CART).unwrap());
    elapsed
}

async fn catch_up_raw(raw: &Raw) -> Duration {
    let started = Instant::now();
    let mut units = CartUnits::default();
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT position, stream_id, event_type, payload FROM events WHERE position > ?1 ORDER BY position LIMIT 500",
        )
        .bind(after)
        .fetch_all(&raw.pool)
        .await
        .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.get("position");
        for row in &rows {
            units.apply(row.get("stream_id"), Raw::decode(row.get("event_type"), row.get("payload")));
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(units.units.len(), usize::try_from(CATCH_UP / CATCH_UP_PER_CART).unwrap());
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let probe = fresh_store().await;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(probe.pool()).await.unwrap();
    let load: String = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "annals-sqlite, release build, {} cores (load average {}), SQLite {version}, WAL, synchronous = FULL, files in {}",
        std::thread::available_parallelism().unwrap().get(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        std::env::temp_dir().display()
    );
    println!("workloads 1, 2 and 4: median of {ROUNDS} rounds, annals and raw alternating; a fresh file per round");
    drop(probe);

    // 1. Commands, each on a new cart, one after the other.
    let (mut annals, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        annals.push(sequential_annals().await);
        raw.push(sequential_raw().await);
    }
    line(&format!("1. {SEQUENTIAL} commands on new carts, one task"), median_rate(annals), median_rate(raw), "cmd/s");
    println!("   statements per command: annals 2 (read a page of the stream; INSERT ... SELECT checking the version), raw 2 (select; insert)");

    // 2. Commands over 400 carts from 8 concurrent tasks (conflicts reload and retry).
    let (mut annals, mut raw, mut retries) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (rate, retried) = concurrent_annals().await;
        annals.push(rate);
        retries.push(retried);
        raw.push(concurrent_raw().await);
    }
    let total = TASKS * PER_TASK;
    line(
        &format!("2. {total} commands over {STREAMS} carts, {TASKS} tasks"),
        median_rate(annals),
        median_rate(raw),
        "cmd/s",
    );
    println!("   annals retried {retries:?} commands after a conflict (per round)");

    // 3. Hydration: load one cart of 10,000 events (median of 11 loads, alternating).
    let store = fresh_store().await;
    for chunk in 0..HYDRATE / 1_000 {
        let events = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|i| NewEvent::new("cart.item_added", 1, serde_json::to_value(added(i)).unwrap()))
            .collect();
        store.append("cart-big", ExpectedVersion::Any, events).await.unwrap();
    }
    let carts = Repository::<Cart, _>::new(store);
    let raw = Raw::new().await;
    raw.insert_many("cart-big", 0, HYDRATE).await;
    let (mut annals, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..LOADS {
        let started = Instant::now();
        let loaded = carts.load("big").await.unwrap();
        annals.push(started.elapsed());
        assert_eq!(loaded.version, HYDRATE);
        let started = Instant::now();
        let (_, version) = raw.load("cart-big").await;
        raws.push(started.elapsed());
        assert_eq!(version, i64::try_from(HYDRATE).unwrap());
    }
    let (annals, raw_load) = (median(annals), median(raws));
    line(
        &format!("3. load a cart of {HYDRATE} events (median of {LOADS})"),
        per_second(HYDRATE, annals),
        per_second(HYDRATE, raw_load),
        "ev/s ",
    );
    println!(
        "   per load: annals {annals:.2?} in {} statements (pages of 500), raw {raw_load:.2?} in 1",
        HYDRATE / 500 + 1
    );

    // 4. Catch-up: a subscription feeds an in-memory projection 100,000 events.
    let store = fresh_store().await;
    let carts = CATCH_UP / CATCH_UP_PER_CART;
    for cart in 0..carts {
        let events = (0..CATCH_UP_PER_CART)
            .map(|i| NewEvent::new("cart.item_added", 1, serde_json::to_value(added(cart + i)).unwrap()))
            .collect();
        store.append(&format!("cart-{cart}"), ExpectedVersion::Exact(0), events).await.unwrap();
    }
    let raw = Raw::new().await;
    for cart in 0..carts {
        raw.insert_many(&format!("cart-{cart}"), cart, CATCH_UP_PER_CART).await;
    }
    let (mut annals, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        annals.push(catch_up_annals(&store).await);
        raws.push(catch_up_raw(&raw).await);
    }
    let (annals, raw_elapsed) = (median(annals), median(raws));
    line(
        &format!("4. catch up {CATCH_UP} events, in-memory projection"),
        per_second(CATCH_UP, annals),
        per_second(CATCH_UP, raw_elapsed),
        "ev/s ",
    );
    println!(
        "   annals {annals:.2?} in {} feed reads of 500 (the event-type filter in SQL), raw {raw_elapsed:.2?} in {} \
         pages of 500",
        CATCH_UP / 500 + 1,
        CATCH_UP / 500 + 1
    );

    // 5. A hot cart: 8 tasks × 100 commands on one stream.
    let (mut cached, mut uncached, mut raw, mut retries) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (rate, retried) = hot_annals(true).await;
        cached.push(rate);
        retries.push(retried);
        let (rate, retried) = hot_annals(false).await;
        uncached.push(rate);
        retries.push(retried);
        raw.push(hot_raw().await);
    }
    let (cached, uncached, raw) = (median_rate(cached), median_rate(uncached), median_rate(raw));
    line(&format!("5. {} commands on one cart, {TASKS} tasks, cached", TASKS * 100), cached, raw, "cmd/s");
    line("   the same without a cache", uncached, raw, "cmd/s");
    println!("   annals decided again (cached, uncached per round): {retries:?}; raw retries on a unique violation");
}
