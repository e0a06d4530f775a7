//! [`KeyedIds`]: the event ids of an idempotent command, derived from its key.

use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};

/// The namespace of the UUID v5 ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1b_2c3d_4e5f_4a6b_8c7d_9e0f_1a2b_3c4d);

/// The event ids of a command given an idempotency key
/// ([`Metadata::idempotency_key`]): the `i`-th new event of the command on `stream` gets
/// the UUID v5 of (`stream`, key, `i`), the same on every execution. While a stream is
/// loaded, it collects the stored events that carry these ids: a command executed before.
pub(crate) struct KeyedIds {
    stream: String,
    key: String,
    found: Vec<Envelope>,
}

impl KeyedIds {
    /// The ids of a command on `stream` with `metadata`, if it has an idempotency key.
    pub(crate) fn from_metadata(stream: &str, metadata: &Metadata) -> Option<Self> {
        let key = metadata.extra.get(Metadata::IDEMPOTENCY_KEY)?;
        let key = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
        Some(KeyedIds { stream: stream.to_owned(), key, found: Vec::new() })
    }

    /// The id of the command's `index`-th new event.
    pub(crate) fn id(&self, index: usize) -> Uuid {
        // Lengths first, so that no (stream, key, index) reads as another.
        let name = format!("{}:{}:{}:{}:{index}", self.stream.len(), self.stream, self.key.len(), self.key);
        Uuid::new_v5(&NAMESPACE, name.as_bytes())
    }

    /// Looks at a stored event of the stream: collects it if it is the next event of the
    /// earlier execution (events of one append are consecutive in their stream).
    pub(crate) fn see(&mut self, envelope: &Envelope) {
        if envelope.event_id == self.id(self.found.len()) {
            self.found.push(envelope.clone());
        }
    }

    /// Forgets what was seen, before the stream is read again.
    pub(crate) fn forget(&mut self) {
        self.found.clear();
    }

    /// The earlier execution's events, if any were seen.
    pub(crate) fn take_found(&mut self) -> Option<Vec<Envelope>> {
        (!self.found.is_empty()).then(|| std::mem::take(&mut self.found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_stream_key_and_index_only() {
        let keyed = |stream: &str, key: &str| {
            KeyedIds::from_metadata(stream, &Metadata::default().idempotency_key(key)).map(|k| (k.id(0), k.id(1)))
        };
        assert_eq!(keyed("cart-1", "req-7"), keyed("cart-1", "req-7"));
        assert_ne!(keyed("cart-1", "req-7"), keyed("cart-2", "req-7"));
        assert_ne!(keyed("cart-1", "req-7"), keyed("cart-1", "req-8"));
        assert_ne!(keyed("a:b", "c"), keyed("a", "b:c"));
        assert!(keyed("cart-1", "req-7").is_some_and(|(first, second)| first != second));
        assert!(KeyedIds::from_metadata("cart-1", &Metadata::default()).is_none());
    }
}
