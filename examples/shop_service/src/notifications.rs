//! An independent consumer: the "notification service". It shares nothing with the cart
//! service but the event feed and the event types of `shopping_cart`: it follows
//! `cart.checked_out` events through a subscription of its own, with its own checkpoint,
//! and queues an order-confirmation email for each. In production it would be another
//! process; here it is a task and a route of the same binary.
//!
//! Sending an email is a side effect outside any transaction, so delivery is
//! *at-least-once*: a consumer that crashes after sending but before saving its checkpoint
//! sees the same event again. The handler is therefore idempotent, keyed by the event id:
//! a redelivered event finds its email already queued and does nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use annals::event::decode_event;
use annals::subscription::{Checkpoint, FeedEvent, Filter, Sink, SinkError};
use annals::{Aggregate, BoxError, Envelope, Event, ProjectionError};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shopping_cart::{Cart, CheckedOut};
use uuid::Uuid;

use crate::projections::cart_id;

/// The consumer's name (its checkpoint key, and the name in its errors).
pub const NAME: &str = "notifications";

/// An order-confirmation email waiting to be sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// The idempotency key: the id of the `cart.checked_out` event that caused it.
    pub event_id: Uuid,
    /// The checked-out cart.
    pub cart_id: String,
    /// Where the email goes.
    pub to: String,
    /// The email's subject.
    pub subject: String,
    /// What the customer paid, in cents.
    pub total_cents: u64,
    /// The correlation id of the request that checked the cart out.
    pub correlation_id: Option<Uuid>,
    /// When the email was queued.
    pub queued_at: DateTime<Utc>,
}

/// The consumer's outbox (the emails it queued) and its checkpoint, kept together. Clones
/// share them.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Mutex<OutboxState>>,
}

#[derive(Default)]
struct OutboxState {
    /// Queued emails by idempotency key (the causing event's id).
    by_event: BTreeMap<Uuid, Notification>,
    /// Event ids in the order their emails were queued.
    queued: Vec<Uuid>,
    /// How many `cart.checked_out` deliveries the handler received, duplicates included.
    deliveries: u64,
    checkpoint: Checkpoint,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        // The state stays consistent under a panic (each update is one insert), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queued emails, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        let state = self.lock();
        state.queued.iter().filter_map(|id| state.by_event.get(id).cloned()).collect()
    }

    /// How many `cart.checked_out` deliveries the handler received, duplicates included.
    pub fn deliveries(&self) -> u64 {
        self.lock().deliveries
    }

    /// How far the consumer has read.
    pub fn checkpoint(&self) -> Checkpoint {
        self.lock().checkpoint
    }

    /// Queues the email `checked_out` calls for, unless its event was handled before.
    /// Returns whether it queued one.
    fn handle(&self, checked_out: CheckedOut, envelope: &Envelope) -> Result<bool, BoxError> {
        let cart_id = cart_id(envelope)?.to_owned();
        let mut state = self.lock();
        state.deliveries += 1;
        if state.by_event.contains_key(&envelope.event_id) {
            return Ok(false); // redelivered: the email is already queued
        }
        let notification = Notification {
            event_id: envelope.event_id,
            to: format!("customer+{cart_id}@shop.example"),
            subject: format!("Your order {cart_id} is confirmed"),
            cart_id,
            total_cents: checked_out.total_cents,
            correlation_id: envelope.metadata.correlation_id,
            queued_at: Utc::now(),
        };
        let correlation = notification.correlation_id.map_or_else(|| "none".to_owned(), |id| id.to_string());
        println!(
            "notifications: queued \"{}\" to {} (event {}, correlation {correlation})",
            notification.subject, notification.to, notification.event_id
        );
        state.by_event.insert(envelope.event_id, notification);
        state.queued.push(envelope.event_id);
        Ok(true)
    }
}

/// The consumer as a subscription [`Sink`]: feed it with
/// `Subscription::new(store, NotificationConsumer::new(outbox))`.
#[derive(Clone)]
pub struct NotificationConsumer {
    outbox: Outbox,
}

impl NotificationConsumer {
    /// A consumer queueing into `outbox` and resuming from its checkpoint.
    pub fn new(outbox: Outbox) -> Self {
        NotificationConsumer { outbox }
    }
}

