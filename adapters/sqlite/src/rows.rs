//! Decoding stored rows, by column name, and the conversions of values the schema stores
//! differently from annals (times as nanoseconds, JSON as text, ids as 16-byte blobs).

use std::collections::BTreeMap;

use annals::store::kit::{self, from_db};
use annals::store::{Checkpoint, FeedEvent, StoredSnapshot};
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

/// Where a stored row is, as far as known: what a [`StoreError::Corrupt`] names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    /// The stream.
    pub(crate) stream: &'a str,
    /// The stream version, once decoded.
    pub(crate) version: Option<u64>,
    /// The global position, once decoded.
    pub(crate) position: Option<u64>,
}

impl Place<'_> {
    /// A [`StoreError::Corrupt`] at this place: stored data annals did not write.
    pub(crate) fn corrupt(self, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            stream: self.stream.to_owned(),
            version: self.version,
            position: self.position,
            detail: detail.into(),
        }
    }
}

/// Reads the column at `index` (named `name`) of the row at `place`. A stored value that
/// does not decode (text that is not UTF-8, an id of the wrong length) is
/// [`StoreError::Corrupt`]; a column that is missing is the query's fault:
/// [`StoreError::Backend`].
fn decode<'r, T>(
    row: &'r SqliteRow,
    index: usize,
    name: &str,
    place: Place<'_>,
    operation: Operation<'_>,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(index).map_err(|e| match e {
        sqlx::Error::ColumnDecode { source, .. } => place.corrupt(format!("column `{name}` does not decode: {source}")),
        e => store_error(operation(), e),
    })
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

    /// The stream id of `row`, which names its stream; a stored id that is not UTF-8 is
    /// [`StoreError::Corrupt`], naming the id as far as it reads.
    fn stream_id(&self, row: &SqliteRow, index: usize, operation: Operation<'_>) -> Result<String, StoreError> {
        match row.try_get::<String, _>(index) {
            Ok(stream_id) => Ok(stream_id),
            Err(sqlx::Error::ColumnDecode { source, .. }) => {
                let bytes: Vec<u8> = row.try_get_unchecked(index).unwrap_or_default();
                let position = row.try_get::<i64, _>(self.global_position).ok().and_then(|p| u64::try_from(p).ok());
                let stream = String::from_utf8_lossy(&bytes);
                let place = Place { stream: &stream, version: None, position };
                Err(place.corrupt(format!("the stream id is not UTF-8 text: {source}")))
            }
            Err(e) => Err(store_error(operation(), e)),
        }
    }

    /// Decodes the event of `row`; `stream` names the stream when the rows do not. A
    /// stored value annals does not write (a version or position below 1, a schema
    /// version beyond `u32`, JSON that does not read back, a metadata that is not an
    /// object, text that is not UTF-8) is [`StoreError::Corrupt`], naming the stream,
    /// version and position as far as they decode.
    pub(crate) fn envelope(
        &self,
        row: &SqliteRow,
        stream: Option<&str>,
        operation: Operation<'_>,
    ) -> Result<Envelope, StoreError> {
        let stream_id: String = match (self.stream_id, stream) {
            (Some(index), _) => self.stream_id(row, index, operation)?,
            (None, Some(stream)) => stream.to_owned(),
            (None, None) => return Err(backend(operation(), "the rows of events do not name their stream")),
        };
        let mut place = Place { stream: &stream_id, version: None, position: None };
        let position: i64 = decode(row, self.global_position, "global_position", place, operation)?;
        let global_position = from_db(position, 1, "global position").map_err(|e| place.corrupt(e.to_string()))?;
        place.position = Some(global_position);
        let version: i64 = decode(row, self.stream_version, "stream_version", place, operation)?;
        let stream_version = from_db(version, 1, "stream version").map_err(|e| place.corrupt(e.to_string()))?;
        place.version = Some(stream_version);
        let event_version: i64 = decode(row, self.event_version, "event_version", place, operation)?;
        let event_version = u32::try_from(event_version).map_err(|_| {
            place.corrupt(format!("schema version {event_version} is out of range (expected 0 to 4294967295)"))
        })?;
        // Checked as JSON (a column without the schema's check may hold any text) but kept
        // as text: the event is decoded from it in one parse (see `annals::Payload`).
        let payload: &str = decode(row, self.payload, "payload", place, operation)?;
        json::<serde::de::IgnoredAny>(payload, "payload", place)?;
        let payload = annals::Payload::from_json_text(payload.to_owned());
        let extra = match decode::<Option<&str>>(row, self.metadata, "metadata", place, operation)? {
            None => BTreeMap::new(),
            Some(text) => json(text, "metadata", place)?,
        };
        Ok(Envelope {
            event_id: decode(row, self.event_id, "event_id", place, operation)?,
            stream_version,
            global_position,
            recorded_at: time(decode(row, self.recorded_at, "recorded_at", place, operation)?),
            event_type: decode(row, self.event_type, "event_type", place, operation)?,
            event_version,
            payload,
            metadata: Metadata {
                correlation_id: decode::<Option<Uuid>>(row, self.correlation_id, "correlation_id", place, operation)?,
                causation_id: decode::<Option<Uuid>>(row, self.causation_id, "causation_id", place, operation)?,
                extra,
            },
            stream_id,
        })
    }
}

