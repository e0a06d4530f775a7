//! The database's ordinary life, driven for real: every backend of the store terminated
//! (what a restart or failover does, also in the middle of group commits), a network outage (a loopback TCP proxy between the
//! store and the server cuts every connection and refuses new ones), a hundred
//! subscribers on the default pool, one hot stream, and callers that give up mid-append.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::Checkpoint;
use annals::subscription::{FeedEvent, Sink, SinkError, Subscription, SubscriptionOptions, SubscriptionState};
use annals::{BoxError, Metadata, NewEvent, RetryPolicy};
use annals_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use annals_postgres::sqlx::{self, PgPool};
use annals_postgres::testing::{database_url, fresh_schema_name};
use annals_postgres::{PgProjectionRunner, PostgresStore};
use serde_json::json;
use shopping_cart::{AddItem, Cart};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Support

/// The event ids a [`Collector`] received, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Uuid>>>);

impl Seen {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn ids(&self) -> Vec<Uuid> {
        self.0.lock().unwrap().clone()
    }
}

/// A sink that records every event id it receives, its checkpoint in memory (so it is
/// exactly once for as long as the process lives).
struct Collector {
    name: String,
    seen: Seen,
    at: Checkpoint,
}

impl Collector {
    fn new(name: &str) -> (Collector, Seen) {
        let seen = Seen::default();
        (Collector { name: name.into(), seen: seen.clone(), at: Checkpoint::START }, seen)
    }
}

impl Sink for Collector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        Ok(self.at)
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        self.seen.0.lock().unwrap().extend(events.iter().map(|e| e.envelope.event_id));
        self.at = next;
        Ok(())
    }
}

fn options() -> SubscriptionOptions {
    SubscriptionOptions {
        batch_size: 100,
        poll_interval: Duration::from_millis(200),
        wait: RetryPolicy {
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        },
        ..SubscriptionOptions::default()
    }
}

/// The test server's connection settings, with a unique application name to find the
/// store's backends by.
fn server_options(application_name: &str) -> PgConnectOptions {
    PostgresStore::connect_options(&database_url().unwrap()).unwrap().application_name(application_name)
}

/// A migrated store in a fresh schema on `options`, with the default pool settings.
async fn store_on(options: PgConnectOptions) -> PostgresStore {
    store_with(PostgresStore::pool_options(), options).await
}

async fn store_with(pool: PgPoolOptions, options: PgConnectOptions) -> PostgresStore {
    let pool = pool.connect_with(options).await.unwrap();
    let store = PostgresStore::new(pool).with_schema(fresh_schema_name());
    store.migrate().await.unwrap();
    store
}

/// A connection of the test's own, straight to the server.
async fn admin() -> PgPool {
    PostgresStore::pool_options().max_connections(2).connect_with(server_options("annals-test-admin")).await.unwrap()
}

/// Every event id in the store, in feed order.
async fn stored_ids(store: &PostgresStore) -> Vec<Uuid> {
    let sql =
        format!("SELECT event_id FROM {}.events ORDER BY transaction_id, global_position", store.schema().quoted());
    sqlx::query_scalar(&sql).fetch_all(&admin_of(store)).await.unwrap()
}

/// A pool straight to the server for reading `store`'s tables (the store's own pool may
/// go through the proxy).
fn admin_of(_store: &PostgresStore) -> PgPool {
    PostgresStore::pool_options().max_connections(1).connect_lazy_with(server_options("annals-test-admin"))
}

/// Waits until `seen` holds as many events as the store, then checks it holds each
/// stored event exactly once.
async fn assert_delivered_exactly_once(store: &PostgresStore, seen: &Seen, who: &str) {
    let stored = stored_ids(store).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < stored.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = seen.ids();
    let unique: HashSet<Uuid> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "{who}: an event was delivered twice");
    assert_eq!(got, stored, "{who}: delivered {} of {} events, or out of order", got.len(), stored.len());
}

fn item(n: u64) -> AddItem {
    AddItem { sku: format!("sku-{n}"), qty: 1, unit_price_cents: 100 }
}

/// Appends one event per stream `{prefix}-{n}` for `n` in `range`.
async fn append_some(store: &PostgresStore, prefix: &str, range: std::ops::Range<u64>) {
    for n in range {
        store
            .append(&format!("{prefix}-{n}"), ExpectedVersion::Exact(0), vec![NewEvent::new("e", 1, json!({ "n": n }))])
            .await
            .unwrap();
    }
}

