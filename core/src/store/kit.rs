//! The rules every store adapter applies the same way, written once.
//!
//! An adapter's `append` calls [`validate_append`] first, and [`already_stored`] with the
//! envelopes it finds under the new events' ids; it converts integers between Rust and
//! its database with [`to_db`], [`bound_to_db`] and [`from_db`]. The
//! `conformance` (feature `testing`) suites check the outcome.
//!
//! ```
//! use annals::store::kit;
//! use annals::{ExpectedVersion, NewEvent};
//!
//! let events = vec![NewEvent::new("greeted", 1, serde_json::json!({}))];
//! kit::validate_append("greeter-1", &events)?;
//! // Nothing is stored under these ids yet: go on and append.
//! assert!(kit::already_stored("greeter-1", ExpectedVersion::Exact(0), &events, |_| None)?.is_none());
//! # Ok::<(), annals::StoreError>(())
//! ```

use std::collections::HashSet;

use uuid::Uuid;

use crate::envelope::{Envelope, NewEvent};
use crate::store::{Checkpoint, ExpectedVersion, FeedEvent, StoreError};

/// The longest stream id, in bytes of UTF-8, that every store accepts: 1024.
///
/// One limit for every adapter, checked by [`validate_stream_id`] before any database
/// sees the id, so an application that runs on one store runs on all. Why 1024: a
/// stream id is a key of the stores' indexes, and PostgreSQL's btree indexes refuse an
/// entry larger than about a third of a page (2,704 bytes with the default 8 KB pages;
/// incompressible text reaches it at about 2.7 KB), with an error naming only the index.
/// 1024 bytes leaves room, inside that bound, for the other columns of the index entry
/// and its overhead, for ids that are not ASCII (the limit counts bytes, not characters)
/// and for an adapter that adds a prefix; and it is far beyond any id an application
/// needs (an aggregate name and a UUID are about 50 bytes).
pub const MAX_STREAM_ID_BYTES: usize = 1024;

/// The longest event type, in bytes of UTF-8, that every store accepts: 255.
///
/// Event types are short, stable names (`cart.item_added`), stored and indexed with
/// every event; 255 bytes is plenty for a name and safe in any index.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// The deepest nesting of arrays and objects a payload or the metadata may have: 127.
///
/// Stores that keep JSON as text read it back with serde_json, which refuses input
/// nested 128 levels deep or more (its recursion limit, a guard against stack
/// overflows). A store that accepted such a payload could never read the event back,
/// and the stream would never load again, so [`validate_append`] refuses it. A scalar is
/// 0 levels deep, `[]` and `{}` are 1, `[[1]]` is 2. The metadata counts as the object
/// of its free-form keys ([`Metadata::extra`](crate::Metadata)): a value in it may be
/// 126 levels deep.
pub const MAX_JSON_DEPTH: usize = 127;

/// Checks a stream id before it reaches a store.
///
/// Stream ids are opaque text: quotes, unicode and SQL-looking text are fine; empty ids,
/// NUL characters (which some databases cannot store in text) and ids longer than
/// [`MAX_STREAM_ID_BYTES`] are not, on every store alike.
///
/// ```
/// # use annals::store::kit::{validate_stream_id, MAX_STREAM_ID_BYTES};
/// assert!(validate_stream_id("cart-'; DROP TABLE events; --").is_ok());
/// assert!(validate_stream_id(&"x".repeat(MAX_STREAM_ID_BYTES)).is_ok());
/// assert!(validate_stream_id(&"x".repeat(MAX_STREAM_ID_BYTES + 1)).is_err());
/// assert!(validate_stream_id("nul\0inside").is_err());
/// ```
pub fn validate_stream_id(stream_id: &str) -> Result<(), StoreError> {
    let reason = if stream_id.is_empty() {
        "a stream id must not be empty"
    } else if stream_id.contains('\0') {
        "a stream id must not contain NUL characters"
    } else if stream_id.len() > MAX_STREAM_ID_BYTES {
        "a stream id must be at most 1024 bytes long (annals::store::kit::MAX_STREAM_ID_BYTES), on every store"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidStreamId { stream: stream_id.to_owned(), reason })
}

