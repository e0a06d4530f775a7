//! Consumers whose checkpoint lives in a [`CheckpointStore`]: [`ExactlyOnce`] and
//! [`AtLeastOnce`].

use uuid::Uuid;

use crate::projection::{BoxError, Projection};
use crate::store::{Checkpoint, CheckpointStore, FeedEvent, Filter, StoreError};
use crate::subscription::poison::{held_behind, Disposition, ParkedIndex};
use crate::subscription::sink::{pending, project};
use crate::subscription::{Parked, PoisonPolicy, RetryReport, Sink, SinkError};

/// Another instance moved the consumer's checkpoint (or it was reset) while this one was
/// running: this instance does not apply the batch on top of it.
#[derive(Debug, thiserror::Error)]
#[error(
    "consumer `{name}`: its checkpoint is at {found:?}, but this instance last saw {expected:?}; another instance \
     is processing it (or it was reset), so this one continues from the stored checkpoint instead of applying \
     events twice"
)]
pub struct CheckpointMoved {
    /// The consumer.
    pub name: String,
    /// The checkpoint this instance last saw (`None`: none stored).
    pub expected: Option<Checkpoint>,
    /// The stored checkpoint (`None`: deleted by a reset).
    pub found: Option<Checkpoint>,
}

/// One retried parked event: applied (`Ok(Ok(()))`), failed again (`Ok(Err(why))`), or
/// the store failed.
type RetryAttempt<'a> = futures::future::BoxFuture<'a, Result<Result<(), String>, StoreError>>;

/// What the checkpointed sinks share: the store, the consumer, its name and the
/// checkpoint this instance last read or wrote.
struct Checkpointed<P, K> {
    store: K,
    projection: P,
    name: String,
    /// `None` until loaded; then the stored checkpoint (`Some(None)`: none stored).
    seen: Option<Option<Checkpoint>>,
    policy: PoisonPolicy,
    /// The dead letters, once loaded.
    parked: Option<ParkedIndex>,
}

impl<P: Projection, K: CheckpointStore> Checkpointed<P, K> {
    fn new(store: K, projection: P) -> Self {
        Checkpointed {
            store,
            projection,
            name: P::NAME.to_owned(),
            seen: None,
            policy: PoisonPolicy::Stop,
            parked: None,
        }
    }

    /// The dead letters, loaded from the store the first time.
    async fn parked_index(&mut self) -> Result<&mut ParkedIndex, SinkError> {
        if self.parked.is_none() {
            let parked =
                self.store.parked(&self.name).await.map_err(|e| self.storage("loading the parked events", e))?;
            self.parked = Some(ParkedIndex::new(parked.iter()));
        }
        Ok(self.parked.get_or_insert_with(ParkedIndex::default))
    }

    /// [`Sink::park`]: sets `event` aside in a transaction of its own.
    async fn park(&mut self, event: &FeedEvent, reason: &str) -> Result<bool, SinkError> {
        if self.policy == PoisonPolicy::Stop {
            return Ok(false);
        }
        let parked = Parked::new(event.clone(), reason, None);
        let mut transaction = self.store.begin().await.map_err(|e| self.storage("parking an event", e))?;
        self.store
            .park(&mut transaction, &self.name, &parked)
            .await
            .map_err(|e| self.storage("parking an event", e))?;
        self.store.commit(transaction).await.map_err(|e| self.storage("parking an event", e))?;
        self.parked_index().await?.add(&parked);
        Ok(true)
    }

    /// Drops the dead letter `event_id` (applied, or skipped by an operator).
    async fn unpark(&mut self, event_id: Uuid) -> Result<bool, StoreError> {
        let mut transaction = self.store.begin().await?;
        let removed = self.store.unpark(&mut transaction, &self.name, event_id).await?;
        self.store.commit(transaction).await?;
        self.parked = None;
        Ok(removed)
    }