/// The backends of the store whose application name is `name`, terminated.
async fn terminate_backends(admin: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) AS t",
    )
    .bind(name)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// A task that terminates the backends of the store named `name` every 40 ms until
/// `stop`; it returns how many it terminated.
fn terminate_backends_every_40_ms(admin: &PgPool, name: &str, stop: &Arc<AtomicBool>) -> JoinHandle<i64> {
    let (admin, name, stop) = (admin.clone(), name.to_owned(), Arc::clone(stop));
    tokio::spawn(async move {
        let mut ended = 0;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(40)).await;
            ended += terminate_backends(&admin, &name).await;
        }
        ended
    })
}

/// A subscription and a runner (each with a collector) following `store` in the background.
struct Followers {
    subscription: Seen,
    runner: Seen,
    retrying_seen: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Followers {
    fn start(store: &PostgresStore) -> Followers {
        let (collector, subscription_seen) = Collector::new("follower");
        let mut subscription = Subscription::new(store.clone(), collector).options(options());
        let mut status = subscription.status();
        let retrying_seen = Arc::new(AtomicBool::new(false));
        let retrying = Arc::clone(&retrying_seen);
        let watcher = tokio::spawn(async move {
            while status.changed().await.is_ok() {
                if matches!(status.borrow().state, SubscriptionState::Retrying { .. }) {
                    retrying.store(true, Ordering::SeqCst);
                }
            }
        });
        let run = tokio::spawn(async move {
            let outcome = subscription.run().await;
            panic!("the subscription stopped: {outcome:?}");
        });
        let (collector, runner_seen) = Collector::new("runner");
        let runner =
            PgProjectionRunner::new(store.clone(), Subscription::new(store.clone(), collector).options(options()))
                .lock_poll_interval(Duration::from_millis(100));
        let runner = tokio::spawn(async move {
            let outcome = runner.run().await;
            panic!("the runner stopped: {outcome:?}");
        });
        Followers {
            subscription: subscription_seen,
            runner: runner_seen,
            retrying_seen,
            tasks: vec![watcher, run, runner],
        }
    }

    async fn assert_exactly_once(&self, store: &PostgresStore) {
        for task in &self.tasks {
            assert!(!task.is_finished(), "a follower stopped");
        }
        assert_delivered_exactly_once(store, &self.subscription, "the subscription").await;
        assert_delivered_exactly_once(store, &self.runner, "the runner").await;
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A loopback TCP proxy to the test server that can cut every connection and refuse new
/// ones for a while: a network outage, or a server that is down.
struct Proxy {
    port: u16,
    target: SocketAddr,
    accepting: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy { port, target, accepting: Mutex::new(None), connections: Arc::default() };
        proxy.accept(listener);
        proxy
    }

    fn accept(&self, listener: TcpListener) {
        let (target, connections) = (self.target, Arc::clone(&self.connections));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(forward);
            }
        });
        *self.accepting.lock().unwrap() = Some(task);
    }

    /// Cuts every connection, refuses new ones (the port is closed) for `outage`, then
    /// accepts again on the same port.
    async fn cut_for(&self, outage: Duration) {
        let accepting = self.accepting.lock().unwrap().take();
        if let Some(task) = accepting {
            task.abort();
            let _ = task.await;
        }
        let connections: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        for connection in connections {
            connection.abort();
            let _ = connection.await;
        }
        tokio::time::sleep(outage).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        self.accept(socket.listen(1024).unwrap());
    }
}

// ---------------------------------------------------------------------------------------
// 1. Restart / failover

