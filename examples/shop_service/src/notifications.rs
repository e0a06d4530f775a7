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

use annals::subscription::{Checkpoint, InMemoryProjection};
use annals::{BoxError, Envelope, On, Projection};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shopping_cart::CheckedOut;
use uuid::Uuid;

use crate::projections::cart_id;

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

/// The consumer: its outbox of queued emails. A projection of `cart.checked_out` events,
/// kept in memory with its checkpoint beside it by an [`InMemoryProjection`]; the service
/// narrows its subscription to cart streams.
#[derive(Projection, Default)]
#[projection(name = "notifications", events(CheckedOut))]
pub struct Outbox {
    /// Queued emails by idempotency key (the causing event's id).
    by_event: BTreeMap<Uuid, Notification>,
    /// Event ids in the order their emails were queued.
    queued: Vec<Uuid>,
    /// How many `cart.checked_out` deliveries the handler received, duplicates included.
    deliveries: u64,
}

impl Outbox {
    /// The queued emails, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.queued.iter().filter_map(|id| self.by_event.get(id).cloned()).collect()
    }

    /// How many `cart.checked_out` deliveries the handler received, duplicates included.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

/// Queues the email a checkout calls for, unless its event was handled before: keyed by
/// the event id, so a redelivery (which a consumer in another process sees after a crash
/// between the email and its checkpoint) queues nothing twice.
impl On<CheckedOut> for Outbox {
    async fn on(&mut self, checked_out: CheckedOut, envelope: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        let cart_id = cart_id(envelope)?.to_owned();
        self.deliveries += 1;
        if self.by_event.contains_key(&envelope.event_id) {
            return Ok(()); // redelivered: the email is already queued
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
        self.by_event.insert(envelope.event_id, notification);
        self.queued.push(envelope.event_id);
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
pub fn router(outbox: InMemoryProjection<Outbox>) -> Router {
    Router::new().route("/notifications", get(list)).with_state(outbox)
}

async fn list(State(outbox): State<InMemoryProjection<Outbox>>) -> Json<NotificationsResponse> {
    let as_of = outbox.checkpoint().await;
    let outbox = outbox.read().await;
    Json(NotificationsResponse { as_of, deliveries: outbox.deliveries(), notifications: outbox.notifications() })
}

#[cfg(test)]
mod tests {
    use annals::subscription::{FeedEvent, Sink};
    use annals::{Event, Metadata};

    use super::*;

    fn checkout_event(position: u64) -> FeedEvent {
        FeedEvent::new(
            Checkpoint::from_parts(0, position),
            Envelope {
                event_id: Uuid::now_v7(),
                stream_id: "cart-7".into(),
                stream_version: 2,
                global_position: position,
                recorded_at: Utc::now(),
                event_type: CheckedOut::NAME.into(),
                event_version: 1,
                payload: serde_json::json!({ "total_cents": 900 }).into(),
                metadata: Metadata::default().correlation_id(Uuid::now_v7()),
            },
        )
    }

    #[tokio::test]
    async fn a_redelivered_checkout_queues_one_email() -> Result<(), BoxError> {
        let mut outbox = Outbox::default();
        let event = checkout_event(5);
        let checked_out: CheckedOut = event.envelope.decode()?;
        outbox.on(checked_out.clone(), &event.envelope, &mut ()).await?;
        // A redelivery after a crash before the checkpoint was saved: the same event again.
        outbox.on(checked_out, &event.envelope, &mut ()).await?;

        let queued = outbox.notifications();
        assert_eq!(queued.len(), 1);
        assert_eq!(outbox.deliveries(), 2);
        assert_eq!(queued[0].event_id, event.envelope.event_id);
        assert_eq!(queued[0].cart_id, "7");
        assert_eq!(queued[0].total_cents, 900);
        assert_eq!(queued[0].correlation_id, event.envelope.metadata.correlation_id);
        Ok(())
    }

    #[tokio::test]
    async fn an_undecodable_checkout_stops_the_consumer_before_its_checkpoint() {
        let mut outbox = InMemoryProjection::new(Outbox::default());
        let mut event = checkout_event(3);
        event.envelope.payload = serde_json::json!({ "total": "lots" }).into();
        let at = event.checkpoint;
        assert!(outbox.process(&[event], at).await.is_err());
        assert!(outbox.read().await.notifications().is_empty());
        assert_eq!(outbox.checkpoint().await, Checkpoint::START);
    }
}