impl Sink for NotificationConsumer {
    fn name(&self) -> &str {
        NAME
    }

    /// Only checkouts of carts: the store filters out everything else.
    fn filter(&self) -> Filter {
        Filter::all().event_types([CheckedOut::NAME]).category(Cart::NAME)
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        Ok(self.outbox.checkpoint())
    }

    /// Queues the emails, then records the checkpoint: an event is handed out again if
    /// the consumer stops in between, and the outbox ignores it the second time (keyed by event id).
    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        for event in events {
            let envelope = &event.envelope;
            let checked_out = decode_event::<CheckedOut>(envelope)
                .map_err(|source| ProjectionError::Decode { projection: NAME, source })?;
            self.outbox.handle(checked_out, envelope).map_err(|e| ProjectionError::handler(NAME, envelope, e))?;
            let mut state = self.outbox.lock();
            state.checkpoint = state.checkpoint.max(event.checkpoint);
        }
        let mut state = self.outbox.lock();
        state.checkpoint = state.checkpoint.max(next);
        Ok(())
    }
}

/// Body of `GET /notifications`.
#[derive(Debug, Serialize)]
pub struct NotificationsResponse {
    /// The queued emails, oldest first (one per checkout, however often it was delivered).
    pub notifications: Vec<Notification>,
    /// How many checkout deliveries the consumer received, duplicates included.
    pub deliveries: u64,
    /// How far the consumer has read.
    pub as_of: Checkpoint,
}

/// `GET /notifications`, on `outbox`.
pub fn router(outbox: Outbox) -> Router {
    Router::new().route("/notifications", get(list)).with_state(outbox)
}

async fn list(State(outbox): State<Outbox>) -> Json<NotificationsResponse> {
    Json(NotificationsResponse {
        as_of: outbox.checkpoint(),
        deliveries: outbox.deliveries(),
        notifications: outbox.notifications(),
    })
}

#[cfg(test)]
mod tests {
    use annals::Metadata;

    use super::*;

    fn checkout_event(position: u64) -> FeedEvent {
        FeedEvent {
            checkpoint: Checkpoint { commit: position, position },
            envelope: Envelope {
                event_id: Uuid::now_v7(),
                stream_id: "cart-7".into(),
                stream_version: 2,
                global_position: position,
                recorded_at: Utc::now(),
                event_type: CheckedOut::NAME.into(),
                event_version: 1,
                payload: serde_json::json!({ "total_cents": 900 }),
                metadata: Metadata::default().correlation_id(Uuid::now_v7()),
            },
        }
    }

    #[tokio::test]
    async fn a_redelivered_checkout_queues_one_email() -> Result<(), SinkError> {
        let outbox = Outbox::default();
        let mut consumer = NotificationConsumer::new(outbox.clone());
        let event = checkout_event(5);
        let at = event.checkpoint;
        consumer.process(std::slice::from_ref(&event), at).await?;
        // A crash before the checkpoint was saved elsewhere: the same event again.
        consumer.process(std::slice::from_ref(&event), at).await?;

        let queued = outbox.notifications();
        assert_eq!(queued.len(), 1);
        assert_eq!(outbox.deliveries(), 2);
        assert_eq!(queued[0].event_id, event.envelope.event_id);
        assert_eq!(queued[0].cart_id, "7");
        assert_eq!(queued[0].total_cents, 900);
        assert_eq!(queued[0].correlation_id, event.envelope.metadata.correlation_id);
        assert_eq!(outbox.checkpoint(), at);
        Ok(())
    }

    #[tokio::test]
    async fn an_undecodable_checkout_stops_the_consumer_before_its_checkpoint() {
        let outbox = Outbox::default();
        let mut consumer = NotificationConsumer::new(outbox.clone());
        let mut event = checkout_event(3);
        event.envelope.payload = serde_json::json!({ "total": "lots" });
        let at = event.checkpoint;
        assert!(consumer.process(&[event], at).await.is_err());
        assert!(outbox.notifications().is_empty());
        assert_eq!(outbox.checkpoint(), Checkpoint::START);
    }
}
