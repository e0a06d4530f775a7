//! [`Inspect`] on SQLite: streams grouped from `events`, consumers from `checkpoints`.

use annals::store::kit::from_db;
use annals::store::{Checkpoint, ConsumerInfo, Inspect, StreamInfo};
use annals::StoreError;
use sqlx::Row;

use crate::error::{out_of_range, store_error};
use crate::rows::time;
use crate::sql;
use crate::store::SqliteStore;

impl Inspect for SqliteStore {
    async fn streams(&self, category: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>, StoreError> {
        let operation = || "listing the streams".to_owned();
        let found = sqlx::query(sql::LIST_STREAMS)
            .bind(category)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        found
            .iter()
            .map(|row| {
                let column_error = |e| store_error(operation(), e);
                let version: i64 = row.try_get("version").map_err(column_error)?;
                Ok(StreamInfo {
                    stream_id: row.try_get("stream_id").map_err(column_error)?,
                    version: from_db(version, 1, "stream version").map_err(|e| out_of_range(operation(), e))?,
                    last_recorded_at: time(row.try_get("last_recorded_at").map_err(column_error)?),
                })
            })
            .collect()
    }

    async fn correlated(&self, correlation_id: uuid::Uuid) -> Result<Vec<annals::Envelope>, StoreError> {
        let operation = || format!("reading the events of correlation id {correlation_id}");
        let found = sqlx::query(sql::EVENTS_BY_CORRELATION)
            .bind(correlation_id)
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        crate::rows::envelopes(&found, None, &operation)
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>, StoreError> {
        let operation = || "listing the consumers".to_owned();
        let found =
            sqlx::query(sql::LIST_CONSUMERS).fetch_all(self.pool()).await.map_err(|e| store_error(operation(), e))?;
        found
            .iter()
            .map(|row| {
                let column_error = |e| store_error(operation(), e);
                let (major, minor): (i64, i64) =
                    (row.try_get("major").map_err(column_error)?, row.try_get("minor").map_err(column_error)?);
                let invalid = |e| out_of_range(operation(), e);
                Ok(ConsumerInfo {
                    name: row.try_get("name").map_err(column_error)?,
                    checkpoint: Checkpoint::from_parts(
                        from_db(major, 0, "checkpoint major part").map_err(invalid)?,
                        from_db(minor, 0, "checkpoint minor part").map_err(invalid)?,
                    ),
                    updated_at: Some(time(row.try_get("updated_at").map_err(column_error)?)),
                    held_by: None,
                    behind: from_db(row.try_get("behind").map_err(column_error)?, 0, "events behind")
                        .map_err(invalid)?,
                })
            })
            .collect()
    }
}
