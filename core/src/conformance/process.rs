//! The process suite: a fulfillment workflow across three aggregates (inventory, payment,
//! shipment) run by a [`ProcessRunner`] against the store: the happy path, compensation
//! of a rejected payment, a deadline that fires after a restart, and runners killed at
//! random moments that still run every command exactly once. (Its domain types are
//! `#[doc(hidden)]`: public for the tests and benchmarks that reuse them, kept out of the
//! "other types implement this trait" lists of users' compile errors.) Run it with
//! [`process_conformance_tests!`](crate::process_conformance_tests).

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::support::{fast, read};
use crate::aggregate::{Apply, Decision, Handle};
use crate::envelope::{Metadata, NewEvent};
use crate::process::{
    instance_stream, replay, Effects, InstanceView, ProcessRunner, React, Reaction, Rejected, SentCommand, Trigger,
    REACTED,
};
use crate::repository::Repository;
use crate::store::{CheckpointStore, DeadlineStore, EventFeed, EventStore, ExpectedVersion};
use crate::subscription::{PoisonPolicy, SubscriptionOptions};
use crate::{Aggregate, Event, ProcessManager};

/// An order was checked out (appended by the test through [`Order`]).
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.order.checked_out")]
pub struct CheckedOut {
    /// The order.
    pub order_id: String,
    /// What was bought.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// `declined` is rejected by the payment, `slow` never answers; anything else pays.
    pub card: String,
}

/// Stock was set aside for an order.
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.stock.reserved")]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// How many.
    pub qty: u32,
}

/// Stock set aside was given back.
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.stock.released")]
pub struct StockReleased {
    /// The order.
    pub order_id: String,
    /// How many.
    pub qty: u32,
}

/// A payment was taken.
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.payment.taken")]
pub struct PaymentTaken {
    /// The order.
    pub order_id: String,
}

/// A payment was asked for and has not been answered yet.
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.payment.pending")]
pub struct PaymentPending {
    /// The order.
    pub order_id: String,
}

/// An order was shipped.
#[doc(hidden)]
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "conformance.shipment.shipped")]
pub struct Shipped {
    /// The order.
    pub order_id: String,
}

#[doc(hidden)]
/// Check out an order.
pub struct CheckOut(pub CheckedOut);
#[doc(hidden)]
/// Set stock aside for an order.
#[derive(Serialize, Deserialize)]
pub struct ReserveStock {
    /// The order.
    pub order_id: String,
    /// How many.
    pub qty: u32,
}
#[doc(hidden)]
/// Give stock back.
#[derive(Serialize, Deserialize)]
pub struct ReleaseStock {
    /// The order.
    pub order_id: String,
    /// How many.
    pub qty: u32,
}
#[doc(hidden)]
/// Take a payment.
#[derive(Serialize, Deserialize)]
pub struct TakePayment {
    /// The order.
    pub order_id: String,
    /// The card.
    pub card: String,
}
#[doc(hidden)]
/// Ship an order.
#[derive(Serialize, Deserialize)]
pub struct Ship {
    /// The order.
    pub order_id: String,
}

#[doc(hidden)]
/// Why a domain command was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not enough stock.
    #[error("only {0} left")]
    OutOfStock(u32),
    /// The card was declined.
    #[error("card declined")]
    Declined,
    /// A release of nothing.
    #[error("nothing to release")]
    NothingToRelease,
}

#[doc(hidden)]
/// Orders: where checkouts are recorded.
#[derive(Aggregate, Default)]
#[aggregate(name = "order", events(CheckedOut), commands(CheckOut))]
pub struct Order;

impl Apply<CheckedOut> for Order {
    fn apply(&mut self, _: CheckedOut) {}
}
impl Handle<CheckOut> for Order {
    fn handle(&self, command: &CheckOut) -> Decision<Self> {
        Ok(vec![command.0.clone().into()])
    }
}

#[doc(hidden)]
/// Stock of one sku: 1,000 units to begin with.
#[derive(Aggregate)]
#[aggregate(name = "inventory", events(StockReserved, StockReleased), commands(ReserveStock, ReleaseStock), error = Refused)]
pub struct Inventory {
    left: u32,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory { left: 1_000 }
    }
}
impl Apply<StockReserved> for Inventory {
    fn apply(&mut self, e: StockReserved) {
        self.left = self.left.saturating_sub(e.qty);
    }
}
impl Apply<StockReleased> for Inventory {
    fn apply(&mut self, e: StockReleased) {
        self.left = self.left.saturating_add(e.qty);
    }
}
impl Handle<ReserveStock> for Inventory {
    fn handle(&self, c: &ReserveStock) -> Decision<Self> {
        if c.qty > self.left {
            return Err(Refused::OutOfStock(self.left));
        }
        Ok(vec![StockReserved { order_id: c.order_id.clone(), qty: c.qty }.into()])
    }
}
impl Handle<ReleaseStock> for Inventory {
    fn handle(&self, c: &ReleaseStock) -> Decision<Self> {
        if c.qty == 0 {
            return Err(Refused::NothingToRelease);
        }
        Ok(vec![StockReleased { order_id: c.order_id.clone(), qty: c.qty }.into()])
    }
}

