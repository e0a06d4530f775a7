//! Decoding stored rows, by column name, and the conversions of values the schema stores
//! differently from annals (times as nanoseconds, JSON as text, ids as 16-byte blobs).

use std::collections::BTreeMap;

use annals::store::kit::from_db;
use annals::store::{Checkpoint, StoredSnapshot};
use annals::{Envelope, Metadata, StoreError};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row};
use uuid::Uuid;

use crate::error::{backend, out_of_range, store_error};

/// What an operation was doing, for errors: called only when one occurs.
pub(crate) type Operation<'a> = &'a (dyn Fn() -> String + Sync);

/// Reads column `name` of `row`.
fn get<'r, T>(row: &'r SqliteRow, name: &str, operation: Operation<'_>) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(|e| store_error(operation(), e))
}

/// Reads the column at `index` of `row`.
fn at<'r, T>(row: &'r SqliteRow, index: usize, operation: Operation<'_>) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(index).map_err(|e| store_error(operation(), e))
}

/// Where the columns of an event are in the rows of one result set: found by name once,
/// on its first row, rather than once per column of every row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventColumns {
    global_position: usize,
    /// `None` for a stream read, which knows the stream.
    stream_id: Option<usize>,
    stream_version: usize,
    event_id: usize,
    event_type: usize,
    event_version: usize,
    payload: usize,
    metadata: usize,
    correlation_id: usize,
    causation_id: usize,
    recorded_at: usize,
}

impl EventColumns {
    /// Finds the columns of `row` by name.
    pub(crate) fn of(row: &SqliteRow, operation: Operation<'_>) -> Result<Self, StoreError> {
        let find = |name: &str| row.try_column(name).map(|c| c.ordinal()).map_err(|e| store_error(operation(), e));
        Ok(EventColumns {
            global_position: find("global_position")?,
            stream_id: row.try_column("stream_id").ok().map(|c| c.ordinal()),
            stream_version: find("stream_version")?,
            event_id: find("event_id")?,
            event_type: find("event_type")?,
            event_version: find("event_version")?,
            payload: find("payload")?,
            metadata: find("metadata")?,
            correlation_id: find("correlation_id")?,
            causation_id: find("causation_id")?,
            recorded_at: find("recorded_at")?,
        })
    }

    /// Decodes the event of `row`; `stream` names the stream when the rows do not.
    pub(crate) fn envelope(
        &self,
        row: &SqliteRow,
        stream: Option<&str>,
        operation: Operation<'_>,
    ) -> Result<Envelope, StoreError> {
        let stream_id: String = match (self.stream_id, stream) {
            (Some(index), _) => at(row, index, operation)?,
            (None, Some(stream)) => stream.to_owned(),
            (None, None) => return Err(backend(operation(), "the rows of events do not name their stream")),
        };
        let range = |e| out_of_range(operation(), e);
        let global_position =
            from_db(at(row, self.global_position, operation)?, 1, "global position").map_err(range)?;
        let stream_version = from_db(at(row, self.stream_version, operation)?, 1, "stream version").map_err(range)?;
        let event_version: i64 = at(row, self.event_version, operation)?;
        let event_version = u32::try_from(event_version).map_err(|_| {
            backend(
                operation(),
                format!("stream `{stream_id}` holds an event with invalid schema version {event_version}"),
            )
        })?;
        let payload = json(at(row, self.payload, operation)?, "payload", &stream_id, operation)?;
        let extra = match at::<Option<&str>>(row, self.metadata, operation)? {
            None => BTreeMap::new(),
            Some(text) => json(text, "metadata", &stream_id, operation)?,
        };
        Ok(Envelope {
            event_id: at(row, self.event_id, operation)?,
            stream_version,
            global_position,
            recorded_at: time(at(row, self.recorded_at, operation)?),
            event_type: at(row, self.event_type, operation)?,
            event_version,
            payload,
            metadata: Metadata {
                correlation_id: at::<Option<Uuid>>(row, self.correlation_id, operation)?,
                causation_id: at::<Option<Uuid>>(row, self.causation_id, operation)?,
                extra,
            },
            stream_id,
        })
    }
}

/// Decodes rows of events (the columns of `sql::event_columns!`, by name); `stream`
/// names the stream when the rows do not.
pub(crate) fn envelopes(
    rows: &[SqliteRow],
    stream: Option<&str>,
    operation: Operation<'_>,
) -> Result<Vec<Envelope>, StoreError> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let columns = EventColumns::of(first, operation)?;
    rows.iter().map(|row| columns.envelope(row, stream, operation)).collect()
}

