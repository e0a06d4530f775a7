//! Snapshots: the latest of each stream, in table `snapshots`.

use annals::store::kit::to_db;
use annals::store::{SnapshotStore, StoredSnapshot};
use annals::StoreError;

use crate::error::{backend, out_of_range, store_error};
use crate::store::SqliteStore;
use crate::{rows, sql};

/// One row per stream. Saving is one statement that keeps a stored snapshot of a later
/// version; the state is stored as the JSON text serde_json writes.
impl SnapshotStore for SqliteStore {
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        let operation = || format!("loading the snapshot of stream `{stream_id}`");
        let found = sqlx::query(sql::LOAD_SNAPSHOT)
            .bind(stream_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        found.map(|row| rows::snapshot(&row, &operation)).transpose()
    }

    async fn save_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let operation = || format!("saving a snapshot of stream `{}`", snapshot.stream_id);
        let version = to_db(snapshot.stream_version, "stream version").map_err(|e| out_of_range(operation(), e))?;
        let state = serde_json::to_string(&snapshot.state)
            .map_err(|e| backend(operation(), format!("the state does not encode: {e}")))?;
        let taken_at = rows::nanos(snapshot.taken_at, "the time the snapshot was taken", &operation)?;
        // A single statement commits on its own; the writer lock keeps it from sleeping
        // in SQLite's busy handler behind this process's appends.
        let _writer = self.inner.writer.lock().await;
        sqlx::query(sql::SAVE_SNAPSHOT)
            .bind(snapshot.stream_id.as_str())
            .bind(version)
            .bind(i64::from(snapshot.schema_version))
            .bind(state)
            .bind(taken_at)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(())
    }
}
