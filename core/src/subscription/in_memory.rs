//! [`InMemoryProjection`]: a read model in process memory with its checkpoint beside it.

use std::sync::Arc;

use crate::projection::{BoxError, Projection};
use crate::store::{Checkpoint, EventFeed, FeedEvent, Filter};
use crate::subscription::sink::apply_events;
use crate::subscription::{Sink, SinkError, Subscription, SubscriptionError};

/// A projection whose read model lives in process memory, with its checkpoint beside it:
/// each event's effect and checkpoint change together under one lock, so a failed
/// handler never causes an event to be applied twice.
///
/// Clones share the same read model: keep one to query while a [`Subscription`] feeds
/// another.
pub struct InMemoryProjection<P> {
    inner: Arc<tokio::sync::RwLock<Tracked<P>>>,
}

struct Tracked<P> {
    projection: P,
    checkpoint: Checkpoint,
}

impl<P> Clone for InMemoryProjection<P> {
    fn clone(&self) -> Self {
        InMemoryProjection { inner: Arc::clone(&self.inner) }
    }
}

impl<P: Projection<Context = ()> + Sync> InMemoryProjection<P> {
    /// A projection starting from the first event.
    pub fn new(projection: P) -> Self {
        InMemoryProjection {
            inner: Arc::new(tokio::sync::RwLock::new(Tracked { projection, checkpoint: Checkpoint::START })),
        }
    }

    /// Read access to the read model.
    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, P> {
        tokio::sync::RwLockReadGuard::map(self.inner.read().await, |t| &t.projection)
    }

    /// The checkpoint of the last applied event.
    pub async fn checkpoint(&self) -> Checkpoint {
        self.inner.read().await.checkpoint
    }

    /// Rebuilds the read model from the first event into `fresh` while this one keeps
    /// serving reads, then swaps it in. A subscription feeding this projection may keep
    /// running: the final catch-up and the swap happen under the write lock, and the
    /// running subscription skips what the rebuilt model already holds.
    pub async fn rebuild<F: EventFeed>(&self, feed: F, fresh: P) -> Result<Checkpoint, SubscriptionError> {
        let shadow = InMemoryProjection::new(fresh);
        Subscription::new(feed.clone(), shadow.clone()).catch_up().await?;
        let mut live = self.inner.write().await;
        let reached = Subscription::new(feed, shadow.clone()).catch_up().await?;
        std::mem::swap(&mut *live, &mut *shadow.inner.write().await);
        Ok(reached)
    }
}

impl<P: Projection<Context = ()> + Sync> Sink for InMemoryProjection<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        Ok(self.inner.read().await.checkpoint)
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let mut tracked = self.inner.write().await;
        let Tracked { projection, checkpoint } = &mut *tracked;
        apply_events(projection, &mut (), events, checkpoint).await?;
        *checkpoint = (*checkpoint).max(next);
        Ok(())
    }
}
