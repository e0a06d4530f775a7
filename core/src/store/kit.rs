//! The rules every store adapter applies the same way, written once.
//!
//! An adapter's `append` calls [`validate_append`] first, and [`already_stored`] with the
//! envelopes it finds under the new events' ids; it converts integers between Rust and
//! its database with [`to_db`], [`bound_to_db`] and [`from_db`]. The
//! [`conformance`](crate::conformance) suites check the outcome.
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
use crate::store::{ExpectedVersion, StoreError};

/// Checks a stream id before it reaches a store.
///
/// Stream ids are opaque text: quotes, unicode and long ids are fine; empty ids and NUL
/// characters (which some databases cannot store in text) are not, on every store alike.
pub fn validate_stream_id(stream_id: &str) -> Result<(), StoreError> {
    let reason = if stream_id.is_empty() {
        "a stream id must not be empty"
    } else if stream_id.contains('\0') {
        "a stream id must not contain NUL characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidStreamId { stream: stream_id.to_owned(), reason })
}

/// Checks an append's input before it reaches a store: the stream id (see
/// [`validate_stream_id`]) and that no event id appears twice in the batch.
pub fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    validate_stream_id(stream_id)?;
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
            payload: event.payload.clone(),
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
}