/// What a restart does to a store: every backend of its pool, its listener and its
/// runner's lock connection ends. The next command succeeds at its first attempt (a dead
/// pooled connection costs no attempt: the adapter runs the statement again on another
/// connection), and a running subscription and runner deliver everything exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_backend_is_terminated_the_next_command_succeeds_and_followers_go_on() {
    let name = format!("annals-restart-{}", Uuid::now_v7().simple());
    let store = store_on(server_options(&name)).await;
    let admin = admin().await;
    let followers = Followers::start(&store);
    append_some(&store, "before", 0..50).await;

    for round in 0..3 {
        // Fill the pool with idle connections (five held at once, then released, so the
        // pool holds them however fast the appends run): all of them will be dead.
        let held = futures::future::try_join_all((0..5).map(|_| store.pool().acquire())).await.unwrap();
        drop(held);
        futures::future::join_all((0..10).map(|n| {
            let store = store.clone();
            async move { append_some(&store, &format!("warm-{round}"), n..n + 1).await }
        }))
        .await;
        let ended = terminate_backends(&admin, &name).await;
        assert!(ended >= 5, "round {round}: only {ended} backends to terminate");
        tokio::time::sleep(Duration::from_millis(100)).await; // let the backends exit
                                                              // No caller retry: one attempt, and it succeeds.
        let carts = Repository::<Cart, _>::new(store.clone()).with_retry(RetryPolicy {
            max_attempts: 1,
            budget: None,
            ..RetryPolicy::default()
        });
        carts.execute(&format!("cart-{round}"), item(round)).await.expect("the first command after the restart");
        append_some(&store, &format!("after-{round}"), 0..20).await;
    }
    followers.assert_exactly_once(&store).await;
}

/// A network outage of 6 s (every connection cut, new ones refused): commands issued
/// during it succeed once it is over (within the default 10 s retry budget, no caller
/// retry), the subscription shows `Retrying` meanwhile, and the subscription and the
/// runner deliver everything exactly once afterwards.
///
/// The pool waits up to its acquire timeout for the server to accept connections again;
/// with the default 10 s an operation would simply block through a 6 s outage and no one
/// would see an error. This store's pool gives up after 2 s, so that the outage surfaces
/// as transient errors: the commands retry them (default policy), the followers wait them
/// out and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_ridden_through_by_commands_subscriptions_and_runners() {
    let direct = PostgresStore::connect_options(&database_url().unwrap()).unwrap();
    let target: SocketAddr = format!("127.0.0.1:{}", direct.get_port()).parse().unwrap();
    let proxy = Arc::new(Proxy::start(target).await);
    let pool = PostgresStore::pool_options().acquire_timeout(Duration::from_secs(2));
    let store = store_with(pool, direct.clone().host("127.0.0.1").port(proxy.port)).await;
    let followers = Followers::start(&store);
    append_some(&store, "before", 0..30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outage = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move { proxy.cut_for(Duration::from_secs(6)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Commands during the outage, with the default retry policy.
    let carts = Repository::<Cart, _>::new(store.clone());
    let started = Instant::now();
    let during = futures::future::join_all((0..5).map(|n| {
        let carts = carts.clone();
        async move { carts.execute(&format!("during-{n}"), item(n)).await }
    }))
    .await;
    for outcome in during {
        outcome.expect("a command issued during the outage");
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "the commands cannot have passed the outage");
    outage.await.unwrap();
    assert!(followers.retrying_seen.load(Ordering::SeqCst), "the subscription never showed Retrying");
    append_some(&store, "after", 0..30).await;
    followers.assert_exactly_once(&store).await;
}

/// A process runner (a workflow) keeps going through an outage: its feed reads wait, a
/// reaction or command cut off mid-way is waited out and carried out again, and when the
/// server is back every order completes with each command run exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_runner_rides_through_an_outage_and_runs_each_command_once() {
    use annals::conformance::process::{CheckOut, CheckedOut, Fulfillment, Order, Step};
    use annals::process::{InstanceView, ProcessRunner};
    let direct = PostgresStore::connect_options(&database_url().unwrap()).unwrap();
    let target: SocketAddr = format!("127.0.0.1:{}", direct.get_port()).parse().unwrap();
    let proxy = Arc::new(Proxy::start(target).await);
    let pool = PostgresStore::pool_options().acquire_timeout(Duration::from_secs(2));
    let store = store_with(pool, direct.clone().host("127.0.0.1").port(proxy.port)).await;
    let orders = Repository::<Order, _>::new(store.clone());
    let check_out = |n: u64| {
        let event = CheckedOut { order_id: format!("o-{n}"), sku: "sku".into(), qty: 1, card: "visa".into() };
        (format!("o-{n}"), CheckOut(event))
    };
    for n in 0..30 {
        let (id, command) = check_out(n);
        orders.execute(&id, command).await.unwrap();
    }
    let mut runner = ProcessRunner::<Fulfillment, _>::new(store.clone()).options(options());
    // Waits show in the feed subscription's status or, inside a reaction, in `waiting()`.
    let (mut status, mut waiting) = (runner.status(), runner.waiting());
    let retried = Arc::new(AtomicBool::new(false));
    let watcher = {
        let retried = Arc::clone(&retried);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { break },
                    changed = waiting.changed() => if changed.is_err() { break },
                }
                let feed = matches!(status.borrow().state, SubscriptionState::Retrying { .. });
                if feed || waiting.borrow().is_some() {
                    retried.store(true, Ordering::SeqCst);
                }
            }
        })
    };
    let running = tokio::spawn(async move {
        let outcome = runner.run().await;
        panic!("the process runner stopped: {outcome:?}");
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let outage = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move { proxy.cut_for(Duration::from_secs(4)).await })
    };
    // Read straight from the server: how far the runner got when the outage began.
    let admin = admin().await;
    let shipped_at_cut: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.events WHERE stream_id LIKE 'shipment-%'",
        store.schema().quoted()
    ))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(shipped_at_cut < 30, "the outage began after the runner was done; cut earlier");
    outage.await.unwrap();
    for n in 30..40 {
        let (id, command) = check_out(n);
        orders.execute(&id, command).await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shipped = 0;
    while Instant::now() < deadline {
        shipped = 0;
        for n in 0..40 {
            let view = InstanceView::<Fulfillment>::load(&store, &format!("o-{n}")).await.unwrap();
            shipped += usize::from(view.state.step == Step::Shipped);
        }
        if shipped == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!running.is_finished(), "the process runner stopped");
    assert_eq!(shipped, 40, "orders shipped within a minute of the outage");
    for n in 0..40 {
        for stream in [format!("payment-o-{n}"), format!("shipment-o-{n}")] {
            assert_eq!(store.stream_version(&stream).await.unwrap(), 1, "{stream}: its command ran once");
        }
    }
    assert_eq!(store.stream_version("inventory-sku").await.unwrap(), 40, "one reservation per order");
    // Not asserted: a command caught by the outage may wait inside its own retry budget
    // (`RetryPolicy`, 10 s), which shows in `annals_command_retries_total`, not here.
    println!(
        "40 orders through a 4 s outage that began with {shipped_at_cut} of 30 shipped; \
         the runner said it was waiting: {}",
        retried.load(Ordering::SeqCst)
    );
    running.abort();
    watcher.abort();
}