    /// Runs `apply` on every parked event in feed order (it applies the event and removes
    /// its dead letter, or says why it failed again); keeps a stream's events parked behind
    /// the first that still fails when the policy is [`PoisonPolicy::ParkStream`]. What
    /// [`ExactlyOnce::retry_parked`] and [`AtLeastOnce::retry_parked`] share.
    async fn retry_parked(
        &mut self,
        apply: impl for<'a> Fn(&'a mut Self, &'a FeedEvent) -> RetryAttempt<'a>,
    ) -> Result<RetryReport, StoreError> {
        let mut report = RetryReport::default();
        let mut failed = ParkedIndex::default();
        for mut parked in self.store.parked(&self.name).await? {
            let outcome = match failed.disposition(self.policy, &parked.event) {
                Disposition::HoldBehind(first) => Err((held_behind(first), Some(first))),
                Disposition::Apply | Disposition::Skip => apply(self, &parked.event).await?.map_err(|why| (why, None)),
            };
            match outcome {
                Ok(()) => report.applied.push(parked.event.envelope.event_id),
                Err((reason, behind)) => {
                    parked.reason = reason;
                    parked.behind = behind;
                    self.repark(&parked).await?;
                    failed.add(&parked);
                    report.still_parked.push(parked);
                }
            }
        }
        self.parked = None;
        Ok(report)
    }

    /// Parks `parked` again with its new reason.
    async fn repark(&mut self, parked: &Parked) -> Result<(), StoreError> {
        let mut transaction = self.store.begin().await?;
        self.store.park(&mut transaction, &self.name, parked).await?;
        self.store.commit(transaction).await
    }

    fn storage(&self, what: &'static str, error: StoreError) -> SinkError {
        SinkError::Store { consumer: self.name.clone(), what, source: error }
    }

    async fn seen(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        match self.seen {
            Some(seen) => Ok(seen),
            None => self.reload().await,
        }
    }

    async fn reload(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        let stored =
            self.store.load_checkpoint(&self.name).await.map_err(|e| self.storage("loading the checkpoint", e))?;
        self.seen = Some(stored);
        Ok(stored)
    }

    /// After `move_checkpoint` found another checkpoint than `expected`: continue from
    /// the stored one. Fine when it already covers `next`; otherwise an error, and the
    /// subscription's retry applies only the events after it.
    async fn moved(&mut self, expected: Option<Checkpoint>, next: Checkpoint) -> Result<(), SinkError> {
        let found = self.reload().await?;
        if found.is_some_and(|found| next <= found) {
            return Ok(());
        }
        Err(SinkError::Storage(Box::new(CheckpointMoved { name: self.name.clone(), expected, found })))
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        let name = self.name.clone();
        let stored = self.store.load_checkpoint(&name).await.map_err(|e| Box::new(e) as BoxError)?;
        self.seen = Some(stored);
        Ok(stored.unwrap_or(Checkpoint::START))
    }
}

macro_rules! checkpointed_accessors {
    () => {
        /// The same consumer with its checkpoint under `name` instead of
        /// [`Projection::NAME`], e.g. a new version built beside the old one.
        pub fn named(mut self, name: impl Into<String>) -> Self {
            self.inner.name = name.into();
            self.inner.seen = None;
            self.inner.parked = None;
            self
        }

        /// The consumer.
        pub fn projection(&self) -> &P {
            &self.inner.projection
        }

        /// The checkpoint's key.
        pub fn name(&self) -> &str {
            &self.inner.name
        }

        /// The stored checkpoint, `None` before the first batch or after a reset.
        pub async fn stored_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
            self.inner.store.load_checkpoint(&self.inner.name).await
        }

        /// The same consumer, handling poison events as `policy` says (default
        /// [`PoisonPolicy::Stop`]). Parked events live in the store, beside the checkpoint.
        pub fn poison(mut self, policy: PoisonPolicy) -> Self {
            self.inner.policy = policy;
            self
        }

        /// The events this consumer set aside, in feed order.
        pub async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
            self.inner.store.parked(&self.inner.name).await
        }

        /// Drops the parked event `event_id` without applying it (an operator's decision);
        /// false when it is not parked. Under [`PoisonPolicy::ParkStream`] the events held
        /// behind it stay parked until retried.
        pub async fn skip_parked(&mut self, event_id: Uuid) -> Result<bool, StoreError> {
            self.inner.unpark(event_id).await
        }

        /// Starts resetting the consumer so that its next run replays every event: begins
        /// a transaction and deletes the checkpoint in it. Clear the read model through
        /// [`Reset::connection`], then [`Reset::commit`]: checkpoint and read model are
        /// reset together, or (dropped without commit) not at all. Stop the consumer's
        /// running instances first (a runner of the adapter may check it for you).
        pub async fn reset(&mut self) -> Result<Reset<K>, StoreError> {
            self.inner.seen = None;
            let mut transaction = self.inner.store.begin().await?;
            self.inner.store.delete_checkpoint(&mut transaction, &self.inner.name).await?;
            Ok(Reset { store: self.inner.store.clone(), transaction })
        }
    };
}

