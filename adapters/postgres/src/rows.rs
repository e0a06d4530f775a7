//! Decoding stored rows, checking the invariants PostgreSQL does not.
//!
//! Event rows are decoded through one column definition, [`EVENT_COLUMNS`]: `sql.rs`
//! builds every event SELECT list from it, and the decoder reads each column at the index
//! the definition gives its name (resolved at compile time, so a row costs no name
//! lookups). Every other row (appended positions, snapshots, checkpoints, the feed's
//! extra columns) is read by column name.

use std::collections::BTreeMap;

use annals::store::kit::{self, OutOfRange};
use annals::store::{Checkpoint, FeedEvent, StoredSnapshot};
use annals::subscription::Parked;
use annals::{Envelope, Metadata, StoreError};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Row, ValueRef};
use uuid::Uuid;

use crate::error::{out_of_range, store_error};

/// The columns of an event row, in the order every event SELECT lists them. The stream id
/// comes last: a stream read, which knows it, selects every column before it.
pub(crate) const EVENT_COLUMNS: [&str; 11] = [
    "global_position",
    "stream_version",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "event_id",
    "correlation_id",
    "causation_id",
    "recorded_at",
    "stream_id",
];

/// The SQL type of each of the [`EVENT_COLUMNS`], in the same order: for rows without an
/// event that must have the same columns (the feed's header row).
pub(crate) const EVENT_COLUMN_TYPES: [&str; 11] =
    ["int8", "int8", "text", "int4", "json", "json", "uuid", "uuid", "uuid", "timestamptz", "text"];

const GLOBAL_POSITION: usize = column("global_position");
const STREAM_VERSION: usize = column("stream_version");
const EVENT_TYPE: usize = column("event_type");
const EVENT_VERSION: usize = column("event_version");
const PAYLOAD: usize = column("payload");
const METADATA: usize = column("metadata");
const EVENT_ID: usize = column("event_id");
const CORRELATION_ID: usize = column("correlation_id");
const CAUSATION_ID: usize = column("causation_id");
const RECORDED_AT: usize = column("recorded_at");
/// The last column: [`STREAM_READ_COLUMNS`] stops before it.
pub(crate) const STREAM_ID: usize = column("stream_id");
/// The feed read's column after the event columns: the event's transaction id, NULL in
/// the header row (see `Statements::feed`).
const FEED_COMMIT: usize = EVENT_COLUMNS.len();

// Every name above is in the definition, and the stream id is its last column.
const _: () = assert!(
    GLOBAL_POSITION < STREAM_ID
        && STREAM_VERSION < STREAM_ID
        && EVENT_TYPE < STREAM_ID
        && EVENT_VERSION < STREAM_ID
        && PAYLOAD < STREAM_ID
        && METADATA < STREAM_ID
        && EVENT_ID < STREAM_ID
        && CORRELATION_ID < STREAM_ID
        && CAUSATION_ID < STREAM_ID
        && RECORDED_AT < STREAM_ID
        && STREAM_ID + 1 == EVENT_COLUMNS.len()
);

/// The columns a stream read selects: all but the stream id.
pub(crate) const STREAM_READ_COLUMNS: usize = STREAM_ID;

/// The columns a read to fold a stream selects (`read_stream_to_fold`): what applying an
/// event needs, and its positions; decoded by [`fold_envelope`] at these indexes.
pub(crate) const FOLD_COLUMNS: [&str; 5] =
    ["global_position", "stream_version", "event_type", "event_version", "payload"];

