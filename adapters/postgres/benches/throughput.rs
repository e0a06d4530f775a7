//! Throughput of annals on PostgreSQL against hand-written sqlx implementations of the
//! same work, in one run: `cargo bench -p annals-postgres`.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Three sides do the same work, each in a schema of its own:
//!
//! - **annals**: `Repository<Cart, PostgresStore>`;
//! - **raw, same table**: hand-written sqlx on annals' own events table (created by
//!   `PostgresStore::migrate()`: the same columns, indexes and NOTIFY trigger);
//! - **raw, minimal table**: hand-written sqlx on a minimal events table (2 indexes, no
//!   trigger).
//!
//! A raw side does what a hand-written store needs per command: select the stream's
//! events, decode them into the cart, insert the new event with the next version (the
//! unique `(stream_id, version)` index is the expected-version check; a unique violation
//! is retried). All sides use the same pool settings and the same cart domain.
//!
//! Ratios are throughputs (for loads: inverse times), 1.00 means no difference:
//! - *annals overhead* = annals / raw on the same table: what annals itself costs;
//! - *table guarantees* = raw on the same table / raw on the minimal table: what the
//!   table's guarantees (unique event ids, correlation/causation and commit-order indexes,
//!   transaction ids, NOTIFY trigger) cost;
//! - *total* = annals / raw on the minimal table, the product of the two.
//!
//! Workloads 1 and 2 also run annals with `annals.notify = off` on its connections, to
//! show the NOTIFY trigger's share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

#[path = "support/statements.rs"]
mod statements;
use statements::reset_statements;

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
use uuid::Uuid;

const ROUNDS: usize = 3;

fn add(i: u64) -> AddItem {
    AddItem { sku: format!("sku-{}", i % 7), qty: 1 + (i % 3) as u32, unit_price_cents: 100 + i % 50 }
}

/// The events table a hand-written store works on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    /// A table of its own with only what the store needs: 2 indexes, no trigger.
    Minimal,
    /// annals' own table, created by `PostgresStore::migrate()`: every event also gets an
    /// event id (client-generated, as annals does) and a payload version.
    Annals,
}

/// The hand-written store: the round trips a minimal implementation needs.
#[derive(Clone)]
struct Raw {
    pool: PgPool,
    table: Table,
    schema: String,
    select: Arc<str>,
    /// The column of the payload in `select`'s rows.
    payload_column: usize,
    /// One new event: plain `VALUES`, as one would write it by hand.
    insert_one: Arc<str>,
    insert: Arc<str>,
}

impl Raw {
    async fn new(url: &str, table: Table) -> Raw {
        let pool = PostgresStore::pool_options().max_connections(8).connect(url).await.unwrap();
        let name = SchemaName::new(format!("raw_{}", fresh_schema_name())).unwrap();
        let schema = name.quoted();
        // The column of the stream version, and what annals' table adds: read columns,
        // inserted columns, their parameters, their arrays and the arrays' names.
        let (version, read, columns, values, arrays, names) = match table {
            Table::Minimal => {
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
                ("version", "", "", "", "", "")
            }
            Table::Annals => {
                PostgresStore::new(pool.clone()).with_schema(name.clone()).migrate().await.unwrap();
                (
                    "stream_version",
                    "event_version, ",
                    ", event_id, event_version",
                    ", $5, $6",
                    ", $5::uuid[], $6::int4[]",
                    ", id, ev",
                )
            }
        };
        Raw {
            pool,
            table,
            schema: name.as_str().to_owned(),
            select: format!(
                "SELECT {version}, event_type, {read}payload FROM {schema}.events WHERE stream_id = $1 ORDER BY {version}"
            )
            .into(),
            payload_column: if read.is_empty() { 2 } else { 3 },
            insert_one: format!(
                "INSERT INTO {schema}.events (stream_id, {version}, event_type, payload{columns}) \
                 VALUES ($1, $2 + 1, $3, $4{values})"
            )
            .into(),
            insert: format!(
                "INSERT INTO {schema}.events (stream_id, {version}, event_type, payload{columns}) \
                 SELECT $1, $2 + n, t, p{names} FROM unnest($3::text[], $4::jsonb[]{arrays}) \
                 WITH ORDINALITY AS x(t, p{names}, n)"
            )
            .into(),
        }
    }

