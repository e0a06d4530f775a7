//! The shop between services (with `NATS_URL`): its events go to JetStream stream `SHOP`
//! through a relay, and the fulfillment service's events (`examples/fulfillment_service`,
//! stream `FULFILLMENT`) come back through a [`JetStreamFeed`] into [`Shipments`], an
//! in-memory read model of each order's shipment: `GET /orders/{id}/shipment`.
//!
//! The shop keeps its own copy of the event it reads ([`ShipmentScheduled`]): services
//! share event contracts (stored names and fields), not code.

use std::collections::BTreeMap;
use std::time::Duration;

use annals::subscription::{InMemoryProjection, Subscription, SubscriptionOptions};
use annals::{BoxError, Envelope, On, Projection};
use annals_nats::{JetStreamFeed, Relay};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::ServiceStore;

/// The shop's JetStream stream, and its subject prefix.
pub const STREAM: &str = "SHOP";
/// The shop's subject prefix.
pub const PREFIX: &str = "shop";

/// The fulfillment service's `shipment.scheduled`, as the shop reads it.
#[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shipment.scheduled")]
pub struct ShipmentScheduled {
    /// The order (the cart id).
    pub order: String,
    /// What the order is worth, in cents.
    pub total_cents: u64,
}

/// Each order's shipment, as the fulfillment service reported it.
#[derive(Projection, Default)]
#[projection(name = "shop.shipments", events(ShipmentScheduled))]
pub struct Shipments {
    by_order: BTreeMap<String, Shipment>,
}

/// One order's shipment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shipment {
    /// The order.
    pub order: String,
    /// `scheduled`.
    pub status: &'static str,
    /// What the order is worth, in cents.
    pub total_cents: u64,
    /// How often the event reached this read model (1: exactly once).
    pub deliveries: u32,
}

impl Shipments {
    /// The shipment of `order`, once the fulfillment service scheduled it.
    pub fn get(&self, order: &str) -> Option<&Shipment> {
        self.by_order.get(order)
    }
}

impl On<ShipmentScheduled> for Shipments {
    async fn on(&mut self, e: ShipmentScheduled, _: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let entry = self.by_order.entry(e.order.clone()).or_insert(Shipment {
            order: e.order,
            status: "scheduled",
            total_cents: e.total_cents,
            deliveries: 0,
        });
        entry.deliveries = entry.deliveries.saturating_add(1);
        Ok(())
    }
}

/// Starts the relay of `store`'s events to JetStream and the consumer of the fulfillment
/// service's events into `shipments`; both run until their tasks are aborted and ride
/// through NATS outages.
pub fn spawn<S: ServiceStore>(
    store: S,
    client: async_nats::Client,
    shipments: InMemoryProjection<Shipments>,
) -> Vec<JoinHandle<()>> {
    let relay = Relay::new(store, client.clone(), STREAM, PREFIX);
    let relay = tokio::spawn(async move {
        if let Err(e) = relay.run().await {
            tracing::error!(error = %e, "the relay to JetStream stopped");
        }
    });
    let feed = JetStreamFeed::new(client, "FULFILLMENT", "fulfillment", "shop-shipments").category("shipment");
    let options = SubscriptionOptions { poll_interval: Duration::from_millis(200), ..SubscriptionOptions::default() };
    let consumer = tokio::spawn(async move {
        loop {
            // In memory: the read model and its checkpoint start again with the process.
            let mut subscription = Subscription::new(feed.clone(), shipments.clone()).options(options);
            if let Err(e) = subscription.run().await {
                tracing::error!(error = %e, "the shipments consumer stopped; resuming in a second");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    vec![relay, consumer]
}

/// `GET /orders/{id}/shipment`.
pub fn router(shipments: InMemoryProjection<Shipments>) -> Router {
    Router::new().route("/orders/{id}/shipment", get(shipment)).with_state(shipments)
}

async fn shipment(
    State(shipments): State<InMemoryProjection<Shipments>>,
    Path(id): Path<String>,
) -> Result<Json<Shipment>, ApiError> {
    let view = shipments.read().await;
    match view.get(&id) {
        Some(shipment) => Ok(Json(shipment.clone())),
        None => Err(ApiError::not_found(format!(
            "no shipment for order `{id}` yet (the fulfillment service schedules one per checkout)"
        ))),
    }
}