/// Checks an append's input before it reaches a store, so that every store refuses the
/// same input with the same error and stores only what it can read back:
///
/// - the stream id ([`validate_stream_id`]);
/// - every event type: not empty, no NUL character, at most [`MAX_EVENT_TYPE_BYTES`];
/// - every payload and metadata: nested at most [`MAX_JSON_DEPTH`] levels deep;
/// - no event id appears twice in the batch ([`StoreError::RepeatedEventId`]).
///
/// An event that breaks a rule is [`StoreError::InvalidEvent`], naming the stream, its
/// index in the batch, its id and what is wrong. Numbers need no check: a
/// `serde_json::Value` cannot hold a NaN or an infinity (`json!(f64::NAN)` is `null`),
/// and with serde_json's `float_roundtrip` feature every finite `f64` reads back bit for
/// bit.
pub fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    validate_stream_id(stream_id)?;
    for (index, event) in events.iter().enumerate() {
        if let Some(reason) = event_problem(event) {
            return Err(StoreError::InvalidEvent {
                stream: stream_id.to_owned(),
                index,
                event_id: event.event_id,
                reason,
            });
        }
    }
    if events.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(events.len());
    match events.iter().find(|e| !seen.insert(e.event_id)) {
        Some(repeated) => {
            Err(StoreError::RepeatedEventId { stream: stream_id.to_owned(), event_id: repeated.event_id })
        }
        None => Ok(()),
    }
}

/// What makes `event` unstorable, if anything.
fn event_problem(event: &NewEvent) -> Option<String> {
    let event_type = &event.event_type;
    if event_type.is_empty() {
        return Some("its event type is empty; give every event a name".to_owned());
    }
    if event_type.contains('\0') {
        return Some(format!("its event type {event_type:?} contains a NUL character"));
    }
    if event_type.len() > MAX_EVENT_TYPE_BYTES {
        return Some(format!(
            "its event type is {} bytes long; event types are at most {MAX_EVENT_TYPE_BYTES} bytes \
             (annals::store::kit::MAX_EVENT_TYPE_BYTES)",
            event_type.len()
        ));
    }
    let too_deep = |what: &str, depth: usize| {
        format!(
            "its {what} is nested {depth} levels deep; stores read JSON back with serde_json, which reads at most \
             {MAX_JSON_DEPTH} levels (annals::store::kit::MAX_JSON_DEPTH): flatten it"
        )
    };
    let payload = json_depth(&event.payload);
    if payload > MAX_JSON_DEPTH {
        return Some(too_deep("payload", payload));
    }
    // The metadata's free-form keys are stored as one object: one level more.
    let extra = &event.metadata.extra;
    let metadata = if extra.is_empty() { 0 } else { 1 + extra.values().map(json_depth).max().unwrap_or(0) };
    if metadata > MAX_JSON_DEPTH {
        return Some(too_deep("metadata", metadata));
    }
    None
}

/// How deeply `value` nests arrays and objects: 0 for a scalar, 1 for `[]`, `{}` or
/// `[1, 2]`, 2 for `[[1]]`. Walks the value without recursion, so any depth is measured
/// without growing the stack.
///
/// ```
/// # use annals::store::kit::json_depth;
/// assert_eq!(json_depth(&serde_json::json!(7)), 0);
/// assert_eq!(json_depth(&serde_json::json!({ "a": [1, { "b": [] }], "c": {} })), 4);
/// ```
pub fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, above)) = pending.pop() {
        let depth = above + 1;
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|child| (child, depth))),
            Value::Object(fields) => pending.extend(fields.values().map(|child| (child, depth))),
            _ => continue,
        }
        deepest = deepest.max(depth);
    }
    deepest
}