/// A row of the feed read: an event, or the last row, which holds the head position.
pub(crate) enum FeedRow {
    /// A matching event.
    Event(Envelope),
    /// The highest committed position in the read's snapshot.
    Head(u64),
}

/// Decodes the rows of the feed read (`sql::READ_FEED`).
pub(crate) fn feed_rows(rows: &[SqliteRow], operation: Operation<'_>) -> Result<Vec<FeedRow>, StoreError> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let columns = EventColumns::of(first, operation)?;
    let head = first.try_column("head").map(|c| c.ordinal()).map_err(|e| store_error(operation(), e))?;
    rows.iter()
        .map(|row| match at::<Option<i64>>(row, head, operation)? {
            Some(head) => {
                Ok(FeedRow::Head(from_db(head, 0, "head position").map_err(|e| out_of_range(operation(), e))?))
            }
            None => Ok(FeedRow::Event(columns.envelope(row, None, operation)?)),
        })
        .collect()
}

/// Decodes a snapshot row.
pub(crate) fn snapshot(row: &SqliteRow, operation: Operation<'_>) -> Result<StoredSnapshot, StoreError> {
    let stream_id: String = get(row, "stream_id", operation)?;
    let stream_version = from_db(get(row, "stream_version", operation)?, 0, "stream version")
        .map_err(|e| out_of_range(operation(), e))?;
    let schema_version: i64 = get(row, "schema_version", operation)?;
    let schema_version = u32::try_from(schema_version).map_err(|_| {
        backend(operation(), format!("the snapshot of `{stream_id}` has invalid schema version {schema_version}"))
    })?;
    Ok(StoredSnapshot {
        state: json(get(row, "state", operation)?, "snapshot state", &stream_id, operation)?,
        stream_version,
        schema_version,
        taken_at: time(get(row, "taken_at", operation)?),
        stream_id,
    })
}

/// Decodes a checkpoint row.
pub(crate) fn checkpoint(row: &SqliteRow, operation: Operation<'_>) -> Result<Checkpoint, StoreError> {
    let major =
        from_db(get(row, "major", operation)?, 0, "checkpoint major").map_err(|e| out_of_range(operation(), e))?;
    let minor =
        from_db(get(row, "minor", operation)?, 0, "checkpoint minor").map_err(|e| out_of_range(operation(), e))?;
    Ok(Checkpoint::from_parts(major, minor))
}

/// Parses stored JSON text.
fn json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
    stream_id: &str,
    operation: Operation<'_>,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| backend(operation(), format!("the stored {what} in stream `{stream_id}` is not valid JSON: {e}")))
}

/// A stored time: nanoseconds since the Unix epoch, UTC.
pub(crate) fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// A time as stored: nanoseconds since the Unix epoch, UTC. Times from 1677 to 2262 fit.
pub(crate) fn nanos(at: DateTime<Utc>, what: &str, operation: Operation<'_>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| backend(operation(), format!("{what} {at} cannot be stored: times from 1677 to 2262 (UTC) can")))
}

/// The current time, as stored: what an append records (`recorded_at`). Falls back to
/// the latest storable time in the year 2262.
pub(crate) fn now() -> (DateTime<Utc>, i64) {
    let at = Utc::now();
    match at.timestamp_nanos_opt() {
        Some(nanos) => (at, nanos),
        None => (time(i64::MAX), i64::MAX),
    }
}

/// The ids of `ids` as a JSON array of hex text, for `sql::EVENTS_BY_ID`.
pub(crate) fn id_list<'a>(ids: impl Iterator<Item = &'a Uuid>) -> String {
    let mut list = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push('"');
        list.push_str(id.simple().encode_lower(&mut Uuid::encode_buffer()));
        list.push('"');
    }
    list.push(']');
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_nanosecond() -> Result<(), StoreError> {
        let at = Utc::now();
        assert_eq!(time(nanos(at, "t", &String::new)?), at);
        let (at, stored) = now();
        assert_eq!(time(stored), at);
        assert!(nanos(DateTime::<Utc>::MAX_UTC, "t", &String::new).is_err());
        Ok(())
    }

    #[test]
    fn id_lists_are_json_arrays_of_hex() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            id_list([id, id].iter()),
            r#"["0123456789abcdef0123456789abcdef","0123456789abcdef0123456789abcdef"]"#
        );
        assert_eq!(id_list([].iter()), "[]");
    }
}
