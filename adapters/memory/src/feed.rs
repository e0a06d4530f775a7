//! [`EventFeed`] in memory: position order is commit order.

use annals::store::{BoxStream, Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter};
use annals::StoreError;
use futures::StreamExt;

use crate::store::checkpoint;
use crate::MemoryStore;

/// How many events a feed read scans at most per call when few of them match its filter.
const FEED_SCAN_LIMIT: usize = 4096;

/// In memory, appends take positions under one lock, so position order is commit order:
/// a checkpoint is the global position (`Checkpoint::from_parts(0, position)`).
impl EventFeed for MemoryStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let log = self.log.read();
        let (_, after_position) = after.parts();
        let start = usize::try_from(after_position).unwrap_or(usize::MAX).min(log.events.len());
        let mut batch = FeedBatch { events: Vec::new(), next: after, more: false };
        let mut scanned = 0;
        for envelope in log.events[start..].iter().take(FEED_SCAN_LIMIT.max(limit)) {
            let at = checkpoint(envelope.global_position);
            if filter.matches(&envelope.stream_id, &envelope.event_type) {
                batch.events.push(FeedEvent::new(at, envelope.clone()));
            }
            batch.next = at;
            scanned += 1;
            if batch.events.len() >= limit.max(1) {
                break;
            }
        }
        batch.more = start.saturating_add(scanned) < log.events.len();
        Ok(batch)
    }

    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        let receiver = self.head.subscribe();
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            Some(((), receiver))
        })
        .boxed())
    }

    /// Commit order is position order here: the checkpoint is the position.
    async fn checkpoint_of(&self, event: &annals::Envelope) -> Result<Checkpoint, StoreError> {
        Ok(checkpoint(event.global_position))
    }
}