/// The idempotent re-append rule: decides an append whose event ids may already be
/// stored, given `stored`, which finds the envelope stored under an id.
///
/// - No id is stored: `Ok(None)`, go on and append.
/// - Every id is stored, in `stream_id`, at consecutive versions in the order given, and
///   where `expected` puts them (right after version `n` for `Exact(n)`; anywhere for
///   `Any`): this append already happened (its reply was lost), so `Ok(Some(stored))`,
///   the stored envelopes, and nothing is written.
/// - Otherwise an id is reused: [`StoreError::DuplicateEventId`], naming where it is.
pub fn already_stored<'a>(
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    stored: impl Fn(&Uuid) -> Option<&'a Envelope>,
) -> Result<Option<Vec<Envelope>>, StoreError> {
    let found: Vec<Option<&Envelope>> = events.iter().map(|e| stored(&e.event_id)).collect();
    let Some((event, existing)) = events.iter().zip(&found).find_map(|(e, f)| Some((e, (*f)?))) else {
        return Ok(None);
    };
    let all: Option<Vec<&Envelope>> = found.iter().copied().collect();
    if let Some(all) = all {
        let in_stream = all.iter().all(|s| s.stream_id == stream_id);
        let consecutive = all.windows(2).all(|w| w[0].stream_version.checked_add(1) == Some(w[1].stream_version));
        let first = all.first().map(|s| s.stream_version);
        let in_place = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::Exact(version) => first.is_none_or(|first| version.checked_add(1) == Some(first)),
        };
        if in_stream && consecutive && in_place {
            return Ok(Some(all.into_iter().cloned().collect()));
        }
    }
    Err(StoreError::DuplicateEventId {
        event_id: event.event_id,
        stream: stream_id.to_owned(),
        existing_stream: existing.stream_id.clone(),
        existing_version: existing.stream_version,
    })
}

/// An integer that does not fit where it has to go: a value too large for the database's
/// signed column, or a stored value outside what annals writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value} is out of range (expected {expected})")]
pub struct OutOfRange {
    /// What the value is (`stream version`, `global position`, ...).
    pub what: &'static str,
    /// The value, as text.
    pub value: String,
    /// The range it must lie in.
    pub expected: &'static str,
}

/// A value about to be stored in a signed 64-bit column: checked, since a value beyond
/// `i64::MAX` cannot be stored.
///
/// ```
/// # use annals::store::kit::to_db;
/// assert_eq!(to_db(7, "stream version"), Ok(7));
/// assert!(to_db(u64::MAX, "stream version").is_err());
/// ```
pub fn to_db(value: u64, what: &'static str) -> Result<i64, OutOfRange> {
    i64::try_from(value).map_err(|_| OutOfRange { what, value: value.to_string(), expected: "0 to 2^63 - 1" })
}

/// A bound of a query (read up to version `value`, resume after position `value`) as a
/// signed 64-bit number: saturating, since every stored value is at most `i64::MAX`, so a
/// larger bound selects the same rows as `i64::MAX`.
///
/// ```
/// # use annals::store::kit::bound_to_db;
/// assert_eq!(bound_to_db(u64::MAX), i64::MAX);
/// ```
pub fn bound_to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A checkpoint's two parts ([`Checkpoint::parts`]) as two signed 64-bit columns,
/// checked: how the database adapters store a consumer's checkpoint.
///
/// ```
/// # use annals::store::{kit::checkpoint_to_db, Checkpoint};
/// assert_eq!(checkpoint_to_db(Checkpoint::from_parts(7, 42)), Ok((7, 42)));
/// assert!(checkpoint_to_db(Checkpoint::from_parts(u64::MAX, 0)).is_err());
/// ```
pub fn checkpoint_to_db(checkpoint: Checkpoint) -> Result<(i64, i64), OutOfRange> {
    let (major, minor) = checkpoint.parts();
    Ok((to_db(major, "checkpoint major part")?, to_db(minor, "checkpoint minor part")?))
}

