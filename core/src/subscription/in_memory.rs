//! [`InMemoryProjection`]: a read model in process memory with its checkpoint beside it.

use std::sync::Arc;

use uuid::Uuid;

use crate::projection::{BoxError, Projection};
use crate::store::{Checkpoint, EventFeed, FeedEvent, Filter};
use crate::subscription::poison::{held_behind, Disposition, ParkedIndex};
use crate::subscription::sink::{pending, project};
use crate::subscription::WaitError;
use crate::subscription::{Parked, PoisonPolicy, RetryReport, Sink, SinkError, Subscription, SubscriptionError};

/// A projection whose read model lives in process memory, with its checkpoint beside it:
/// each event's effect and checkpoint change together under one lock, so a failed
/// handler never causes an event to be applied twice.
///
/// Clones share the same read model: keep one to query while a [`Subscription`] feeds
/// another. Poison events are handled as its [`PoisonPolicy`] says; parked ones are kept
/// beside the read model.
pub struct InMemoryProjection<P> {
    inner: Arc<tokio::sync::RwLock<Tracked<P>>>,
    policy: PoisonPolicy,
}

struct Tracked<P> {
    projection: P,
    checkpoint: Checkpoint,
    parked: Vec<Parked>,
}

impl<P> Clone for InMemoryProjection<P> {
    fn clone(&self) -> Self {
        InMemoryProjection { inner: Arc::clone(&self.inner), policy: self.policy }
    }
}

impl<P: Projection<Context = ()> + Sync> InMemoryProjection<P> {
    /// A projection starting from the first event, stopping at a poison event.
    pub fn new(projection: P) -> Self {
        InMemoryProjection {
            inner: Arc::new(tokio::sync::RwLock::new(Tracked {
                projection,
                checkpoint: Checkpoint::START,
                parked: Vec::new(),
            })),
            policy: PoisonPolicy::Stop,
        }
    }

    /// The same projection, handling poison events as `policy` says.
    pub fn poison(mut self, policy: PoisonPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The events set aside, in feed order.
    pub async fn parked(&self) -> Vec<Parked> {
        self.inner.read().await.parked.clone()
    }

    /// Runs the handler of every parked event again, in feed order (after a fix); those it
    /// applies are no longer parked. Under [`PoisonPolicy::ParkStream`], a stream's events
    /// stay parked behind the first of them that still fails.
    ///
    /// A parked *damaged* event ([`FeedEvent::damage`](crate::store::FeedEvent::damage))
    /// is kept as it was read, so it stays parked here even after its row is repaired:
    /// [`rebuild`](Self::rebuild) the read model (or restart, which rebuilds it) to read
    /// the repaired row. The database sinks read a parked event again when retrying it.
    pub async fn retry_parked(&self) -> RetryReport {
        let mut tracked = self.inner.write().await;
        let Tracked { projection, parked, .. } = &mut *tracked;
        let mut report = RetryReport::default();
        let mut failed = ParkedIndex::default();
        for mut dead in std::mem::take(parked) {
            if let Disposition::HoldBehind(first) = failed.disposition(self.policy, &dead.event) {
                dead.reason = held_behind(first);
                dead.behind = Some(first);
                failed.add(&dead);
                report.still_parked.push(dead);
                continue;
            }
            match project(projection, &dead.event, &mut ()).await {
                Ok(()) => report.applied.push(dead.event.envelope.event_id),
                Err(error) => {
                    dead.reason = error.to_string();
                    dead.behind = None;
                    failed.add(&dead);
                    report.still_parked.push(dead);
                }
            }
        }
        parked.clone_from(&report.still_parked);
        report
    }

    /// Drops the parked event `event_id` without applying it (an operator's decision);
    /// false when it is not parked. Under [`PoisonPolicy::ParkStream`] the events held
    /// behind it stay parked until retried.
    pub async fn skip_parked(&self, event_id: Uuid) -> bool {
        let mut tracked = self.inner.write().await;
        let before = tracked.parked.len();
        tracked.parked.retain(|p| p.event.envelope.event_id != event_id);
        tracked.parked.len() != before
    }

    /// Read access to the read model.
    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, P> {
        tokio::sync::RwLockReadGuard::map(self.inner.read().await, |t| &t.projection)
    }

    /// The checkpoint of the last applied event.
    pub async fn checkpoint(&self) -> Checkpoint {
        self.inner.read().await.checkpoint
    }

    /// Waits at most `timeout` until the read model has applied every event up to
    /// `target` (see [`EventFeed::checkpoint_of`](crate::store::EventFeed::checkpoint_of)):
    /// read-your-writes. Returns its checkpoint then.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::store::EventFeed;
    /// # use annals::subscription::{InMemoryProjection, Subscription};
    /// # use std::time::Duration;
    /// # #[derive(Projection, Default)]
    /// # #[projection(events(Rang))]
    /// # struct Rings(u32);
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// # pub struct Rang;
    /// # impl On<Rang> for Rings {
    /// #     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { self.0 += 1; Ok(()) }
    /// # }
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let store = annals_memory::MemoryStore::new();
    /// let rings = InMemoryProjection::new(Rings::default());
    /// let mut following = Subscription::new(store.clone(), rings.clone());
    /// tokio::spawn(async move { following.run().await });
    /// let written = store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("Rang", 1, serde_json::json!(null))]).await?;
    /// rings.wait_for(store.checkpoint_of(&written[0]).await?, Duration::from_secs(5)).await?;
    /// assert_eq!(rings.read().await.0, 1); // the read model reflects the write
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_for(&self, target: Checkpoint, timeout: std::time::Duration) -> Result<Checkpoint, WaitError> {
        crate::subscription::wait::wait_until(P::NAME, target, timeout, || self.checkpoint()).await
    }

    /// Rebuilds the read model from the first event into `fresh` while this one keeps
    /// serving reads, then swaps it in. A subscription feeding this projection may keep
    /// running: the final catch-up and the swap happen under the write lock, and the
    /// running subscription skips what the rebuilt model already holds.
    pub async fn rebuild<F: EventFeed>(&self, feed: F, fresh: P) -> Result<Checkpoint, SubscriptionError> {
        let shadow = InMemoryProjection::new(fresh).poison(self.policy);
        Subscription::new(feed.clone(), shadow.clone()).catch_up().await?;
        let mut live = self.inner.write().await;
        let reached = Subscription::new(feed, shadow.clone()).catch_up().await?;
        // The rebuilt model keeps this projection's poison policy (and its own dead letters).
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
        let Tracked { projection, checkpoint, parked } = &mut *tracked;
        let mut index = ParkedIndex::new(parked.iter());
        for event in pending(events, *checkpoint) {
            match index.disposition(self.policy, event) {
                Disposition::Apply => project(projection, event, &mut ()).await?,
                Disposition::Skip => {}
                Disposition::HoldBehind(first) => {
                    let held = Parked::new(event.clone(), held_behind(first), Some(first));
                    index.add(&held);
                    parked.push(held);
                }
            }
            *checkpoint = event.checkpoint;
        }
        *checkpoint = (*checkpoint).max(next);
        Ok(())
    }

    async fn park(&mut self, event: &FeedEvent, reason: &str) -> Result<bool, SinkError> {
        if self.policy == PoisonPolicy::Stop {
            return Ok(false);
        }
        let mut tracked = self.inner.write().await;
        if !tracked.parked.iter().any(|p| p.event.envelope.event_id == event.envelope.event_id) {
            tracked.parked.push(Parked::new(event.clone(), reason, None));
        }
        Ok(true)
    }
}
