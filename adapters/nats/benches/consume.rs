//! The consuming side, measured in one run against one throwaway `nats-server -js`
//! (`cargo bench -p annals-nats --bench consume`):
//!
//! 1. Catch-up of 20,000 relayed events into a read model (one row per event, inserted
//!    in the transaction that stores the checkpoint, batches of 500), on SQLite
//!    (`synchronous = FULL`) and on PostgreSQL (`DATABASE_URL`, or a throwaway server):
//!    [`JetStreamFeed`] + [`ExactlyOnce`] against raw async-nats + sqlx doing the same work
//!    (a durable pull consumer, fetch 500, decode each envelope, insert the rows and
//!    upsert the sequence in one transaction, commit, acknowledge the last). Best of 3.
//! 2. End-to-end latency at a steady 500 events/s for 4 s: from the append to the
//!    source store (in memory) to the commit of the SQLite read model that applied the
//!    event, through the relay and JetStream (p50, p99, max).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::subscription::{ExactlyOnce, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_memory::MemoryStore;
use annals_nats::testing::Server;
use annals_nats::{JetStreamFeed, Relay};
use annals_postgres::{PgConnection, PostgresStore};
use annals_sqlite::testing::TempDir;
use annals_sqlite::{sqlx, SqliteConnection, SqliteStore};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

const EVENTS: u64 = 20_000;
const BATCH: usize = 500;
const ROUNDS: usize = 3;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
struct ItemAdded {
    sku: String,
    qty: u32,
}

/// One row per event in `table`, on SQLite.
#[derive(Projection)]
#[projection(name = "rows", events(ItemAdded), context = SqliteConnection)]
struct SqliteRows {
    insert: String,
}

impl On<ItemAdded> for SqliteRows {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query(&self.insert)
            .bind(env.event_id.to_string())
            .bind(&env.stream_id)
            .bind(&e.sku)
            .bind(i64::from(e.qty))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// One row per event in `table`, on PostgreSQL.
#[derive(Projection)]
#[projection(name = "rows", events(ItemAdded), context = PgConnection)]
struct PgRows {
    insert: String,
}

impl On<ItemAdded> for PgRows {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&self.insert)
            .bind(env.event_id.to_string())
            .bind(&env.stream_id)
            .bind(&e.sku)
            .bind(i64::from(e.qty))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

const TABLE: &str = "(event_id TEXT PRIMARY KEY, stream TEXT NOT NULL, sku TEXT NOT NULL, qty BIGINT NOT NULL)";

fn options() -> SubscriptionOptions {
    SubscriptionOptions { batch_size: BATCH, ..SubscriptionOptions::default() }
}

/// What a hand-written exactly-once consumer does: fetch, decode, insert the rows and the
/// sequence in one transaction, commit, acknowledge.
macro_rules! raw_consumer {
    ($name:ident, $db:ty, $upsert:expr) => {
        async fn $name(
            js: &jetstream::Context,
            stream: &str,
            pool: &sqlx::Pool<$db>,
            durable: &str,
            table: &str,
        ) -> Duration {
            let started = Instant::now();
            let insert = format!("INSERT INTO {table} (event_id, stream, sku, qty) VALUES ($1, $2, $3, $4)");
            let upsert = format!($upsert, table = table);
            let consumer: consumer::PullConsumer = js
                .get_stream(stream)
                .await
                .unwrap()
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(durable.to_owned()),
                    ack_policy: consumer::AckPolicy::All,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut done = 0;
            while done < EVENTS {
                let messages: Vec<_> =
                    consumer.fetch().max_messages(BATCH).messages().await.unwrap().map(Result::unwrap).collect().await;
                let Some(last) = messages.last() else { continue };
                let mut tx = pool.begin().await.unwrap();
                for message in &messages {
                    let envelope: Envelope = serde_json::from_slice(&message.payload).unwrap();
                    sqlx::query(&insert)
                        .bind(envelope.event_id.to_string())
                        .bind(&envelope.stream_id)
                        .bind(envelope.payload["sku"].as_str().unwrap())
                        .bind(envelope.payload["qty"].as_i64().unwrap())
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                let sequence = i64::try_from(last.info().unwrap().stream_sequence).unwrap();
                sqlx::query(&upsert).bind(durable).bind(sequence).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                last.ack().await.unwrap();
                done += messages.len() as u64;
            }
            started.elapsed()
        }
    };
}

raw_consumer!(
    raw_sqlite,
    sqlx::Sqlite,
    "INSERT INTO {table}_at (name, sequence) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence"
);
raw_consumer!(
    raw_postgres,
    sqlx::Postgres,
    "INSERT INTO {table}_at (name, sequence) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence"
);

async fn tables<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, table: &str)
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} {TABLE}; CREATE TABLE {table}_at (name TEXT PRIMARY KEY, sequence BIGINT NOT NULL);"
    ))
    .execute(pool)
    .await
    .unwrap();
}

