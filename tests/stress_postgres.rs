//! Stress: 8 concurrent writers append 100,000 events in transactions of 1 to 25 events,
//! some rolled back, some held open for a while, while an `ExactlyOnce` consumer follows
//! live on PostgreSQL. The
//! projection must see every committed event exactly once, none of the rolled-back ones,
//! in one consistent order. Then a second projection catches up on all of it.
//!
//! Ignored by default (about a minute on 2 cores):
//! `cargo test -p annals-tests --test stress_postgres -- --ignored --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::{Checkpoint, EventFeed, FeedEvent, Filter};
use annals::subscription::{ExactlyOnce, Sink, SinkError, Subscription, SubscriptionOptions};
use annals::{BoxError, RetryPolicy};
use annals_postgres::sqlx::{self, postgres::PgPoolOptions};
use annals_postgres::testing::{database_url, fresh_store};
use annals_postgres::{PgConnection, PostgresStore};
use shopping_cart::ItemAdded;
use uuid::Uuid;

const WRITERS: u64 = 8;
const EVENTS: u64 = 100_000;

/// Inserts each event's id into `<table>`; the primary key makes a repeat fail.
#[derive(Projection)]
#[projection(name = "stress", events(ItemAdded), context = PgConnection)]
struct Seen {
    table: String,
}

impl On<ItemAdded> for Seen {
    async fn on(&mut self, _: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("INSERT INTO {} (event_id) VALUES ($1)", self.table))
            .bind(env.event_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// Checks that the checkpoints a sink receives only ever increase.
struct Ordered<S> {
    inner: S,
    last: Arc<Mutex<(Checkpoint, u64)>>,
}

impl<S: Sink> Sink for Ordered<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn filter(&self) -> Filter {
        self.inner.filter()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        self.inner.checkpoint().await
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        {
            let mut last = self.last.lock().unwrap();
            for event in events {
                if event.checkpoint <= last.0 {
                    last.1 += 1; // out of order
                }
                last.0 = event.checkpoint;
            }
        }
        self.inner.process(events, next).await
    }
}

/// A small deterministic random number generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Written {
    committed: Vec<Uuid>,
    rolled_back: Vec<Uuid>,
    transactions: u64,
    held_open: u64,
}

/// Writes `quota` committed events with raw transactions, rolling back about 1 in 20
/// and holding about 1 in 60 open for 50 to 400 ms before committing.
async fn writer(store: PostgresStore, pool: sqlx::PgPool, w: u64, quota: u64) -> Written {
    let insert = format!(
        "INSERT INTO {}.events (stream_id, stream_version, event_type, event_version, payload, event_id) \
         SELECT $1, $2 + n, 'cart.item_added', 1, p, id FROM unnest($3::jsonb[], $4::uuid[]) WITH ORDINALITY AS x(p, id, n)",
        store.schema().quoted()
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w + 1) * 0x1000_0001));
    let mut versions = [0i64; 4];
    let mut out = Written::default();
    while (out.committed.len() as u64) < quota {
        let n = (1 + rng.below(25)).min(quota - out.committed.len() as u64);
        let s = rng.below(4) as usize;
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        let payloads: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({ "sku": format!("w{w}-{i}"), "qty": 1, "unit_price_cents": 1 }))
            .collect();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&insert)
            .bind(format!("cart-w{w}-{s}"))
            .bind(versions[s])
            .bind(&payloads)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .unwrap();
        out.transactions += 1;
        match rng.below(60) {
            0..=2 => {
                tx.rollback().await.unwrap();
                out.rolled_back.extend(ids);
                continue;
            }
            3 => {
                out.held_open += 1;
                tokio::time::sleep(Duration::from_millis(50 + rng.below(350))).await;
            }
            _ => {}
        }
        tx.commit().await.unwrap();
        versions[s] += n as i64;
        out.committed.extend(ids);
    }
    out
}