#[doc(hidden)]
/// The payment of one order.
#[derive(Aggregate, Default)]
#[aggregate(name = "payment", events(PaymentTaken, PaymentPending), commands(TakePayment), error = Refused)]
pub struct Payment;

impl Apply<PaymentTaken> for Payment {
    fn apply(&mut self, _: PaymentTaken) {}
}
impl Apply<PaymentPending> for Payment {
    fn apply(&mut self, _: PaymentPending) {}
}
impl Handle<TakePayment> for Payment {
    fn handle(&self, c: &TakePayment) -> Decision<Self> {
        match c.card.as_str() {
            "declined" => Err(Refused::Declined),
            "slow" => Ok(vec![PaymentPending { order_id: c.order_id.clone() }.into()]),
            _ => Ok(vec![PaymentTaken { order_id: c.order_id.clone() }.into()]),
        }
    }
}

#[doc(hidden)]
/// The shipment of one order.
#[derive(Aggregate, Default)]
#[aggregate(name = "shipment", events(Shipped), commands(Ship))]
pub struct Shipment;

impl Apply<Shipped> for Shipment {
    fn apply(&mut self, _: Shipped) {}
}
impl Handle<Ship> for Shipment {
    fn handle(&self, c: &Ship) -> Decision<Self> {
        Ok(vec![Shipped { order_id: c.order_id.clone() }.into()])
    }
}

#[doc(hidden)]
/// Fired when a payment takes longer than 15 minutes.
#[derive(Serialize, Deserialize)]
pub struct PaymentTimedOut;

#[doc(hidden)]
/// Where an order's fulfillment is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Nothing happened yet.
    #[default]
    New,
    /// Stock was asked for.
    Reserving,
    /// Payment was asked for.
    Paying,
    /// Shipment was asked for.
    Shipping,
    /// Shipped.
    Shipped,
    /// Given up, and why.
    Failed(String),
}

/// The fulfillment workflow: reserve stock, take the payment (within 15 minutes), ship;
/// give the stock back when the payment fails or times out.
#[derive(ProcessManager, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[process(
    name = "conformance_fulfillment",
    correlate_by = order_id,
    events(CheckedOut, StockReserved, PaymentTaken, Shipped),
    commands(ReserveStock => Inventory, ReleaseStock => Inventory, TakePayment => Payment, Ship => Shipment),
    deadlines(PaymentTimedOut),
    rejected(ReserveStock, TakePayment),
)]
#[doc(hidden)]
pub struct Fulfillment {
    /// Where it is.
    pub step: Step,
    sku: String,
    qty: u32,
    card: String,
}

impl React<CheckedOut> for Fulfillment {
    fn react(&mut self, e: &CheckedOut, effects: &mut Effects<Self>) {
        (self.sku, self.qty, self.card) = (e.sku.clone(), e.qty, e.card.clone());
        self.step = Step::Reserving;
        effects.send(&e.sku, ReserveStock { order_id: e.order_id.clone(), qty: e.qty });
    }
}
impl React<StockReserved> for Fulfillment {
    fn react(&mut self, e: &StockReserved, effects: &mut Effects<Self>) {
        self.step = Step::Paying;
        effects.send(&e.order_id, TakePayment { order_id: e.order_id.clone(), card: self.card.clone() });
        effects.deadline(Duration::from_secs(900), PaymentTimedOut);
    }
}
impl React<PaymentTaken> for Fulfillment {
    fn react(&mut self, e: &PaymentTaken, effects: &mut Effects<Self>) {
        self.step = Step::Shipping;
        effects.cancel::<PaymentTimedOut>();
        effects.send(&e.order_id, Ship { order_id: e.order_id.clone() });
    }
}
impl React<Shipped> for Fulfillment {
    fn react(&mut self, _: &Shipped, effects: &mut Effects<Self>) {
        self.step = Step::Shipped;
        effects.complete();
    }
}
impl React<Rejected<ReserveStock>> for Fulfillment {
    fn react(&mut self, r: &Rejected<ReserveStock>, effects: &mut Effects<Self>) {
        self.step = Step::Failed(format!("no stock: {}", r.reason));
        effects.complete();
    }
}
impl React<Rejected<TakePayment>> for Fulfillment {
    fn react(&mut self, r: &Rejected<TakePayment>, effects: &mut Effects<Self>) {
        self.step = Step::Failed(format!("payment: {}", r.reason));
        effects.send(&self.sku, ReleaseStock { order_id: r.command.order_id.clone(), qty: self.qty });
        effects.complete();
    }
}
impl React<PaymentTimedOut> for Fulfillment {
    fn react(&mut self, _: &PaymentTimedOut, effects: &mut Effects<Self>) {
        self.step = Step::Failed("payment timed out".to_owned());
        effects.send(&self.sku, ReleaseStock { order_id: String::new(), qty: self.qty });
        effects.complete();
    }
}