/// A reset in progress: its transaction has deleted the checkpoint; clear the read model
/// in it, then [`commit`](Self::commit).
pub struct Reset<K: CheckpointStore> {
    store: K,
    transaction: K::Transaction,
}

impl<K: CheckpointStore> Reset<K> {
    /// The open transaction, to clear the read model in.
    pub fn connection(&mut self) -> &mut K::Connection {
        &mut self.transaction
    }

    /// Commits the reset.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.store.commit(self.transaction).await
    }
}

/// A [`Sink`] that applies a [`Projection`] exactly once: each batch's handlers run in
/// one transaction of the store's [`CheckpointStore`], which also moves the checkpoint,
/// so the read model and the checkpoint commit together.
///
/// The projection's context is the store's connection
/// (`#[projection(context = annals_postgres::PgConnection)]`, or `SqliteConnection`):
/// write the read model through it, not into fields of the projection (fields are not
/// rolled back with the transaction). Moving the checkpoint first locks it: a second
/// instance of the same consumer waits, then finds it moved and does not apply the batch
/// again ([`CheckpointMoved`]).
///
/// ```
/// use annals::prelude::*;
/// use annals::subscription::{ExactlyOnce, Subscription};
/// use annals_memory::MemoryStore;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Rang;
///
/// // On annals-memory the connection is `()`; on a database it is the open transaction.
/// #[derive(Projection, Default)]
/// #[projection(name = "rings", events(Rang))]
/// struct Rings;
///
/// impl On<Rang> for Rings {
///     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// # store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("Rang", 1, serde_json::json!(null))]).await?;
/// let rings = ExactlyOnce::new(store.clone(), Rings);
/// let reached = Subscription::new(store, rings).catch_up().await?;
/// # assert!(reached > annals::store::Checkpoint::START);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ExactlyOnce<P, K> {
    inner: Checkpointed<P, K>,
}

impl<P: Projection<Context = K::Connection>, K: CheckpointStore> ExactlyOnce<P, K> {
    /// Feeds `projection`, with its checkpoint in `store` under [`Projection::NAME`].
    pub fn new(store: K, projection: P) -> Self {
        ExactlyOnce { inner: Checkpointed::new(store, projection) }
    }

    checkpointed_accessors!();
}

