//! Blue/green rebuilds on SQLite: a second generation of a read model is built in tables
//! of its own while readers poll the live one through a view; the switch drops and
//! recreates the view and moves the live pointer in one transaction. Readers must never
//! see an empty, half-built or mixed model. (The same scenario as annals-postgres'
//! `tests/blue_green.rs`, in SQLite's SQL.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::{CheckpointStore, Inspect};
use annals::subscription::{BlueGreen, ExactlyOnce, RebuildError, Rebuildable, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_sqlite::testing::fresh_store;
use annals_sqlite::{sqlx, SqliteConnection, SqliteStore};
use serde_json::json;
use shopping_cart::ItemAdded;

const CARTS: u32 = 30;
const PER_CART: u32 = 20;

/// Units per cart, in `balances_g<generation>`; readers use the view `balances`. Each row carries its generation, so a reader can tell which one
/// it read. `delay` slows each event down, so that readers poll while it builds.
#[derive(Projection)]
#[projection(name = "balances", events(ItemAdded), context = SqliteConnection)]
struct Balances {
    generation: u64,
    delay: Duration,
}

impl Balances {
    async fn new(store: &SqliteStore, generation: u64, delay: Duration) -> Result<Balances, BoxError> {
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS balances_g{generation} (
                 cart text PRIMARY KEY, units bigint NOT NULL, generation bigint NOT NULL)"
        ))
        .execute(store.pool())
        .await?;
        Ok(Balances { generation, delay })
    }
}

impl On<ItemAdded> for Balances {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        sqlx::query(&format!(
            "INSERT INTO balances_g{g} (cart, units, generation) VALUES ($1, $2, $3)
             ON CONFLICT (cart) DO UPDATE SET units = balances_g{g}.units + excluded.units",
            g = self.generation
        ))
        .bind(&env.stream_id)
        .bind(i64::from(e.qty))
        .bind(i64::try_from(self.generation)?)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl Rebuildable for Balances {
    async fn publish(&self, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query("DROP VIEW IF EXISTS balances").execute(&mut *tx).await?;
        sqlx::query(&format!(
            "CREATE VIEW balances AS SELECT cart, units, generation FROM balances_g{}",
            self.generation
        ))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn retire(&self, generation: u64, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("DROP TABLE balances_g{generation}")).execute(&mut *tx).await?;
        Ok(())
    }
}

async fn store() -> SqliteStore {
    fresh_store().await
}

fn added(qty: u32) -> NewEvent {
    NewEvent::new("cart.item_added", 1, json!({"sku": "tea", "qty": qty, "unit_price_cents": 100}))
}

/// `CARTS` carts of `PER_CART` events; returns the units written.
async fn write_carts(store: &SqliteStore) -> i64 {
    let mut units = 0;
    for c in 0..CARTS {
        let events = (1..=PER_CART).map(added).collect();
        store.append(&format!("cart-{c}"), ExpectedVersion::Any, events).await.unwrap();
        units += i64::from((1..=PER_CART).sum::<u32>());
    }
    units
}

fn small_batches() -> SubscriptionOptions {
    SubscriptionOptions { batch_size: 20, poll_interval: Duration::from_millis(50), ..SubscriptionOptions::default() }
}

/// Generation 1, built and published as an application would have before any rebuild.
async fn generation_one(store: &SqliteStore) {
    let balances = Balances::new(store, 1, Duration::ZERO).await.unwrap();
    let sink = ExactlyOnce::new(store.clone(), balances);
    let mut subscription = Subscription::new(store.clone(), sink);
    subscription.catch_up().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    subscription.sink().projection().publish(&mut tx).await.unwrap();
    store.commit(tx).await.unwrap();
}

/// One read of the view: (rows, units, lowest generation, highest generation).
async fn read_view(store: &SqliteStore) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*), coalesce(sum(units), 0), coalesce(min(generation), 0), coalesce(max(generation), 0)
         FROM balances",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Rows of generation `g`'s own table, or `None` when it does not exist.
