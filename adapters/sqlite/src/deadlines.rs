//! Process managers' deadlines, in table `deadlines` with its due-time index.

use annals::store::{Deadline, DeadlineStore};
use annals::StoreError;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{backend, store_error};
use crate::rows::{id_list, nanos, time};
use crate::sql;
use crate::store::SqliteStore;

impl DeadlineStore for SqliteStore {
    async fn schedule(&self, deadlines: &[Deadline]) -> Result<(), StoreError> {
        for deadline in deadlines {
            let operation = || format!("scheduling deadline {} of process `{}`", deadline.id, deadline.process);
            let due = nanos(deadline.due_at, "the due time", &operation)?;
            let payload = serde_json::to_string(&deadline.payload).map_err(|e| backend(operation(), e.to_string()))?;
            sqlx::query(sql::SCHEDULE_DEADLINE)
                .bind(deadline.id.simple().to_string())
                .bind(&deadline.process)
                .bind(&deadline.instance)
                .bind(due)
                .bind(&deadline.deadline_type)
                .bind(payload)
                .execute(&self.inner.pool)
                .await
                .map_err(|e| store_error(operation(), e))?;
        }
        Ok(())
    }

    async fn remove(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        sqlx::query(sql::REMOVE_DEADLINES)
            .bind(id_list(ids.iter()))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| store_error(format!("removing {} deadlines", ids.len()), e))?;
        Ok(())
    }

    async fn due(&self, process: &str, now: DateTime<Utc>, limit: u32) -> Result<Vec<Deadline>, StoreError> {
        let operation = || format!("reading the due deadlines of process `{process}`");
        let now = nanos(now, "the time", &operation).unwrap_or(i64::MAX);
        let rows = sqlx::query(sql::DUE_DEADLINES)
            .bind(process)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter().map(|row| deadline(row, &operation)).collect()
    }

    async fn next_due(&self, process: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let operation = || format!("reading the next deadline of process `{process}`");
        let row = sqlx::query(sql::NEXT_DEADLINE)
            .bind(process)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        let due: Option<i64> = row.try_get("due_at").map_err(|e| store_error(operation(), e))?;
        Ok(due.map(time))
    }
}

/// Decodes a deadline row; a row that is not what annals wrote is [`StoreError::Corrupt`].
fn deadline(row: &SqliteRow, operation: &dyn Fn() -> String) -> Result<Deadline, StoreError> {
    let get = |name: &str| -> Result<String, StoreError> { row.try_get(name).map_err(|e| store_error(operation(), e)) };
    let id = get("id")?;
    let corrupt = |detail: String| StoreError::Corrupt {
        stream: format!("deadlines/{id}"),
        version: None,
        position: None,
        detail,
    };
    let parsed = Uuid::try_parse(&id).map_err(|e| corrupt(format!("the id does not read back: {e}")))?;
    let due: i64 = row.try_get("due_at").map_err(|e| store_error(operation(), e))?;
    let payload = serde_json::from_str(&get("payload")?)
        .map_err(|e| corrupt(format!("the payload does not read back as JSON: {e}")))?;
    Ok(Deadline {
        id: parsed,
        process: get("process")?,
        instance: get("instance")?,
        due_at: time(due),
        deadline_type: get("deadline_type")?,
        payload,
    })
}
