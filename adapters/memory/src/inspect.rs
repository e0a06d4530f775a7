//! [`Inspect`] in memory: the streams of the log, the consumers' checkpoints.

use annals::store::{ConsumerInfo, Inspect, StreamInfo};
use annals::StoreError;

use crate::MemoryStore;

impl Inspect for MemoryStore {
    async fn streams(&self, category: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>, StoreError> {
        let log = self.log.read();
        let prefix = category.map(|category| format!("{category}-"));
        let mut streams: Vec<StreamInfo> = log
            .streams
            .iter()
            .filter(|(id, _)| prefix.as_deref().is_none_or(|prefix| id.starts_with(prefix)))
            .filter_map(|(id, indexes)| {
                let last = log.events.get(*indexes.last()?)?;
                Some(StreamInfo {
                    stream_id: id.clone(),
                    version: last.stream_version,
                    last_recorded_at: last.recorded_at,
                })
            })
            .collect();
        streams.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        streams.truncate(limit);
        Ok(streams)
    }

    async fn correlated(&self, correlation_id: uuid::Uuid) -> Result<Vec<annals::Envelope>, StoreError> {
        let log = self.log.read();
        Ok(log.events.iter().filter(|e| e.metadata.correlation_id == Some(correlation_id)).cloned().collect())
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>, StoreError> {
        let consumers = self.consumers.lock().await;
        let head = u64::try_from(self.log.read().events.len()).unwrap_or(u64::MAX);
        let mut listed: Vec<ConsumerInfo> = consumers
            .checkpoints
            .iter()
            .map(|(name, checkpoint)| ConsumerInfo {
                name: name.clone(),
                checkpoint: *checkpoint,
                updated_at: None,
                held_by: None,
                // Positions are 1, 2, ...: the head is the number of events.
                behind: head.saturating_sub(checkpoint.parts().1),
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }
}
