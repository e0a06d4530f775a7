//! PostgreSQL projections: exactly-once batches, fencing, one active runner among several,
//! reset, at-least-once side-effect handlers, and crashes in the middle of a batch.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::prelude::*;
use annals::subscription::{Checkpoint, EventFeed, Filter, Sink, SinkError, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_postgres::sqlx;
use annals_postgres::testing::fresh_store;
use annals_postgres::{AtLeastOnce, CheckpointMoved, PgConnection, PgProjection, PostgresStore, ResetError};
use serde_json::json;
use shopping_cart::{ItemAdded, ItemRemoved};

/// Where a [`Ledger`] stops once, inside its transaction, to be killed.
struct Stall {
    sku: String,
    seconds: f64,
    fired: AtomicBool,
    /// The backend running the stalled transaction.
    pid: AtomicI32,
    inside: tokio::sync::Notify,
}

impl Stall {
    fn new(sku: &str, seconds: f64) -> Arc<Stall> {
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
            .bind(env.global_position as i64)
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
                sqlx::query("SELECT pg_sleep($1)").bind(stall.seconds).execute(&mut *tx).await?;
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
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..SubscriptionOptions::default()
    }
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

/// The read model a clean run produces, under projection name `name`.
async fn clean_run(store: &PostgresStore, name: &str) -> Vec<(String, i64, i64)> {
    create_tables(store, name).await;
    let sink = PgProjection::new(store.clone(), Ledger::new(store, name)).named(name);
    Subscription::new(store.clone(), sink).options(fast()).catch_up().await.unwrap();
    totals(store, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_applies_each_event_once_and_resumes_after_its_checkpoint() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    write_events(&store, 4, 30).await;
    let sink = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    assert_eq!(sink.stored_checkpoint().await.unwrap(), None);
    let mut subscription = Subscription::new(store.clone(), sink).options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(seen(&store, "ledger").await, 120, "item_added and item_removed, no noise");
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(reached));
    assert_eq!(subscription.catch_up().await.unwrap(), reached, "nothing new, nothing applied");
    write_events(&store, 1, 10).await;
    // A new process: a fresh sink resumes after the stored checkpoint.
    let sink = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    Subscription::new(store.clone(), sink).options(fast()).catch_up().await.unwrap();
    assert_eq!(seen(&store, "ledger").await, 130);
    let expected: i64 = (1..=30).map(|i| if i % 5 == 0 { -1 } else { i }).sum();
    assert_eq!(totals(&store, "ledger").await[1], ("cart-1".to_owned(), 30, expected));
}

/// Two instances without a runner (or a new owner racing the commit of the one it took
/// over from): the one whose view is stale finds the checkpoint moved, never applies a
/// batch on top of it, and continues from the stored checkpoint: nothing twice, nothing
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_instance_is_fenced_off_and_resumes_from_the_stored_checkpoint() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    write_events(&store, 1, 10).await;
    let mut a = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    let mut b = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    let start = a.checkpoint().await.unwrap();
    assert_eq!(b.checkpoint().await.unwrap(), start);
    let first = store.read_feed(start, &Filter::for_projection::<Ledger>(), 100).await.unwrap();
    a.process(&first.events, first.next).await.unwrap();
    // `b` still believes the checkpoint is at `start`: the same batch again is a no-op.
    b.process(&first.events, first.next).await.unwrap();
    assert_eq!(seen(&store, "ledger").await, 10);

    // A stale view of a longer batch: fenced off once, then only the new events apply.
    let mut c = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    assert_eq!(c.checkpoint().await.unwrap(), first.next);
    write_events(&store, 1, 5).await;
    let mut stale = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    stale.checkpoint().await.unwrap();
    let longer = store.read_feed(start, &Filter::for_projection::<Ledger>(), 100).await.unwrap();
    assert_eq!(longer.events.len(), 15);
    c.process(&longer.events, longer.next).await.unwrap(); // applies the 5 new events
    let later = store.read_feed(start, &Filter::for_projection::<Ledger>(), 100).await.unwrap();
    write_events(&store, 1, 3).await;
    let longest = store.read_feed(start, &Filter::for_projection::<Ledger>(), 100).await.unwrap();
    assert_eq!(later.next, longer.next);
    match stale.process(&longest.events, longest.next).await {
        Err(SinkError::Storage(error)) => {
            let moved = error.downcast_ref::<CheckpointMoved>().expect("a CheckpointMoved error");
            assert_eq!((moved.expected, moved.found), (first.next, Some(longer.next)));
        }
        other => panic!("expected the stale instance to be fenced off once, got {other:?}"),
    }
    assert_eq!(seen(&store, "ledger").await, 15, "nothing applied by the fenced-off attempt");
    stale.process(&longest.events, longest.next).await.unwrap(); // the retry
    assert_eq!(seen(&store, "ledger").await, 18, "every event exactly once");
}

/// Several runners of one projection: one applies the events, each once; when the active
/// one dies, another takes over and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_runner_at_a_time_and_another_takes_over() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    let runner = |store: &PostgresStore| {
        PgProjection::new(store.clone(), Ledger::new(store, "ledger"))
            .runner()
            .options(fast())
            .lock_poll_interval(Duration::from_millis(50))
    };
    let a = tokio::spawn(runner(&store).run());
    let b = tokio::spawn(runner(&store).run());
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 100).await;
    // Whichever was active, aborting `a` then `b` makes at least one takeover happen.
    a.abort();
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 200).await;
    let c = tokio::spawn(runner(&store).run());
    b.abort();
    write_events(&store, 5, 20).await;
    until_seen(&store, "ledger", 300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!c.is_finished(), "the last runner keeps running: {c:?}");
    c.abort();
    assert_eq!(seen(&store, "ledger").await, 300, "every event exactly once");
    assert!(totals(&store, "ledger").await.iter().all(|(_, n, _)| *n == 60));
}