type Runner<S> = ProcessRunner<Fulfillment, S>;

fn runner<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(store: &S) -> Runner<S> {
    ProcessRunner::new(store.clone()).options(SubscriptionOptions { batch_size: 16, ..fast() })
}

async fn check_out<S: EventStore>(store: &S, order: &str, sku: &str, qty: u32, card: &str) {
    let checked_out = CheckedOut { order_id: order.to_owned(), sku: sku.to_owned(), qty, card: card.to_owned() };
    Repository::<Order, S>::new(store.clone()).execute(order, CheckOut(checked_out)).await.unwrap();
}

/// The event types of stream `stream`, in order.
async fn types_in<S: EventStore>(store: &S, stream: &str) -> Vec<String> {
    read(store, stream, ..).await.into_iter().map(|e| e.event_type).collect()
}

/// Repeats `runner.catch_up()` until the instance reaches a final step (a reaction's
/// commands append events the runner reacts to in a later read).
async fn settle<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(
    runner: &mut Runner<S>,
    orders: &[String],
) {
    for _ in 0..50 {
        tokio::time::timeout(Duration::from_secs(60), runner.catch_up())
            .await
            .expect("a catch-up of the process runner ended within a minute")
            .unwrap();
        let mut done = true;
        for order in orders {
            let view = runner.instance(order).await.unwrap();
            done &= view.completed || view.state.step == Step::Paying && view.state.card == "slow";
        }
        if done {
            return;
        }
    }
    let mut views = Vec::new();
    for order in orders {
        views.push(runner.instance(order).await.unwrap());
    }
    panic!("the instances did not settle within 50 catch-ups: {views:#?}");
}

/// The happy path: stock reserved, payment taken, shipped; one reaction per input, each
/// command run once, the instance completed with nothing pending, and a replay of the
/// recording decides the same.
pub async fn a_checkout_is_reserved_paid_and_shipped<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(
    store: S,
) {
    check_out(&store, "o-1", "sku-1", 3, "visa").await;
    let mut runner = runner(&store);
    settle(&mut runner, &["o-1".to_owned()]).await;
    let view = runner.instance("o-1").await.unwrap();
    assert_eq!(view.state.step, Step::Shipped);
    assert!(view.completed && view.pending.is_empty(), "{view:?}");
    assert_eq!(view.reactions.len(), 4, "checked out, reserved, paid, shipped");
    assert_eq!(types_in(&store, "inventory-sku-1").await, ["conformance.stock.reserved"]);
    assert_eq!(types_in(&store, "payment-o-1").await, ["conformance.payment.taken"]);
    assert_eq!(types_in(&store, "shipment-o-1").await, ["conformance.shipment.shipped"]);
    assert_eq!(store.due("conformance_fulfillment", Utc::now() + chrono::Duration::days(1), 10).await.unwrap(), []);
    // Every command carries the checkout's correlation id.
    let checkout = read(&store, "order-o-1", ..).await.remove(0);
    let shipped = read(&store, "shipment-o-1", ..).await.remove(0);
    assert_eq!(shipped.metadata.correlation_id, Some(checkout.event_id));
    assert!(replay::<Fulfillment, S>(&store, "o-1").await.unwrap().is_empty());
}

