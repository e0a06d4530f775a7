//! Process throughput: the fulfillment workflow of the process conformance suite (reserve
//! stock, take the payment, ship; four inputs and three commands per order) run by a
//! `ProcessRunner` over 200 orders checked out beforehand, against the same workflow
//! hand-rolled as an at-least-once projection whose handlers send the next command with
//! the event id as idempotency key (no recorded state, no deadlines, no compensation:
//! the "fragile saga" a process manager replaces). Same store, same aggregates, same
//! commands, in one run; inputs reacted to per second, best of 3 rounds.
//!
//! `cargo bench -p annals-tests --bench process` runs it on SQLite (a temporary file) and
//! on PostgreSQL (`DATABASE_URL`, else a throwaway server with `fsync` off).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::conformance::process::{
    CheckOut, CheckedOut, Fulfillment, Inventory, Order, Payment, PaymentTaken, ReserveStock, Ship, Shipment, Step,
    StockReserved, TakePayment,
};
use annals::prelude::*;
use annals::process::ProcessRunner;
use annals::store::{CheckpointStore, DeadlineStore};
use annals::subscription::{AtLeastOnce, Subscription, SubscriptionOptions};
use annals::EventFeed;

const ORDERS: usize = 200;
const ROUNDS: usize = 3;

async fn check_out_all<S: EventStore>(store: &S) {
    let orders = Repository::<Order, S>::new(store.clone());
    for n in 0..ORDERS {
        let id = format!("o-{n}");
        let event = CheckedOut { order_id: id.clone(), sku: format!("sku-{}", n % 10), qty: 1, card: "visa".into() };
        orders.execute(&id, CheckOut(event)).await.unwrap();
    }
}

/// The workflow through a process manager; returns the time to ship every order.
async fn with_process<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(store: S) -> Duration {
    check_out_all(&store).await;
    let mut runner = ProcessRunner::<Fulfillment, S>::new(store.clone())
        .options(SubscriptionOptions { batch_size: 256, ..SubscriptionOptions::default() });
    let started = Instant::now();
    for _ in 0..100 {
        runner.catch_up().await.unwrap();
        let last = runner.instance(&format!("o-{}", ORDERS - 1)).await.unwrap();
        if last.state.step == Step::Shipped {
            break;
        }
    }
    let elapsed = started.elapsed();
    for n in 0..ORDERS {
        assert_eq!(runner.instance(&format!("o-{n}")).await.unwrap().state.step, Step::Shipped);
    }
    elapsed
}

fn keyed(envelope: &Envelope) -> Metadata {
    Metadata::caused_by(envelope).idempotency_key(envelope.event_id.to_string())
}

/// The same workflow hand-rolled: each handler sends the next command.
#[derive(Projection)]
#[projection(name = "hand_rolled_fulfillment", events(CheckedOut, StockReserved, PaymentTaken))]
struct HandRolled<S: EventStore> {
    store: S,
}

impl<S: EventStore> On<CheckedOut> for HandRolled<S> {
    async fn on(&mut self, e: CheckedOut, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        let reserve = ReserveStock { order_id: e.order_id, qty: e.qty };
        Repository::<Inventory, S>::new(self.store.clone()).execute_with(&e.sku, reserve, keyed(envelope)).await?;
        Ok(())
    }
}
impl<S: EventStore> On<StockReserved> for HandRolled<S> {
    async fn on(&mut self, e: StockReserved, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        let pay = TakePayment { order_id: e.order_id.clone(), card: "visa".into() };
        Repository::<Payment, S>::new(self.store.clone()).execute_with(&e.order_id, pay, keyed(envelope)).await?;
        Ok(())
    }
}
impl<S: EventStore> On<PaymentTaken> for HandRolled<S> {
    async fn on(&mut self, e: PaymentTaken, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        let ship = Ship { order_id: e.order_id.clone() };
        Repository::<Shipment, S>::new(self.store.clone()).execute_with(&e.order_id, ship, keyed(envelope)).await?;
        Ok(())
    }
}

async fn hand_rolled<S: EventStore + EventFeed + CheckpointStore>(store: S) -> Duration {
    check_out_all(&store).await;
    let sink = AtLeastOnce::new(store.clone(), HandRolled { store: store.clone() });
    let mut subscription = Subscription::new(store.clone(), sink)
        .options(SubscriptionOptions { batch_size: 256, ..SubscriptionOptions::default() });
    let started = Instant::now();
    let last = format!("shipment-o-{}", ORDERS - 1);
    for _ in 0..100 {
        subscription.catch_up().await.unwrap();
        if store.stream_version(&last).await.unwrap() == 1 {
            break;
        }
    }
    let elapsed = started.elapsed();
    for n in 0..ORDERS {
        assert_eq!(store.stream_version(&format!("shipment-o-{n}")).await.unwrap(), 1);
    }
    elapsed
}

fn per_second(elapsed: Duration, inputs: usize) -> f64 {
    u32::try_from(inputs).map(f64::from).unwrap_or(f64::MAX) / elapsed.as_secs_f64()
}

fn report(store: &str, process: Duration, hand: Duration) {
    // Inputs: checked out, reserved, paid, shipped (the hand-rolled one has no reaction to
    // shipped: three handled events per order).
    let process_rate = per_second(process, 4 * ORDERS);
    let hand_rate = per_second(hand, 3 * ORDERS);
    println!(
        "{store}: process manager {process_rate:>7.0} inputs/s ({process:?} for {ORDERS} orders), \
         hand-rolled {hand_rate:>7.0} events/s ({hand:?}); orders per second {:.0} vs {:.0} ({:.2}×)",
        per_second(process, ORDERS),
        per_second(hand, ORDERS),
        hand.as_secs_f64() / process.as_secs_f64(),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut sqlite = (Duration::MAX, Duration::MAX);
        let mut postgres = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            sqlite.0 = sqlite.0.min(with_process(annals_sqlite::testing::fresh_store().await).await);
            sqlite.1 = sqlite.1.min(hand_rolled(annals_sqlite::testing::fresh_store().await).await);
            postgres.0 = postgres.0.min(with_process(annals_postgres::testing::fresh_store().await.unwrap()).await);
            postgres.1 = postgres.1.min(hand_rolled(annals_postgres::testing::fresh_store().await.unwrap()).await);
        }
        report("SQLite", sqlite.0, sqlite.1);
        report("PostgreSQL", postgres.0, postgres.1);
    });
}