// ---------------------------------------------------------------------------------------
// 2. Many subscribers

/// Runs `subscribers` subscriptions and 4 writers for `duration` on a default pool;
/// returns the appends per second and the subscriptions' collectors.
async fn appends_with_subscribers(
    store: &PostgresStore,
    subscribers: usize,
    duration: Duration,
) -> (f64, Vec<Seen>, Vec<JoinHandle<()>>) {
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    for n in 0..subscribers {
        let (collector, collected) = Collector::new(&format!("sub-{n}"));
        let mut subscription = Subscription::new(store.clone(), collector)
            .options(SubscriptionOptions { poll_interval: Duration::from_secs(2), ..options() });
        tasks.push(tokio::spawn(async move {
            let outcome = subscription.run().await;
            panic!("subscription stopped: {outcome:?}");
        }));
        seen.push(collected);
    }
    let appended = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let writers = (0..4).map(|w| {
        let (store, appended) = (store.clone(), Arc::clone(&appended));
        tokio::spawn(async move {
            let mut n = 0;
            while started.elapsed() < duration {
                append_some(&store, &format!("w{w}"), n..n + 1).await;
                appended.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let rate = appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, seen, tasks)
}

/// A hundred subscriptions on the default pool of 10 connections share one listener
/// connection outside the pool: all of them catch up and follow while appends go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscriptions_share_one_listener_and_all_follow() {
    let name = format!("annals-many-{}", Uuid::now_v7().simple());
    let store = store_on(server_options(&name)).await;
    append_some(&store, "old", 0..200).await; // something to catch up on
    let (rate, seen, tasks) = appends_with_subscribers(&store, 100, Duration::from_secs(3)).await;
    println!("{rate:.0} appends/s with 100 subscriptions");
    for (n, seen) in seen.iter().enumerate() {
        assert_delivered_exactly_once(&store, seen, &format!("subscription {n}")).await;
    }
    let listeners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&name)
    .fetch_one(&admin().await)
    .await
    .unwrap();
    assert_eq!(listeners, 1, "one listener connection for every subscription");
    for task in tasks {
        assert!(!task.is_finished());
        task.abort();
    }
}

/// The append rate with 100 subscriptions that each follow their own category (so that
/// together they read every event once) vs none: what following costs a process, apart
/// from the subscribers' own work (a figure, not an assertion):
/// `cargo test -p annals-postgres --test resilience -- --ignored --nocapture append_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn append_rate_with_a_hundred_category_subscriptions_vs_none() {
    for subscribers in [0, 1, 100, 0, 1, 100] {
        let store = store_on(server_options("annals-rate-categories")).await;
        let mut tasks = Vec::new();
        for n in 0..subscribers {
            let (collector, _) = Collector::new(&format!("sub-{n}"));
            let mut subscription = Subscription::new(store.clone(), collector)
                .filter(annals::store::Filter::all().category(format!("c{n}")))
                .options(SubscriptionOptions { poll_interval: Duration::from_secs(2), ..options() });
            tasks.push(tokio::spawn(async move {
                let outcome = subscription.run().await;
                panic!("subscription stopped: {outcome:?}");
            }));
        }
        let appended = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let writers = (0..4u64).map(|w| {
            let (store, appended) = (store.clone(), Arc::clone(&appended));
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < Duration::from_secs(5) {
                    append_some(&store, &format!("c{}-w{w}", n % 100), n..n + 1).await;
                    appended.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.unwrap();
        }
        let rate = appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!("{subscribers:>3} subscriptions, one category each: {rate:.0} appends/s (4 writers, default pool)");
        for task in tasks {
            task.abort();
        }
    }
}

/// The append rate with 100 subscriptions following vs none (a figure, not an assertion):
/// `cargo test -p annals-postgres --test resilience -- --ignored --nocapture append_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn append_rate_with_a_hundred_subscriptions_vs_none() {
    for subscribers in [0, 100, 0, 100] {
        let store = store_on(server_options("annals-rate")).await;
        let (rate, _, tasks) = appends_with_subscribers(&store, subscribers, Duration::from_secs(5)).await;
        println!("{subscribers:>3} subscriptions: {rate:.0} appends/s (4 writers, default pool)");
        for task in tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. Hot streams

/// 32 tasks × 50 commands on one stream through one repository, default settings: the
/// repository queues them in process, so none fails and the versions are contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_tasks_on_one_stream_all_succeed_with_contiguous_versions() {
    let store = store_on(server_options("annals-hot")).await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let started = Instant::now();
    let outcomes = futures::future::join_all((0..32u64).map(|task| {
        let carts = carts.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for n in 0..50 {
                if carts.execute("hot", item(task * 100 + n)).await.is_err() {
                    failures += 1;
                }
            }
            failures
        })
    }))
    .await;
    let failures: u32 = outcomes.into_iter().map(Result::unwrap).sum();
    println!("32 × 50 commands on one stream: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(failures, 0);
    let versions: Vec<u64> = carts.history("hot", ..).await.unwrap().iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=1600).collect::<Vec<u64>>());
}