    async fn load(&self, stream: &str) -> (Cart, u64) {
        let rows = sqlx::query(&self.select).bind(stream).fetch_all(&self.pool).await.unwrap();
        let mut cart = Cart::default();
        let mut version = 0;
        for row in rows {
            version = row.get::<i64, _>(0);
            // Straight into the event's type, as careful hand-written code decodes it.
            let column = self.payload_column;
            let event: CartEvent = match row.get::<&str, _>(1) {
                "cart.item_added" => row.get::<Json<ItemAdded>, _>(column).0.into(),
                "cart.item_removed" => row.get::<Json<ItemRemoved>, _>(column).0.into(),
                "cart.checked_out" => row.get::<Json<CheckedOut>, _>(column).0.into(),
                other => panic!("unknown event type {other}"),
            };
            cart.apply_event(event);
        }
        (cart, u64::try_from(version).unwrap())
    }

    /// The stream's versions, in order.
    async fn versions(&self, stream: &str) -> Vec<u64> {
        let rows = sqlx::query(&self.select).bind(stream).fetch_all(&self.pool).await.unwrap();
        rows.iter().map(|row| u64::try_from(row.get::<i64, _>(0)).unwrap()).collect()
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
            match self.insert_decided(stream, version, &cart.handle(command).unwrap()).await {
                Ok(()) => return attempt - 1,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    // The same randomised exponential back-off the repository uses.
                    tokio::time::sleep(RetryPolicy::default().delay(attempt)).await;
                }
                Err(e) => panic!("raw insert failed: {e}"),
            }
        }
    }

    /// Executes `command`, which starts the cart of `stream`, without reading: what a
    /// hand-written store does when it knows the cart is new.
    async fn create<C>(&self, stream: &str, command: &C)
    where
        Cart: Handle<C>,
    {
        self.insert_decided(stream, 0, &Cart::default().handle(command).unwrap()).await.unwrap();
    }

    /// Inserts the events a command decided on the cart at `version`.
    async fn insert_decided(&self, stream: &str, version: u64, events: &[CartEvent]) -> Result<(), sqlx::Error> {
        let version = i64::try_from(version).unwrap();
        match events {
            [event] => {
                let query = sqlx::query(&self.insert_one)
                    .bind(stream)
                    .bind(version)
                    .bind(event.event_type())
                    .bind(Json(event.to_payload().unwrap()));
                let query = match self.table {
                    Table::Minimal => query,
                    Table::Annals => query.bind(Uuid::now_v7()).bind(i32::try_from(event.event_version()).unwrap()),
                };
                query.execute(&self.pool).await.map(drop)
            }
            _ => {
                let events = events
                    .iter()
                    .map(|e| (e.event_type(), e.to_payload().unwrap(), i32::try_from(e.event_version()).unwrap()));
                self.insert_many(stream, version, events.collect()).await
            }
        }
    }

    /// Inserts `(type, payload, payload version)` events after `version` in one statement.
    async fn insert_many(
        &self,
        stream: &str,
        version: i64,
        events: Vec<(&str, serde_json::Value, i32)>,
    ) -> Result<(), sqlx::Error> {
        let types: Vec<&str> = events.iter().map(|e| e.0).collect();
        let payloads: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.1)).collect();
        let query = sqlx::query(&self.insert).bind(stream).bind(version).bind(types).bind(payloads);
        let query = match self.table {
            Table::Minimal => query,
            Table::Annals => query
                .bind(events.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.2).collect::<Vec<_>>()),
        };
        query.execute(&self.pool).await.map(drop)
    }
}

/// One implementation under test.
#[derive(Clone)]
enum Side {
    /// Retrying conflicts up to 10,000 times (only workload 4 has conflicts).
    Annals(Repository<Cart, PostgresStore>),
    Raw(Raw),
}

impl Side {
    fn annals(store: PostgresStore) -> Side {
        Side::Annals(Repository::new(store).with_retry(RetryPolicy { max_attempts: 10_000, ..RetryPolicy::default() }))
    }

    /// annals with [`Repository::with_cache`]: a command on a cart it used before does
    /// not load it.
    fn annals_cached(store: PostgresStore) -> Side {
        match Side::annals(store) {
            Side::Annals(carts) => Side::Annals(carts.with_cache(10_000)),
            raw => raw,
        }
    }