/// The index of `name` in [`EVENT_COLUMNS`]; `usize::MAX` (which the assertion above
/// refuses at compile time) when it is not there.
const fn column(name: &str) -> usize {
    let mut i = 0;
    while i < EVENT_COLUMNS.len() {
        if same(EVENT_COLUMNS[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    usize::MAX
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The stored metadata of an event without free-form keys (the append stores `{}`): most
/// events carry none, and recognising it spares a JSON parse per row.
const EMPTY_OBJECT: &[u8] = b"{}";

/// Decodes a row of all [`EVENT_COLUMNS`]; `operation` names what was being done.
pub(crate) fn envelope(row: &PgRow, operation: impl Fn() -> String) -> Result<Envelope, StoreError> {
    let stream_id: String = row.try_get(STREAM_ID).map_err(|e| store_error(operation(), e))?;
    decode(row, stream_id, operation)
}

/// Decodes a row of all [`EVENT_COLUMNS`] as a feed event, placed by `checkpoint` (given
/// the event's global position). A row that does not read back as an event but names its
/// place (stream, version, position, id, type) is a damaged event
/// ([`kit::damaged_event`]), so the events around it are still delivered.
pub(crate) fn feed_event(
    row: &PgRow,
    checkpoint: impl FnOnce(u64) -> Checkpoint,
    operation: impl Fn() -> String,
) -> Result<FeedEvent, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let stream_id: String = row.try_get(STREAM_ID).map_err(column_error)?;
    match decode(row, stream_id, &operation) {
        Ok(envelope) => Ok(FeedEvent::new(checkpoint(envelope.global_position), envelope)),
        Err(error @ StoreError::Corrupt { position: Some(position), .. }) => {
            let event_id: Uuid = row.try_get(EVENT_ID).map_err(column_error)?;
            let event_type: String = row.try_get(EVENT_TYPE).map_err(column_error)?;
            kit::damaged_event(checkpoint(position), event_id, event_type, error)
        }
        Err(error) => Err(error),
    }
}

/// Decodes a row of the [`STREAM_READ_COLUMNS`] read from stream `stream_id` (a stream
/// read does not ask the server for the id it already knows).
pub(crate) fn stream_envelope(
    row: &PgRow,
    stream_id: &str,
    operation: impl Fn() -> String,
) -> Result<Envelope, StoreError> {
    decode(row, stream_id.to_owned(), operation)
}

fn decode(row: &PgRow, stream_id: String, operation: impl Fn() -> String) -> Result<Envelope, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let global_position: i64 = row.try_get(GLOBAL_POSITION).map_err(column_error)?;
    let stream_version: i64 = row.try_get(STREAM_VERSION).map_err(column_error)?;
    let event_version: i32 = row.try_get(EVENT_VERSION).map_err(column_error)?;
    let (global_position, stream_version, event_version) = match (
        kit::from_db(global_position, 1, "global position"),
        kit::from_db(stream_version, 1, "stream version"),
        schema_version(event_version, "event schema version"),
    ) {
        (Ok(position), Ok(version), Ok(event_version)) => (position, version, event_version),
        (position, version, event_version) => {
            let detail = [position.as_ref().err(), version.as_ref().err(), event_version.as_ref().err()]
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(StoreError::Corrupt {
                stream: stream_id,
                version: version.ok(),
                position: position.ok(),
                detail: format!("an event's {detail}"),
            });
        }
    };
    // From here on, a value that does not decode is stored data annals did not write.
    let corrupt = |detail: String| StoreError::Corrupt {
        stream: stream_id.clone(),
        version: Some(stream_version),
        position: Some(global_position),
        detail,
    };
    let payload = payload(row, PAYLOAD).map_err(|e| corrupt(format!("its payload does not read back: {e}")))?;
    let metadata = row.try_get_raw(METADATA).map_err(column_error)?;
    let extra = if !metadata.is_null() && metadata.as_bytes().is_ok_and(|bytes| bytes == EMPTY_OBJECT) {
        BTreeMap::new()
    } else {
        let Json(extra): Json<BTreeMap<String, serde_json::Value>> = row
            .try_get(METADATA)
            .map_err(|e| corrupt(format!("its metadata is not a JSON object of keys and values: {e}")))?;
        extra
    };
    let recorded_at = timestamp(row, RECORDED_AT).map_err(|e| corrupt(format!("its recorded_at {e}")))?;
    Ok(Envelope {
        event_id: row.try_get::<Uuid, _>(EVENT_ID).map_err(|e| corrupt(format!("its event_id {e}")))?,
        global_position,
        stream_version,
        recorded_at,
        event_type: row.try_get(EVENT_TYPE).map_err(column_error)?,
        event_version,
        payload,
        metadata: Metadata {
            correlation_id: row.try_get(CORRELATION_ID).map_err(column_error)?,
            causation_id: row.try_get(CAUSATION_ID).map_err(column_error)?,
            extra,
        },
        stream_id,
    })
}

/// The payload column's JSON text, kept as it is: the `json` column only holds text
/// PostgreSQL parsed as JSON, so the text is not parsed again here but when the event is
/// decoded, once, straight into its type (see `annals::Payload`). A `jsonb` column (a
/// schema changed by hand) is read too: its binary form is a version byte, 1, then text.
fn payload(row: &PgRow, column: usize) -> Result<annals::Payload, String> {
    use sqlx::postgres::PgValueFormat;
    use sqlx::TypeInfo;
    let raw = row.try_get_raw(column).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Err("is NULL".to_owned());
    }
    let binary_jsonb = match raw.type_info().name() {
        "JSON" => false,
        "JSONB" => raw.format() == PgValueFormat::Binary,
        other => return Err(format!("is of type {other}, not json")),
    };
    let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
    let text = match (binary_jsonb, bytes) {
        (false, text) => text,
        (true, [1, text @ ..]) => text,
        (true, _) => return Err("is jsonb of a version other than 1".to_owned()),
    };
    let text = std::str::from_utf8(text).map_err(|e| format!("is not UTF-8: {e}"))?;
    Ok(annals::Payload::from_json_text(text.to_owned()))
}

/// Decodes a row of the [`FOLD_COLUMNS`] read from stream `stream_id`: the stored
/// positions, type, schema version and payload, and no event id (nil), metadata (empty)
/// or time (the Unix epoch), which applying an event does not read. Values annals does
/// not write are [`StoreError::Corrupt`] as in a whole read.
pub(crate) fn fold_envelope(
    row: &PgRow,
    stream_id: &str,
    operation: impl Fn() -> String,
) -> Result<Envelope, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let global_position: i64 = row.try_get(0).map_err(column_error)?;
    let stream_version: i64 = row.try_get(1).map_err(column_error)?;
    let event_type: String = row.try_get(2).map_err(column_error)?;
    let event_version: i32 = row.try_get(3).map_err(column_error)?;
    let corrupt = |version: Option<u64>, position: Option<u64>, detail: String| StoreError::Corrupt {
        stream: stream_id.to_owned(),
        version,
        position,
        detail,
    };
    let position = kit::from_db(global_position, 1, "global position")
        .map_err(|e| corrupt(None, None, format!("an event's {e}")))?;
    let version = kit::from_db(stream_version, 1, "stream version")
        .map_err(|e| corrupt(None, Some(position), format!("an event's {e}")))?;
    let event_version = schema_version(event_version, "event schema version")
        .map_err(|e| corrupt(Some(version), Some(position), format!("an event's {e}")))?;
    let payload = payload(row, 4)
        .map_err(|e| corrupt(Some(version), Some(position), format!("its payload does not read back: {e}")))?;
    Ok(Envelope {
        event_id: Uuid::nil(),
        stream_id: stream_id.to_owned(),
        stream_version: version,
        global_position: position,
        recorded_at: DateTime::UNIX_EPOCH,
        event_type,
        event_version,
        payload,
        metadata: Metadata::default(),
    })
}

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00:00 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column as a UTC time, checked: `'infinity'`, `'-infinity'` and times
/// beyond what chrono represents (which panic inside sqlx's own chrono decoding) are an
/// error naming the value, never a panic.
pub(crate) fn timestamp<I: sqlx::ColumnIndex<PgRow>>(row: &PgRow, column: I) -> Result<DateTime<Utc>, String> {
    use sqlx::postgres::PgValueFormat;
    let raw = row.try_get_raw(column).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Err("is NULL".to_owned());
    }
    match raw.format() {
        // Binary: microseconds since 2000-01-01 as a big-endian i64; i64::MAX and MIN are
        // infinity and -infinity.
        PgValueFormat::Binary => {
            let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
            let micros = <[u8; 8]>::try_from(bytes)
                .map(i64::from_be_bytes)
                .map_err(|_| format!("has {} bytes, not 8", bytes.len()))?;
            match micros {
                i64::MAX => Err("is 'infinity'".to_owned()),
                i64::MIN => Err("is '-infinity'".to_owned()),
                _ => micros
                    .checked_add(POSTGRES_EPOCH_MICROS)
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(|| format!("is {micros} µs from 2000-01-01, beyond the years annals can represent")),
            }
        }
        PgValueFormat::Text => {
            let text = raw.as_str().map_err(|e| e.to_string())?;
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("is `{text}`, not a time annals can represent ({e})"))
        }
    }
}