// ---------------------------------------------------------------------------------------
// 6. Cancelled calls

/// A caller that gives up mid-append (its future dropped after a few hundred µs, which
/// may leave the append to commit afterwards) and runs the command again with the same
/// idempotency key gets exactly one copy stored, whatever the moment it gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dropped_mid_append_and_run_again_with_its_key_is_stored_once() {
    let store = store_on(server_options("annals-cancel")).await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let mut dropped = 0;
    for n in 0..200u64 {
        let cart = format!("cart-{n}");
        let key = format!("order-{n}");
        let timeout = Duration::from_micros(100 + (n % 20) * 50);
        let first = tokio::time::timeout(
            timeout,
            carts.execute_with(&cart, item(n), Metadata::default().idempotency_key(key.clone())),
        )
        .await;
        if first.is_err() {
            dropped += 1;
            // Let a dropped statement that was already sent commit (or not).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        carts.execute_with(&cart, item(n), Metadata::default().idempotency_key(key)).await.unwrap();
        let version = carts.load(&cart).await.unwrap().version;
        assert_eq!(version, 1, "cart {n} stored {version} copies (first call dropped: {})", first.is_err());
    }
    assert!(dropped > 0, "no call was dropped mid-way; lower the timeouts");
    println!("{dropped} of 200 calls dropped mid-way, each stored once");
}

