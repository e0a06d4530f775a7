//! Catch-up of a read model that writes a row per event, split into 1, 2 and 4
//! partitions, against hand-written sqlx doing the same work with the same number of
//! workers, in one run: `cargo bench -p annals-postgres --bench partitions`.
//!
//! 40,000 stored `cart.item_added` events over 400 carts. The read model keeps units per
//! cart: each event is one upsert in the batch's transaction, with the checkpoint. The
//! annals side runs one `Subscription` into an `ExactlyOnce` consumer per partition
//! (`Subscription::partition`, what each `PgPartitionedRunner` partition runs), all at
//! once, 500 events per read. The raw side runs as many workers, each paging by global
//! position (not gap-safe) through the events of its share of the carts
//! (`hashtext(stream_id) % workers`, the same split), with the same upserts and a
//! checkpoint row per worker in each page's transaction. Best of 4 rounds (who goes
//! first alternates); ratio = annals
//! / raw throughput with the same number of workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::Partition;
use annals::subscription::{ExactlyOnce, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_postgres::sqlx::types::Json;
use annals_postgres::sqlx::{self, Row};
use annals_postgres::testing::fresh_store;
use annals_postgres::{partition_consumer_name, PgConnection, PostgresStore};
use shopping_cart::ItemAdded;

#[path = "support/statements.rs"]
mod statements;
use statements::{print_statements, reset_statements};

const CARTS: u64 = 400;
const EVENTS: u64 = 40_000;
const PAGE: usize = 500;
const ROUNDS: usize = 4;

/// Units per cart in `<table>`, one upsert per event.
#[derive(Projection, Clone)]
#[projection(name = "cart_units", events(ItemAdded), context = PgConnection)]
struct CartUnits {
    table: String,
}

impl On<ItemAdded> for CartUnits {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        upsert(&self.table, &env.stream_id, e.qty, tx).await?;
        Ok(())
    }
}