impl<P: Projection<Context = K::Connection>, K: CheckpointStore> Sink for ExactlyOnce<P, K> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        self.inner.checkpoint().await
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let inner = &mut self.inner;
        let seen = inner.seen().await?;
        if seen.is_some_and(|seen| next <= seen) {
            return Ok(());
        }
        // The dead letters are read before the transaction begins: a store may allow one
        // open transaction at a time (the memory store's lock, a pool of one).
        inner.parked_index().await?;
        let mut transaction = inner.store.begin().await.map_err(|e| inner.storage("beginning a batch", e))?;
        let moved = inner
            .store
            .move_checkpoint(&mut transaction, &inner.name, seen, next)
            .await
            .map_err(|e| inner.storage("moving the checkpoint", e))?;
        if !moved {
            // Another instance (or our own commit whose reply was lost) moved it. The
            // stored checkpoint always matches the read model, since both commit together:
            // continue from it, never apply this batch on top of it.
            drop(transaction);
            return inner.moved(seen, next).await;
        }
        let applied = seen.unwrap_or(Checkpoint::START);
        let policy = inner.policy;
        let mut held = Vec::new();
        for event in pending(events, applied) {
            match inner.parked_index().await?.disposition(policy, event) {
                Disposition::Apply => project(&mut inner.projection, event, &mut transaction).await?,
                Disposition::Skip => {}
                Disposition::HoldBehind(first) => {
                    let parked = Parked::new(event.clone(), held_behind(first), Some(first));
                    inner
                        .store
                        .park(&mut transaction, &inner.name, &parked)
                        .await
                        .map_err(|e| inner.storage("parking an event", e))?;
                    held.push(parked);
                }
            }
        }
        inner.store.commit(transaction).await.map_err(|e| inner.storage("committing a batch", e))?;
        inner.seen = Some(Some(next));
        let index = inner.parked_index().await?;
        for parked in &held {
            index.add(parked);
        }
        Ok(())
    }

    async fn park(&mut self, event: &FeedEvent, reason: &str) -> Result<bool, SinkError> {
        self.inner.park(event, reason).await
    }
}

impl<P: Projection<Context = K::Connection>, K: CheckpointStore> ExactlyOnce<P, K> {
    /// Runs the handler of every parked event again, in feed order (after a fix), each in
    /// a transaction that also removes its dead letter; those it applies are no longer
    /// parked. Under [`PoisonPolicy::ParkStream`], a stream's events stay parked behind
    /// the first of them that still fails.
    pub async fn retry_parked(&mut self) -> Result<RetryReport, StoreError> {
        self.inner
            .retry_parked(|inner, event| {
                Box::pin(async move {
                    let mut transaction = inner.store.begin().await?;
                    match project(&mut inner.projection, event, &mut transaction).await {
                        Ok(()) => {
                            inner.store.unpark(&mut transaction, &inner.name, event.envelope.event_id).await?;
                            inner.store.commit(transaction).await?;
                            Ok(Ok(()))
                        }
                        Err(error) => Ok(Err(error.to_string())),
                    }
                })
            })
            .await
    }
}

/// A [`Sink`] for consumers with effects outside the store (email, other services): runs
/// a [`Projection`] with `context = ()` and moves its checkpoint in the store's
/// [`CheckpointStore`] after each event whose handler succeeded.
///
/// At least once: after a crash between an effect and its checkpoint, that event is
/// handled again. Use the envelope's `event_id` as the idempotency key towards the other
/// service. A failing handler leaves the checkpoint at the event before it; the
/// subscription retries with back-off and stops with a visible error if it keeps failing.
///
/// ```
/// use annals::prelude::*;
/// use annals::subscription::{AtLeastOnce, Subscription};
/// use annals_memory::MemoryStore;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Rang;
///
/// #[derive(Projection)]
/// #[projection(name = "ring_mailer", events(Rang))]
/// struct RingMailer;
///
/// impl On<Rang> for RingMailer {
///     async fn on(&mut self, _: Rang, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
///         println!("mail about {}, idempotency key {}", envelope.stream_id, envelope.event_id);
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// # store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("Rang", 1, serde_json::json!(null))]).await?;
/// let mailer = AtLeastOnce::new(store.clone(), RingMailer);
/// Subscription::new(store, mailer).catch_up().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct AtLeastOnce<P, K> {
    inner: Checkpointed<P, K>,
    /// Save the checkpoint after every this many handled events (and at the end of each
    /// batch); 1 by default.
    every: usize,
}

impl<P: Projection<Context = ()>, K: CheckpointStore> AtLeastOnce<P, K> {
    /// Feeds `projection`, with its checkpoint in `store` under [`Projection::NAME`].
    pub fn new(store: K, projection: P) -> Self {
        AtLeastOnce { inner: Checkpointed::new(store, projection), every: 1 }
    }