async fn rows_of(store: &SqliteStore, g: u64) -> Option<i64> {
    let table = format!("balances_g{g}");
    let exists: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(&table)
            .fetch_optional(store.pool())
            .await
            .unwrap();
    exists?;
    Some(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(store.pool()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after() {
    let store = store().await;
    let units = write_carts(&store).await;
    generation_one(&store).await;
    assert_eq!(read_view(&store).await, (i64::from(CARTS), units, 1, 1));

    // Readers poll the view for the whole rebuild; each read must be one whole generation.
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let (mut reads, mut bad, mut last, mut of_one, mut partial_seen) = (0u32, Vec::new(), 1, 0u32, 0u32);
                while !done.load(Ordering::SeqCst) {
                    let read = read_view(&store).await;
                    reads += 1;
                    if read.0 != i64::from(CARTS) || read.1 != units || read.2 != read.3 || read.2 < last {
                        bad.push(read);
                    }
                    last = read.3;
                    if read.3 == 1 {
                        of_one += 1;
                        // Generation 2's own table, read after that: being built.
                        if rows_of(&store, 2).await.is_some_and(|rows| rows < i64::from(CARTS)) {
                            partial_seen += 1;
                        }
                    }
                }
                (reads, bad, of_one, partial_seen)
            })
        })
        .collect();

    let blue_green = BlueGreen::new(store.clone(), "balances").options(small_batches());
    let started = Instant::now();
    let builder = store.clone();
    let rebuilt = blue_green
        .rebuild(store.clone(), |generation| async move {
            Balances::new(&builder, generation, Duration::from_millis(2)).await
        })
        .await
        .unwrap();
    let took = started.elapsed();
    // Reads after the switch, then stop the readers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::SeqCst);
    let (mut reads, mut of_one, mut partial_seen) = (0, 0, 0);
    for reader in readers {
        let (r, bad, one, partial) = reader.await.unwrap();
        assert!(bad.is_empty(), "a reader saw a partial or mixed model: {bad:?}");
        (reads, of_one, partial_seen) = (reads + r, of_one + one, partial_seen + partial);
    }
    println!(
        "rebuild of {} events took {took:?}; {reads} reads, {of_one} of generation 1 \
         ({partial_seen} while generation 2 was partly built), {} of generation 2, none partial",
        CARTS * PER_CART,
        reads - of_one
    );
    assert!(partial_seen > 0, "readers polled while generation 2 was being built");
    assert!(reads > of_one, "readers read generation 2 after the switch");
    assert_eq!((rebuilt.generation, rebuilt.previous), (2, 1));
    assert_eq!(blue_green.live().await.unwrap(), 2);
    assert_eq!(read_view(&store).await, (i64::from(CARTS), units, 2, 2));

    // The new generation follows live.
    let mut subscription = rebuilt.subscription;
    let follower = tokio::spawn(async move {
        subscription.run().await.unwrap();
    });
    store.append("cart-0", ExpectedVersion::Any, vec![added(1000)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_view(&store).await.1 != units + 1000 {
        assert!(Instant::now() < deadline, "the new generation did not apply the new event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower.abort();

    // Retiring: the live generation is refused; generation 1's table and checkpoint go.
    let projection = Balances::new(&store, 2, Duration::ZERO).await.unwrap();
    assert!(matches!(blue_green.retire(&projection, 2).await, Err(RebuildError::RetiringLive { generation: 2, .. })));
    blue_green.retire(&projection, 1).await.unwrap();
    assert_eq!(rows_of(&store, 1).await, None);
    let consumers: Vec<String> = store.consumers().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(consumers, ["balances@g2", "balances@live"]);
    assert_eq!(read_view(&store).await, (i64::from(CARTS), units + 1000, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins() {
    let store = store().await;
    let units = write_carts(&store).await;
    generation_one(&store).await;
    let blue_green = BlueGreen::new(store.clone(), "balances");
    let build = |generation| Balances::new(&store, generation, Duration::ZERO);
    let first = blue_green.prepare(store.clone(), build).await.unwrap();
    let second = blue_green.prepare(store.clone(), build).await.unwrap();
    assert_eq!((first.generation, second.generation), (2, 2));
    blue_green.switch(first).await.unwrap();
    match blue_green.switch(second).await {
        Err(RebuildError::Superseded { generation: 2, expected: 1, found: 2, .. }) => {}
        other => panic!("expected the second switch to be superseded, got {:?}", other.map(|r| r.generation)),
    }
    // Both caught up the same tables exactly once between them (one checkpoint).
    assert_eq!(read_view(&store).await, (i64::from(CARTS), units, 2, 2));
    // A third rebuild starts from generation 2.
    let third = blue_green.rebuild(store.clone(), build).await.unwrap();
    assert_eq!((third.generation, third.previous), (3, 2));
    assert_eq!(read_view(&store).await, (i64::from(CARTS), units, 3, 3));
}