/// A stored `integer` schema version (of an event payload or a snapshot) as `u32`.
fn schema_version(value: i32, what: &'static str) -> Result<u32, OutOfRange> {
    u32::try_from(value).map_err(|_| OutOfRange { what, value: value.to_string(), expected: "0 or more" })
}

/// What an append's `RETURNING global_position, stream_version, recorded_at` gives for
/// one new event.
pub(crate) struct Written {
    pub(crate) global_position: u64,
    pub(crate) stream_version: u64,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// Decodes a row an append returned.
pub(crate) fn written(row: &PgRow, operation: impl Fn() -> String) -> Result<Written, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let invalid = |e: OutOfRange| out_of_range(operation(), e);
    Ok(Written {
        global_position: kit::from_db(row.try_get("global_position").map_err(column_error)?, 1, "global position")
            .map_err(invalid)?,
        stream_version: kit::from_db(row.try_get("stream_version").map_err(column_error)?, 1, "stream version")
            .map_err(invalid)?,
        recorded_at: timestamp(row, "recorded_at").map_err(|e| StoreError::Backend {
            operation: operation(),
            source: format!("the new event's recorded_at {e}").into(),
        })?,
    })
}

/// A checkpoint from its stored parts: the writing transaction's id and the global
/// position (see `feed.rs`).
pub(crate) fn checkpoint(commit: i64, position: i64) -> Result<Checkpoint, OutOfRange> {
    Ok(Checkpoint::from_parts(
        kit::from_db(commit, 0, "transaction id")?,
        kit::from_db(position, 0, "global position")?,
    ))
}

