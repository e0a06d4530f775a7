//! [`SnapshotStore`] in memory: the latest snapshot of each stream.

use annals::store::{SnapshotStore, StoredSnapshot};
use annals::StoreError;

use crate::MemoryStore;

impl SnapshotStore for MemoryStore {
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self.snapshots.read().get(stream_id).cloned())
    }

    async fn save_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.write();
        let newer_stored =
            snapshots.get(&snapshot.stream_id).is_some_and(|s| s.stream_version > snapshot.stream_version);
        if !newer_stored {
            snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }
}
