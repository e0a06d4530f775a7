//! Domain events: the [`Event`] trait that `#[derive(Event)]` implements, and the
//! [`EventSet`] trait of the per-aggregate event enum that `#[derive(Aggregate)]` generates.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::Envelope;

/// An immutable fact of the domain, stored under a stable name and schema version.
///
/// Implement it with `#[derive(Event)]`:
///
/// ```
/// use annals::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "cart.item_added", version = 1)]
/// pub struct ItemAdded { pub sku: String, pub qty: u32 }
///
/// assert_eq!(ItemAdded::NAME, "cart.item_added");
/// assert_eq!(ItemAdded::VERSION, 1);
/// ```
///
/// The stored name, not the Rust type name, identifies the event: set `name` explicitly
/// so renaming the type never breaks stored data. Without `name` the type's own name is
/// used; without `version`, 1.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an annals event",
    label = "not an event",
    note = "add `#[derive(annals::Event)]` (and `Serialize, Deserialize, Clone, Debug, PartialEq`) to `{Self}`"
)]
pub trait Event: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static {
    /// The stable stored name, e.g. `cart.item_added`.
    const NAME: &'static str;
    /// The payload's schema version, starting at 1.
    const VERSION: u32;
}

/// The closed set of events one aggregate understands: the enum `#[derive(Aggregate)]`
/// generates (`CartEvent` for `Cart`), one variant per event type.
///
/// It turns typed events into stored payloads and back, keyed by each event's stable
/// name and version.
pub trait EventSet: Clone + Debug + PartialEq + Send + Sync + Sized + 'static {
    /// The stored names of all member events.
    const NAMES: &'static [&'static str];

    /// The stored name of this event.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event.
    fn event_version(&self) -> u32;

    /// The event's payload as JSON.
    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// Decodes a stored event into the matching variant.
    fn decode(envelope: &Envelope) -> Result<Self, DecodeError>;
}

/// A stored event could not be turned back into a typed event.
///
/// The store is never changed by a decode failure; fix the code (add the event type,
/// an upcaster, or upgrade) and load again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stored event type is not one of the events this code knows.
    #[error(
        "stream `{stream}` version {version} holds event type `{event_type}`, which is not one of [{known}]; \
         list its type in `#[aggregate(events(...))]` (or `#[projection(events(...))]`)"
    )]
    UnknownEventType {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The unknown stored name.
        event_type: String,
        /// The names this code knows, comma separated.
        known: String,
    },

    /// The stored payload does not match the event's Rust type.
    #[error(
        "stream `{stream}` version {version}: payload of `{event_type}` v{event_version} does not decode: {source}; \
         if the event's shape changed, bump its `#[event(version = ...)]` and declare how old versions upcast"
    )]
    Payload {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The stored name.
        event_type: String,
        /// The stored schema version.
        event_version: u32,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },

    /// The stored event was written by newer code than this.
    #[error(
        "stream `{stream}` version {version}: `{event_type}` is stored as v{stored_version}, but this code knows \
         only up to v{known_version}; deploy the newer code that wrote it"
    )]
    VersionTooNew {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The stored name.
        event_type: String,
        /// The stored schema version.
        stored_version: u32,
        /// The newest version this code knows.
        known_version: u32,
    },

    /// The stored event has an older schema version and no way up to the current one.
    #[error(
        "stream `{stream}` version {version}: `{event_type}` is stored as v{stored_version}, but the code expects \
         v{known_version} and declares no upcaster for v{stored_version}"
    )]
    NoUpcaster {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The stored name.
        event_type: String,
        /// The stored schema version.
        stored_version: u32,
        /// The version the code expects.
        known_version: u32,
    },
}

impl DecodeError {
    /// An [`UnknownEventType`](Self::UnknownEventType) error for `envelope`.
    pub fn unknown_type(envelope: &Envelope, known: &[&str]) -> Self {
        DecodeError::UnknownEventType {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            known: known.join(", "),
        }
    }
}

/// Decodes the payload of `envelope` as event `E`, checking its schema version.
///
/// This is what the generated [`EventSet::decode`] calls for the matching variant.
pub fn decode_event<E: Event>(envelope: &Envelope) -> Result<E, DecodeError> {
    if envelope.event_version > E::VERSION {
        return Err(DecodeError::VersionTooNew {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            stored_version: envelope.event_version,
            known_version: E::VERSION,
        });
    }
    if envelope.event_version < E::VERSION {
        return Err(DecodeError::NoUpcaster {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            stored_version: envelope.event_version,
            known_version: E::VERSION,
        });
    }
    E::deserialize(&envelope.payload).map_err(|source| DecodeError::Payload {
        stream: envelope.stream_id.clone(),
        version: envelope.stream_version,
        event_type: envelope.event_type.clone(),
        event_version: envelope.event_version,
        source,
    })
}
