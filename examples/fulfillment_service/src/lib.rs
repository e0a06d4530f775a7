//! The fulfillment service: a second service, with its own store, that learns of the
//! shop's checkouts only through NATS JetStream and answers with events of its own.
//!
//! - It consumes `cart.checked_out` from the shop's JetStream stream (`SHOP`, subjects
//!   `shop.cart.>`) with [`JetStreamFeed`] and an [`AtLeastOnce`] consumer whose
//!   checkpoint (the JetStream sequence) lives in its own store.
//! - For each checkout it runs [`Schedule`] on a [`Shipment`] aggregate of its own, with
//!   the checkout's event id as idempotency key: a redelivered checkout (a crash between
//!   the command and the checkpoint) returns the first execution's event, so each order
//!   gets one shipment.
//! - A [`Relay`] publishes its own events to stream `FULFILLMENT` (`fulfillment.>`),
//!   which the shop consumes to show each order's shipment.
//!
//! It keeps its own copy of the one event it consumes ([`CheckedOut`]: the stored name
//! and the fields it reads): services share event contracts, not code.

use std::time::Duration;

use annals::prelude::*;
use annals::store::{CheckpointStore, EventFeed};
use annals::subscription::{AtLeastOnce, PoisonPolicy, Subscription, SubscriptionOptions};
use annals::{BoxError, Metadata};
use annals_nats::{JetStreamFeed, Relay};
use serde::{Deserialize, Serialize};

/// The shop's JetStream stream and subject prefix.
pub const SHOP_STREAM: &str = "SHOP";
/// The shop's subject prefix.
pub const SHOP_PREFIX: &str = "shop";
/// This service's JetStream stream.
pub const STREAM: &str = "FULFILLMENT";
/// This service's subject prefix.
pub const PREFIX: &str = "fulfillment";

/// The shop's `cart.checked_out`, as this service reads it.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
pub struct CheckedOut {
    /// What the customer paid, in cents.
    pub total_cents: u64,
}

/// A shipment was scheduled for an order.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shipment.scheduled")]
pub struct ShipmentScheduled {
    /// The order (the shop's cart id).
    pub order: String,
    /// What the order is worth, in cents.
    pub total_cents: u64,
}

/// Schedule the shipment of an order.
pub struct Schedule {
    /// The order.
    pub order: String,
    /// What it is worth, in cents.
    pub total_cents: u64,
}

/// What a shipment refuses: nothing yet.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("the shipment refused the command")]
pub struct Refused;

/// One order's shipment.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "shipment", events(ShipmentScheduled), commands(Schedule), error = Refused)]
pub struct Shipment {
    scheduled: bool,
}

impl Handle<Schedule> for Shipment {
    fn handle(&self, c: &Schedule) -> Decision<Self> {
        if self.scheduled {
            return Ok(vec![]);
        }
        Ok(vec![ShipmentScheduled { order: c.order.clone(), total_cents: c.total_cents }.into()])
    }
}

impl Apply<ShipmentScheduled> for Shipment {
    fn apply(&mut self, _: ShipmentScheduled) {
        self.scheduled = true;
    }
}

/// The consumer of the shop's checkouts: schedules one shipment per checkout.
#[derive(Projection)]
#[projection(name = "fulfillment.checkouts", events(CheckedOut))]
pub struct Checkouts<S: EventStore + Clone + Send + Sync + 'static> {
    shipments: Repository<Shipment, S>,
}

impl<S: EventStore + Clone + Send + Sync + 'static> On<CheckedOut> for Checkouts<S> {
    async fn on(&mut self, e: CheckedOut, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let order = env.aggregate_id().to_owned();
        // The checkout's id as idempotency key: executed once per checkout, however often
        // it is delivered. A shipment starts with its order's checkout: `create` decides it
        // without reading the (new) stream, one round trip; a checkout delivered again
        // finds the stream, loads it and gets the first outcome back.
        let metadata = Metadata::caused_by(env).idempotency_key(env.event_id.to_string());
        self.shipments
            .create_with(&order, Schedule { order: order.clone(), total_cents: e.total_cents }, metadata)
            .await?;
        tracing::info!(order = %order, "shipment scheduled");
        Ok(())
    }
}

/// Runs the service on `store` and the NATS server of `client` until a task stops on an
/// error waiting cannot fix: the relay of its events and the consumer of the shop's
/// checkouts. Both ride through NATS and database outages.
pub async fn run<S>(store: S, client: async_nats::Client) -> Result<(), BoxError>
where
    S: EventStore + EventFeed + CheckpointStore + Clone + Send + Sync + 'static,
{
    let relay = tokio::spawn(Relay::new(store.clone(), client.clone(), STREAM, PREFIX).run());
    let feed = JetStreamFeed::new(client, SHOP_STREAM, SHOP_PREFIX, "fulfillment-checkouts").category("cart");
    let checkouts = Checkouts { shipments: Repository::new(store.clone()) };
    let sink = AtLeastOnce::new(store, checkouts).poison(PoisonPolicy::Park);
    let options = SubscriptionOptions { poll_interval: Duration::from_millis(200), ..SubscriptionOptions::default() };
    let mut subscription = Subscription::new(feed, sink).options(options);
    let consumer = tokio::spawn(async move { subscription.run().await });
    tokio::select! {
        stopped = relay => Err(format!("the relay stopped: {:?}", stopped?.err()).into()),
        stopped = consumer => Err(format!("the checkout consumer stopped: {:?}", stopped?.err()).into()),
    }
}
