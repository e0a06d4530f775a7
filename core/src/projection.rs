//! Read models: a [`Projection`] handles events from any number of aggregates and keeps a
//! materialized view up to date.
//!
//! Implement it with `#[derive(Projection)]` and one [`On<E>`] impl per handled event.
//! The derive generates the event-type filter the store pushes down and the dispatch
//! from a stored envelope to your handler. Handlers get the envelope (position, stream,
//! time, metadata) and the projection's context: `()` for in-memory read models, the
//! store's connection in the open transaction for [`ExactlyOnce`](crate::subscription::ExactlyOnce)
//! ones, so the read-model writes and the
//! checkpoint commit together.

use std::future::Future;

use crate::envelope::Envelope;
use crate::event::DecodeError;

/// The error a handler may return: any error type, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A read model fed by a subscription. See the [module docs](self).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an annals projection",
    note = "add `#[derive(annals::Projection)]` and `#[projection(events(...))]` to `{Self}`"
)]
pub trait Projection: Send + 'static {
    /// The projection's name: the key of its checkpoint. Renaming it replays it.
    const NAME: &'static str;

    /// The stored names of the events it handles (the filter pushed down to the store).
    const EVENT_TYPES: &'static [&'static str];

    /// What every handler receives besides the event: `()` for in-memory read models and
    /// handlers with outside effects; for [`ExactlyOnce`](crate::subscription::ExactlyOnce),
    /// the store's [`CheckpointStore::Connection`](crate::store::CheckpointStore::Connection)
    /// in the open transaction.
    type Context: Send;

    /// Decodes `envelope` and runs the matching [`On`] handler. Events of other types
    /// are ignored.
    fn project<'a>(
        &'a mut self,
        envelope: &'a Envelope,
        context: &'a mut Self::Context,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a;
}

/// Handles one event type for a projection: an [`Event`](crate::Event) listed in the projection's
/// `#[projection(events(...))]`.
#[diagnostic::on_unimplemented(
    message = "projection `{Self}` does not handle `{E}`",
    label = "`{E}` is listed in `events(...)` but has no `On` impl",
    note = "add `impl annals::On<{E}> for {Self} {{ async fn on(&mut self, event: {E}, envelope: &annals::Envelope, context: &mut <Self as annals::Projection>::Context) -> Result<(), annals::BoxError> {{ ... }} }}`"
)]
pub trait On<E>: Projection + crate::__private::ListsEvent<E> {
    /// Updates the read model with `event`. An error stops the subscription at this event
    /// (after retries): nothing after it is applied until it succeeds.
    fn on(&mut self, event: E, envelope: &Envelope, context: &mut Self::Context) -> impl Handler;
}

/// What an [`On::on`] returns: the future of an `async fn on` that resolves to
/// `Result<(), BoxError>` and can move between threads. (A trait of its own, so that a
/// handler written without `async` is told to add it.)
#[diagnostic::on_unimplemented(
    message = "`on` must be an `async fn` returning `Result<(), annals::BoxError>`, and its future `Send`",
    label = "`{Self}` is not the future of an `async fn on`",
    note = "write `async fn on(&mut self, event: E, envelope: &annals::Envelope, context: &mut Self::Context) -> Result<(), annals::BoxError>`; if it is async already, hold no `!Send` value (an `Rc`, a `std::sync::MutexGuard`) across an `.await`"
)]
pub trait Handler: Future<Output = Result<(), BoxError>> + Send {}

impl<F: Future<Output = Result<(), BoxError>> + Send> Handler for F {}

/// Projecting one event failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The stored event does not decode into the handler's type. Permanent: retrying
    /// cannot help until the code or the stored event changes.
    #[error("projection `{projection}`: {source}")]
    Decode {
        /// The projection.
        projection: &'static str,
        /// The event's id.
        event_id: uuid::Uuid,
        /// Why decoding failed (names stream, version and type).
        #[source]
        source: DecodeError,
    },
    /// The stored row does not read back as an event ([`FeedEvent::damage`](crate::store::FeedEvent::damage)):
    /// no handler ran. Permanent: fix the row, then retry the event.
    #[error(
        "projection `{projection}`: the stored event `{event_type}` at stream `{stream}` version {version} \
         (global position {position}) does not read back: {damage}; fix the stored row, then run the consumer \
         (or retry it if it is parked)"
    )]
    Damaged {
        /// The projection.
        projection: &'static str,
        /// The event's id.
        event_id: uuid::Uuid,
        /// The event's stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        position: u64,
        /// The event's stored name.
        event_type: String,
        /// What is wrong with the stored row.
        damage: String,
    },
    /// The handler returned an error.
    #[error(
        "projection `{projection}` failed on `{event_type}` at stream `{stream}` version {version} \
         (global position {position}): {source}"
    )]
    Handler {
        /// The projection.
        projection: &'static str,
        /// The event's id.
        event_id: uuid::Uuid,
        /// The event's stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        position: u64,
        /// The event's stored name.
        event_type: String,
        /// What the handler reported.
        #[source]
        source: BoxError,
    },
}

impl ProjectionError {
    /// Wraps a handler's error with the event it failed on.
    pub(crate) fn handler(projection: &'static str, envelope: &Envelope, source: BoxError) -> Self {
        ProjectionError::Handler {
            projection,
            event_id: envelope.event_id,
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            position: envelope.global_position,
            event_type: envelope.event_type.clone(),
            source,
        }
    }

    /// Wraps a decoding error with the event it happened on.
    pub(crate) fn decode(projection: &'static str, envelope: &Envelope, source: DecodeError) -> Self {
        ProjectionError::Decode { projection, event_id: envelope.event_id, source }
    }

    /// The id of the event projecting failed on.
    pub fn event_id(&self) -> uuid::Uuid {
        match self {
            ProjectionError::Decode { event_id, .. }
            | ProjectionError::Damaged { event_id, .. }
            | ProjectionError::Handler { event_id, .. } => *event_id,
        }
    }

    /// Whether retrying cannot help: the event does not decode (or its stored row does not
    /// read back), or the handler marked its
    /// error [`Permanent`]. A consumer stops at once on a permanent failure, or parks the
    /// event (see [`PoisonPolicy`](crate::subscription::PoisonPolicy)); other failures are
    /// retried first.
    pub fn is_permanent(&self) -> bool {
        match self {
            ProjectionError::Decode { .. } | ProjectionError::Damaged { .. } => true,
            ProjectionError::Handler { source, .. } => source.downcast_ref::<Permanent>().is_some(),
        }
    }
}

/// A handler's error that retrying cannot fix (the event breaks a rule of the read model,
/// say): wrap it so the consumer does not retry it.
///
/// ```
/// # use annals::Permanent;
/// fn check(qty: i64) -> Result<(), annals::BoxError> {
///     if qty < 0 {
///         return Err(Permanent::new(format!("negative quantity {qty}")).into());
///     }
///     Ok(())
/// }
/// assert!(check(-1).unwrap_err().downcast_ref::<Permanent>().is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(#[source] pub BoxError);

impl Permanent {
    /// Marks `error` as permanent.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent(error.into())
    }
}
