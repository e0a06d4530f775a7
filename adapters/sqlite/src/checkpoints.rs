//! Consumers' checkpoints, in table `checkpoints`, and dead letters, in table
//! `dead_letters`, in `BEGIN IMMEDIATE` transactions.

use annals::store::kit::checkpoint_to_db;
use annals::store::{Checkpoint, CheckpointStore};
use annals::subscription::Parked;
use annals::StoreError;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;
use sqlx::{Sqlite, Transaction};

use crate::error::{out_of_range, store_error};
use crate::rows::EventColumns;
use crate::store::SqliteStore;
use crate::{rows, sql};

/// A checkpoint transaction is a `BEGIN IMMEDIATE` transaction: it holds the database's
/// write lock from its start, so moving a checkpoint (a compare-and-set of its row) is
/// fenced: no other transaction, in this process or another, moves it until this one
/// ends. Handlers of [`ExactlyOnce`](annals::subscription::ExactlyOnce) projections write
/// their read model through the same transaction (`#[projection(context =
/// annals_sqlite::SqliteConnection)]`), so it commits with the checkpoint or not at all.
///
/// Holding the write lock, a checkpoint transaction makes appends wait (up to the busy
/// timeout) until it ends: keep batches short, and never append to the store from inside
/// a handler (it would wait for its own transaction).
impl CheckpointStore for SqliteStore {
    type Connection = SqliteConnection;
    type Transaction = Transaction<'static, Sqlite>;

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let operation = || format!("loading the checkpoint of consumer `{name}`");
        let found = sqlx::query(sql::LOAD_CHECKPOINT)
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        found.map(|row| rows::checkpoint(&row, &operation)).transpose()
    }

    async fn begin(&self) -> Result<Self::Transaction, StoreError> {
        self.inner
            .pool
            .begin_with(sql::BEGIN_IMMEDIATE)
            .await
            .map_err(|e| store_error("beginning a checkpoint transaction", e))
    }

    async fn move_checkpoint(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        from: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        let operation = || format!("moving the checkpoint of consumer `{name}` to {to}");
        let (major, minor) = checkpoint_to_db(to).map_err(|e| out_of_range(operation(), e))?;
        let (_, now) = rows::now();
        let query = match from {
            None => sqlx::query(sql::INSERT_CHECKPOINT).bind(name).bind(major).bind(minor).bind(now),
            Some(from) => {
                let Ok((from_major, from_minor)) = checkpoint_to_db(from) else {
                    // No stored checkpoint can be beyond what the table holds.
                    return Ok(false);
                };
                sqlx::query(sql::MOVE_CHECKPOINT)
                    .bind(name)
                    .bind(major)
                    .bind(minor)
                    .bind(now)
                    .bind(from_major)
                    .bind(from_minor)
            }
        };
        let done = query.execute(&mut **transaction).await.map_err(|e| store_error(operation(), e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_checkpoint(&self, transaction: &mut Self::Transaction, name: &str) -> Result<(), StoreError> {
        sqlx::query(sql::DELETE_CHECKPOINT)
            .bind(name)
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(format!("deleting the checkpoint of consumer `{name}`"), e))?;
        Ok(())
    }

    async fn commit(&self, transaction: Self::Transaction) -> Result<(), StoreError> {
        transaction.commit().await.map_err(|e| store_error("committing a checkpoint transaction", e))
    }

    async fn park(&self, transaction: &mut Self::Transaction, name: &str, parked: &Parked) -> Result<(), StoreError> {
        let event = &parked.event;
        let operation = || {
            format!(
                "parking event {} (stream `{}` version {}) of consumer `{name}`",
                event.envelope.event_id, event.envelope.stream_id, event.envelope.stream_version
            )
        };
        let (major, minor) = checkpoint_to_db(event.checkpoint).map_err(|e| out_of_range(operation(), e))?;
        let json = serde_json::to_string(parked)
            .map_err(|e| StoreError::Backend { operation: operation(), source: Box::new(e) })?;
        sqlx::query(sql::PARK)
            .bind(name)
            .bind(event.envelope.event_id.to_string())
            .bind(major)
            .bind(minor)
            .bind(json)
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(())
    }

    async fn parked(&self, name: &str) -> Result<Vec<Parked>, StoreError> {
        let operation = || format!("listing the parked events of consumer `{name}`");
        let found = sqlx::query(sql::PARKED)
            .bind(name)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        let Some(first) = found.first() else { return Ok(Vec::new()) };
        let columns = EventColumns::of(first, &operation)?;
        found
            .iter()
            .map(|row| {
                let json: String = row.try_get("parked").map_err(|e| store_error(operation(), e))?;
                let mut parked: Parked = serde_json::from_str(&json).map_err(|e| StoreError::Backend {
                    operation: format!("{} (a dead letter does not decode)", operation()),
                    source: Box::new(e),
                })?;
                // The event as stored now: one that was damaged when it was parked and
                // has been fixed since reads back whole.
                let position: Option<i64> = row.try_get("global_position").map_err(|e| store_error(operation(), e))?;
                if position.is_some() {
                    let at = parked.event.checkpoint;
                    parked.event = columns.feed_event(row, |_| at, &operation)?;
                }
                Ok(parked)
            })
            .collect()
    }

    async fn unpark(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        event_id: uuid::Uuid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::UNPARK)
            .bind(name)
            .bind(event_id.to_string())
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(format!("removing the dead letter {event_id} of consumer `{name}`"), e))?;
        Ok(done.rows_affected() == 1)
    }
}