fn rate(t: Duration) -> f64 {
    EVENTS as f64 / t.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Server::throwaway().await.unwrap();
        let client = server.connect().await.unwrap();
        let js = jetstream::new(client.clone());
        let source = MemoryStore::new();
        for n in 0..EVENTS {
            let event = NewEvent::new("cart.item_added", 1, json!({ "sku": format!("sku-{}", n % 7), "qty": 1 }));
            source.append(&format!("cart-{}", n % 500), ExpectedVersion::Any, vec![event]).await.unwrap();
        }
        let relay = tokio::spawn(Relay::new(source.clone(), client.clone(), "SHOP", "shop").run());
        while js.get_stream("SHOP").await.map(|s| s.cached_info().state.messages).unwrap_or(0) < EVENTS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relay.abort();

        let dir = TempDir::new().unwrap();
        let sqlite = SqliteStore::open(dir.database()).await.unwrap();
        sqlite.migrate().await.unwrap();
        let postgres: PostgresStore = annals_postgres::testing::fresh_store().await.unwrap();
        let schema = postgres.schema().quoted();
        let (mut annals_sqlite, mut hand_sqlite, mut annals_pg, mut hand_pg) = (vec![], vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            let table = format!("annals_{round}");
            tables(sqlite.pool(), &table).await;
            let feed = JetStreamFeed::new(client.clone(), "SHOP", "shop", table.as_str());
            let insert = format!("INSERT INTO {table} (event_id, stream, sku, qty) VALUES (?1, ?2, ?3, ?4)");
            let sink = ExactlyOnce::new(sqlite.clone(), SqliteRows { insert }).named(table.as_str());
            let started = Instant::now();
            Subscription::new(feed, sink).options(options()).catch_up().await.unwrap();
            annals_sqlite.push(started.elapsed());

            let table = format!("raw_{round}");
            tables(sqlite.pool(), &table).await;
            hand_sqlite.push(raw_sqlite(&js, "SHOP", sqlite.pool(), &table, &table).await);

            let table = format!("annals_pg_{round}");
            tables(postgres.pool(), &format!("{schema}.{table}")).await;
            let feed = JetStreamFeed::new(client.clone(), "SHOP", "shop", table.as_str());
            let insert = format!("INSERT INTO {schema}.{table} (event_id, stream, sku, qty) VALUES ($1, $2, $3, $4)");
            let sink = ExactlyOnce::new(postgres.clone(), PgRows { insert }).named(table.as_str());
            let started = Instant::now();
            Subscription::new(feed, sink).options(options()).catch_up().await.unwrap();
            annals_pg.push(started.elapsed());

            let table = format!("raw_pg_{round}");
            tables(postgres.pool(), &format!("{schema}.{table}")).await;
            hand_pg.push(raw_postgres(&js, "SHOP", postgres.pool(), &table, &format!("{schema}.{table}")).await);
        }
        let best = |times: Vec<Duration>| times.into_iter().min().unwrap();
        let (a, h, ap, hp) = (best(annals_sqlite), best(hand_sqlite), best(annals_pg), best(hand_pg));
        println!("catch-up of {EVENTS} events from JetStream into a read model, batches of {BATCH}, best of {ROUNDS}:");
        println!(
            "   SQLite:     annals {:>7.0} events/s, raw {:>7.0} events/s, annals / raw {:.2}",
            rate(a),
            rate(h),
            h.as_secs_f64() / a.as_secs_f64()
        );
        println!(
            "   PostgreSQL: annals {:>7.0} events/s, raw {:>7.0} events/s, annals / raw {:.2}",
            rate(ap),
            rate(hp),
            hp.as_secs_f64() / ap.as_secs_f64()
        );

        latency(&client).await;
    });
}

/// Appends at a steady rate to a fresh source and records when each event's read-model
/// batch committed (the consumer's status moves its checkpoint after each commit).
async fn latency(client: &async_nats::Client) {
    const RATE: u64 = 500;
    const SECONDS: u64 = 4;
    let source = MemoryStore::new();
    let relay = tokio::spawn(Relay::new(source.clone(), client.clone(), "LIVE", "live").run());
    let dir = TempDir::new().unwrap();
    let sqlite = SqliteStore::open(dir.database()).await.unwrap();
    sqlite.migrate().await.unwrap();
    tables(sqlite.pool(), "live").await;
    // The stream exists once the relay made it.
    let js = jetstream::new(client.clone());
    while js.get_stream("LIVE").await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let feed = JetStreamFeed::new(client.clone(), "LIVE", "live", "live");
    let insert = "INSERT INTO live (event_id, stream, sku, qty) VALUES (?1, ?2, ?3, ?4)".to_owned();
    let mut subscription =
        Subscription::new(feed, ExactlyOnce::new(sqlite.clone(), SqliteRows { insert }).named("live"))
            .options(SubscriptionOptions { poll_interval: Duration::from_millis(100), ..options() });
    let mut status = subscription.status();
    let consuming = tokio::spawn(async move { subscription.run().await });
    let total = RATE * SECONDS;
    let committed = tokio::spawn(async move {
        // (sequence reached, when)
        let mut seen = Vec::new();
        while status.changed().await.is_ok() {
            let reached = status.borrow().checkpoint.parts().1;
            seen.push((reached, Instant::now()));
            if reached >= total {
                break;
            }
        }
        seen
    });
    let started = Instant::now();
    let mut appended = Vec::new();
    for n in 0..total {
        let due = started + Duration::from_micros(n * 1_000_000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let event = NewEvent::new("cart.item_added", 1, json!({ "sku": "tea", "qty": 1 }));
        source.append(&format!("cart-{}", n % 50), ExpectedVersion::Any, vec![event]).await.unwrap();
        appended.push(Instant::now());
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), committed).await.unwrap().unwrap();
    consuming.abort();
    relay.abort();
    // Event i (from 1) is sequence i: one source stream order, one relay.
    let mut latencies: Vec<Duration> = appended
        .iter()
        .zip(1u64..)
        .map(|(at, sequence)| {
            let (_, when) = seen.iter().find(|(reached, _)| *reached >= sequence).unwrap();
            when.saturating_duration_since(*at)
        })
        .collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "append to read-model commit at {RATE} events/s for {SECONDS} s ({} events, SQLite read model): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}
