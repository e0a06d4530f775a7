//! [`Inspect`] on PostgreSQL: streams grouped from `<schema>.events` (a scan of the
//! `(stream_id, stream_version)` index), consumers from `<schema>.projection_checkpoints`.

use annals::store::{kit, ConsumerInfo, Inspect, StreamInfo};
use annals::StoreError;
use sqlx::Row;

use crate::error::{out_of_range, store_error};
use crate::{rows, PostgresStore};

impl Inspect for PostgresStore {
    async fn streams(&self, category: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>, StoreError> {
        let operation = || "listing the streams".to_owned();
        let limit = kit::bound_to_db(u64::try_from(limit).unwrap_or(u64::MAX));
        let found = sqlx::query(&self.sql().list_streams)
            .bind(category)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        found
            .iter()
            .map(|row| {
                let column_error = |e| store_error(operation(), e);
                let stream_id: String = row.try_get("stream_id").map_err(column_error)?;
                let version: i64 = row.try_get("version").map_err(column_error)?;
                let last_recorded_at = rows::timestamp(row, "last_recorded_at").map_err(|detail| {
                    StoreError::Corrupt { stream: stream_id.clone(), version: None, position: None, detail }
                })?;
                let version = kit::from_db(version, 1, "stream version").map_err(|e| out_of_range(operation(), e))?;
                Ok(StreamInfo { stream_id, version, last_recorded_at })
            })
            .collect()
    }

    async fn correlated(&self, correlation_id: uuid::Uuid) -> Result<Vec<annals::Envelope>, StoreError> {
        self.events_by_correlation(correlation_id).await
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>, StoreError> {
        let operation = || "listing the consumers".to_owned();
        let found = sqlx::query(&self.sql().list_consumers)
            .bind(self.sql().consumer_lock_key(""))
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        found
            .iter()
            .map(|row| {
                let name: String = row.try_get("name").map_err(|e| store_error(operation(), e))?;
                let checkpoint = rows::stored_checkpoint(row, operation)?;
                let updated_at = rows::timestamp(row, "updated_at").ok();
                let held_by: Option<String> = row.try_get("held_by").map_err(|e| store_error(operation(), e))?;
                let behind: i64 = row.try_get("behind").map_err(|e| store_error(operation(), e))?;
                let behind = u64::try_from(behind).unwrap_or(0);
                Ok(ConsumerInfo { name, checkpoint, updated_at, held_by, behind })
            })
            .collect()
    }
}