/// A declined payment comes back as `Rejected<TakePayment>`; the reaction releases the
/// stock and the instance completes as failed. Nothing ships.
pub async fn a_rejected_payment_is_compensated<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(store: S) {
    check_out(&store, "o-2", "sku-2", 5, "declined").await;
    let mut runner = runner(&store);
    settle(&mut runner, &["o-2".to_owned()]).await;
    let view = runner.instance("o-2").await.unwrap();
    assert_eq!(view.state.step, Step::Failed("payment: card declined".to_owned()));
    assert!(view.completed && view.pending.is_empty(), "{view:?}");
    assert_eq!(types_in(&store, "inventory-sku-2").await, ["conformance.stock.reserved", "conformance.stock.released"]);
    assert!(types_in(&store, "payment-o-2").await.is_empty());
    assert!(types_in(&store, "shipment-o-2").await.is_empty());
    // Another catch-up changes nothing: the rejection is recorded, not decided again.
    runner.catch_up().await.unwrap();
    assert_eq!(runner.instance("o-2").await.unwrap().version, view.version);
    assert_eq!(types_in(&store, "inventory-sku-2").await.len(), 2);
}

/// A payment that never answers: the deadline set with the payment request is stored,
/// survives a restart of the runner, fires (once) when due, and the reaction releases
/// the stock.
pub async fn a_deadline_fires_after_a_restart<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(store: S) {
    check_out(&store, "o-3", "sku-3", 2, "slow").await;
    {
        let mut first = runner(&store);
        settle(&mut first, &["o-3".to_owned()]).await;
        let view = first.instance("o-3").await.unwrap();
        assert_eq!((view.state.step.clone(), view.pending.len()), (Step::Paying, 1), "{view:?}");
        assert_eq!(first.fire_due(Utc::now()).await.unwrap(), 0, "not due yet");
    } // the first runner stops

    let later = Utc::now() + chrono::Duration::minutes(16);
    let due = store.due("conformance_fulfillment", later, 10).await.unwrap();
    assert_eq!(due.len(), 1, "the deadline is in the store's table");
    let restarted = runner(&store);
    assert_eq!(restarted.fire_due(later).await.unwrap(), 1);
    assert_eq!(restarted.fire_due(later).await.unwrap(), 0, "fired once");
    let view = restarted.instance("o-3").await.unwrap();
    assert_eq!(view.state.step, Step::Failed("payment timed out".to_owned()));
    assert!(view.completed && view.pending.is_empty(), "{view:?}");
    assert_eq!(types_in(&store, "inventory-sku-3").await, ["conformance.stock.reserved", "conformance.stock.released"]);
}

/// Runners killed at random moments (their task aborted: after recording a reaction and
/// before its commands, between commands, before the checkpoint) while 12 orders go
/// through; a last runner finishes. Every command ran exactly once and every instance
/// ends as a clean run ends.
pub async fn killed_runners_run_every_command_exactly_once<
    S: EventStore + EventFeed + CheckpointStore + DeadlineStore,
>(
    store: S,
) {
    // One checkout per round, so that every runner has work in flight when it is killed.
    let orders: Vec<String> = (0..12).map(|i| format!("k-{i}")).collect();
    for (round, order) in orders.iter().enumerate() {
        let card = if round % 3 == 0 { "declined" } else { "visa" };
        check_out(&store, order, &format!("ksku-{}", round % 4), 1, card).await;
        for _ in 0..3 {
            let mut doomed = runner(&store);
            let task = tokio::spawn(async move {
                let _ = doomed.run().await;
            });
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=25_000))).await;
            task.abort();
            let _ = task.await;
        }
    }
    let unfinished = {
        let mut unfinished = 0;
        for order in &orders {
            unfinished += usize::from(!InstanceView::<Fulfillment>::load(&store, order).await.unwrap().completed);
        }
        unfinished
    };
    eprintln!("{unfinished} of {} instances unfinished when the last runner starts", orders.len());
    let mut last = runner(&store);
    settle(&mut last, &orders).await;
    for (i, order) in orders.iter().enumerate() {
        let view = last.instance(order).await.unwrap();
        let payment = types_in(&store, &format!("payment-{order}")).await;
        let shipment = types_in(&store, &format!("shipment-{order}")).await;
        if i % 3 == 0 {
            assert_eq!(view.state.step, Step::Failed("payment: card declined".to_owned()), "{order}");
            assert!(payment.is_empty() && shipment.is_empty(), "{order}");
        } else {
            assert_eq!(view.state.step, Step::Shipped, "{order}");
            assert_eq!(payment, ["conformance.payment.taken"], "{order}");
            assert_eq!(shipment, ["conformance.shipment.shipped"], "{order}");
        }
        let inputs = if i % 3 == 0 { 3 } else { 4 }; // checked out, reserved, then rejected or paid and shipped
        assert_eq!(view.reactions.len(), inputs, "{order}: one reaction per input: {view:?}");
        assert!(view.completed && view.pending.is_empty(), "{order}");
    }
    for sku in 0..4 {
        let inventory = types_in(&store, &format!("inventory-ksku-{sku}")).await;
        let reserved = inventory.iter().filter(|t| t.ends_with("reserved")).count();
        let released = inventory.iter().filter(|t| t.ends_with("released")).count();
        // Orders i ≡ sku (mod 4): 3 each; of those, the declined ones (i % 3 == 0) release.
        let declined = (0..12).filter(|i| i % 4 == sku && i % 3 == 0).count();
        assert_eq!((reserved, released), (3, declined), "inventory-ksku-{sku}: {inventory:?}");
    }
}