    /// The schema the side's tables live in.
    fn schema(&self) -> String {
        match self {
            Side::Annals(carts) => carts.store().schema().as_str().to_owned(),
            Side::Raw(raw) => raw.schema.clone(),
        }
    }

    /// Executes `command` on cart `id`; returns the number of retries.
    async fn execute(&self, id: &str, command: AddItem) -> u32 {
        match self {
            Side::Annals(carts) => carts.execute(id, command).await.unwrap().attempts - 1,
            Side::Raw(raw) => raw.execute(&Cart::stream_id(id), &command).await,
        }
    }

    /// Executes `command`, which starts cart `id`: `Repository::create` for annals, an
    /// insert without a read for raw.
    async fn create(&self, id: &str, command: AddItem) {
        match self {
            Side::Annals(carts) => assert_eq!(carts.create(id, command).await.unwrap().version, 1),
            Side::Raw(raw) => raw.create(&Cart::stream_id(id), &command).await,
        }
    }

    async fn load(&self, id: &str) -> (Cart, u64) {
        match self {
            Side::Annals(carts) => {
                let loaded = carts.load(id).await.unwrap();
                (loaded.state, loaded.version)
            }
            Side::Raw(raw) => raw.load(&Cart::stream_id(id)).await,
        }
    }

    async fn versions(&self, id: &str) -> Vec<u64> {
        match self {
            Side::Annals(carts) => carts.history(id, ..).await.unwrap().iter().map(|e| e.stream_version).collect(),
            Side::Raw(raw) => raw.versions(&Cart::stream_id(id)).await,
        }
    }

    /// Writes `n` item-added events to cart `id`, 1,000 per statement.
    async fn seed(&self, id: &str, n: u64) {
        for chunk in (1..=n).collect::<Vec<_>>().chunks(1000) {
            let payloads = chunk.iter().map(|&i| serde_json::to_value(item(i)).unwrap());
            match self {
                Side::Annals(carts) => {
                    let events = payloads.map(|p| NewEvent::new("cart.item_added", 1, p)).collect();
                    let expected = ExpectedVersion::Exact(chunk[0] - 1);
                    carts.store().append(&Cart::stream_id(id), expected, events).await.unwrap();
                }
                Side::Raw(raw) => {
                    let events = payloads.map(|p| ("cart.item_added", p, 1)).collect();
                    raw.insert_many(&Cart::stream_id(id), i64::try_from(chunk[0] - 1).unwrap(), events).await.unwrap();
                }
            }
        }
    }
}

