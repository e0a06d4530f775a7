//! Where consumers keep their checkpoints.

use std::future::Future;
use std::ops::DerefMut;

use uuid::Uuid;

use crate::store::{Checkpoint, StoreError};
use crate::subscription::Parked;

/// Where consumers keep their checkpoints, in transactions that can also carry the
/// consumer's own writes.
///
/// [`ExactlyOnce`](crate::subscription::ExactlyOnce) runs a batch's handlers and moves
/// the checkpoint in one [`Transaction`](Self::Transaction): the read model and the
/// checkpoint commit together or not at all.
/// [`AtLeastOnce`](crate::subscription::AtLeastOnce) moves it after each handled event.
/// A database adapter implements it on its own tables (`annals-postgres`,
/// `annals-sqlite`); `annals-memory` keeps checkpoints in memory, with `()` as the
/// connection.
pub trait CheckpointStore: Clone + Send + Sync + 'static {
    /// What a handler running in a checkpoint transaction writes through, e.g. the
    /// database connection of the open transaction.
    type Connection: Send;

    /// An open transaction. Dropping it without [`commit`](Self::commit) rolls it back.
    type Transaction: DerefMut<Target = Self::Connection> + Send;

    /// The stored checkpoint of consumer `name`; `None` if it has none.
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    /// Begins a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Transaction, StoreError>> + Send;

    /// In `transaction`, moves the checkpoint of `name` from `from` (`None`: it has none)
    /// to `to`, and holds what keeps any other transaction from moving it until this one
    /// ends. Returns false, changing nothing, when the stored checkpoint is not `from`:
    /// another instance of the consumer moved it (fencing).
    fn move_checkpoint(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        from: Option<Checkpoint>,
        to: Checkpoint,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// In `transaction`, deletes the checkpoint of `name`, so that the consumer starts
    /// again from the first event.
    fn delete_checkpoint(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Commits `transaction`.
    fn commit(&self, transaction: Self::Transaction) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// In `transaction`, sets `parked` aside as a dead letter of consumer `name` (see
    /// [`PoisonPolicy`](crate::subscription::PoisonPolicy)). Parking an event already
    /// parked replaces its reason.
    ///
    /// The default keeps no dead letters: it fails, and a consumer stops instead of
    /// parking.
    fn park(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        parked: &Parked,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (transaction, parked);
        let error = no_dead_letters(name);
        async { Err(error) }
    }

    /// The dead letters of consumer `name`, in feed order. The default: none.
    fn parked(&self, name: &str) -> impl Future<Output = Result<Vec<Parked>, StoreError>> + Send {
        let _ = name;
        async { Ok(Vec::new()) }
    }

    /// In `transaction`, removes the dead letter of `event_id` of consumer `name` (it was
    /// applied after all, or an operator skipped it); false when there was none.
    fn unpark(
        &self,
        transaction: &mut Self::Transaction,
        name: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (transaction, name, event_id);
        async { Ok(false) }
    }
}

/// The error of [`CheckpointStore::park`] on a store that keeps no dead letters.
fn no_dead_letters(name: &str) -> StoreError {
    StoreError::Backend {
        operation: format!("parking an event of consumer `{name}`"),
        source: "this store keeps no dead letters; use PoisonPolicy::Stop with it".into(),
    }
}