/// Decodes a row of `<schema>.projection_checkpoints` (columns `commit`, `position`).
pub(crate) fn stored_checkpoint(row: &PgRow, operation: impl Fn() -> String) -> Result<Checkpoint, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    checkpoint(row.try_get("commit").map_err(column_error)?, row.try_get("position").map_err(column_error)?)
        .map_err(|e| out_of_range(operation(), e))
}

/// A transaction id (`xid8`) as PostgreSQL sends it: 8 bytes, most significant first (or
/// decimal text). The feed selects its transaction ids as they are stored: converting
/// each row's through `::text::int8` cost a quarter of a page's server time.
pub(crate) struct Xid8(pub(crate) u64);

impl sqlx::Type<sqlx::Postgres> for Xid8 {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("xid8")
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Xid8 {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match value.format() {
            sqlx::postgres::PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into().map_err(|_| "an xid8 is not 8 bytes long")?;
                Ok(Xid8(u64::from_be_bytes(bytes)))
            }
            sqlx::postgres::PgValueFormat::Text => Ok(Xid8(value.as_str()?.parse()?)),
        }
    }
}

/// The feed's row that carries no event: the horizon of the read (`horizon_xmin`,
/// `horizon_xmax`) and the last event below it (`tail_commit`, `tail_position`, NULL
/// when there is none). Event rows have NULL there and their transaction id in
/// `feed_commit`; this row has NULL in `feed_commit` and in every event column.
pub(crate) struct FeedHeader {
    pub(crate) horizon: i64,
    pub(crate) xmax: i64,
    pub(crate) tail: Option<Checkpoint>,
}

/// The transaction id of a feed row's event, `None` for its [`FeedHeader`] row.
pub(crate) fn feed_commit(row: &PgRow, operation: impl Fn() -> String) -> Result<Option<u64>, StoreError> {
    // By index, as the event columns are read: no lookup by name per row.
    let commit: Option<Xid8> = row.try_get(FEED_COMMIT).map_err(|e| store_error(operation(), e))?;
    Ok(commit.map(|Xid8(commit)| commit))
}

