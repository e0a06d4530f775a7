//! [`Sink`]: where a subscription delivers events, and the one rule every sink applies.

use std::future::Future;

use tracing::Instrument;

use crate::projection::{BoxError, Projection, ProjectionError};
use crate::store::{Checkpoint, FeedEvent, Filter, StoreError};

/// Where a subscription delivers events: a consumer together with its checkpoint.
///
/// annals ships the sinks most consumers need: [`InMemoryProjection`](super::InMemoryProjection),
/// [`ExactlyOnce`](super::ExactlyOnce) and [`AtLeastOnce`](super::AtLeastOnce).
pub trait Sink: Send {
    /// The name used in errors (and, for the shipped sinks, the checkpoint's key).
    fn name(&self) -> &str;

    /// The events this sink wants by default; [`Subscription::new`](super::Subscription::new)
    /// pushes it down to the store. Default: every event.
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// The checkpoint to resume after.
    fn checkpoint(&mut self) -> impl Future<Output = Result<Checkpoint, BoxError>> + Send;

    /// Applies `events` and records `next` as the checkpoint. If it fails, it must leave
    /// the checkpoint at the last event whose effects it kept, so a retry neither loses
    /// nor repeats an effect. Events it parked before are skipped.
    fn process(&mut self, events: &[FeedEvent], next: Checkpoint)
        -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Called when `event`'s handler failed permanently or kept failing: sets it aside as
    /// a dead letter, so that processing goes on without it, and returns true; or returns
    /// false, and the subscription stops at the event. The shipped sinks do what their
    /// [`PoisonPolicy`](super::PoisonPolicy) says; the default stops.
    fn park(&mut self, event: &FeedEvent, reason: &str) -> impl Future<Output = Result<bool, SinkError>> + Send {
        let _ = (event, reason);
        async { Ok(false) }
    }
}

/// Why a [`Sink`] failed to process a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A handler failed (or its event did not decode).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The store failed while the sink moved its checkpoint or ran its transaction. A
    /// transient failure ([`StoreError::is_transient`]) is waited out, however long it lasts.
    #[error("consumer `{consumer}`: {what} failed: {source}")]
    Store {
        /// The consumer.
        consumer: String,
        /// What it was doing.
        what: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The sink's own storage failed (a sink of your own: anything else).
    #[error("storing the consumer's effects or checkpoint failed: {0}")]
    Storage(BoxError),
}

impl SinkError {
    /// Whether retrying may succeed without anyone fixing anything: the store was
    /// unreachable (a restart, an outage, an exhausted pool).
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Store { source, .. } => source.is_transient(),
            SinkError::Storage(error) => error.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient),
            SinkError::Projection(_) => false,
        }
    }

    /// Whether retrying cannot help: see [`ProjectionError::is_permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Projection(e) if e.is_permanent())
    }

    /// The id of the event a handler failed on, if a handler failed.
    pub fn event_id(&self) -> Option<uuid::Uuid> {
        match self {
            SinkError::Projection(e) => Some(e.event_id()),
            _ => None,
        }
    }
}

/// The events of a batch not yet applied by a sink whose checkpoint is `applied`: the
/// skip rule of every sink (an event at or before the checkpoint is already applied).
pub(crate) fn pending(events: &[FeedEvent], applied: Checkpoint) -> impl Iterator<Item = &FeedEvent> {
    events.iter().filter(move |event| event.checkpoint > applied)
}

/// Runs `projection`'s handler for `event`: what every sink does with an event it
/// applies. A damaged event ([`FeedEvent::damage`]) runs no handler: it fails
/// permanently with [`ProjectionError::Damaged`].
pub(crate) async fn project<P: Projection>(
    projection: &mut P,
    event: &FeedEvent,
    context: &mut P::Context,
) -> Result<(), ProjectionError> {
    match &event.damage {
        None => {
            let envelope = &event.envelope;
            macro_rules! handle_span {
                ($span:ident) => {
                    tracing::$span!(
                        "annals.handle",
                        projection = P::NAME,
                        event_type = %envelope.event_type,
                        event_id = %envelope.event_id,
                        stream = %envelope.stream_id,
                        version = envelope.stream_version,
                        position = envelope.global_position,
                    )
                };
            }
            // An event that carries its command's trace context is handled in an INFO span
            // of that trace (feature `opentelemetry`); others in a DEBUG span.
            let span = match crate::trace_context::remote_parent(&envelope.metadata) {
                Some(parent) => {
                    let span = handle_span!(info_span);
                    crate::trace_context::adopt(&span, parent);
                    span
                }
                None => handle_span!(debug_span),
            };
            projection.project(envelope, context).instrument(span).await
        }
        Some(damage) => {
            let envelope = &event.envelope;
            Err(ProjectionError::Damaged {
                projection: P::NAME,
                event_id: envelope.event_id,
                stream: envelope.stream_id.clone(),
                version: envelope.stream_version,
                position: envelope.global_position,
                event_type: envelope.event_type.clone(),
                damage: damage.clone(),
            })
        }
    }
}
