//! Poison events: what a consumer does with an event its handler cannot process.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::FeedEvent;

/// What a consumer does with an event whose handler fails permanently (the event does not
/// decode, or the handler's error is [`Permanent`](crate::Permanent)) or keeps failing
/// after the subscription's retries.
///
/// ```
/// # use annals::subscription::{InMemoryProjection, PoisonPolicy};
/// # #[derive(annals::Projection, Default)]
/// # #[projection(events(Rang))]
/// # struct Rings;
/// # #[derive(annals::Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Rang;
/// # impl annals::On<Rang> for Rings {
/// #     async fn on(&mut self, _: Rang, _: &annals::Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
/// # }
/// let view = InMemoryProjection::new(Rings).poison(PoisonPolicy::ParkStream);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoisonPolicy {
    /// Stop the subscription with an error naming the event (stream, version, position,
    /// type) and the cause; it resumes at that event once restarted after a fix. The
    /// default: nothing is skipped without someone deciding it.
    #[default]
    Stop,
    /// Set the event aside as a dead letter with its error, and go on with the next one.
    /// Parked events can be listed, retried after a fix, or skipped.
    Park,
    /// Like [`Park`](Self::Park), and also hold back every later event of the same
    /// stream (parked behind it) until the parked one is retried: for read models whose
    /// correctness depends on each stream's order. Other streams flow on.
    ParkStream,
}

/// A dead letter: an event a consumer set aside, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    /// The event and its place in the feed.
    pub event: FeedEvent,
    /// Why it was parked: the handler's error, or the parked event of its stream it is
    /// held behind.
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// With [`PoisonPolicy::ParkStream`]: the id of the earlier parked event of the same
    /// stream this one waits behind; `None` for the event that failed.
    pub behind: Option<Uuid>,
}

impl Parked {
    /// A dead letter of `event`, parked now.
    pub fn new(event: FeedEvent, reason: impl Into<String>, behind: Option<Uuid>) -> Self {
        Parked { event, reason: reason.into(), parked_at: Utc::now(), behind }
    }
}

/// What [`retry_parked`](crate::subscription::ExactlyOnce::retry_parked) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryReport {
    /// The events now applied and no longer parked.
    pub applied: Vec<Uuid>,
    /// The events still parked, with their new reason (in order).
    pub still_parked: Vec<Parked>,
}

/// What a sink does with an event, given its dead letters.
#[derive(Debug, PartialEq)]
pub(crate) enum Disposition {
    /// Run the handler.
    Apply,
    /// Already parked: skip it.
    Skip,
    /// Its stream has a parked event (under [`PoisonPolicy::ParkStream`]): park it behind
    /// that one.
    HoldBehind(Uuid),
}

/// A sink's dead letters, indexed for [`Disposition`].
#[derive(Debug, Default)]
pub(crate) struct ParkedIndex {
    ids: std::collections::HashSet<Uuid>,
    /// For each stream with a parked event: the first parked event's id.
    streams: std::collections::HashMap<String, Uuid>,
}

impl ParkedIndex {
    pub(crate) fn new<'a>(parked: impl IntoIterator<Item = &'a Parked>) -> Self {
        let mut index = ParkedIndex::default();
        for parked in parked {
            index.add(parked);
        }
        index
    }

    pub(crate) fn add(&mut self, parked: &Parked) {
        self.ids.insert(parked.event.envelope.event_id);
        self.streams.entry(parked.event.envelope.stream_id.clone()).or_insert(parked.event.envelope.event_id);
    }

    pub(crate) fn disposition(&self, policy: PoisonPolicy, event: &FeedEvent) -> Disposition {
        if self.ids.contains(&event.envelope.event_id) {
            return Disposition::Skip;
        }
        match self.streams.get(&event.envelope.stream_id) {
            Some(first) if policy == PoisonPolicy::ParkStream => Disposition::HoldBehind(*first),
            _ => Disposition::Apply,
        }
    }
}

/// The reason of an event held behind `first`.
pub(crate) fn held_behind(first: Uuid) -> String {
    format!("held behind parked event {first} of the same stream")
}