/// Decodes the feed's [`FeedHeader`] row.
pub(crate) fn feed_header(row: &PgRow, operation: impl Fn() -> String) -> Result<FeedHeader, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let as_int8 = |Xid8(xid): Xid8| {
        i64::try_from(xid).map_err(|_| {
            out_of_range(
                operation(),
                OutOfRange { what: "transaction id", value: xid.to_string(), expected: "below 2^63" },
            )
        })
    };
    let horizon = as_int8(row.try_get("horizon_xmin").map_err(column_error)?)?;
    let xmax = as_int8(row.try_get("horizon_xmax").map_err(column_error)?)?;
    let tail_commit: Option<Xid8> = row.try_get("tail_commit").map_err(column_error)?;
    let tail_position: Option<i64> = row.try_get("tail_position").map_err(column_error)?;
    let tail = match (tail_commit, tail_position) {
        (Some(Xid8(commit)), Some(position)) => Some(Checkpoint::from_parts(
            commit,
            kit::from_db(position, 0, "global position").map_err(|e| out_of_range(operation(), e))?,
        )),
        _ => None,
    };
    Ok(FeedHeader { horizon, xmax, tail })
}

/// Decodes a row of the dead letters' read (a damaged event as a damaged feed event):
/// the event's columns, then `commit`,
/// `position`, `reason`, `parked_at` and `behind`.
pub(crate) fn parked(row: &PgRow, operation: impl Fn() -> String) -> Result<Parked, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let checkpoint =
        checkpoint(row.try_get("commit").map_err(column_error)?, row.try_get("position").map_err(column_error)?)
            .map_err(|e| out_of_range(operation(), e))?;
    // Read again from the events table: a damaged event fixed since it was parked now
    // reads back whole.
    Ok(Parked {
        event: feed_event(row, |_| checkpoint, &operation)?,
        reason: row.try_get("reason").map_err(column_error)?,
        parked_at: row.try_get("parked_at").map_err(column_error)?,
        behind: row.try_get("behind").map_err(column_error)?,
    })
}

/// Decodes a row of `<schema>.snapshots` read for `stream_id`.
pub(crate) fn snapshot(
    row: &PgRow,
    stream_id: &str,
    operation: impl Fn() -> String,
) -> Result<StoredSnapshot, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let invalid = |e: OutOfRange| StoreError::Corrupt {
        stream: stream_id.to_owned(),
        version: None,
        position: None,
        detail: format!("its snapshot's {e}"),
    };
    let corrupt = |detail: String| StoreError::Corrupt {
        stream: stream_id.to_owned(),
        version: None,
        position: None,
        detail: format!("its snapshot's {detail}"),
    };
    let Json(state): Json<serde_json::Value> =
        row.try_get("state").map_err(|e| corrupt(format!("state does not read back: {e}")))?;
    let taken_at = timestamp(row, "taken_at").map_err(|e| corrupt(format!("taken_at {e}")))?;
    Ok(StoredSnapshot {
        stream_id: stream_id.to_owned(),
        stream_version: kit::from_db(row.try_get("stream_version").map_err(column_error)?, 0, "stream version")
            .map_err(invalid)?,
        schema_version: schema_version(row.try_get("schema_version").map_err(column_error)?, "schema version")
            .map_err(invalid)?,
        state,
        taken_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_read_columns_are_the_event_columns_without_the_stream_id() {
        assert_eq!(EVENT_COLUMNS[STREAM_ID], "stream_id");
        assert!(!EVENT_COLUMNS[..STREAM_READ_COLUMNS].contains(&"stream_id"));
        assert_eq!(EVENT_COLUMNS[RECORDED_AT], "recorded_at");
        assert_eq!(column("no_such_column"), usize::MAX);
    }

    #[test]
    fn stored_checkpoints_and_versions_are_checked() {
        assert_eq!(checkpoint(7, 42), Ok(Checkpoint::from_parts(7, 42)));
        assert!(checkpoint(-1, 42).is_err());
        assert!(schema_version(-1, "schema version").is_err());
    }
}
