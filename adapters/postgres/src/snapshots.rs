//! [`SnapshotStore`] on PostgreSQL: one row per stream in `<schema>.snapshots`
//! (migration 3).
//!
//! Loading is one primary-key lookup; saving is one upsert that replaces the stored row
//! only with a snapshot at a later stream version (or at the same version taken by
//! another schema version of the aggregate), so a slow, stale writer never replaces a
//! newer snapshot.

use annals::store::{kit, SnapshotStore, StoredSnapshot};
use annals::StoreError;

use crate::error::{backend, out_of_range, store_error};
use crate::json::JsonText;
use crate::{rows, PostgresStore};

/// Snapshots in `<schema>.snapshots`: a load is one query, a save one upsert that never
/// replaces a newer snapshot.
impl SnapshotStore for PostgresStore {
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        if kit::validate_stream_id(stream_id).is_err() {
            return Ok(None); // no snapshot can be stored under such an id
        }
        let operation = || format!("loading the snapshot of stream `{stream_id}`");
        let row = sqlx::query(&self.sql().load_snapshot)
            .bind(stream_id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        row.map(|row| rows::snapshot(&row, stream_id, operation)).transpose()
    }

    async fn save_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let stream_id = snapshot.stream_id.as_str();
        kit::validate_stream_id(stream_id)?;
        let operation =
            || format!("saving the snapshot of stream `{stream_id}` at version {}", snapshot.stream_version);
        let stream_version =
            kit::to_db(snapshot.stream_version, "stream version").map_err(|e| out_of_range(operation(), e))?;
        let schema_version = i32::try_from(snapshot.schema_version).map_err(|_| {
            backend(
                operation(),
                format!("schema version {} is beyond PostgreSQL's integer range", snapshot.schema_version),
            )
        })?;
        sqlx::query(&self.sql().save_snapshot)
            .bind(stream_id)
            .bind(stream_version)
            .bind(schema_version)
            .bind(JsonText(&snapshot.state))
            .bind(snapshot.taken_at)
            .execute(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(())
    }
}
