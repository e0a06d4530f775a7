//! Snapshots on PostgreSQL: one row per stream in `<schema>.snapshots` (migration 3).
//!
//! Loading is one primary-key lookup; saving is one upsert that replaces the stored row
//! only with a snapshot at a later stream version (or at the same version taken by
//! another schema version of the aggregate), so a slow, stale writer never replaces a
//! newer snapshot.

use annals::snapshot::StoredSnapshot;
use annals::store::validate_stream_id;
use annals::StoreError;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{backend, store_error};
use crate::schema::SchemaName;
use crate::{contains_nul, PostgresStore};

/// `$1` stream. Returns the stored snapshot's columns, no row when there is none.
fn load_sql(schema: &SchemaName) -> String {
    format!(
        "SELECT stream_version, schema_version, state, taken_at FROM {}.snapshots WHERE stream_id = $1",
        schema.quoted()
    )
}

/// `$1` stream, `$2` stream version, `$3` schema version, `$4` state, `$5` taken at.
fn save_sql(schema: &SchemaName) -> String {
    format!(
        "INSERT INTO {}.snapshots AS stored (stream_id, stream_version, schema_version, state, taken_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (stream_id) DO UPDATE \
             SET stream_version = excluded.stream_version, schema_version = excluded.schema_version, \
                 state = excluded.state, taken_at = excluded.taken_at \
             WHERE stored.stream_version < excluded.stream_version \
                OR (stored.stream_version = excluded.stream_version \
                    AND stored.schema_version <> excluded.schema_version)",
        schema.quoted()
    )
}

impl PostgresStore {
    /// [`EventStore::load_snapshot`](annals::EventStore::load_snapshot): one query.
    pub(crate) async fn load_stored_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        if validate_stream_id(stream_id).is_err() {
            return Ok(None); // no snapshot can be stored under such an id
        }
        let operation = || format!("loading the snapshot of stream `{stream_id}`");
        let row: Option<(i64, i32, Json<serde_json::Value>, DateTime<Utc>)> = sqlx::query_as(&load_sql(self.schema()))
            .bind(stream_id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        let Some((stream_version, schema_version, Json(state), taken_at)) = row else {
            return Ok(None);
        };
        let invalid = |what: &str, value: i64| backend(operation(), format!("the snapshot has invalid {what} {value}"));
        Ok(Some(StoredSnapshot {
            stream_id: stream_id.to_owned(),
            stream_version: u64::try_from(stream_version).map_err(|_| invalid("stream version", stream_version))?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| invalid("schema version", i64::from(schema_version)))?,
            state,
            taken_at,
        }))
    }

    /// [`EventStore::save_snapshot`](annals::EventStore::save_snapshot): one upsert that
    /// never replaces a newer snapshot.
    pub(crate) async fn save_stored_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let stream_id = snapshot.stream_id.as_str();
        validate_stream_id(stream_id)?;
        let operation =
            || format!("saving the snapshot of stream `{stream_id}` at version {}", snapshot.stream_version);
        if contains_nul(&snapshot.state) {
            return Err(backend(
                operation(),
                "the snapshot state contains a NUL character (\\u0000), which PostgreSQL cannot store in jsonb; \
                 remove it from the aggregate's serialized state or encode it differently"
                    .to_owned(),
            ));
        }
        let stream_version = i64::try_from(snapshot.stream_version)
            .map_err(|_| backend(operation(), "the stream version is beyond PostgreSQL's bigint range".to_owned()))?;
        let schema_version = i32::try_from(snapshot.schema_version).map_err(|_| {
            backend(
                operation(),
                format!("schema version {} is beyond PostgreSQL's integer range", snapshot.schema_version),
            )
        })?;
        sqlx::query(&save_sql(self.schema()))
            .bind(stream_id)
            .bind(stream_version)
            .bind(schema_version)
            .bind(Json(&snapshot.state))
            .bind(snapshot.taken_at)
            .execute(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(())
    }
}
