//! [`CheckpointStore`] on PostgreSQL: consumers' checkpoints in
//! `<schema>.projection_checkpoints` (migration 2), one row per consumer, moved in the
//! transaction that carries the consumer's own writes; and their dead letters in
//! `<schema>.parked_events` (migration 4).

use annals::store::{kit, Checkpoint, CheckpointStore};
use annals::subscription::Parked;
use annals::StoreError;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::error::{out_of_range, store_error};
use crate::{rows, PostgresStore};

/// Checkpoints in `<schema>.projection_checkpoints`: the row of a consumer holds the two
/// parts of its [`Checkpoint`] (columns `commit` and `position`: the transaction id and
/// the global position of the last event it processed, see the [feed](crate::feed)).
///
/// A transaction is a [`sqlx::Transaction`] of the store's pool, and handlers write
/// through its [`PgConnection`] (`#[projection(context = annals_postgres::PgConnection)]`),
/// so [`ExactlyOnce`](annals::subscription::ExactlyOnce) commits a batch's read-model
/// writes and its checkpoint together. Moving a checkpoint is a compare-and-set that
/// locks the row until the transaction ends: `UPDATE … WHERE` both parts still hold what
/// the consumer last saw, or, for a consumer without a checkpoint,
/// `INSERT … ON CONFLICT DO NOTHING`. A second instance moving the same checkpoint waits
/// for the first to end, then finds the row changed and moves nothing (fencing).
///
/// Dead letters ([`PoisonPolicy`](annals::subscription::PoisonPolicy)) are rows of
/// `<schema>.parked_events`, one per consumer and parked event, written in the same kind
/// of transaction; the event itself stays in the events table.
///
/// ```no_run
/// use annals::prelude::*;
/// use annals::subscription::{ExactlyOnce, Subscription};
/// use annals_postgres::{sqlx, PgConnection, PostgresStore};
/// use shopping_cart::CheckedOut;
///
/// #[derive(Projection)]
/// #[projection(name = "checkouts", events(CheckedOut), context = PgConnection)]
/// struct Checkouts;
///
/// impl On<CheckedOut> for Checkouts {
///     async fn on(&mut self, e: CheckedOut, env: &Envelope, tx: &mut PgConnection) -> Result<(), annals::BoxError> {
///         sqlx::query("INSERT INTO checkouts (cart, total_cents) VALUES ($1, $2)")
///             .bind(&env.stream_id)
///             .bind(i64::try_from(e.total_cents)?)
///             .execute(&mut *tx)
///             .await?;
///         Ok(())
///     }
/// }
///
/// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// // Each batch: its INSERTs and the checkpoint commit in one transaction.
/// let checkouts = ExactlyOnce::new(store.clone(), Checkouts);
/// Subscription::new(store, checkouts).catch_up().await?;
/// # Ok(()) }
/// ```
impl CheckpointStore for PostgresStore {
    type Connection = PgConnection;
    type Transaction = sqlx::Transaction<'static, Postgres>;

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let operation = || format!("loading the checkpoint of consumer `{name}`");
        let row = self
            .on_live_connection(|| sqlx::query(&self.sql().load_checkpoint).bind(name).fetch_optional(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        row.map(|row| rows::stored_checkpoint(&row, operation)).transpose()
    }

    async fn begin(&self) -> Result<Self::Transaction, StoreError> {
        // A caller cancelled while `BEGIN` is on its way (a task aborted, a `select!` that
        // took another branch, a request whose client left) must not leave the server in
        // a transaction: sqlx 0.8.6 then queues no `ROLLBACK` (its guard only rolls back
        // at a transaction depth it has not counted yet), the connection goes back to the
        // pool "idle in transaction", and every later autocommit statement on it (an
        // append) never commits while holding the feed's horizon back for good. `BEGIN`
        // runs in a task of its own, which finishes even when the caller is gone; a
        // transaction nobody takes is dropped there and rolled back on release.
        let store = self.clone();
        let begun = tokio::spawn(async move {
            // `BEGIN` on a dead pooled connection fails before anything happened: take another.
            store.on_live_connection(|| store.pool().begin()).await
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            operation: "beginning a transaction (the task running `BEGIN` ended early)".to_owned(),
            source: Box::new(e),
        })?;
        begun.map_err(|e| store_error("beginning a transaction".to_owned(), e))
    }

    async fn move_checkpoint(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        from: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        let operation = || format!("moving the checkpoint of consumer `{name}` to {to}");
        let (to_commit, to_position) = kit::checkpoint_to_db(to).map_err(|e| out_of_range(operation(), e))?;
        let done = match from {
            Some(from) => {
                let (commit, position) = kit::checkpoint_to_db(from).map_err(|e| out_of_range(operation(), e))?;
                sqlx::query(&self.sql().move_checkpoint)
                    .bind(name)
                    .bind(commit)
                    .bind(position)
                    .bind(to_commit)
                    .bind(to_position)
                    .execute(&mut **transaction)
                    .await
            }
            None => {
                sqlx::query(&self.sql().insert_checkpoint)
                    .bind(name)
                    .bind(to_commit)
                    .bind(to_position)
                    .execute(&mut **transaction)
                    .await
            }
        };
        Ok(done.map_err(|e| store_error(operation(), e))?.rows_affected() == 1)
    }

    async fn delete_checkpoint(&self, transaction: &mut Self::Transaction, name: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql().delete_checkpoint)
            .bind(name)
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(format!("deleting the checkpoint of consumer `{name}`"), e))?;
        Ok(())
    }

    async fn commit(&self, transaction: Self::Transaction) -> Result<(), StoreError> {
        transaction.commit().await.map_err(|e| store_error("committing a transaction".to_owned(), e))
    }

    async fn park(&self, transaction: &mut Self::Transaction, name: &str, parked: &Parked) -> Result<(), StoreError> {
        let event = &parked.event;
        let operation = || format!("parking event {} of consumer `{name}`", event.envelope.event_id);
        let (commit, position) = kit::checkpoint_to_db(event.checkpoint).map_err(|e| out_of_range(operation(), e))?;
        sqlx::query(&self.sql().park)
            .bind(name)
            .bind(event.envelope.event_id)
            .bind(commit)
            .bind(position)
            .bind(&parked.reason)
            .bind(parked.parked_at)
            .bind(parked.behind)
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(())
    }

    async fn parked(&self, name: &str) -> Result<Vec<Parked>, StoreError> {
        let operation = || format!("reading the parked events of consumer `{name}`");
        let rows = self
            .on_live_connection(|| sqlx::query(&self.sql().parked).bind(name).fetch_all(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter().map(|row| rows::parked(row, operation)).collect()
    }

    async fn unpark(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        event_id: Uuid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.sql().unpark)
            .bind(name)
            .bind(event_id)
            .execute(&mut **transaction)
            .await
            .map_err(|e| store_error(format!("unparking event {event_id} of consumer `{name}`"), e))?;
        Ok(done.rows_affected() == 1)
    }
}
