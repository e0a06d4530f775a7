//! [`DeadlineStore`] in memory: deadlines by id, and by due time for each process.

use std::collections::{BTreeSet, HashMap};

use annals::store::{Deadline, DeadlineStore};
use annals::StoreError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::MemoryStore;

/// The deadlines, and their due-time index: (process, due time, id), in order.
#[derive(Default)]
pub(crate) struct Deadlines {
    by_id: HashMap<Uuid, Deadline>,
    by_due: BTreeSet<(String, DateTime<Utc>, Uuid)>,
}

impl DeadlineStore for MemoryStore {
    async fn schedule(&self, deadlines: &[Deadline]) -> Result<(), StoreError> {
        let mut table = self.deadlines.write();
        for deadline in deadlines {
            if !table.by_id.contains_key(&deadline.id) {
                table.by_due.insert((deadline.process.clone(), deadline.due_at, deadline.id));
                table.by_id.insert(deadline.id, deadline.clone());
            }
        }
        Ok(())
    }

    async fn remove(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let mut table = self.deadlines.write();
        for id in ids {
            if let Some(deadline) = table.by_id.remove(id) {
                table.by_due.remove(&(deadline.process, deadline.due_at, deadline.id));
            }
        }
        Ok(())
    }

    async fn due(&self, process: &str, now: DateTime<Utc>, limit: u32) -> Result<Vec<Deadline>, StoreError> {
        let table = self.deadlines.read();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(table
            .by_due
            .range((process.to_owned(), DateTime::<Utc>::MIN_UTC, Uuid::nil())..)
            .take_while(|(p, due, _)| p == process && *due <= now)
            .take(limit)
            .filter_map(|(_, _, id)| table.by_id.get(id).cloned())
            .collect())
    }

    async fn next_due(&self, process: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let table = self.deadlines.read();
        Ok(table
            .by_due
            .range((process.to_owned(), DateTime::<Utc>::MIN_UTC, Uuid::nil())..)
            .next()
            .filter(|(p, _, _)| p == process)
            .map(|(_, due, _)| *due))
    }
}