async fn upsert(table: &str, cart: &str, qty: u32, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (cart, units) VALUES ($1, $2) ON CONFLICT (cart) DO UPDATE SET units = {table}.units + $2"
    ))
    .bind(cart)
    .bind(i64::from(qty))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn main() {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    let store = fresh_store().await.unwrap();
    println!("annals-postgres partitioned catch-up: {EVENTS} events over {CARTS} carts, an upsert per event, best of {ROUNDS}");
    println!(
        "server: {}",
        if std::env::var("DATABASE_URL").is_ok() { "DATABASE_URL" } else { "throwaway (fsync=off)" }
    );
    let per_append = EVENTS / CARTS / 4;
    for round in 0..4 {
        for cart in 0..CARTS {
            let events = (0..per_append)
                .map(|i| {
                    let qty = 1 + u32::try_from((i + round) % 3).unwrap();
                    let e = ItemAdded { sku: format!("sku-{}", i % 7), qty, unit_price_cents: 100 };
                    NewEvent::new("cart.item_added", 1, serde_json::to_value(e).unwrap())
                })
                .collect();
            store.append(&format!("cart-{cart}"), ExpectedVersion::Any, events).await.unwrap();
        }
    }
    let schema = store.schema().quoted();
    sqlx::query(&format!("VACUUM ANALYZE {schema}.events")).execute(store.pool()).await.unwrap();
    let units: i64 = sqlx::query_scalar(&format!("SELECT sum((payload->>'qty')::int8)::int8 FROM {schema}.events"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE TABLE {schema}.raw_checkpoints (worker int PRIMARY KEY, position int8 NOT NULL)"))
        .execute(store.pool())
        .await
        .unwrap();

    let mut lines = Vec::new();
    for count in [1u32, 2, 4] {
        let (mut annals, mut raw) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Who goes first alternates, so that neither side always finds the other's
            // pages in the cache; statements are counted in the first round.
            let counting = round == 0 && reset_statements(store.pool()).await;
            for side in if round % 2 == 0 { ["annals", "raw"] } else { ["raw", "annals"] } {
                let table = read_model(&store, &format!("{side}_{count}_{round}")).await;
                let start = Instant::now();
                if side == "annals" {
                    catch_up_annals(&store, &table, count, round).await;
                    annals.push(start.elapsed());
                } else {
                    catch_up_raw(&store, &table, count).await;
                    raw.push(start.elapsed());
                }
                assert_eq!(total(&store, &table).await, units);
                if counting {
                    print_statements(store.pool(), side, Some((EVENTS, "event"))).await;
                    reset_statements(store.pool()).await;
                }
            }
        }
        let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
        let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
        let (annals, raw) = (best(&annals), best(&raw));
        lines.push(format!(
            "{count} partition(s): annals {:>7.0} events/s ({:>7.1} ms), raw sqlx {:>7.0} events/s ({:>7.1} ms), ratio {:.2}",
            rate(annals),
            annals.as_secs_f64() * 1e3,
            rate(raw),
            raw.as_secs_f64() * 1e3,
            rate(annals) / rate(raw)
        ));
        println!("{}", lines.last().unwrap());
    }
}

/// `count` partitions of consumer `cart_units_{round}` catching up at once into `table`.
async fn catch_up_annals(store: &PostgresStore, table: &str, count: u32, round: usize) {
    let tasks: Vec<_> = Partition::all(count)
        .unwrap()
        .map(|partition| {
            let name = partition_consumer_name(&format!("cart_units_{round}"), partition);
            let sink = ExactlyOnce::new(store.clone(), CartUnits { table: table.to_owned() }).named(name);
            let options = SubscriptionOptions { batch_size: PAGE, ..SubscriptionOptions::default() };
            let mut subscription = Subscription::new(store.clone(), sink).options(options).partition(partition);
            tokio::spawn(async move { subscription.catch_up().await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// `count` hand-written workers catching up at once into `table`.
async fn catch_up_raw(store: &PostgresStore, table: &str, count: u32) {
    let workers: Vec<_> =
        (0..count).map(|worker| tokio::spawn(raw_worker(store.clone(), table.to_owned(), worker, count))).collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// A fresh read-model table; its quoted name.
async fn read_model(store: &PostgresStore, name: &str) -> String {
    let table = format!("{}.{name}", store.schema().quoted());
    sqlx::query(&format!("CREATE TABLE {table} (cart text PRIMARY KEY, units int8 NOT NULL)"))
        .execute(store.pool())
        .await
        .unwrap();
    table
}

async fn total(store: &PostgresStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT coalesce(sum(units), 0)::int8 FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Hand-written catch-up of worker `worker` of `workers`: pages of its carts' events by
/// position, each page's upserts and the worker's checkpoint in one transaction.
async fn raw_worker(store: PostgresStore, table: String, worker: u32, workers: u32) {
    let schema = store.schema().quoted();
    let page = format!(
        "SELECT global_position, stream_id, payload FROM {schema}.events \
         WHERE global_position > $1 AND (hashtext(stream_id)::int8 & 4294967295) % $2 = $3 \
         ORDER BY global_position LIMIT $4"
    );
    let checkpoint = format!(
        "INSERT INTO {schema}.raw_checkpoints (worker, position) VALUES ($1, $2) \
         ON CONFLICT (worker) DO UPDATE SET position = $2"
    );
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(&page)
            .bind(after)
            .bind(i64::from(workers))
            .bind(i64::from(worker))
            .bind(PAGE as i64)
            .fetch_all(store.pool())
            .await
            .unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        for row in &rows {
            let Json(event): Json<ItemAdded> = row.get(2);
            let cart: String = row.get(1);
            upsert(&table, &cart, event.qty, &mut tx).await.unwrap();
            after = row.get(0);
        }
        sqlx::query(&checkpoint).bind(i32::try_from(worker).unwrap()).bind(after).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        if rows.len() < PAGE {
            return;
        }
    }
}
