//! [`PgPartitionedRunner`]: a consumer split into partitions by stream, spread over the
//! instances that run it, handed to a new instance, taken over from a dead one and after
//! its lock connection is cut, with every event applied exactly once and each stream's
//! events in order.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use annals::prelude::*;
use annals::store::{Inspect, Partition};
use annals::subscription::{ExactlyOnce, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent, RetryPolicy};
use annals_postgres::testing::fresh_store;
use annals_postgres::{
    partition_consumer_name, sqlx, PartitionedStatus, PgConnection, PgPartitionedRunner, PostgresStore, RunError,
};
use serde_json::json;
use shopping_cart::ItemAdded;
use tokio::sync::watch;

/// Records every event it applies in `<schema>.applied`: its id (the primary key, so
/// applying an event twice fails the batch), stream, stream version, and the partition
/// consumer that applied it, numbered in the order they were applied.
#[derive(Projection, Clone)]
#[projection(name = "applied", events(ItemAdded), context = PgConnection)]
struct Applied {
    table: String,
    consumer: String,
}

impl On<ItemAdded> for Applied {
    async fn on(&mut self, _: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "INSERT INTO {} (event_id, stream_id, version, consumer) VALUES ($1, $2, $3, $4)",
            self.table
        ))
        .bind(env.event_id)
        .bind(&env.stream_id)
        .bind(i64::try_from(env.stream_version)?)
        .bind(&self.consumer)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

async fn store() -> PostgresStore {
    let store = fresh_store().await.expect("a PostgreSQL store in a fresh schema");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {}.applied (event_id uuid PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL, \
                                  consumer text NOT NULL, applied bigint GENERATED ALWAYS AS IDENTITY)",
        store.schema().quoted()
    ))
    .execute(store.pool())
    .await
    .unwrap();
    store
}

fn fast() -> SubscriptionOptions {
    SubscriptionOptions {
        batch_size: 20,
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy { max_attempts: 3, backoff: Duration::from_millis(5), ..RetryPolicy::default() },
        wait: RetryPolicy {
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::forever()
        },
    }
}

type Runner = PgPartitionedRunner<
    ExactlyOnce<Applied, PostgresStore>,
    Box<dyn FnMut(Partition, &str) -> Subscription<PostgresStore, ExactlyOnce<Applied, PostgresStore>> + Send>,
>;

/// An instance of the consumer `applied` in `count` partitions, balancing every 50 ms.
fn instance(store: &PostgresStore, count: u32) -> Runner {
    let feed = store.clone();
    let table = format!("{}.applied", store.schema().quoted());
    let make: Box<dyn FnMut(Partition, &str) -> _ + Send> = Box::new(move |_, name: &str| {
        let projection = Applied { table: table.clone(), consumer: name.to_owned() };
        Subscription::new(feed.clone(), ExactlyOnce::new(feed.clone(), projection).named(name)).options(fast())
    });
    PgPartitionedRunner::new(store.clone(), "applied", count, make).unwrap().balance_interval(Duration::from_millis(50))
}

/// 30 carts, `per_cart` more events each (one append per cart), after what is there.
async fn write(store: &PostgresStore, per_cart: u32) {
    for c in 0..30 {
        let events = (0..per_cart).map(|i| {
            NewEvent::new("cart.item_added", 1, json!({"sku": format!("s{i}"), "qty": 1, "unit_price_cents": 1}))
        });
        store.append(&format!("cart-{c}"), ExpectedVersion::Any, events.collect()).await.unwrap();
    }
}

async fn applied(store: &PostgresStore) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {}.applied", store.schema().quoted()))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn until_applied(store: &PostgresStore, n: i64) {
    for _ in 0..1500 {
        if applied(store).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("applied {} events, expected {n}", applied(store).await);
}