/// A value read from a signed 64-bit column that annals only ever fills with numbers of
/// at least `min` (1 for versions and positions, 0 for counts).
///
/// ```
/// # use annals::store::kit::from_db;
/// assert_eq!(from_db(3, 1, "stream version"), Ok(3));
/// assert!(from_db(0, 1, "stream version").is_err());
/// assert!(from_db(-1, 0, "count").is_err());
/// ```
pub fn from_db(value: i64, min: u64, what: &'static str) -> Result<u64, OutOfRange> {
    u64::try_from(value).ok().filter(|v| *v >= min).ok_or_else(|| OutOfRange {
        what,
        value: value.to_string(),
        expected: if min == 0 { "0 or more" } else { "1 or more" },
    })
}

/// The feed's stand-in for a stored row that does not read back as an event
/// ([`FeedEvent::damaged`]), from the [`StoreError::Corrupt`] decoding it gave, which
/// names its stream, version and position, and the id and type that did decode. Any
/// other error (a `Corrupt` that does not name both version and position) is returned
/// as it is: the read cannot place the row, and fails.
///
/// ```
/// # use annals::store::{kit, Checkpoint};
/// # use annals::StoreError;
/// let error = StoreError::Corrupt {
///     stream: "cart-1".into(),
///     version: Some(2),
///     position: Some(9),
///     detail: "its metadata is not a JSON object".into(),
/// };
/// let id = uuid::Uuid::nil();
/// let damaged = kit::damaged_event(Checkpoint::from_parts(0, 9), id, "cart.item_added".into(), error)?;
/// assert_eq!((damaged.envelope.stream_version, damaged.envelope.global_position), (2, 9));
/// assert!(damaged.damage.unwrap().contains("not a JSON object"));
/// # Ok::<(), StoreError>(())
/// ```
pub fn damaged_event(
    checkpoint: Checkpoint,
    event_id: Uuid,
    event_type: String,
    error: StoreError,
) -> Result<FeedEvent, StoreError> {
    match error {
        StoreError::Corrupt { stream, version: Some(stream_version), position: Some(global_position), detail } => {
            let envelope = Envelope {
                event_id,
                stream_id: stream,
                stream_version,
                global_position,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
                event_type,
                event_version: 0,
                payload: crate::Payload::default(),
                metadata: crate::envelope::Metadata::default(),
            };
            Ok(FeedEvent::damaged(checkpoint, envelope, detail))
        }
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(stream: &str, version: u64, event: &NewEvent) -> Envelope {
        Envelope {
            event_id: event.event_id,
            stream_id: stream.to_owned(),
            stream_version: version,
            global_position: version,
            recorded_at: chrono::Utc::now(),
            event_type: event.event_type.clone(),
            event_version: event.event_version,
            payload: event.payload.clone().into(),
            metadata: event.metadata.clone(),
        }
    }

    #[test]
    fn a_batch_stored_at_its_place_is_returned() -> Result<(), StoreError> {
        let events: Vec<NewEvent> = (0..2).map(|_| NewEvent::new("e", 1, serde_json::Value::Null)).collect();
        let envelopes = [stored("s", 4, &events[0]), stored("s", 5, &events[1])];
        let find = |id: &Uuid| envelopes.iter().find(|e| e.event_id == *id);
        assert_eq!(already_stored("s", ExpectedVersion::Exact(3), &events, find)?.map(|v| v.len()), Some(2));
        assert_eq!(already_stored("s", ExpectedVersion::Any, &events, find)?.map(|v| v.len()), Some(2));
        // Another place: the expected version says it would go elsewhere, or another stream.
        assert!(already_stored("s", ExpectedVersion::Exact(0), &events, find).is_err());
        assert!(already_stored("t", ExpectedVersion::Any, &events, find).is_err());
        // Another order, or only some of them.
        let reversed: Vec<NewEvent> = events.iter().rev().cloned().collect();
        assert!(already_stored("s", ExpectedVersion::Any, &reversed, find).is_err());
        let more = vec![events[0].clone(), events[1].clone(), NewEvent::new("e", 1, serde_json::Value::Null)];
        assert!(already_stored("s", ExpectedVersion::Any, &more, find).is_err());
        Ok(())
    }

    /// `depth` arrays, one inside the other, around a number.
    fn nested(depth: usize) -> serde_json::Value {
        (0..depth).fold(serde_json::json!(1), |inner, _| serde_json::Value::Array(vec![inner]))
    }

    #[test]
    fn the_depth_limit_is_what_serde_json_reads_back() {
        let deepest = serde_json::to_string(&nested(MAX_JSON_DEPTH)).unwrap_or_default();
        assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok(), "{MAX_JSON_DEPTH} levels read back");
        let deeper = serde_json::to_string(&nested(MAX_JSON_DEPTH + 1)).unwrap_or_default();
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err(), "one more level does not");
        assert_eq!(json_depth(&nested(MAX_JSON_DEPTH)), MAX_JSON_DEPTH);
        // Far deeper than a recursive walk could go; forgotten, since dropping it would
        // overflow the stack (serde_json drops values recursively).
        let abyss = nested(100_000);
        assert_eq!(json_depth(&abyss), 100_000);
        std::mem::forget(abyss);
    }

    #[test]
    fn events_too_deep_or_badly_named_are_refused_naming_stream_index_and_id() {
        let fine = NewEvent::new("e", 1, nested(MAX_JSON_DEPTH));
        let deep = NewEvent::new("e", 1, nested(MAX_JSON_DEPTH + 1));
        assert!(validate_append("s", std::slice::from_ref(&fine)).is_ok());
        match validate_append("s", &[fine.clone(), deep.clone()]) {
            Err(StoreError::InvalidEvent { stream, index, event_id, reason }) => {
                assert_eq!((stream.as_str(), index, event_id), ("s", 1, deep.event_id));
                assert!(reason.contains("payload is nested 128 levels deep"), "{reason}");
            }
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
        let metadata = |depth| crate::Metadata::default().with("deep", nested(depth));
        let fine_meta = NewEvent::new("e", 1, serde_json::Value::Null).with_metadata(metadata(MAX_JSON_DEPTH - 1));
        assert!(validate_append("s", &[fine_meta]).is_ok());
        let deep_meta = NewEvent::new("e", 1, serde_json::Value::Null).with_metadata(metadata(MAX_JSON_DEPTH));
        assert!(matches!(
            validate_append("s", &[deep_meta]),
            Err(StoreError::InvalidEvent { reason, .. }) if reason.contains("metadata is nested 128 levels deep")
        ));
        for name in [String::new(), "a\0b".to_owned(), "t".repeat(MAX_EVENT_TYPE_BYTES + 1)] {
            let event = NewEvent::new(name.clone(), 1, serde_json::Value::Null);
            assert!(
                matches!(validate_append("s", &[event]), Err(StoreError::InvalidEvent { index: 0, .. })),
                "{name:?}"
            );
        }
        assert!(validate_append("s", &[NewEvent::new("t".repeat(MAX_EVENT_TYPE_BYTES), 1, nested(2))]).is_ok());
    }

    #[test]
    fn stream_ids_are_limited_in_bytes_naming_the_limit() {
        // 512 two-byte characters: 1024 bytes.
        assert!(validate_stream_id(&"ü".repeat(MAX_STREAM_ID_BYTES / 2)).is_ok());
        match validate_stream_id(&format!("{}x", "ü".repeat(MAX_STREAM_ID_BYTES / 2))) {
            Err(StoreError::InvalidStreamId { reason, .. }) => {
                assert!(reason.contains(&MAX_STREAM_ID_BYTES.to_string()), "{reason}")
            }
            other => panic!("expected InvalidStreamId, got {other:?}"),
        }
    }

    #[test]
    fn serde_json_values_hold_no_non_finite_numbers() {
        for number in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(serde_json::Number::from_f64(number).is_none());
            assert_eq!(serde_json::json!(number), serde_json::Value::Null);
        }
        assert!(serde_json::from_str::<serde_json::Value>("1e400").is_err());
    }
}
