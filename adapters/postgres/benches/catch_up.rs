//! Catch-up throughput of a subscription on PostgreSQL against raw sqlx paging through the
//! same rows, in one run: `cargo bench -p annals-postgres --bench catch_up`.
//!
//! 100,000 stored `cart.item_added` events. The annals side catches up through
//! `Subscription` (the gap-safe feed: horizon, `(transaction_id, global_position)` order,
//! 500 events per read) into a trivial `ExactlyOnce` consumer (one transaction per batch, its
//! checkpoint written in it, handlers doing no I/O) and into an `InMemoryProjection`. The
//! raw side reads the same rows in pages of 500 by global position (not gap-safe) and
//! decodes the same columns and payloads, once as it is and once committing each page's
//! position in a transaction of its own (what `ExactlyOnce` is compared with). Best of 3
//! rounds; ratio = annals / raw throughput (1.00: annals costs nothing extra).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::{Checkpoint, EventFeed, Filter};
use annals::subscription::{ExactlyOnce, InMemoryProjection, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_postgres::sqlx::types::Json;
use annals_postgres::sqlx::{self, Row};
use annals_postgres::testing::fresh_store;
use annals_postgres::PgConnection;
use chrono::{DateTime, Utc};
use shopping_cart::ItemAdded;
use uuid::Uuid;

#[path = "support/statements.rs"]
mod statements;
use statements::{print_statements, reset_statements};

const EVENTS: u64 = 100_000;
const PAGE: usize = 500;
/// Rounds unless `ANNALS_BENCH_ROUNDS` says how many.
const ROUNDS: usize = 3;

fn rounds() -> usize {
    std::env::var("ANNALS_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(ROUNDS)
}

/// Counts units; its handler does no I/O, so the run measures the feed, the decoding and
/// the per-batch transaction.
#[derive(Projection, Default)]
#[projection(name = "units", events(ItemAdded), context = PgConnection)]
struct Units {
    units: u64,
}

impl On<ItemAdded> for Units {
    async fn on(&mut self, e: ItemAdded, _: &Envelope, _: &mut PgConnection) -> Result<(), BoxError> {
        self.units += u64::from(e.qty);
        Ok(())
    }
}

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

/// What the raw side decodes per row: the columns of an envelope.
#[allow(dead_code, reason = "decoded to be measured, not read")]
struct RawEvent {
    position: i64,
    stream_id: String,
    version: i64,
    event_type: String,
    event_version: i32,
    payload: ItemAdded,
    metadata: Json<serde_json::Value>,
    event_id: Uuid,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    recorded_at: DateTime<Utc>,
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    let store = fresh_store().await.unwrap();
    println!("annals-postgres catch-up: {EVENTS} events, pages of {PAGE}, best of {} rounds", rounds());
    println!(
        "server: {}",
        if std::env::var("DATABASE_URL").is_ok() { "DATABASE_URL" } else { "throwaway (fsync=off)" }
    );
    for chunk in 0..EVENTS / 1000 {
        let events = (0..1000)
            .map(|i| {
                let e = ItemAdded { sku: format!("sku-{}", i % 7), qty: 1 + (i % 3) as u32, unit_price_cents: 100 };
                NewEvent::new("cart.item_added", 1, serde_json::to_value(e).unwrap())
            })
            .collect();
        store.append(&format!("cart-{}", chunk % 100), ExpectedVersion::Any, events).await.unwrap();
    }
    sqlx::query(&format!("VACUUM ANALYZE {}.events", store.schema().quoted())).execute(store.pool()).await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {}.raw_checkpoints (name text PRIMARY KEY, position int8 NOT NULL)",
        store.schema().quoted()
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let options = SubscriptionOptions { batch_size: PAGE, ..SubscriptionOptions::default() };
    let raw_sql = format!(
        "SELECT global_position, stream_id, stream_version, event_type, event_version, payload, metadata, event_id, \
                correlation_id, causation_id, recorded_at \
         FROM {}.events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
        store.schema().quoted()
    );

    let expected: u64 = (0..1000u64).map(|i| 1 + i % 3).sum::<u64>() * (EVENTS / 1000);
    let (mut pg, mut memory, mut raw, mut raw_tx, mut feed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds() {
        let start = Instant::now();
        let sink = ExactlyOnce::new(store.clone(), Units::default()).named(format!("units_{round}"));
        let mut subscription = Subscription::new(store.clone(), sink).options(options);
        subscription.catch_up().await.unwrap();
        pg.push(start.elapsed());
        assert_eq!(subscription.sink().projection().units, expected);

        let start = Instant::now();
        let view = InMemoryProjection::new(UnitsInMemory::default());
        Subscription::new(store.clone(), view.clone()).options(options).catch_up().await.unwrap();
        memory.push(start.elapsed());
        assert_eq!(view.read().await.units, expected);

        let start = Instant::now();
        let (read, units) = raw_catch_up(&store, &raw_sql, None).await;
        raw.push(start.elapsed());
        assert_eq!((read, units), (EVENTS, expected));

        // Raw again, saving each page's position in a transaction of its own, as a
        // hand-written exactly-once read model does: what `ExactlyOnce` is measured against.
        let start = Instant::now();
        let (read, units) = raw_catch_up(&store, &raw_sql, Some(&format!("units_{round}"))).await;
        raw_tx.push(start.elapsed());
        assert_eq!((read, units), (EVENTS, expected));

        // The gap-safe feed alone: pages of envelopes, decoded into the event, no consumer.
        let counting = round == 0 && reset_statements(store.pool()).await;
        let start = Instant::now();
        let (mut after, mut units, mut read) = (Checkpoint::default(), 0u64, 0u64);
        let filter = Filter::all().event_types(["cart.item_added"]);
        loop {
            let batch = store.read_feed(after, &filter, PAGE).await.unwrap();
            for event in &batch.events {
                units += u64::from(event.envelope.decode::<ItemAdded>().unwrap().qty);
                read += 1;
            }
            if batch.next == after {
                break;
            }
            after = batch.next;
        }
        feed.push(start.elapsed());
        assert_eq!((read, units), (EVENTS, expected));
        if counting {
            print_statements(store.pool(), "the feed alone", None).await;
            reset_statements(store.pool()).await;
            raw_pages(&store, &raw_sql).await;
            print_statements(store.pool(), "raw pages", None).await;
        }
    }
    let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    let (pg, memory, raw, raw_tx, feed) = (best(&pg), best(&memory), best(&raw), best(&raw_tx), best(&feed));
    println!("raw sqlx pages by position:           {:>8.0} events/s ({:>6.1} ms)", rate(raw), raw.as_secs_f64() * 1e3);
    println!(
        "raw, each page's position committed:  {:>8.0} events/s ({:>6.1} ms)",
        rate(raw_tx),
        raw_tx.as_secs_f64() * 1e3
    );
    println!(
        "EventFeed::read_feed pages alone:     {:>8.0} events/s ({:>6.1} ms), ratio annals/raw {:.2}",
        rate(feed),
        feed.as_secs_f64() * 1e3,
        rate(feed) / rate(raw)
    );
    println!(
        "Subscription -> ExactlyOnce:          {:>8.0} events/s ({:>6.1} ms), ratio annals/raw {:.2}, \
         annals/raw committing {:.2}",
        rate(pg),
        pg.as_secs_f64() * 1e3,
        rate(pg) / rate(raw),
        rate(pg) / rate(raw_tx)
    );
    println!(
        "Subscription -> InMemoryProjection:   {:>8.0} events/s ({:>6.1} ms), ratio annals/raw {:.2}",
        rate(memory),
        memory.as_secs_f64() * 1e3,
        rate(memory) / rate(raw)
    );
}

/// Raw sqlx catching up by position in pages, decoding every column; with `checkpoint`,
/// each page's last position is upserted under that name in a transaction of its own
/// (`BEGIN`, the upsert, `COMMIT`), as ExactlyOnce commits its checkpoint per batch.
/// Returns the events read and their units.
async fn raw_catch_up(store: &annals_postgres::PostgresStore, raw_sql: &str, checkpoint: Option<&str>) -> (u64, u64) {
    let save = format!(
        "INSERT INTO {}.raw_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        store.schema().quoted()
    );
    let (mut after, mut units, mut read) = (0i64, 0u64, 0u64);
    loop {
        let rows = sqlx::query(raw_sql).bind(after).bind(PAGE as i64).fetch_all(store.pool()).await.unwrap();
        for row in &rows {
            let Json(payload): Json<ItemAdded> = row.get(5);
            let event = RawEvent {
                position: row.get(0),
                stream_id: row.get(1),
                version: row.get(2),
                event_type: row.get(3),
                event_version: row.get(4),
                payload,
                metadata: row.get(6),
                event_id: row.get(7),
                correlation_id: row.get(8),
                causation_id: row.get(9),
                recorded_at: row.get(10),
            };
            units += u64::from(event.payload.qty);
            after = event.position;
            read += 1;
        }
        if let Some(name) = checkpoint {
            let mut tx = store.pool().begin().await.unwrap();
            sqlx::query(&save).bind(name).bind(after).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        if rows.len() < PAGE {
            return (read, units);
        }
    }
}

/// Raw's pages again, fetched and not decoded, for the server's side of its cost.
async fn raw_pages(store: &annals_postgres::PostgresStore, raw_sql: &str) {
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(raw_sql).bind(after).bind(PAGE as i64).fetch_all(store.pool()).await.unwrap();
        match rows.last() {
            Some(last) if rows.len() == PAGE => after = last.get(0),
            _ => return,
        }
    }
}