/// Waits until the instances hold the partitions as `holds` says, and returns what each
/// holds.
async fn until_held(
    statuses: &[&watch::Receiver<PartitionedStatus>],
    what: &str,
    holds: impl Fn(&[Vec<u32>]) -> bool,
) -> Vec<Vec<u32>> {
    for _ in 0..500 {
        let held: Vec<Vec<u32>> = statuses.iter().map(|s| s.borrow().held.clone()).collect();
        if holds(&held) {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now: Vec<PartitionedStatus> = statuses.iter().map(|s| s.borrow().clone()).collect();
    panic!("the instances never held {what}: {now:#?}");
}

/// Every partition exactly once across the instances.
fn all_once(held: &[Vec<u32>], count: u32) -> bool {
    let all: Vec<u32> = held.iter().flatten().copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    all.len() == distinct.len() && distinct == (0..count).collect()
}

/// Each event applied once, by the partition its stream belongs to, and each stream's
/// events applied in version order.
async fn check_read_model(store: &PostgresStore, count: u32, expected: i64) {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT stream_id, version, consumer FROM {}.applied ORDER BY applied",
        store.schema().quoted()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(i64::try_from(rows.len()).unwrap(), expected, "every event exactly once");
    let mut last = std::collections::HashMap::new();
    for (stream, version, consumer) in rows {
        let owner = partition_consumer_name("applied", Partition::of(&stream, count).unwrap());
        assert_eq!(consumer, owner, "{stream} v{version} applied by its partition");
        let previous = last.insert(stream.clone(), version).unwrap_or(0);
        assert_eq!(version, previous + 1, "{stream}: versions in order, none skipped");
    }
}

/// One instance takes every partition; a second gets half of them; when the first dies,
/// the second takes them all over. Every event is applied once, in stream order, by its
/// stream's partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_spread_over_instances_and_are_taken_over() {
    let store = store().await;
    let first = instance(&store, 4);
    let first_status = first.status();
    let first = tokio::spawn(first.run());
    until_held(&[&first_status], "all four in the first", |h| h[0] == [0, 1, 2, 3]).await;
    write(&store, 10).await;
    until_applied(&store, 300).await;

    let second = instance(&store, 4);
    let second_status = second.status();
    let second = tokio::spawn(second.run());
    let held =
        until_held(&[&first_status, &second_status], "two each", |h| all_once(h, 4) && h.iter().all(|p| p.len() == 2))
            .await;
    assert_eq!(first_status.borrow().instances, 2, "{held:?}");
    write(&store, 10).await;
    until_applied(&store, 600).await;
    // An operator sees each partition as a consumer, who runs it, and that it is caught up.
    // (A partition's checkpoint moves past the others' events at its next read.)
    let mut consumers = Vec::new();
    for _ in 0..500 {
        consumers = store.consumers().await.unwrap();
        if consumers.iter().all(|c| c.behind == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["applied[0/4]", "applied[1/4]", "applied[2/4]", "applied[3/4]"]);
    assert!(consumers.iter().all(|c| c.held_by.is_some() && c.behind == 0), "{consumers:#?}");

    first.abort();
    until_held(&[&second_status], "all four in the second", |h| h[0] == [0, 1, 2, 3]).await;
    write(&store, 10).await;
    until_applied(&store, 900).await;
    // Nothing more arrives late.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the runner keeps running: {second:?}");
    second.abort();
    check_read_model(&store, 4, 900).await;
}

/// Three instances of four partitions: each runs at most its share (two), every
/// partition runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_four_partitions() {
    let store = store().await;
    let runners: Vec<Runner> = (0..3).map(|_| instance(&store, 4)).collect();
    let statuses: Vec<_> = runners.iter().map(|r| r.status()).collect();
    let tasks: Vec<_> = runners.into_iter().map(|r| tokio::spawn(r.run())).collect();
    let refs: Vec<_> = statuses.iter().collect();
    until_held(&refs, "each partition once, at most two each", |h| {
        all_once(h, 4) && h.iter().all(|p| p.len() <= 2) && refs.iter().all(|s| s.borrow().instances == 3)
    })
    .await;
    write(&store, 20).await;
    until_applied(&store, 600).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for task in &tasks {
        task.abort();
    }
    check_read_model(&store, 4, 600).await;
}

/// The lock connection is terminated under a running instance: it says it waits, stops
/// its partitions, connects again and takes them back; nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_lock_connection_is_reconnected_and_the_partitions_retaken() {
    let store = store().await;
    let runner = instance(&store, 3);
    let status = runner.status();
    let task = tokio::spawn(runner.run());
    until_held(&[&status], "all three", |h| h[0] == [0, 1, 2]).await;
    write(&store, 10).await;
    until_applied(&store, 300).await;
    let mut watching = status.clone();
    let said_it_waits = tokio::spawn(async move {
        loop {
            watching.changed().await.unwrap();
            let now = watching.borrow_and_update().clone();
            if let Some(reason) = now.waiting {
                return (reason, now.held);
            }
        }
    });
    // The session holding the instance's membership lock: its lock connection.
    let members = format!("annals partitioned projection {}.applied of 3", store.schema().as_str());
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND classid = hashtext($1)::oid",
    )
    .bind(members)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(!killed.is_empty() && killed.iter().all(|&k| k), "terminated {killed:?}");
    let (reason, held) = tokio::time::timeout(Duration::from_secs(10), said_it_waits).await.unwrap().unwrap();
    assert!(reason.contains("the database is unreachable"), "{reason}");
    assert!(held.is_empty(), "it stopped its partitions while it waits: {held:?}");
    write(&store, 10).await;
    until_held(&[&status], "all three again", |h| h[0] == [0, 1, 2]).await;
    until_applied(&store, 600).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the runner keeps running: {task:?}");
    assert_eq!(status.borrow().waiting, None);
    task.abort();
    check_read_model(&store, 3, 600).await;
}

/// A subscription whose sink does not carry the partition's name would share a
/// checkpoint with the other partitions: the runner refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_sink_under_another_name_stops_the_runner() {
    let store = store().await;
    let feed = store.clone();
    let table = format!("{}.applied", store.schema().quoted());
    let runner = PgPartitionedRunner::new(store.clone(), "applied", 2, move |_, _: &str| {
        let projection = Applied { table: table.clone(), consumer: String::new() };
        Subscription::new(feed.clone(), ExactlyOnce::new(feed.clone(), projection))
    })
    .unwrap()
    .balance_interval(Duration::from_millis(20));
    let stopped = tokio::time::timeout(Duration::from_secs(10), runner.run()).await.unwrap();
    match stopped {
        Err(RunError::Misnamed { name, expected, got }) => {
            assert_eq!((name.as_str(), expected.as_str(), got.as_str()), ("applied", "applied[0/2]", "applied"));
        }
        other => panic!("expected a misnamed partition, got {other:?}"),
    }
    assert!(PgPartitionedRunner::new(
        store.clone(),
        "applied",
        0,
        |_, _: &str| -> Subscription<PostgresStore, ExactlyOnce<Applied, PostgresStore>> { unreachable!() }
    )
    .is_err());
}