/// The two crash points, made exactly: a runner recorded its reaction to a checkout and
/// died before sending the command (case 1), or died after sending it but before its
/// checkpoint moved (case 2). A new runner carries the recorded reaction out, does not
/// decide it again, and the command runs once in both cases.
pub async fn a_runner_that_crashed_after_recording_carries_the_reaction_out_once<
    S: EventStore + EventFeed + CheckpointStore + DeadlineStore,
>(
    store: S,
) {
    for (case, order) in [(1, "c-1"), (2, "c-2")] {
        check_out(&store, order, "csku", 1, "visa").await;
        let checkout = read(&store, &format!("order-{order}"), ..).await.remove(0);
        // What the runner recorded before it died.
        let command = SentCommand {
            id: uuid::Uuid::now_v7(),
            command_type: "ReserveStock".to_owned(),
            target: "csku".to_owned(),
            payload: serde_json::json!({ "order_id": order, "qty": 1 }),
        };
        let state = Fulfillment { step: Step::Reserving, sku: "csku".into(), qty: 1, card: "visa".into() };
        let reaction = Reaction {
            trigger: Trigger::event(&checkout),
            state: serde_json::to_value(&state).unwrap(),
            commands: vec![command.clone()],
            deadlines: Vec::new(),
            cancelled: Vec::new(),
            completed: false,
        };
        let stream = instance_stream::<Fulfillment>(order);
        let recorded = NewEvent::new(REACTED, 1, serde_json::to_value(&reaction).unwrap());
        store.append(&stream, ExpectedVersion::Exact(0), vec![recorded]).await.unwrap();
        if case == 2 {
            // ... and the command it sent before it died.
            let metadata = Metadata::default().idempotency_key(command.id.to_string());
            let reserve = ReserveStock { order_id: order.to_owned(), qty: 1 };
            Repository::<Inventory, S>::new(store.clone()).execute_with("csku", reserve, metadata).await.unwrap();
        }
        let mut restarted = runner(&store);
        settle(&mut restarted, &[order.to_owned()]).await;
        let view = restarted.instance(order).await.unwrap();
        assert_eq!(view.state.step, Step::Shipped, "case {case}");
        assert_eq!(view.reactions[0], reaction, "case {case}: the recorded reaction is not decided again");
        let reserved: Vec<_> = read(&store, "inventory-csku", ..)
            .await
            .into_iter()
            .filter(|e| e.payload["order_id"] == order)
            .map(|e| e.event_type)
            .collect();
        assert_eq!(reserved, ["conformance.stock.reserved"], "case {case}: the command ran once");
        assert_eq!(types_in(&store, &format!("shipment-{order}")).await.len(), 1, "case {case}");
    }
}

/// A process that cannot proceed is parked, visibly: an order of 0 units whose payment is
/// declined makes the compensation (`ReleaseStock` of 0) fail, a rejection the process
/// does not list in `rejected(...)`. Under `PoisonPolicy::Park` the input is parked under
/// the runner's consumer name with a reason naming the fix, and other orders go on.
pub async fn a_process_that_cannot_proceed_is_parked<S: EventStore + EventFeed + CheckpointStore + DeadlineStore>(
    store: S,
) {
    check_out(&store, "p-1", "psku", 0, "declined").await;
    check_out(&store, "p-2", "psku", 1, "visa").await;
    let mut parking = ProcessRunner::<Fulfillment, S>::new(store.clone())
        .poison(PoisonPolicy::Park)
        .options(SubscriptionOptions { retry: crate::RetryPolicy::never(), ..fast() });
    for _ in 0..10 {
        parking.catch_up().await.unwrap();
    }
    let parked = store.parked(&Runner::<S>::consumer_name()).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event.envelope.event_type, "conformance.stock.reserved");
    assert!(
        parked[0].reason.contains("does not handle the rejection of command `ReleaseStock`")
            && parked[0].reason.contains("rejected(...)"),
        "{}",
        parked[0].reason
    );
    assert_eq!(parking.instance("p-2").await.unwrap().state.step, Step::Shipped, "other orders go on");
}
