//! Consumers on PostgreSQL, beyond the generic consumer suite of `conformance.rs`: one
//! active [`PgProjectionRunner`] among several and takeovers, the reset that refuses
//! while a runner holds the lock, and a real read-model table committed atomically with
//! the checkpoint (a failing batch, a runner killed mid-batch, a backend terminated
//! mid-batch).
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::prelude::*;
use annals::store::Checkpoint;
use annals::subscription::{ExactlyOnce, Subscription, SubscriptionError, SubscriptionOptions};
use annals::{BoxError, NewEvent, RetryPolicy};
use annals_postgres::testing::fresh_store;
use annals_postgres::{sqlx, PgConnection, PgProjectionRunner, PostgresStore, ResetError};
use serde_json::json;
use shopping_cart::{ItemAdded, ItemRemoved};

/// Where a [`Ledger`] stops once, inside its transaction: to be killed, or to fail.
struct Stall {
    sku: String,
    /// How long it sleeps inside the transaction; `None`: it fails instead.
    seconds: Option<f64>,
    fired: AtomicBool,
    /// The backend running the stalled transaction.
    pid: AtomicI32,
    inside: tokio::sync::Notify,
}

impl Stall {
    fn new(sku: &str, seconds: Option<f64>) -> Arc<Stall> {
        Arc::new(Stall {
            sku: sku.into(),
            seconds,
            fired: AtomicBool::new(false),
            pid: AtomicI32::new(0),
            inside: tokio::sync::Notify::new(),
        })
    }
}

/// Records every event in `<prefix>_seen` (the event id is unique, so applying an event
/// twice fails) and keeps per-stream totals in `<prefix>_totals`.
#[derive(Projection)]
#[projection(name = "ledger", events(ItemAdded, ItemRemoved), context = PgConnection)]
struct Ledger {
    prefix: String,
    stall: Option<Arc<Stall>>,
}

impl Ledger {
    fn new(store: &PostgresStore, name: &str) -> Ledger {
        Ledger { prefix: format!("{}.{name}", store.schema().quoted()), stall: None }
    }

    async fn record(&self, env: &Envelope, sku: &str, qty: i64, tx: &mut PgConnection) -> Result<(), BoxError> {
        let p = &self.prefix;
        sqlx::query(&format!("INSERT INTO {p}_seen (event_id, position) VALUES ($1, $2)"))
            .bind(env.event_id)
            .bind(i64::try_from(env.global_position)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {p}_totals (stream_id, n, qty) VALUES ($1, 1, $2) \
             ON CONFLICT (stream_id) DO UPDATE SET n = {p}_totals.n + 1, qty = {p}_totals.qty + $2"
        ))
        .bind(&env.stream_id)
        .bind(qty)
        .execute(&mut *tx)
        .await?;
        if let Some(stall) = self.stall.as_ref().filter(|s| s.sku == sku) {
            if !stall.fired.swap(true, Ordering::SeqCst) {
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *tx).await?;
                stall.pid.store(pid, Ordering::SeqCst);
                stall.inside.notify_one();
                match stall.seconds {
                    Some(seconds) => {
                        sqlx::query("SELECT pg_sleep($1)").bind(seconds).execute(&mut *tx).await?;
                    }
                    None => return Err("the ledger fails after writing".into()),
                }
            }
        }
        Ok(())
    }
}

impl On<ItemAdded> for Ledger {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.record(env, &e.sku, i64::from(e.qty), tx).await
    }
}

impl On<ItemRemoved> for Ledger {
    async fn on(&mut self, e: ItemRemoved, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.record(env, &e.sku, -i64::from(e.qty), tx).await
    }
}

/// Tests that hold a writing transaction open hold back every subscriber on the server
/// (see `annals_postgres::feed`): they run alone, the others together.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn store() -> PostgresStore {
    fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

