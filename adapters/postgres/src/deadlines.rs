//! [`DeadlineStore`] on PostgreSQL: process managers' deadlines in `<schema>.deadlines`
//! (migration 7), found through the due-time index `(process, due_at)`.

use annals::store::{Deadline, DeadlineStore};
use annals::StoreError;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::store_error;
use crate::json::JsonText;
use crate::{rows, PostgresStore};

impl DeadlineStore for PostgresStore {
    async fn schedule(&self, deadlines: &[Deadline]) -> Result<(), StoreError> {
        for deadline in deadlines {
            let operation = || format!("scheduling deadline {} of process `{}`", deadline.id, deadline.process);
            self.on_live_connection(|| {
                sqlx::query(&self.sql().schedule_deadline)
                    .bind(deadline.id)
                    .bind(&deadline.process)
                    .bind(&deadline.instance)
                    .bind(deadline.due_at)
                    .bind(&deadline.deadline_type)
                    .bind(JsonText(&deadline.payload))
                    .execute(self.pool())
            })
            .await
            .map_err(|e| store_error(operation(), e))?;
        }
        Ok(())
    }

    async fn remove(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.on_live_connection(|| sqlx::query(&self.sql().remove_deadlines).bind(ids).execute(self.pool()))
            .await
            .map_err(|e| store_error(format!("removing {} deadlines", ids.len()), e))?;
        Ok(())
    }

    async fn due(&self, process: &str, now: DateTime<Utc>, limit: u32) -> Result<Vec<Deadline>, StoreError> {
        let operation = || format!("reading the due deadlines of process `{process}`");
        let rows = self
            .on_live_connection(|| {
                sqlx::query(&self.sql().due_deadlines)
                    .bind(process)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
            })
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter().map(|row| deadline(row, &operation)).collect()
    }

    async fn next_due(&self, process: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let operation = || format!("reading the next deadline of process `{process}`");
        let row = self
            .on_live_connection(|| sqlx::query(&self.sql().next_deadline).bind(process).fetch_one(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        let raw = row.try_get_raw("due_at").map_err(|e| store_error(operation(), e))?;
        if sqlx::ValueRef::is_null(&raw) {
            return Ok(None);
        }
        rows::timestamp(&row, "due_at")
            .map(Some)
            .map_err(|detail| corrupt("deadlines".to_owned(), format!("a due_at {detail}")))
    }
}

fn corrupt(stream: String, detail: String) -> StoreError {
    StoreError::Corrupt { stream, version: None, position: None, detail }
}

/// Decodes a deadline row; a row that is not what annals wrote is [`StoreError::Corrupt`].
fn deadline(row: &PgRow, operation: &dyn Fn() -> String) -> Result<Deadline, StoreError> {
    let id: Uuid = row.try_get("id").map_err(|e| store_error(operation(), e))?;
    let text =
        |name: &str| -> Result<String, StoreError> { row.try_get(name).map_err(|e| store_error(operation(), e)) };
    let place = format!("deadlines/{id}");
    let due_at =
        rows::timestamp(row, "due_at").map_err(|detail| corrupt(place.clone(), format!("its due_at {detail}")))?;
    let payload = serde_json::from_str(&text("payload")?)
        .map_err(|e| corrupt(place.clone(), format!("its payload does not read back as JSON: {e}")))?;
    Ok(Deadline {
        id,
        process: text("process")?,
        instance: text("instance")?,
        due_at,
        deadline_type: text("deadline_type")?,
        payload,
    })
}
