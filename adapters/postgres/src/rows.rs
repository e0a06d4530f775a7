//! Decoding stored rows into envelopes, checking the invariants PostgreSQL does not.

use std::collections::BTreeMap;

use annals::{Envelope, Metadata, StoreError};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Row, ValueRef};
use uuid::Uuid;

use crate::error::{backend, store_error};

/// Decodes a row of [`crate::sql`]'s `COLUMNS` (the stream id first, then
/// `EVENT_COLUMNS`); `operation` names what was being done.
pub(crate) fn envelope(row: &PgRow, operation: impl Fn() -> String) -> Result<Envelope, StoreError> {
    let stream_id: String = row.try_get(0).map_err(|e| store_error(operation(), e))?;
    decode(row, 1, stream_id, operation)
}

/// Decodes a row of [`crate::sql`]'s `EVENT_COLUMNS`, read from stream `stream_id`
/// (a stream read does not ask the server for the id it already knows).
pub(crate) fn stream_envelope(
    row: &PgRow,
    stream_id: &str,
    operation: impl Fn() -> String,
) -> Result<Envelope, StoreError> {
    decode(row, 0, stream_id.to_owned(), operation)
}

/// The jsonb binary encoding of `{}` (format version 1, then the text): most events
/// carry no free-form metadata, and recognising it spares a JSON parse per row.
const EMPTY_JSONB_OBJECT: &[u8] = b"\x01{}";

/// Decodes `EVENT_COLUMNS` starting at column `first`.
fn decode(
    row: &PgRow,
    first: usize,
    stream_id: String,
    operation: impl Fn() -> String,
) -> Result<Envelope, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let global_position: i64 = row.try_get(first).map_err(column_error)?;
    let stream_version: i64 = row.try_get(first + 1).map_err(column_error)?;
    let event_version: i32 = row.try_get(first + 3).map_err(column_error)?;
    let invalid = |what: &str, value: i64| {
        backend(operation(), format!("stream `{stream_id}` holds an event with invalid {what} {value}"))
    };
    let stream_version = u64::try_from(stream_version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| invalid("stream version", stream_version))?;
    let global_position = u64::try_from(global_position)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| invalid("global position", global_position))?;
    let event_version =
        u32::try_from(event_version).map_err(|_| invalid("event schema version", i64::from(event_version)))?;
    let Json(payload): Json<serde_json::Value> = row.try_get(first + 4).map_err(column_error)?;
    let metadata = row.try_get_raw(first + 5).map_err(column_error)?;
    let extra = if !metadata.is_null() && metadata.as_bytes().is_ok_and(|bytes| bytes == EMPTY_JSONB_OBJECT) {
        BTreeMap::new()
    } else {
        let Json(extra): Json<BTreeMap<String, serde_json::Value>> = row.try_get(first + 5).map_err(column_error)?;
        extra
    };
    Ok(Envelope {
        event_id: row.try_get::<Uuid, _>(first + 6).map_err(column_error)?,
        stream_id,
        stream_version,
        global_position,
        recorded_at: row.try_get::<DateTime<Utc>, _>(first + 9).map_err(column_error)?,
        event_type: row.try_get(first + 2).map_err(column_error)?,
        event_version,
        payload,
        metadata: Metadata {
            correlation_id: row.try_get(first + 7).map_err(column_error)?,
            causation_id: row.try_get(first + 8).map_err(column_error)?,
            extra,
        },
    })
}