async fn create_tables(store: &PostgresStore, name: &str) {
    let p = format!("{}.{name}", store.schema().quoted());
    sqlx::raw_sql(&format!(
        "CREATE TABLE {p}_seen (event_id uuid PRIMARY KEY, position bigint NOT NULL, \
                                applied bigint GENERATED ALWAYS AS IDENTITY);
         CREATE TABLE {p}_totals (stream_id text PRIMARY KEY, n bigint NOT NULL, qty bigint NOT NULL);"
    ))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn seen(store: &PostgresStore, name: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {}.{name}_seen", store.schema().quoted()))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn totals(store: &PostgresStore, name: &str) -> Vec<(String, i64, i64)> {
    sqlx::query_as(&format!(
        "SELECT stream_id, n, qty FROM {}.{name}_totals ORDER BY stream_id",
        store.schema().quoted()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

fn added(sku: &str, qty: u32) -> NewEvent {
    NewEvent::new("cart.item_added", 1, json!({"sku": sku, "qty": qty, "unit_price_cents": 100}))
}

fn removed(sku: &str) -> NewEvent {
    NewEvent::new("cart.item_removed", 1, json!({"sku": sku, "qty": 1}))
}

/// `carts` carts of `per_cart` events each: item_added with quantities 1..=per_cart, an
/// item_removed every 5th, and an event type no projection handles.
async fn write_events(store: &PostgresStore, carts: u32, per_cart: u32) {
    for c in 0..carts {
        let events = (1..=per_cart)
            .map(|i| if i % 5 == 0 { removed(&format!("s{c}-{i}")) } else { added(&format!("s{c}-{i}"), i) })
            .chain([NewEvent::new("cart.noise", 1, json!({}))])
            .collect();
        store.append(&format!("cart-{c}"), ExpectedVersion::Any, events).await.unwrap();
    }
}

fn fast() -> SubscriptionOptions {
    SubscriptionOptions {
        batch_size: 25,
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..SubscriptionOptions::default()
    }
}

/// A runner of `ledger`, polling for the lock every 50 ms.
fn runner(store: &PostgresStore, ledger: Ledger) -> PgProjectionRunner<ExactlyOnce<Ledger, PostgresStore>> {
    let consumer = ExactlyOnce::new(store.clone(), ledger);
    PgProjectionRunner::new(store.clone(), Subscription::new(store.clone(), consumer).options(fast()))
        .lock_poll_interval(Duration::from_millis(50))
}

async fn until_seen(store: &PostgresStore, name: &str, n: i64) {
    for _ in 0..1500 {
        if seen(store, name).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("projection `{name}` saw {} events, expected {n}", seen(store, name).await);
}

/// The read model a clean run produces, under consumer name `name`.
async fn clean_run(store: &PostgresStore, name: &str) -> Vec<(String, i64, i64)> {
    create_tables(store, name).await;
    let consumer = ExactlyOnce::new(store.clone(), Ledger::new(store, name)).named(name);
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    totals(store, name).await
}

/// Several runners of one consumer: one applies the events, each once; when the active
/// one dies, another takes over and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_runner_at_a_time_and_another_takes_over() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    let a = tokio::spawn(runner(&store, Ledger::new(&store, "ledger")).run());
    let b = tokio::spawn(runner(&store, Ledger::new(&store, "ledger")).run());
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 100).await;
    // Whichever was active, aborting `a` then `b` makes at least one takeover happen.
    a.abort();
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 200).await;
    let c = tokio::spawn(runner(&store, Ledger::new(&store, "ledger")).run());
    b.abort();
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!c.is_finished(), "the last runner keeps running: {c:?}");
    c.abort();
    assert_eq!(seen(&store, "ledger").await, 300, "every event exactly once");
    assert!(totals(&store, "ledger").await.iter().all(|(_, n, _)| *n == 60));
}

/// The reset refuses while a runner holds the consumer's lock; once the runner stopped,
/// it clears the read model and the checkpoint together, and the next run rebuilds the
/// same read model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_waits_for_the_runners_to_stop_then_replays_from_the_start() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    write_events(&store, 3, 10).await;
    let before = clean_run(&store, "clean").await;
    let running = tokio::spawn(runner(&store, Ledger::new(&store, "ledger")).run());
    until_seen(&store, "ledger", 30).await;
    let mut consumer = ExactlyOnce::new(store.clone(), Ledger::new(&store, "ledger"));
    match PgProjectionRunner::reset(&store, &mut consumer).await {
        Err(ResetError::Running { name }) => assert_eq!(name, "ledger"),
        other => panic!("expected the reset to refuse while running, got {other:?}"),
    }
    assert!(consumer.stored_checkpoint().await.unwrap().is_some(), "a refused reset changes nothing");
    running.abort();
    // The aborted runner's lock goes with its connection, a moment later.
    let mut reset = PgProjectionRunner::reset(&store, &mut consumer).await;
    for _ in 0..100 {
        if !matches!(reset, Err(ResetError::Running { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reset = PgProjectionRunner::reset(&store, &mut consumer).await;
    }
    let mut reset = reset.unwrap();
    // The reset holds the consumer's lock until it commits: no second reset (nor runner).
    let mut other = ExactlyOnce::new(store.clone(), Ledger::new(&store, "ledger"));
    assert!(matches!(PgProjectionRunner::reset(&store, &mut other).await, Err(ResetError::Running { .. })));
    let truncate = format!("TRUNCATE {0}.ledger_seen, {0}.ledger_totals", store.schema().quoted());
    sqlx::query(&truncate).execute(reset.connection()).await.unwrap();
    reset.commit().await.unwrap();
    assert_eq!(consumer.stored_checkpoint().await.unwrap(), None);
    assert_eq!(seen(&store, "ledger").await, 0);
    Subscription::new(store.clone(), consumer).options(fast()).catch_up().await.unwrap();
    assert_eq!(totals(&store, "ledger").await, before);
}

/// A handler that fails after writing to the read model: the batch's rows and its
/// checkpoint roll back together, and a restart applies the batch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_keeps_neither_its_rows_nor_its_checkpoint() {
    let _gate = GATE.read().await;
    let store = store().await;
    write_events(&store, 2, 20).await;
    let clean = clean_run(&store, "clean").await;
    create_tables(&store, "ledger").await;
    let stall = Stall::new("s1-8", None);
    let ledger = Ledger { stall: Some(stall.clone()), ..Ledger::new(&store, "ledger") };
    let once = SubscriptionOptions { retry: RetryPolicy::never(), ..fast() };
    let mut subscription = Subscription::new(store.clone(), ExactlyOnce::new(store.clone(), ledger)).options(once);
    match subscription.catch_up().await {
        Err(SubscriptionError::Sink { attempts: 1, .. }) => {}
        other => panic!("expected the failing batch to stop the subscription, got {other:?}"),
    }
    // Cart 0's 20 events, then cart 1's: batches of 25, the second one fails.
    assert_eq!(seen(&store, "ledger").await, 25, "only the first batch");
    let stored = subscription.sink().stored_checkpoint().await.unwrap().unwrap();
    let positions: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT position FROM {}.ledger_seen ORDER BY position", store.schema().quoted()))
            .fetch_all(store.pool())
            .await
            .unwrap();
    let last = *positions.last().unwrap();
    let (_, position) = stored.parts();
    assert!(u64::try_from(last).unwrap() <= position, "the checkpoint covers the committed rows only");
    Subscription::new(store.clone(), ExactlyOnce::new(store.clone(), Ledger::new(&store, "ledger")))
        .options(fast())
        .catch_up()
        .await
        .unwrap();
    assert_eq!(totals(&store, "ledger").await, clean);
    assert_eq!(seen(&store, "ledger").await, 40);
}

/// A runner killed while a handler is inside the batch's transaction (its task aborted,
/// as when the process dies): nothing of the batch is kept, and a restarted runner ends
/// with the read model of a clean run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_batch_restarts_to_the_clean_read_model() {
    let _gate = GATE.write().await;
    let store = store().await;
    write_events(&store, 6, 20).await;
    let clean = clean_run(&store, "clean").await;
    create_tables(&store, "ledger").await;
    let stall = Stall::new("s3-7", Some(1.0));
    let ledger = Ledger { stall: Some(stall.clone()), ..Ledger::new(&store, "ledger") };
    let first = tokio::spawn(runner(&store, ledger).run());
    tokio::time::timeout(Duration::from_secs(20), stall.inside.notified())
        .await
        .expect("the handler reaches the stall");
    first.abort();
    let applied_before = seen(&store, "ledger").await;
    assert!(applied_before < 120 && applied_before % 25 == 0, "only whole batches: {applied_before}");
    let second = tokio::spawn(runner(&store, Ledger::new(&store, "ledger")).run());
    until_seen(&store, "ledger", 120).await;
    second.abort();
    assert_eq!(totals(&store, "ledger").await, clean);
    assert_eq!(seen(&store, "ledger").await, 120);
}

/// The backend of a batch's transaction is terminated while a handler runs: the batch
/// rolls back, the subscription retries it on a new connection, and the read model equals
/// a clean run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_backend_mid_batch_is_retried_to_the_clean_read_model() {
    let _gate = GATE.write().await;
    let store = store().await;
    write_events(&store, 6, 20).await;
    let clean = clean_run(&store, "clean").await;
    create_tables(&store, "ledger").await;
    let stall = Stall::new("s2-3", Some(30.0));
    let ledger = Ledger { stall: Some(stall.clone()), ..Ledger::new(&store, "ledger") };
    let mut subscription = Subscription::new(store.clone(), ExactlyOnce::new(store.clone(), ledger)).options(fast());
    let catching_up = tokio::spawn(async move { subscription.catch_up().await });
    tokio::time::timeout(Duration::from_secs(20), stall.inside.notified())
        .await
        .expect("the handler reaches the stall");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(stall.pid.load(Ordering::SeqCst))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(terminated);
    let reached: Checkpoint =
        tokio::time::timeout(Duration::from_secs(30), catching_up).await.unwrap().unwrap().unwrap();
    assert!(reached > Checkpoint::START);
    assert_eq!(totals(&store, "ledger").await, clean);
    assert_eq!(seen(&store, "ledger").await, 120);
}
