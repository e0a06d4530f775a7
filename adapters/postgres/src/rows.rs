//! Decoding stored rows into envelopes, checking the invariants PostgreSQL does not.

use std::collections::BTreeMap;

use annals::{Envelope, Metadata, StoreError};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{backend, store_error};

/// Decodes a row of [`crate::sql`]'s `COLUMNS`; `operation` names what was being done.
pub(crate) fn envelope(row: &PgRow, operation: impl Fn() -> String) -> Result<Envelope, StoreError> {
    let column_error = |e: sqlx::Error| store_error(operation(), e);
    let stream_id: String = row.try_get(1).map_err(column_error)?;
    let global_position: i64 = row.try_get(0).map_err(column_error)?;
    let stream_version: i64 = row.try_get(2).map_err(column_error)?;
    let event_version: i32 = row.try_get(4).map_err(column_error)?;
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
    let Json(payload): Json<serde_json::Value> = row.try_get(5).map_err(column_error)?;
    let Json(extra): Json<BTreeMap<String, serde_json::Value>> = row.try_get(6).map_err(column_error)?;
    Ok(Envelope {
        event_id: row.try_get::<Uuid, _>(7).map_err(column_error)?,
        stream_id,
        stream_version,
        global_position,
        recorded_at: row.try_get::<DateTime<Utc>, _>(10).map_err(column_error)?,
        event_type: row.try_get(3).map_err(column_error)?,
        event_version,
        payload,
        metadata: Metadata {
            correlation_id: row.try_get(8).map_err(column_error)?,
            causation_id: row.try_get(9).map_err(column_error)?,
            extra,
        },
    })
}