async fn count(store: &PostgresStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stress test, about a minute: run with --ignored"]
async fn concurrent_writers_rollbacks_and_open_transactions_every_event_exactly_once_in_order() {
    let store = fresh_store().await.unwrap();
    let s = store.schema().quoted();
    sqlx::raw_sql(&format!(
        "CREATE TABLE {s}.live_seen (event_id uuid PRIMARY KEY, applied bigint GENERATED ALWAYS AS IDENTITY);
         CREATE TABLE {s}.live_seen_2 (event_id uuid PRIMARY KEY, applied bigint GENERATED ALWAYS AS IDENTITY);
         CREATE TABLE {s}.catch_up_seen (event_id uuid PRIMARY KEY);"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let options = SubscriptionOptions {
        batch_size: 500,
        poll_interval: Duration::from_millis(100),
        retry: RetryPolicy {
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            ..SubscriptionOptions::default().retry
        },
        ..SubscriptionOptions::default()
    };

    // Two live projections follow while the writers write: with two subscribers, the
    // store shares its feed reads between them (a window of the feed).
    let tables = [format!("{s}.live_seen"), format!("{s}.live_seen_2")];
    let orders = [(); 2].map(|()| Arc::new(Mutex::new((Checkpoint::START, 0u64))));
    let following: Vec<_> = tables
        .iter()
        .zip(&orders)
        .enumerate()
        .map(|(n, (table, order))| {
            let live = Ordered {
                inner: ExactlyOnce::new(store.clone(), Seen { table: table.clone() }).named(format!("stress_live_{n}")),
                last: order.clone(),
            };
            let mut subscription = Subscription::new(store.clone(), live).options(options);
            tokio::spawn(async move { subscription.run().await })
        })
        .collect();

    let pool =
        PgPoolOptions::new().max_connections(WRITERS as u32 + 2).connect(&database_url().unwrap()).await.unwrap();
    let started = Instant::now();
    let writers: Vec<_> =
        (0..WRITERS).map(|w| tokio::spawn(writer(store.clone(), pool.clone(), w, EVENTS / WRITERS))).collect();
    let mut written = Written::default();
    for w in writers {
        let done = w.await.unwrap();
        written.committed.extend(done.committed);
        written.rolled_back.extend(done.rolled_back);
        written.transactions += done.transactions;
        written.held_open += done.held_open;
    }
    let writing = started.elapsed();
    store.settle().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    for table in &tables {
        let live_count = format!("SELECT count(*) FROM {table}");
        while count(&store, &live_count).await < EVENTS as i64 {
            assert!(Instant::now() < deadline, "{table} fell behind: {}", count(&store, &live_count).await);
            assert!(following.iter().all(|f| !f.is_finished()), "a subscription stopped: {following:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lag = started.elapsed() - writing;
    tokio::time::sleep(Duration::from_millis(300)).await; // anything extra would arrive now
    for task in &following {
        task.abort();
    }
    println!(
        "stress: {WRITERS} writers, {} transactions ({} rolled back events, {} transactions held open 50-400 ms), \
         {} committed events in {:.1} s ({:.0} events/s); live projections done {:.2} s after the last commit",
        written.transactions,
        written.rolled_back.len(),
        written.held_open,
        written.committed.len(),
        writing.as_secs_f64(),
        written.committed.len() as f64 / writing.as_secs_f64(),
        lag.as_secs_f64()
    );

    // Exactly the committed events, once each, none rolled back, in one consistent order.
    assert_eq!(written.committed.len() as u64, EVENTS);
    assert_eq!(count(&store, &format!("SELECT count(*) FROM {s}.events")).await, EVENTS as i64);
    for (table, order) in tables.iter().zip(&orders) {
        assert_eq!(count(&store, &format!("SELECT count(*) FROM {table}")).await, EVENTS as i64, "{table}");
        let matched: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE event_id = ANY($1)"))
            .bind(&written.committed)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(matched, EVENTS as i64, "{table}: every committed event");
        let ghosts: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE event_id = ANY($1)"))
            .bind(&written.rolled_back)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(ghosts, 0, "{table}: no rolled-back event");
        let out_of_order = count(
            &store,
            &format!(
                "SELECT count(*) FROM ( \
                     SELECT e.transaction_id, e.global_position, \
                            lag(e.transaction_id) OVER w AS prev_transaction, \
                            lag(e.global_position) OVER w AS prev_position \
                     FROM {table} l JOIN {s}.events e USING (event_id) WINDOW w AS (ORDER BY l.applied)) x \
                 WHERE (transaction_id, global_position) <= (prev_transaction, prev_position)"
            ),
        )
        .await;
        assert_eq!(out_of_order, 0, "{table}: applied in (transaction id, position) order");
        assert_eq!(order.lock().unwrap().1, 0, "{table}: checkpoints strictly increasing");
    }

    // Catch-up of a second projection over everything.
    let catch_up =
        ExactlyOnce::new(store.clone(), Seen { table: format!("{s}.catch_up_seen") }).named("stress_catch_up");
    let started = Instant::now();
    Subscription::new(store.clone(), catch_up).options(options).catch_up().await.unwrap();
    let took = started.elapsed();
    assert_eq!(count(&store, &format!("SELECT count(*) FROM {s}.catch_up_seen")).await, EVENTS as i64);
    println!(
        "catch-up: an ExactlyOnce consumer (one INSERT per event, one transaction per 500) over {EVENTS} events in {:.2} s: {:.0} events/s",
        took.as_secs_f64(),
        EVENTS as f64 / took.as_secs_f64()
    );
    // The feed alone, for comparison.
    let started = Instant::now();
    let (mut at, mut read) = (Checkpoint::START, 0usize);
    loop {
        let batch = store.read_feed(at, &Filter::all(), 500).await.unwrap();
        if batch.next == at {
            break;
        }
        read += batch.events.len();
        at = batch.next;
    }
    assert_eq!(read as u64, EVENTS);
    println!("feed read alone: {:.0} events/s", EVENTS as f64 / started.elapsed().as_secs_f64());
}
