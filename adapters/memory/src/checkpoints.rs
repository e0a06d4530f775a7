//! [`CheckpointStore`] in memory.

use std::collections::HashMap;
use std::sync::Arc;

use annals::store::{Checkpoint, CheckpointStore};
use annals::StoreError;

use crate::MemoryStore;

/// Checkpoints in memory. A transaction holds the lock on all of them until it commits
/// or is dropped, so moving a checkpoint is fenced like a database row lock; the
/// connection handlers receive is `()`.
impl CheckpointStore for MemoryStore {
    type Connection = ();
    type Transaction = MemoryTransaction;

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints.lock().await.get(name).copied())
    }

    async fn begin(&self) -> Result<MemoryTransaction, StoreError> {
        Ok(MemoryTransaction {
            checkpoints: Arc::clone(&self.checkpoints).lock_owned().await,
            changes: Vec::new(),
            connection: (),
        })
    }

    async fn move_checkpoint(
        &self,
        transaction: &mut MemoryTransaction,
        name: &str,
        from: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        if transaction.current(name) != from {
            return Ok(false);
        }
        transaction.changes.push((name.to_owned(), Some(to)));
        Ok(true)
    }

    async fn delete_checkpoint(&self, transaction: &mut MemoryTransaction, name: &str) -> Result<(), StoreError> {
        transaction.changes.push((name.to_owned(), None));
        Ok(())
    }

    async fn commit(&self, mut transaction: MemoryTransaction) -> Result<(), StoreError> {
        for (name, checkpoint) in std::mem::take(&mut transaction.changes) {
            match checkpoint {
                Some(checkpoint) => transaction.checkpoints.insert(name, checkpoint),
                None => transaction.checkpoints.remove(&name),
            };
        }
        Ok(())
    }
}

/// A [`CheckpointStore`] transaction of [`MemoryStore`]: holds the checkpoints' lock and
/// the changes to apply at commit. Dereferences to `()`, the connection handlers receive.
pub struct MemoryTransaction {
    checkpoints: tokio::sync::OwnedMutexGuard<HashMap<String, Checkpoint>>,
    changes: Vec<(String, Option<Checkpoint>)>,
    connection: (),
}

impl MemoryTransaction {
    /// The checkpoint of `name` as this transaction sees it.
    fn current(&self, name: &str) -> Option<Checkpoint> {
        match self.changes.iter().rev().find(|(changed, _)| changed == name) {
            Some((_, checkpoint)) => *checkpoint,
            None => self.checkpoints.get(name).copied(),
        }
    }
}

impl std::ops::Deref for MemoryTransaction {
    type Target = ();

    fn deref(&self) -> &() {
        &self.connection
    }
}

impl std::ops::DerefMut for MemoryTransaction {
    fn deref_mut(&mut self) -> &mut () {
        &mut self.connection
    }
}
