//! Domain events: the [`Event`] trait that `#[derive(Event)]` implements, and the
//! [`EventSet`] trait of the per-aggregate event enum that `#[derive(Aggregate)]` generates.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::Envelope;
use crate::projection::BoxError;

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
///
/// # Schema evolution
/// Stored events outlive the code that wrote them. When an event's shape changes, bump
/// its `version` and declare how older stored versions become the current one; the
/// derive then overrides [`decode_version`](Event::decode_version):
/// - `previous = ItemAddedV2`: the previous version is its own type (deriving `Event` with
///   `version` one lower) plus `impl From<ItemAddedV2> for ItemAdded`; older versions
///   decode through that type's own upcasting;
/// - `upcast(from = 1, with = v1_to_v2)`: a function
///   `fn(serde_json::Value) -> Result<serde_json::Value, annals::BoxError>` that turns
///   the JSON of version `from` into the JSON of version `from + 1`, one per older
///   version (renames and splits of fields);
/// - `aliases("ItemAdded", "cart.added")`: other stored names the event was written under.
///
/// `previous` and `upcast` cannot be combined on one type: chain them instead (give the
/// previous type the `upcast(...)`).
///
/// ```
/// use annals::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// fn rename_quantity(mut v1: serde_json::Value) -> Result<serde_json::Value, annals::BoxError> {
///     let qty = v1.as_object_mut().and_then(|o| o.remove("quantity")).ok_or("v1 has no `quantity`")?;
///     v1["qty"] = qty;
///     Ok(v1)
/// }
///
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "cart.item_added", version = 2, upcast(from = 1, with = rename_quantity))]
/// pub struct ItemAddedV2 { pub sku: String, pub qty: u32 }
///
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "cart.item_added", version = 3, previous = ItemAddedV2, aliases("ItemAdded"))]
/// pub struct ItemAdded { pub sku: String, pub qty: u32, pub unit_price_cents: u64 }
///
/// impl From<ItemAddedV2> for ItemAdded {
///     fn from(v2: ItemAddedV2) -> Self {
///         ItemAdded { sku: v2.sku, qty: v2.qty, unit_price_cents: 0 }
///     }
/// }
///
/// let v1 = serde_json::json!({"sku": "tea", "quantity": 2});
/// let event = ItemAdded::decode_version(1, &v1)?;
/// assert_eq!(event, ItemAdded { sku: "tea".into(), qty: 2, unit_price_cents: 0 });
/// assert_eq!(ItemAdded::ALIASES, ["ItemAdded"]);
/// # Ok::<(), annals::UpcastError>(())
/// ```
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
    /// Other stored names this event was written under (`#[event(aliases(...))]`); events
    /// stored under them decode as this event.
    const ALIASES: &'static [&'static str] = &[];

    /// Decodes a payload stored at schema `version`, upcasting it when older.
    ///
    /// The default accepts only [`VERSION`](Event::VERSION); the derive overrides it when
    /// `#[event(previous = ...)]` or `#[event(upcast(...))]` is given. [`Envelope::decode`](crate::Envelope::decode)
    /// rejects versions newer than `VERSION` before calling it, and decodes a payload at
    /// `VERSION` itself, straight from the stored JSON text (one parse instead of a JSON
    /// value and a deserialization from it), so this is called for older versions only: a
    /// hand-written implementation must decode `VERSION` as serde does.
    fn decode_version(version: u32, payload: &serde_json::Value) -> Result<Self, UpcastError> {
        if version == Self::VERSION {
            Self::deserialize(payload).map_err(UpcastError::Payload)
        } else {
            Err(UpcastError::NoUpcaster { from: version })
        }
    }
}

/// Why [`Event::decode_version`] could not turn a stored payload into the event.
///
/// [`Envelope::decode`](crate::Envelope::decode) turns it into a [`DecodeError`] naming the stored event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// No upcaster leads from this stored version to the current one.
    #[error(
        "no upcaster from v{from}; declare one with `#[event(upcast(from = {from}, with = ...))]` or \
         `#[event(previous = ...)]`"
    )]
    NoUpcaster {
        /// The version no upcaster starts from.
        from: u32,
    },
    /// The (upcast) payload does not deserialize into the event's type.
    #[error("payload does not decode: {0}")]
    Payload(#[source] serde_json::Error),
    /// A raw upcaster (`#[event(upcast(from = ..., with = ...))]`) returned an error.
    #[error("upcaster from v{from} to v{to} failed: {source}", to = .from + 1)]
    Failed {
        /// The version the failing upcaster starts from.
        from: u32,
        /// What the upcaster reported.
        #[source]
        source: BoxError,
    },
}

/// The closed set of events one aggregate understands: the enum `#[derive(Aggregate)]`
/// generates (`CartEvent` for `Cart`), one variant per event type.
///
/// It turns typed events into stored payloads and back, keyed by each event's stable
/// name and version.
pub trait EventSet: Clone + Debug + PartialEq + Send + Sync + Sized + 'static {
    /// The stored names of all member events, aliases included.
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
         v{known_version} and declares no upcaster for v{stored_version}; declare one with \
         `#[event(upcast(from = {stored_version}, with = ...))]` or `#[event(previous = ...)]` on the event"
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

    /// An upcaster of the event (`#[event(upcast(...))]`) failed on the stored payload.
    #[error(
        "stream `{stream}` version {version}: upcasting `{event_type}` from v{from} to v{to} failed: {source}; \
         fix the upcaster so it accepts this payload",
        to = .from + 1
    )]
    Upcast {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The stored name.
        event_type: String,
        /// The version the failing upcaster starts from.
        from: u32,
        /// What the upcaster reported.
        #[source]
        source: BoxError,
    },
}

impl DecodeError {
    /// An [`UnknownEventType`](Self::UnknownEventType) error for `envelope`.
    pub(crate) fn unknown_type(envelope: &Envelope, known: &[&str]) -> Self {
        DecodeError::UnknownEventType {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            known: known.join(", "),
        }
    }
}

/// Decodes the payload of `envelope` as event `E`, upcasting older schema versions
/// ([`Event::decode_version`]).
///
/// What [`Envelope::decode`] and the generated [`EventSet::decode`] (for the matching
/// variant) call.
pub(crate) fn decode_event<E: Event>(envelope: &Envelope) -> Result<E, DecodeError> {
    if envelope.event_version > E::VERSION {
        return Err(DecodeError::VersionTooNew {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            stored_version: envelope.event_version,
            known_version: E::VERSION,
        });
    }
    let payload_error = |source| DecodeError::Payload {
        stream: envelope.stream_id.clone(),
        version: envelope.stream_version,
        event_type: envelope.event_type.clone(),
        event_version: envelope.event_version,
        source,
    };
    // The current version straight from the stored text: one parse, no JSON value between
    // (see `payload.rs`). Older versions go through `decode_version` and its upcasters,
    // which work on values.
    if envelope.event_version == E::VERSION {
        return envelope.payload.decode::<E>().map_err(payload_error);
    }
    let payload = envelope.payload.value().map_err(payload_error)?;
    E::decode_version(envelope.event_version, payload).map_err(|error| match error {
        UpcastError::NoUpcaster { from: _ } => DecodeError::NoUpcaster {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            stored_version: envelope.event_version,
            known_version: E::VERSION,
        },
        UpcastError::Payload(source) => payload_error(source),
        UpcastError::Failed { from, source } => DecodeError::Upcast {
            stream: envelope.stream_id.clone(),
            version: envelope.stream_version,
            event_type: envelope.event_type.clone(),
            from,
            source,
        },
    })
}