impl EventColumns {
    /// Decodes the event of `row` (which names its stream) as a feed event, placed by
    /// `checkpoint` (given its global position). A row that does not read back as an
    /// event but names its place (stream, version, position, id, type) is a damaged event
    /// ([`kit::damaged_event`]), so the events around it are still delivered.
    pub(crate) fn feed_event(
        &self,
        row: &SqliteRow,
        checkpoint: impl FnOnce(u64) -> Checkpoint,
        operation: Operation<'_>,
    ) -> Result<FeedEvent, StoreError> {
        match self.envelope(row, None, operation) {
            Ok(envelope) => Ok(FeedEvent::new(checkpoint(envelope.global_position), envelope)),
            Err(StoreError::Corrupt { stream, version: Some(version), position: Some(position), detail }) => {
                let place = Place { stream: &stream, version: Some(version), position: Some(position) };
                let event_id: Uuid = decode(row, self.event_id, "event_id", place, operation)?;
                let event_type: String = decode(row, self.event_type, "event_type", place, operation)?;
                let error = place.corrupt(detail);
                kit::damaged_event(checkpoint(position), event_id, event_type, error)
            }
            Err(error) => Err(error),
        }
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
#[allow(
    clippy::large_enum_variant,
    reason = "one per row, moved at once into the batch; boxing would allocate per event"
)]
pub(crate) enum FeedRow {
    /// A matching event (perhaps a damaged one).
    Event(FeedEvent),
    /// The highest committed position in the read's snapshot.
    Head(u64),
}

/// Where the columns of the feed read (`sql::READ_FEED`) are: an event's, and `head`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeedColumns {
    event: EventColumns,
    head: usize,
}

impl FeedColumns {
    /// Finds the columns of `row` by name.
    pub(crate) fn of(row: &SqliteRow, operation: Operation<'_>) -> Result<Self, StoreError> {
        let head = row.try_column("head").map(|c| c.ordinal()).map_err(|e| store_error(operation(), e))?;
        Ok(FeedColumns { event: EventColumns::of(row, operation)?, head })
    }

    /// Decodes one row of the feed read.
    pub(crate) fn row(
        &self,
        row: &SqliteRow,
        checkpoint: impl FnOnce(u64) -> Checkpoint,
        operation: Operation<'_>,
    ) -> Result<FeedRow, StoreError> {
        match at::<Option<i64>>(row, self.head, operation)? {
            Some(head) => {
                Ok(FeedRow::Head(from_db(head, 0, "head position").map_err(|e| out_of_range(operation(), e))?))
            }
            None => Ok(FeedRow::Event(self.event.feed_event(row, checkpoint, operation)?)),
        }
    }
}

/// Decodes a snapshot row. A stored value annals does not write (a version below 0, a
/// schema version beyond `u32`, a state that does not read back as JSON) is
/// [`StoreError::Corrupt`], naming the stream and the snapshot's version.
pub(crate) fn snapshot(row: &SqliteRow, operation: Operation<'_>) -> Result<StoredSnapshot, StoreError> {
    let stream_id: String = get(row, "stream_id", operation)?;
    let index = |name: &str| row.try_column(name).map(|c| c.ordinal()).map_err(|e| store_error(operation(), e));
    let mut place = Place { stream: &stream_id, version: None, position: None };
    let version: i64 = decode(row, index("stream_version")?, "stream_version", place, operation)?;
    let stream_version = from_db(version, 0, "snapshot stream version")
        .map_err(|e| place.corrupt(format!("its snapshot is invalid: {e}")))?;
    place.version = Some(stream_version);
    let schema_version: i64 = decode(row, index("schema_version")?, "schema_version", place, operation)?;
    let schema_version = u32::try_from(schema_version).map_err(|_| {
        place.corrupt(format!(
            "its snapshot has schema version {schema_version}, out of range (expected 0 to 4294967295)"
        ))
    })?;
    let state = json(decode(row, index("state")?, "state", place, operation)?, "snapshot state", place)?;
    let taken_at = time(decode(row, index("taken_at")?, "taken_at", place, operation)?);
    Ok(StoredSnapshot { state, stream_version, schema_version, taken_at, stream_id })
}

/// Decodes a checkpoint row.
pub(crate) fn checkpoint(row: &SqliteRow, operation: Operation<'_>) -> Result<Checkpoint, StoreError> {
    let major =
        from_db(get(row, "major", operation)?, 0, "checkpoint major").map_err(|e| out_of_range(operation(), e))?;
    let minor =
        from_db(get(row, "minor", operation)?, 0, "checkpoint minor").map_err(|e| out_of_range(operation(), e))?;
    Ok(Checkpoint::from_parts(major, minor))
}

/// Parses stored JSON text of the row at `place`: text serde_json does not read back
/// (not JSON, nested too deeply, a number out of range, not the expected shape) is
/// [`StoreError::Corrupt`].
fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str, place: Place<'_>) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| place.corrupt(format!("the stored {what} does not read back as JSON: {e}")))
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