/// Reset refuses while a runner is active; once stopped, it clears the read model and the
/// checkpoint together, and the next run rebuilds the same read model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_replays_the_projection_from_the_start() {
    let _gate = GATE.read().await;
    let store = store().await;
    create_tables(&store, "ledger").await;
    write_events(&store, 3, 10).await;
    let before = clean_run(&store, "clean").await;
    let runner = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"))
        .runner()
        .options(fast())
        .lock_poll_interval(Duration::from_millis(50));
    let running = tokio::spawn(runner.run());
    until_seen(&store, "ledger", 30).await;
    let mut projection = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"));
    let truncate = format!("TRUNCATE {0}.ledger_seen, {0}.ledger_totals", store.schema().quoted());
    match projection.reset().await {
        Err(ResetError::Running { name }) => assert_eq!(name, "ledger"),
        other => panic!("expected the reset to refuse while running, got {other:?}"),
    }
    running.abort();
    // The aborted runner's lock goes with its connection, a moment later.
    let mut reset = projection.reset().await;
    for _ in 0..100 {
        if !matches!(reset, Err(ResetError::Running { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reset = projection.reset().await;
    }
    let mut reset = reset.unwrap();
    sqlx::query(&truncate).execute(reset.connection()).await.unwrap();
    reset.commit().await.unwrap();
    assert_eq!(projection.stored_checkpoint().await.unwrap(), None);
    assert_eq!(seen(&store, "ledger").await, 0);
    Subscription::new(store.clone(), projection).options(fast()).catch_up().await.unwrap();
    assert_eq!(totals(&store, "ledger").await, before);
}

/// Side effects: handled at least once with a durable checkpoint per event; a failing
/// handler is retried without repeating the events before it, and a restart resumes after
/// the last handled event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_effects_resume_after_the_last_handled_event() {
    let _gate = GATE.read().await;
    #[derive(Projection)]
    #[projection(name = "mailer", events(ItemAdded))]
    struct Mailer {
        sent: Arc<Mutex<Vec<uuid::Uuid>>>,
        fail_on: Option<(String, Arc<AtomicU32>)>,
    }
    impl On<ItemAdded> for Mailer {
        async fn on(&mut self, e: ItemAdded, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
            if let Some((sku, left)) = &self.fail_on {
                if *sku == e.sku && left.load(Ordering::SeqCst) > 0 {
                    left.fetch_sub(1, Ordering::SeqCst);
                    return Err("mail server down".into());
                }
            }
            self.sent.lock().unwrap().push(env.event_id); // the idempotency key
            Ok(())
        }
    }
    let store = store().await;
    store
        .append("cart-1", ExpectedVersion::NoStream, vec![added("a", 1), added("flaky", 1), added("c", 1)])
        .await
        .unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(2));
    let mailer = Mailer { sent: sent.clone(), fail_on: Some(("flaky".into(), failures.clone())) };
    let mut subscription = Subscription::new(store.clone(), AtLeastOnce::new(store.clone(), mailer)).options(fast());
    let reached = subscription.catch_up().await.unwrap();
    assert_eq!(sent.lock().unwrap().len(), 3, "each event once despite two failures");
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(reached));
    store.append("cart-1", ExpectedVersion::Exact(3), vec![added("d", 1)]).await.unwrap();
    let restarted = AtLeastOnce::new(store.clone(), Mailer { sent: sent.clone(), fail_on: None });
    Subscription::new(store.clone(), restarted).options(fast()).catch_up().await.unwrap();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4);
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
    let stall = Stall::new("s3-7", 1.0);
    let ledger = Ledger { stall: Some(stall.clone()), ..Ledger::new(&store, "ledger") };
    let runner =
        PgProjection::new(store.clone(), ledger).runner().options(fast()).lock_poll_interval(Duration::from_millis(50));
    let first = tokio::spawn(runner.run());
    tokio::time::timeout(Duration::from_secs(20), stall.inside.notified())
        .await
        .expect("the handler reaches the stall");
    first.abort();
    let applied_before = seen(&store, "ledger").await;
    assert!(applied_before < 120 && applied_before % 25 == 0, "only whole batches: {applied_before}");
    let restarted = PgProjection::new(store.clone(), Ledger::new(&store, "ledger"))
        .runner()
        .options(fast())
        .lock_poll_interval(Duration::from_millis(50));
    let second = tokio::spawn(restarted.run());
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
    let stall = Stall::new("s2-3", 30.0);
    let ledger = Ledger { stall: Some(stall.clone()), ..Ledger::new(&store, "ledger") };
    let mut subscription = Subscription::new(store.clone(), PgProjection::new(store.clone(), ledger)).options(fast());
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
