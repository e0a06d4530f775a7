//! [`CheckpointStore`] in memory: consumers' checkpoints and dead letters.

use std::collections::HashMap;
use std::sync::Arc;

use annals::store::{Checkpoint, CheckpointStore};
use annals::subscription::Parked;
use annals::StoreError;
use uuid::Uuid;

use crate::MemoryStore;

/// What consumers keep in the store: checkpoints and dead letters, by consumer name.
#[derive(Default)]
pub(crate) struct Consumers {
    pub(crate) checkpoints: HashMap<String, Checkpoint>,
    parked: HashMap<String, Vec<Parked>>,
}

/// One change a transaction applies at commit.
enum Change {
    Checkpoint(String, Option<Checkpoint>),
    Park(String, Box<Parked>),
    Unpark(String, Uuid),
}

/// Checkpoints and dead letters in memory. A transaction holds the lock on all of them
/// until it commits or is dropped, so moving a checkpoint is fenced like a database row
/// lock; the connection handlers receive is `()`.
impl CheckpointStore for MemoryStore {
    type Connection = ();
    type Transaction = MemoryTransaction;

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.consumers.lock().await.checkpoints.get(name).copied())
    }

    async fn begin(&self) -> Result<MemoryTransaction, StoreError> {
        Ok(MemoryTransaction {
            consumers: Arc::clone(&self.consumers).lock_owned().await,
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
        transaction.changes.push(Change::Checkpoint(name.to_owned(), Some(to)));
        Ok(true)
    }

    async fn delete_checkpoint(&self, transaction: &mut MemoryTransaction, name: &str) -> Result<(), StoreError> {
        transaction.changes.push(Change::Checkpoint(name.to_owned(), None));
        Ok(())
    }

    async fn commit(&self, mut transaction: MemoryTransaction) -> Result<(), StoreError> {
        for change in std::mem::take(&mut transaction.changes) {
            let consumers = &mut *transaction.consumers;
            match change {
                Change::Checkpoint(name, Some(checkpoint)) => {
                    consumers.checkpoints.insert(name, checkpoint);
                }
                Change::Checkpoint(name, None) => {
                    consumers.checkpoints.remove(&name);
                }
                Change::Park(name, parked) => {
                    let list = consumers.parked.entry(name).or_default();
                    let id = parked.event.envelope.event_id;
                    match list.iter_mut().find(|p| p.event.envelope.event_id == id) {
                        Some(existing) => *existing = *parked,
                        None => {
                            list.push(*parked);
                            list.sort_by_key(|p| p.event.checkpoint);
                        }
                    }
                }
                Change::Unpark(name, event_id) => {
                    if let Some(list) = consumers.parked.get_mut(&name) {
                        list.retain(|p| p.event.envelope.event_id != event_id);
                    }
                }
            }
        }
        Ok(())
    }

    async fn park(&self, transaction: &mut MemoryTransaction, name: &str, parked: &Parked) -> Result<(), StoreError> {
        transaction.changes.push(Change::Park(name.to_owned(), Box::new(parked.clone())));
        Ok(())
    }

    async fn parked(&self, name: &str) -> Result<Vec<Parked>, StoreError> {
        Ok(self.consumers.lock().await.parked.get(name).cloned().unwrap_or_default())
    }

    async fn unpark(
        &self,
        transaction: &mut MemoryTransaction,
        name: &str,
        event_id: Uuid,
    ) -> Result<bool, StoreError> {
        let parked = transaction
            .consumers
            .parked
            .get(name)
            .is_some_and(|list| list.iter().any(|p| p.event.envelope.event_id == event_id));
        transaction.changes.push(Change::Unpark(name.to_owned(), event_id));
        Ok(parked)
    }
}

/// A [`CheckpointStore`] transaction of [`MemoryStore`]: holds the consumers' lock and
/// the changes to apply at commit. Dereferences to `()`, the connection handlers receive.
pub struct MemoryTransaction {
    consumers: tokio::sync::OwnedMutexGuard<Consumers>,
    changes: Vec<Change>,
    connection: (),
}

impl MemoryTransaction {
    /// The checkpoint of `name` as this transaction sees it.
    fn current(&self, name: &str) -> Option<Checkpoint> {
        let changed = self.changes.iter().rev().find_map(|change| match change {
            Change::Checkpoint(changed, checkpoint) if changed == name => Some(*checkpoint),
            _ => None,
        });
        match changed {
            Some(checkpoint) => checkpoint,
            None => self.consumers.checkpoints.get(name).copied(),
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