fn item(i: u64) -> ItemAdded {
    ItemAdded { sku: format!("sku-{}", i % 7), qty: 1, unit_price_cents: 100 + i % 50 }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Throughput of the side that took `time` relative to the side that took `baseline`.
fn ratio(time: Duration, baseline: Duration) -> f64 {
    baseline.as_secs_f64() / time.as_secs_f64()
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

/// Workload 1: 2,000 commands, each on a new stream, one after the other.
async fn sequential(side: Side, tag: String) -> Duration {
    let start = Instant::now();
    for i in 0..2000u64 {
        side.execute(&format!("{tag}-{i}"), add(i)).await;
    }
    start.elapsed()
}

/// Workload 1c: workload 1 for commands known to start their stream: annals'
/// `Repository::create`, raw's insert without a read.
async fn creations(side: Side, tag: String) -> Duration {
    let start = Instant::now();
    for i in 0..2000u64 {
        side.create(&format!("{tag}-{i}"), add(i)).await;
    }
    start.elapsed()
}

/// What [`in_tasks`] measured: the time, the retries and each command's latency.
struct Run {
    time: Duration,
    retries: u64,
    latencies: Vec<Duration>,
}

impl Run {
    /// The `q`-quantile (0 to 1) of the commands' latencies.
    fn latency(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }
}

/// Runs `per_task` commands in each of `tasks` concurrent tasks: task `t`'s `i`th command
/// is `add(n)` on cart `id`, where `(id, n) = target(t, i)`.
async fn in_tasks<F>(side: &Side, tasks: u64, per_task: u64, target: F) -> Run
where
    F: Fn(u64, u64) -> (String, u64) + Clone + Send + 'static,
{
    let retries = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let (side, retries, target) = (side.clone(), retries.clone(), target.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..per_task {
                    let (id, n) = target(t, i);
                    let started = Instant::now();
                    let r = side.execute(&id, add(n)).await;
                    latencies.push(started.elapsed());
                    retries.fetch_add(u64::from(r), Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Run { time: start.elapsed(), retries: retries.load(Ordering::Relaxed), latencies }
}

/// One more round of a concurrent workload on each side, printing the commands' median
/// and 99th-percentile latency: what waiting for a group costs a command.
async fn print_latencies<F, Fut>(sides: &[(&str, &Side)], round: F)
where
    F: Fn(Side) -> Fut,
    Fut: std::future::Future<Output = Run>,
{
    let mut line = "   latency per command (p50 / p99):".to_owned();
    for (name, side) in sides {
        let run = round((*side).clone()).await;
        line += &format!(" {name} {:.2} / {:.2} ms;", ms(run.latency(0.5)), ms(run.latency(0.99)));
    }
    println!("{}", line.trim_end_matches(';'));
}

/// Workload 5: 2,000 commands over 20 streams, one after the other: after the first 20,
/// every command is on a stream used before.
async fn existing(side: Side, tag: String) -> Duration {
    let start = Instant::now();
    for i in 0..2000u64 {
        side.execute(&format!("{tag}-{}", i % 20), add(i)).await;
    }
    start.elapsed()
}

/// Prints the cached side's time against the others'.
fn print_cached(cached: Duration, uncached: Duration, same: Duration, minimal: Duration, commands: f64) {
    println!(
        "   annals with a cache {:>8.2} ms ({:>5.0}/s): cached/uncached {:.2} | cached/raw same table {:.2} | cached/raw minimal {:.2}",
        ms(cached),
        commands / cached.as_secs_f64(),
        ratio(cached, uncached),
        ratio(cached, same),
        ratio(cached, minimal),
    );
}

/// Workload 2: 4,000 commands over 400 streams from 8 concurrent tasks.
async fn concurrent(side: Side, tag: String) -> Duration {
    in_tasks(&side, 8, 500, move |t, i| (format!("{tag}-{}", t * 50 + i % 50), i)).await.time
}

/// Workload 2b: 4,000 commands over 384 streams from 32 concurrent tasks (12 streams
/// each), on the same pools of 8 connections.
async fn crowd(side: Side, tag: String) -> Duration {
    in_tasks(&side, 32, 125, move |t, i| (format!("{tag}-{t}-{}", i % 12), i)).await.time
}

/// Workload 4: 8 tasks × 100 commands on one stream, retrying on conflicts; returns the
/// time and the number of retries, after checking the stream has versions 1..=800.
async fn contended(side: &Side) -> (Duration, u64) {
    let Run { time, retries, .. } = in_tasks(side, 8, 100, |t, i| ("hot".to_owned(), t * 100 + i)).await;
    assert_eq!(side.versions("hot").await, (1..=800).collect::<Vec<_>>(), "exactly 800 events, contiguous versions");
    (time, retries)
}

/// Runs `workload` `ROUNDS` times on every side, rotating which side goes first; returns
/// each side's median time.
async fn measure<F, Fut>(sides: &[&Side], name: &str, workload: F) -> Vec<Duration>
where
    F: Fn(Side, String) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut times = vec![Vec::new(); sides.len()];
    for round in 0..ROUNDS {
        for k in 0..sides.len() {
            let s = (k + round) % sides.len();
            times[s].push(workload(sides[s].clone(), format!("{name}-{round}")).await);
        }
    }
    times.into_iter().map(median).collect()
}

/// Prints the times of annals, raw on the same table and raw on the minimal table, and
/// the ratios between them.
fn print_sides(label: &str, [a, same, minimal]: [Duration; 3], commands: Option<f64>) {
    let rate = |t: Duration| commands.map_or(String::new(), |n| format!(" ({:>5.0}/s)", n / t.as_secs_f64()));
    println!(
        "{label}\n   annals {:>8.2} ms{} | raw, same table {:>8.2} ms{} | raw, minimal table {:>8.2} ms{}\n   \
         annals overhead (annals/raw same table) {:.2} | table guarantees (raw same/raw minimal) {:.2} | total (annals/raw minimal) {:.2}",
        ms(a),
        rate(a),
        ms(same),
        rate(same),
        ms(minimal),
        rate(minimal),
        ratio(a, same),
        ratio(same, minimal),
        ratio(a, minimal),
    );
}

/// Prints annals' time with `annals.notify = off` against its time with NOTIFY on.
fn print_notify_off(on: Duration, off: Duration, commands: f64) {
    println!(
        "   annals with annals.notify = off {:>8.2} ms ({:>5.0}/s): off/on throughput {:.2}, NOTIFY share of annals' time {:>4.1}%",
        ms(off),
        commands / off.as_secs_f64(),
        ratio(off, on),
        100.0 * (1.0 - off.as_secs_f64() / on.as_secs_f64()),
    );
}

/// Workloads 2 and 2b: the times of annals, raw on the same table, raw on the minimal
/// table, annals with NOTIFY off, without group commit and with a cache; then, when
/// `pg_stat_statements` counted them, round trips, server time and group sizes.
async fn report_concurrent(pool: &PgPool, label: &str, t: &[Duration], counting: bool, sides: [&Side; 6]) {
    let [annals, same, minimal, quiet, solo, cached] = sides;
    print_sides(label, [t[0], t[1], t[2]], Some(4000.0));
    print_notify_off(t[0], t[3], 4000.0);
    print_group_commit_off(t[0], t[4], 4000.0);
    print_cached(t[5], t[0], t[1], t[2], 4000.0);
    if counting {
        let (annals, same, minimal) = (("annals", annals), ("raw same table", same), ("raw minimal", minimal));
        let (quiet, solo) = (("annals notify off", quiet), ("annals no group commit", solo));
        print_round_trips(pool, &[annals, same, minimal, solo, ("annals cached", cached)], 4000, ROUNDS).await;
        print_server_times(pool, "INSERT", &[annals, same, minimal, quiet]).await;
        print_group_sizes(pool, &[annals, quiet, solo]).await;
    }
}

/// Prints the statements per command of each side (`commands` per round), since the last
/// reset: every statement is one round trip.
/// Prints each side's statements per command, for `commands` commands in each of `rounds`.
async fn print_round_trips(pool: &PgPool, sides: &[(&str, &Side)], commands: u64, rounds: usize) {
    let mut line = "   round trips per command:".to_owned();
    for (name, side) in sides {
        let calls = server_time(pool, &side.schema(), "").await.map_or(0, |(calls, _)| calls);
        line += &format!(" {name} {:.2};", calls as f64 / (commands as usize * rounds) as f64);
    }
    println!("{}", line.trim_end_matches(';'));
}

/// Prints annals' time without group commit against its time with it.
fn print_group_commit_off(on: Duration, off: Duration, commands: f64) {
    println!(
        "   annals without group commit {:>8.2} ms ({:>5.0}/s): with/without throughput {:.2}",
        ms(off),
        commands / off.as_secs_f64(),
        ratio(on, off),
    );
}

/// Prints how many events each side's INSERT statements wrote per statement, and how many
/// events each commit wrote (from the rows' transaction ids), since the last reset.
async fn print_group_sizes(pool: &PgPool, sides: &[(&str, &Side)]) {
    let mut line = "   events per INSERT statement:".to_owned();
    for (name, side) in sides {
        let rows: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT sum(calls)::int8, sum(rows)::int8 FROM pg_stat_statements \
             WHERE query LIKE '%' || $1 || '%' AND query ILIKE '%INSERT%' AND rows > 0",
        )
        .bind(side.schema())
        .fetch_one(pool)
        .await
        .ok();
        match rows {
            Some((Some(calls), Some(rows))) if calls > 0 => {
                line += &format!(" {name} {:.2};", rows as f64 / calls as f64)
            }
            _ => line += &format!(" {name} n/a;"),
        }
    }
    println!("{}", line.trim_end_matches(';'));
}

/// Calls and server time per call (µs, planning included) of the statements starting with
/// `verb` that name `schema`, since the last reset, when pg_stat_statements is available.
async fn server_time(pool: &PgPool, schema: &str, verb: &str) -> Option<(i64, f64)> {
    sqlx::query_as::<_, (Option<i64>, Option<f64>)>(
        "SELECT sum(calls)::int8, sum(total_exec_time + total_plan_time) / nullif(sum(calls), 0) \
         FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%' AND query ILIKE $2 || '%'",
    )
    .bind(schema)
    .bind(verb)
    .fetch_one(pool)
    .await
    .ok()
    .and_then(|(calls, mean)| Some((calls?, mean? * 1e3)))
}

/// Prints the server time per `verb` statement of each side, one line.
async fn print_server_times(pool: &PgPool, verb: &str, sides: &[(&str, &Side)]) {
    let mut line = format!("   server µs per {verb}:");
    for (name, side) in sides {
        match server_time(pool, &side.schema(), verb).await {
            Some((calls, mean)) => line += &format!(" {name} {mean:.1} ({calls} calls);"),
            None => line += &format!(" {name} n/a;"),
        }
    }
    println!("{}", line.trim_end_matches(';'));
}
/// Whether workload `name` runs: all of them, unless `ANNALS_BENCH_WORKLOADS` lists some
/// (`ANNALS_BENCH_WORKLOADS=4,5` runs workloads 4 and 5 only).
fn wanted(name: &str) -> bool {
    std::env::var("ANNALS_BENCH_WORKLOADS").map_or(true, |list| list.split(',').any(|w| w.trim() == name))
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    let url = database_url().expect("a PostgreSQL server for the benchmark");
    let store = fresh_store().await.unwrap();
    let pool = store.pool().clone();
    let annals_store = store.clone();
    let annals = Side::annals(store);
    let same = Side::Raw(Raw::new(&url, Table::Annals).await);
    let minimal = Side::Raw(Raw::new(&url, Table::Minimal).await);
    // annals with `annals.notify = off` on its connections, in a migrated schema of its own.
    let options = PostgresStore::connect_options(&url).unwrap().options([("annals.notify", "off")]);
    let quiet =
        PostgresStore::new(PostgresStore::pool_options().max_connections(8).connect_with(options).await.unwrap())
            .with_schema(fresh_schema_name());
    quiet.migrate().await.unwrap();
    let quiet = Side::annals(quiet);
    // annals with a cache, in a migrated schema of its own.
    let cached = annals_store.clone().with_schema(fresh_schema_name());
    cached.migrate().await.unwrap();
    let cached = Side::annals_cached(cached);
    // annals without group commit, in a migrated schema of its own.
    let solo = annals_store.clone().with_schema(fresh_schema_name()).group_commit_up_to(1);
    solo.migrate().await.unwrap();
    let solo = Side::annals(solo);
    let three = [&annals, &same, &minimal];
    let named = [("annals", &annals), ("raw same table", &same), ("raw minimal", &minimal)];
    println!(
        "annals-postgres throughput: annals (Repository<Cart, PostgresStore>) vs raw sqlx on annals' table and on a minimal table, {ROUNDS} round(s) each, median"
    );
    println!(
        "server: {}",
        if std::env::var("DATABASE_URL").is_ok() { "DATABASE_URL" } else { "throwaway (fsync=off)" }
    );

    // Warm up: prepare statements on every connection of every pool.
    for side in [&annals, &same, &minimal, &quiet, &cached, &solo] {
        concurrent(side.clone(), "warm".to_owned()).await;
    }

    // 1) and 2), with NOTIFY off as a fourth side and no group commit as a fifth.
    let five = [&annals, &same, &minimal, &quiet, &solo];
    if wanted("1") {
        let counting = reset_statements(&pool).await;
        let t = measure(&five, "w1", sequential).await;
        print_sides("1) 2,000 commands, each on a new stream, sequential:", [t[0], t[1], t[2]], Some(2000.0));
        print_notify_off(t[0], t[3], 2000.0);
        print_group_commit_off(t[0], t[4], 2000.0);
        if counting {
            print_round_trips(&pool, &[named[0], named[1], named[2], ("annals no group commit", &solo)], 2000, ROUNDS)
                .await;
            print_server_times(&pool, "INSERT", &[named[0], named[1], named[2], ("annals notify off", &quiet)]).await;
        }
    }

    if wanted("1c") {
        let counting = reset_statements(&pool).await;
        let t = measure(&three, "w1c", creations).await;
        print_sides(
        "1c) 2,000 creations, each on a new stream, sequential (annals `Repository::create`, raw without its read):",
        [t[0], t[1], t[2]],
        Some(2000.0),
    );
        if counting {
            print_round_trips(&pool, &named, 2000, ROUNDS).await;
        }
    }

    let six = [&annals, &same, &minimal, &quiet, &solo, &cached];
    let latency_sides = [("annals", &annals), ("annals no group commit", &solo), ("raw same table", &same)];
    if wanted("2") {
        let counting = reset_statements(&pool).await;
        let six = [&annals, &same, &minimal, &quiet, &solo, &cached];
        let t = measure(&six, "w2", concurrent).await;
        report_concurrent(&pool, "2) 4,000 commands over 400 streams, 8 tasks:", &t, counting, six).await;
        print_latencies(&latency_sides, |side| async move {
            in_tasks(&side, 8, 500, |t, i| (format!("w2-latency-{}", t * 50 + i % 50), i)).await
        })
        .await;
    }

    if wanted("2b") {
        let counting = reset_statements(&pool).await;
        let t = measure(&six, "w2b", crowd).await;
        report_concurrent(&pool, "2b) 4,000 commands over 384 streams, 32 tasks (pools of 8):", &t, counting, six)
            .await;
        print_latencies(&latency_sides, |side| async move {
            in_tasks(&side, 32, 125, |t, i| (format!("w2b-latency-{t}-{}", i % 12), i)).await
        })
        .await;
    }

    // 3) Loading an aggregate with 5,000 events, median of 20 loads.
    if wanted("3") {
        for side in three {
            side.seed("big", 5000).await;
        }
        let counting = reset_statements(&pool).await;
        let mut loads = vec![Vec::new(); three.len()];
        let expected = annals.load("big").await;
        assert_eq!(expected.1, 5000);
        for _ in 0..20 {
            for (side, times) in three.iter().zip(&mut loads) {
                let start = Instant::now();
                let loaded = side.load("big").await;
                times.push(start.elapsed());
                assert_eq!(loaded, expected);
            }
        }
        let t: Vec<Duration> = loads.into_iter().map(median).collect();
        print_sides("3) load an aggregate of 5,000 events (median of 20):", [t[0], t[1], t[2]], None);
        if counting {
            print_server_times(&pool, "SELECT", &named).await;
        }
    }

    // 4) 8 tasks × 100 commands on one stream, retrying on conflicts.
    if wanted("4") {
        let counting = reset_statements(&pool).await;
        let mut t = Vec::new();
        let mut retries = Vec::new();
        for side in [&annals, &same, &minimal, &cached] {
            let (time, r) = contended(side).await;
            t.push(time);
            retries.push(r);
        }
        print_sides(
        &format!(
            "4) 8 tasks x 100 commands on one stream, retrying (retries: annals {}, raw same table {}, raw minimal {}; all: 800 events, versions 1..=800):",
            retries[0], retries[1], retries[2]
        ),
        [t[0], t[1], t[2]],
        Some(800.0),
    );
        print_cached(t[3], t[0], t[1], t[2], 800.0);
        if counting {
            print_server_times(&pool, "INSERT", &named).await;
            print_round_trips(&pool, &[named[0], named[1], named[2], ("annals cached", &cached)], 800, 1).await;
        }
    }

    // What a second connection checkout per command would save: annals checks a pooled
    // connection out for the read and again for the append, hand-written code often once.
    if wanted("checkout") {
        let checkouts = 10_000u32;
        let start = Instant::now();
        for _ in 0..checkouts {
            drop(pool.acquire().await.unwrap());
        }
        println!(
            "   one pool checkout and return (no ping), mean of {checkouts}: {:.2} µs",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(checkouts)
        );
    }

    // 5) Sequential commands on streams used before, with and without the cache.
    if wanted("5") {
        let sides = [&annals, &same, &minimal, &cached];
        let counting = reset_statements(&pool).await;
        let t = measure(&sides, "w5", existing).await;
        print_sides(
            "5) 2,000 commands over 20 streams, sequential (after the first 20: streams used before):",
            [t[0], t[1], t[2]],
            Some(2000.0),
        );
        print_cached(t[3], t[0], t[1], t[2], 2000.0);
        if counting {
            print_round_trips(&pool, &[named[0], named[1], named[2], ("annals cached", &cached)], 2000, ROUNDS).await;
        }
    }
}