    /// Saves the checkpoint after every `events` handled events and at the end of each
    /// batch, instead of after each one: one store transaction per `events` events, at the
    /// price of handling up to `events` events again after a crash (or a failed batch).
    /// For handlers that are idempotent anyway, such as a process runner's.
    pub fn checkpoint_every(mut self, events: usize) -> Self {
        self.every = events.max(1);
        self
    }

    checkpointed_accessors!();

    /// Moves the stored checkpoint from what this instance last saw to `to`.
    async fn save(&mut self, to: Checkpoint) -> Result<(), SinkError> {
        let inner = &mut self.inner;
        let seen = inner.seen().await?;
        let mut transaction = inner.store.begin().await.map_err(|e| inner.storage("saving the checkpoint", e))?;
        let moved = inner
            .store
            .move_checkpoint(&mut transaction, &inner.name, seen, to)
            .await
            .map_err(|e| inner.storage("saving the checkpoint", e))?;
        if !moved {
            drop(transaction);
            return inner.moved(seen, to).await;
        }
        inner.store.commit(transaction).await.map_err(|e| inner.storage("saving the checkpoint", e))?;
        inner.seen = Some(Some(to));
        Ok(())
    }
}

impl<P: Projection<Context = ()>, K: CheckpointStore> Sink for AtLeastOnce<P, K> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        self.inner.checkpoint().await
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let policy = self.inner.policy;
        let mut unsaved: Option<Checkpoint> = None;
        let mut handled = 0_usize;
        for event in events {
            let applied = self.inner.seen().await?.unwrap_or(Checkpoint::START);
            if pending(std::slice::from_ref(event), applied).next().is_none() {
                continue; // already handled
            }
            match self.inner.parked_index().await?.disposition(policy, event) {
                Disposition::Apply => project(&mut self.inner.projection, event, &mut ()).await?,
                Disposition::Skip => {}
                Disposition::HoldBehind(first) => {
                    let parked = Parked::new(event.clone(), held_behind(first), Some(first));
                    let inner = &mut self.inner;
                    let mut transaction =
                        inner.store.begin().await.map_err(|e| inner.storage("parking an event", e))?;
                    inner
                        .store
                        .park(&mut transaction, &inner.name, &parked)
                        .await
                        .map_err(|e| inner.storage("parking an event", e))?;
                    inner.store.commit(transaction).await.map_err(|e| inner.storage("parking an event", e))?;
                    inner.parked_index().await?.add(&parked);
                }
            }
            handled = handled.saturating_add(1);
            if handled.is_multiple_of(self.every) {
                self.save(event.checkpoint).await?;
                unsaved = None;
            } else {
                unsaved = Some(event.checkpoint);
            }
        }
        if let Some(last) = unsaved {
            self.save(last).await?;
        }
        // Past the events the filter skipped, too.
        if self.inner.seen().await?.is_none_or(|seen| seen < next) {
            self.save(next).await?;
        }
        Ok(())
    }

    async fn park(&mut self, event: &FeedEvent, reason: &str) -> Result<bool, SinkError> {
        self.inner.park(event, reason).await
    }
}

impl<P: Projection<Context = ()>, K: CheckpointStore> AtLeastOnce<P, K> {
    /// Runs the handler of every parked event again, in feed order (after a fix); those
    /// it handles are no longer parked. Under [`PoisonPolicy::ParkStream`], a stream's
    /// events stay parked behind the first of them that still fails.
    pub async fn retry_parked(&mut self) -> Result<RetryReport, StoreError> {
        self.inner
            .retry_parked(|inner, event| {
                Box::pin(async move {
                    match project(&mut inner.projection, event, &mut ()).await {
                        Ok(()) => inner.unpark(event.envelope.event_id).await.map(|_| Ok(())),
                        Err(error) => Ok(Err(error.to_string())),
                    }
                })
            })
            .await
    }
}
