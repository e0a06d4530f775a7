//! What the store keeps: the [`Envelope`] around every stored event, the [`NewEvent`]
//! handed to [`EventStore::append`](crate::EventStore::append), and their [`Metadata`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::payload::Payload;

/// A stored event: the payload plus everything the store recorded about it.
///
/// Envelopes are immutable facts. `stream_version` counts from 1 within a stream;
/// `global_position` counts from 1 across the whole store and only grows.
///
/// ```
/// # use annals::Envelope;
/// fn describe(e: &Envelope) -> String {
///     format!("{}@{} #{}: {} v{}", e.stream_id, e.stream_version, e.global_position, e.event_type, e.event_version)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of this event (UUID v7 when created by annals, so ids sort by creation time).
    pub event_id: Uuid,
    /// The stream the event belongs to, e.g. `cart-42`.
    pub stream_id: String,
    /// Position of the event inside its stream, starting at 1.
    pub stream_version: u64,
    /// Position of the event in the whole store, starting at 1.
    pub global_position: u64,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
    /// The event's stable name (`#[event(name = "...")]`), not its Rust type name.
    pub event_type: String,
    /// The schema version of the payload (`#[event(version = N)]`).
    pub event_version: u32,
    /// The event itself, as JSON: kept as the store returned it and decoded when read
    /// (see [`Payload`]).
    pub payload: Payload,
    /// Correlation, causation and free-form keys.
    pub metadata: Metadata,
}

impl Envelope {
    /// The payload decoded as event `E`, upcast from an older stored schema version if
    /// needed. Fails with a [`DecodeError`](crate::DecodeError) naming the stream, version
    /// and type when the stored type is not `E`'s (its name or an alias) or the payload does
    /// not decode.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// #[event(name = "bell.rang")]
    /// pub struct Rang { times: u32 }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let store = annals_memory::MemoryStore::new();
    /// let stored = store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("bell.rang", 1, serde_json::json!({"times": 2}))]).await?;
    /// assert_eq!(stored[0].decode::<Rang>()?, Rang { times: 2 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn decode<E: crate::Event>(&self) -> Result<E, crate::DecodeError> {
        if self.event_type != E::NAME && !E::ALIASES.contains(&self.event_type.as_str()) {
            return Err(crate::DecodeError::unknown_type(self, &[E::NAME]));
        }
        crate::event::decode_event(self)
    }

    /// The id of the aggregate the event belongs to: the stream id after its category
    /// (an aggregate's streams are `{name}-{id}`, and names hold no `-`). The whole stream
    /// id for a stream without a category.
    ///
    /// ```
    /// # let mut envelope: annals::Envelope = serde_json::from_value(serde_json::json!({
    /// #     "event_id": "0191e4b2-0000-7000-8000-000000000000", "stream_id": "cart-42",
    /// #     "stream_version": 1, "global_position": 1, "recorded_at": "2026-01-01T00:00:00Z",
    /// #     "event_type": "cart.item_added", "event_version": 1, "payload": null, "metadata": {}
    /// # })).unwrap();
    /// assert_eq!((envelope.category(), envelope.aggregate_id()), (Some("cart"), "42"));
    /// envelope.stream_id = "order-2026-17".into();
    /// assert_eq!((envelope.category(), envelope.aggregate_id()), (Some("order"), "2026-17"));
    /// envelope.stream_id = "singleton".into();
    /// assert_eq!((envelope.category(), envelope.aggregate_id()), (None, "singleton"));
    /// ```
    pub fn aggregate_id(&self) -> &str {
        self.stream_id.split_once('-').map_or(self.stream_id.as_str(), |(_, id)| id)
    }

    /// The category of the event's stream: the aggregate's name (`cart` for `cart-42`);
    /// `None` for a stream id without a `-`.
    pub fn category(&self) -> Option<&str> {
        self.stream_id.split_once('-').map(|(category, _)| category)
    }
}

/// An event about to be appended: the store assigns its version, position and time.
///
/// [`Repository`](crate::Repository) builds these from a command's decision; adapters
/// and low-level code can build them with [`NewEvent::new`].
///
/// ```
/// # use annals::NewEvent;
/// let e = NewEvent::new("cart.item_added", 1, serde_json::json!({"sku": "tea"}));
/// assert_eq!(e.event_type, "cart.item_added");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique id; appending the same id twice to the same stream position is a no-op.
    pub event_id: Uuid,
    /// The event's stable name.
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: u32,
    /// The payload as JSON.
    pub payload: serde_json::Value,
    /// Correlation, causation and free-form keys.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id and empty metadata.
    pub fn new(event_type: impl Into<String>, event_version: u32, payload: serde_json::Value) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version,
            payload,
            metadata: Metadata::default(),
        }
    }

    /// The same event with the given metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Metadata carried by every event.
///
/// `correlation_id` ties together everything one request caused; `causation_id` names
/// the message (command or event) that directly caused this event. `extra` holds the
/// user's own keys: user id, tenant, request id.
///
/// ```
/// # use annals::Metadata;
/// let meta = Metadata::default()
///     .correlation_id(uuid::Uuid::now_v7())
///     .with("user_id", "u-17");
/// assert_eq!(meta.extra["user_id"], "u-17");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Id shared by all messages of one business transaction or request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// Id of the message that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Free-form keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// The key of [`idempotency_key`](Self::idempotency_key) in [`extra`](Self::extra).
    pub const IDEMPOTENCY_KEY: &'static str = "idempotency_key";

    /// Makes a command idempotent: [`Repository::execute_with`](crate::Repository::execute_with)
    /// derives the new events' ids from `key` (and the stream), and a command executed
    /// again with the same key on the same aggregate returns the first execution's events
    /// instead of deciding again. Use the id of the caller's request (an HTTP
    /// `Idempotency-Key` header, a message id) so that a caller who does not know whether
    /// its command went through (a timeout, a dropped connection, a cancelled future) can
    /// simply send it again. Stored in [`extra`](Self::extra) under
    /// [`IDEMPOTENCY_KEY`](Self::IDEMPOTENCY_KEY).
    pub fn idempotency_key(self, key: impl Into<String>) -> Self {
        self.with(Self::IDEMPOTENCY_KEY, key.into())
    }

    /// The key in [`extra`](Self::extra) of the W3C trace context (`00-<trace id>-<span
    /// id>-<flags>`) of the command that appended the event. With annals' `opentelemetry`
    /// feature, [`Repository`](crate::Repository) stamps it (and `tracestate`, when not
    /// empty) unless the metadata has one, and consumers handle the event in a span whose
    /// parent it is.
    pub const TRACEPARENT: &'static str = "traceparent";

    /// The key in [`extra`](Self::extra) of the W3C `tracestate` going with
    /// [`TRACEPARENT`](Self::TRACEPARENT).
    pub const TRACESTATE: &'static str = "tracestate";

    /// The W3C `traceparent` stored in [`extra`](Self::extra), if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.extra.get(Self::TRACEPARENT).and_then(serde_json::Value::as_str)
    }

    /// Adds a free-form key.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Metadata for events caused by `cause`: same correlation id (or the cause's id when
    /// it had none), and the cause's event id as causation id.
    pub fn caused_by(cause: &Envelope) -> Self {
        Metadata {
            correlation_id: Some(cause.metadata.correlation_id.unwrap_or(cause.event_id)),
            causation_id: Some(cause.event_id),
            extra: BTreeMap::new(),
        }
    }
}