/// Group commits while every backend of the store is terminated again and again: 8 tasks
/// × 60 commands on 8 streams each, with the default retry policy. Groups lose their
/// connection mid-statement (before it runs, or after it committed and before the reply);
/// each command still succeeds, exactly once: no stream misses a version or holds one
/// twice, and every command's item is in its cart once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_cut_off_mid_statement_store_each_command_exactly_once() {
    let name = format!("annals-group-cut-{}", Uuid::now_v7().simple());
    let store = store_on(server_options(&name)).await;
    let admin = admin().await;
    let carts = Repository::<Cart, _>::new(store.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let killer = terminate_backends_every_40_ms(&admin, &name, &stop);
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let carts = carts.clone();
            tokio::spawn(async move {
                for n in 0..60u64 {
                    let cart = format!("c{task}-{}", n % 8);
                    let command = AddItem { sku: format!("t{task}-n{n}"), qty: 1, unit_price_cents: 1 };
                    carts.execute(&cart, command).await.unwrap_or_else(|e| panic!("{cart}: {e}"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let ended = killer.await.unwrap();
    assert!(ended > 0, "no backend was terminated");
    let reader = Repository::<Cart, _>::new(PostgresStore::new(admin_of(&store)).with_schema(store.schema().clone()));
    for task in 0..8u64 {
        for cart in 0..8u64 {
            let id = format!("c{task}-{cart}");
            let loaded = reader.load(&id).await.unwrap();
            let history = reader.history(&id, ..).await.unwrap();
            let versions: Vec<u64> = history.iter().map(|e| e.stream_version).collect();
            assert_eq!(versions, (1..=loaded.version).collect::<Vec<_>>(), "{id}");
            let mut expected: Vec<String> =
                (0..60u64).filter(|n| n % 8 == cart).map(|n| format!("t{task}-n{n}")).collect();
            expected.sort();
            let mut skus: Vec<String> = loaded.state.items.keys().cloned().collect();
            skus.sort();
            assert_eq!(skus, expected, "{id}: each command's item once");
            assert!(loaded.state.items.values().all(|line| line.qty == 1), "{id}: an item stored twice");
            assert_eq!(loaded.version, expected.len() as u64, "{id}: one event per command");
        }
    }
    println!("480 commands, {ended} backends terminated meanwhile");
}

/// Pipelined commands on one hot stream (repositories with a cache) while every backend
/// of the store is terminated again and again, from two "processes" (two repositories,
/// each with its own cache and pipeline, 4 tasks × 60 commands each): appends of several
/// commands are cut off before they run or after they committed, and the processes'
/// batches conflict with each other. Each command still succeeds exactly once: the
/// stream's versions are 1..=480 and every command's item is in the cart once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_on_one_stream_cut_off_mid_append_are_stored_exactly_once() {
    let name = format!("annals-pipeline-cut-{}", Uuid::now_v7().simple());
    let store = store_on(server_options(&name)).await;
    let admin = admin().await;
    let processes = [
        Repository::<Cart, _>::new(store.clone()).with_cache(100),
        Repository::<Cart, _>::new(store.clone()).with_cache(100),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let killer = terminate_backends_every_40_ms(&admin, &name, &stop);
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let carts = processes[usize::from(task % 2 == 1)].clone();
            tokio::spawn(async move {
                let mut retried = 0;
                for n in 0..60u64 {
                    let command = AddItem { sku: format!("t{task}-n{n}"), qty: 1, unit_price_cents: 1 };
                    let done = carts.execute("hot", command).await.unwrap_or_else(|e| panic!("t{task}-n{n}: {e}"));
                    retried += done.attempts - 1;
                }
                retried
            })
        })
        .collect();
    let mut retried = 0;
    for task in tasks {
        retried += task.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let ended = killer.await.unwrap();
    assert!(ended > 0, "no backend was terminated");
    let reader = Repository::<Cart, _>::new(PostgresStore::new(admin_of(&store)).with_schema(store.schema().clone()));
    let loaded = reader.load("hot").await.unwrap();
    let versions: Vec<u64> = reader.history("hot", ..).await.unwrap().iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=480).collect::<Vec<u64>>());
    let mut expected: Vec<String> = (0..8u64).flat_map(|t| (0..60u64).map(move |n| format!("t{t}-n{n}"))).collect();
    expected.sort();
    let skus: Vec<String> = loaded.state.items.keys().cloned().collect();
    assert_eq!(skus, expected, "each command's item once");
    assert!(loaded.state.items.values().all(|line| line.qty == 1), "an item stored twice");
    println!("480 pipelined commands from 2 processes: {retried} decided again, {ended} backends terminated meanwhile");
}
