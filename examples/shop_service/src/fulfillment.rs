//! A workflow: the fulfillment of each checked-out cart, a process manager
//! ([`annals::process`]) across two aggregates. When a cart is checked out, the process
//! asks the warehouse to pack the order (a `Shipment` aggregate, one per cart) and sets
//! a deadline; when the shipment is packed it completes, cancelling the deadline; if the
//! warehouse refuses (an order over the parcel limit) or the deadline passes first, it
//! records why. Every reaction is recorded in the stream `fulfillment.process-{cart}`
//! before its command runs, and commands run with ids derived from their trigger, so a
//! restart in the middle runs each command once.
//!
//! `GET /orders/{cart}` shows the instance: its step, whether it completed, how many
//! reactions it recorded and the deadlines still pending.

use std::time::Duration;

use annals::process::{Effects, InstanceView, ProcessRunner, React, Rejected};
use annals::{Aggregate, Apply, Decision, Envelope, Event, Handle, ProcessManager};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shopping_cart::CheckedOut;

use crate::error::ApiError;
use crate::ServiceStore;

/// How long the warehouse has to pack an order.
pub const PACKING_DEADLINE: Duration = Duration::from_secs(3_600);

/// The most a parcel may be worth, in cents: the warehouse refuses bigger orders.
pub const PARCEL_LIMIT_CENTS: u64 = 100_000;

/// The warehouse packed an order.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shipment.packed")]
pub struct Packed {
    /// The order's value, in cents.
    pub total_cents: u64,
}

/// Pack an order.
#[derive(Serialize, Deserialize)]
pub struct Pack {
    /// The order's value, in cents.
    pub total_cents: u64,
}

/// Why the warehouse refuses to pack an order.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Over the parcel limit.
    #[error("an order worth {0} cents is over the parcel limit of {PARCEL_LIMIT_CENTS}")]
    OverLimit(u64),
}

/// The shipment of one order (stream `shipment-{cart}`).
#[derive(Aggregate, Default)]
#[aggregate(events(Packed), commands(Pack), error = PackError)]
pub struct Shipment {
    packed: bool,
}

impl Apply<Packed> for Shipment {
    fn apply(&mut self, _: Packed) {
        self.packed = true;
    }
}

impl Handle<Pack> for Shipment {
    fn handle(&self, command: &Pack) -> Decision<Self> {
        if command.total_cents > PARCEL_LIMIT_CENTS {
            return Err(PackError::OverLimit(command.total_cents));
        }
        if self.packed {
            return Ok(Vec::new());
        }
        Ok(vec![Packed { total_cents: command.total_cents }.into()])
    }
}

/// Fired when an order is not packed in time.
#[derive(Serialize, Deserialize)]
pub struct PackingOverdue;

/// Where an order's fulfillment is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Not checked out yet.
    #[default]
    New,
    /// Waiting for the warehouse.
    Packing,
    /// Packed: done.
    Packed,
    /// Given up, and why.
    Failed(String),
}

/// The fulfillment workflow of one cart; its instance id is the cart id.
#[derive(ProcessManager, Default, Serialize, Deserialize)]
#[process(
    name = "fulfillment",
    correlate_with = cart_of,
    events(CheckedOut, Packed),
    commands(Pack => Shipment),
    deadlines(PackingOverdue),
    rejected(Pack),
)]
pub struct Fulfillment {
    /// Where it is.
    pub step: Step,
}

/// Both events name the cart by their stream: `cart-{id}` and `shipment-{id}`.
fn cart_of(envelope: &Envelope) -> Option<String> {
    Some(envelope.aggregate_id().to_owned())
}

impl React<CheckedOut> for Fulfillment {
    fn react(&mut self, e: &CheckedOut, effects: &mut Effects<Self>) {
        self.step = Step::Packing;
        // The shipment has the cart's id, which is the instance's.
        let cart = effects.instance().to_owned();
        effects.send(cart, Pack { total_cents: e.total_cents });
        effects.deadline(PACKING_DEADLINE, PackingOverdue);
    }
}

impl React<Packed> for Fulfillment {
    fn react(&mut self, _: &Packed, effects: &mut Effects<Self>) {
        self.step = Step::Packed;
        effects.complete();
    }
}

impl React<Rejected<Pack>> for Fulfillment {
    fn react(&mut self, rejected: &Rejected<Pack>, effects: &mut Effects<Self>) {
        self.step = Step::Failed(rejected.reason.clone());
        effects.complete();
    }
}

impl React<PackingOverdue> for Fulfillment {
    fn react(&mut self, _: &PackingOverdue, effects: &mut Effects<Self>) {
        self.step = Step::Failed("not packed in time".to_owned());
        effects.complete();
    }
}

/// `GET /orders/{cart}`: the fulfillment instance of a cart.
#[derive(Debug, Serialize)]
pub struct OrderResponse {
    /// The cart id.
    pub cart_id: String,
    /// Where the fulfillment is.
    pub step: Step,
    /// Whether it completed.
    pub completed: bool,
    /// How many reactions it recorded.
    pub reactions: usize,
    /// How many of its deadlines are pending.
    pub pending_deadlines: usize,
}

/// The route of the workflow's instances.
pub fn router<S: ServiceStore>(store: S) -> Router {
    Router::new().route("/orders/{id}", get(order::<S>)).with_state(store)
}

async fn order<S: ServiceStore>(
    State(store): State<S>,
    Path(id): Path<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let view = InstanceView::<Fulfillment>::load(&store, &id).await.map_err(|e| {
        if e.is_transient() {
            ApiError::unavailable(format!("reading the fulfillment of `{id}`: {e}"), 1)
        } else {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the fulfillment of `{id}`: {e}"),
            )
        }
    })?;
    if view.version == 0 {
        return Err(ApiError::not_found(format!("no order `{id}`: the cart was not checked out (yet)")));
    }
    Ok(Json(OrderResponse {
        cart_id: id,
        step: view.state.step,
        completed: view.completed,
        reactions: view.reactions.len(),
        pending_deadlines: view.pending.len(),
    }))
}

/// Runs the workflow until aborted: follows the feed and fires due deadlines; one that
/// stops (an input it can neither react to nor park) is logged and resumes from its
/// checkpoint after `restart_after`.
pub async fn run<S: ServiceStore>(store: S, restart_after: Duration) {
    loop {
        let mut runner = ProcessRunner::<Fulfillment, S>::new(store.clone());
        if let Err(e) = runner.run().await {
            eprintln!("shop-service: the fulfillment workflow stopped: {e}; resuming in {restart_after:?}");
        }
        tokio::time::sleep(restart_after).await;
    }
}
