//! Blue/green rebuilds of read models: [`BlueGreen`] and [`Rebuildable`].

use std::future::Future;

use crate::projection::{BoxError, Projection};
use crate::store::{Checkpoint, CheckpointStore, EventFeed, StoreError};
use crate::subscription::{ExactlyOnce, Subscription, SubscriptionError, SubscriptionOptions};

/// A projection that can be built as a new generation next to the live one. Its value
/// knows its generation (the `build` function of [`BlueGreen::rebuild`] receives it) and
/// writes that generation's storage only.
pub trait Rebuildable: Projection {
    /// In the switch's transaction: points readers at this generation's storage (replace
    /// a view, a synonym, a row readers look up). Runs only once this generation has
    /// caught up; commits together with the live pointer.
    fn publish<'a>(&'a self, context: &'a mut Self::Context) -> impl Future<Output = Result<(), BoxError>> + Send + 'a;

    /// Drops the storage of the older generation `generation`, which readers no longer
    /// use and whose consumer no longer runs.
    fn retire<'a>(
        &'a self,
        generation: u64,
        context: &'a mut Self::Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'a;
}

/// A blue/green rebuild failed. Nothing readers see changed, unless the error says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// The store failed reading or moving the live pointer, or committing the switch.
    #[error("blue/green `{name}`: {what} failed: {source}")]
    Store {
        /// The projection.
        name: String,
        /// What it was doing.
        what: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Building the projection of the new generation (creating its storage) failed.
    #[error("blue/green `{name}`: building generation {generation} failed: {source}")]
    Build {
        /// The projection.
        name: String,
        /// The generation being built.
        generation: u64,
        /// What `build` reported.
        #[source]
        source: BoxError,
    },
    /// The new generation's consumer stopped while catching up (a handler that keeps
    /// failing, say); readers still use the old generation. Running the rebuild again
    /// resumes from the new generation's checkpoint.
    #[error("blue/green `{name}`: generation {generation} stopped while catching up: {source}")]
    CatchUp {
        /// The projection.
        name: String,
        /// The generation being built.
        generation: u64,
        /// Why its subscription stopped.
        #[source]
        source: Box<SubscriptionError>,
    },
    /// [`Rebuildable::publish`] or [`Rebuildable::retire`] failed; its transaction was
    /// rolled back, so readers use what they used before.
    #[error("blue/green `{name}`: {what} generation {generation} failed: {source}")]
    Projection {
        /// The projection.
        name: String,
        /// `publishing` or `retiring`.
        what: &'static str,
        /// The generation.
        generation: u64,
        /// What the projection reported.
        #[source]
        source: BoxError,
    },
    /// Another rebuild switched readers first (the live generation is no longer the one
    /// this rebuild started from): this one did not switch. Retire its generation, or
    /// rebuild again from the new live one.
    #[error(
        "blue/green `{name}`: readers were switched to generation {found} while generation {generation} was \
         built from generation {expected}; this rebuild did not switch them"
    )]
    Superseded {
        /// The projection.
        name: String,
        /// The generation this rebuild built.
        generation: u64,
        /// The live generation it started from.
        expected: u64,
        /// The live generation now.
        found: u64,
    },
    /// Retiring the generation readers use now is refused.
    #[error(
        "blue/green `{name}`: generation {generation} is the one readers use; switch to another before retiring it"
    )]
    RetiringLive {
        /// The projection.
        name: String,
        /// The live generation.
        generation: u64,
    },
}

/// A rebuild that switched readers: the new generation's subscription, caught up (run it
/// to keep following), and the generations before and after.
pub struct Rebuilt<F, P, K> {
    /// The new generation's consumer; [`Subscription::run`] keeps it following.
    pub subscription: Subscription<F, ExactlyOnce<P, K>>,
    /// The generation readers use now.
    pub generation: u64,
    /// The generation they used before: stop its consumer, then [`BlueGreen::retire`] it.
    pub previous: u64,
}

/// The generations of one projection in a [`CheckpointStore`]: which one readers use,
/// rebuilding the next one beside it, retiring old ones.
///
/// Each generation of a projection has its own storage (tables, a schema) and its own
/// checkpoint: generation 1 under the projection's name (so a projection that was never
/// rebuilt is generation 1 as it is), generation `n` under `{name}@g{n}`. Which generation
/// readers use is itself a row of the store's [`CheckpointStore`], under `{name}@live`
/// (checkpoint `0:n`; none means 1), moved with the same fencing as any checkpoint: two
/// rebuilds racing to switch cannot both win.
///
/// The switch runs [`Rebuildable::publish`] (point readers at the new generation, e.g.
/// `CREATE OR REPLACE VIEW cart_summaries AS SELECT * FROM cart_summaries_g2`) in the
/// same transaction that moves the live pointer: readers see the old generation, complete,
/// until the commit, and the new one, caught up, after it, never an empty or half-built
/// model. The new generation keeps following live from there (the
/// [`Subscription`] [`BlueGreen::rebuild`] returns); once the old generation's consumer
/// is stopped, [`BlueGreen::retire`] drops its storage and checkpoint.
///
/// ```
/// use annals::prelude::*;
/// use annals::subscription::{BlueGreen, Rebuildable};
/// use annals_memory::MemoryStore;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Rang;
///
/// // On a database the context is the open transaction, and each generation has tables
/// // of its own; annals-memory's connection is `()`.
/// #[derive(Projection)]
/// #[projection(name = "rings", events(Rang))]
/// struct Rings { generation: u64 }
///
/// impl On<Rang> for Rings {
///     async fn on(&mut self, _: Rang, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
/// }
///
/// impl Rebuildable for Rings {
///     async fn publish(&self, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
///     async fn retire(&self, _generation: u64, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// # store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("Rang", 1, serde_json::json!(null))]).await?;
/// let rings = BlueGreen::new(store.clone(), "rings");
/// assert_eq!(rings.live().await?, 1);
/// let rebuilt = rings.rebuild(store.clone(), |generation| async move { Ok(Rings { generation }) }).await?;
/// assert_eq!((rebuilt.generation, rebuilt.previous), (2, 1));
/// assert_eq!(rings.live().await?, 2);
/// // Stop generation 1's consumer, then drop what it kept:
/// rings.retire(rebuilt.subscription.sink().projection(), 1).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct BlueGreen<K> {
    store: K,
    name: String,
    options: SubscriptionOptions,
}

impl<K: CheckpointStore> BlueGreen<K> {
    /// The generations of the projection named `name` ([`Projection::NAME`]) in `store`.
    pub fn new(store: K, name: impl Into<String>) -> Self {
        BlueGreen { store, name: name.into(), options: SubscriptionOptions::default() }
    }

    /// The tuning of the rebuilding subscription (batch size, retries).
    pub fn options(mut self, options: SubscriptionOptions) -> Self {
        self.options = options;
        self
    }

    /// The key of the live pointer: `{name}@live`.
    pub fn pointer(&self) -> String {
        format!("{}@live", self.name)
    }

    /// The consumer (checkpoint key) of `generation`: the projection's name for 1,
    /// `{name}@g{generation}` after it.
    pub fn consumer(&self, generation: u64) -> String {
        if generation <= 1 {
            self.name.clone()
        } else {
            format!("{}@g{generation}", self.name)
        }
    }

    /// The generation readers use: 1 until a rebuild switched them.
    pub async fn live(&self) -> Result<u64, RebuildError> {
        Ok(self.stored_live().await?.map_or(1, generation_of))
    }

    async fn stored_live(&self) -> Result<Option<Checkpoint>, RebuildError> {
        self.store.load_checkpoint(&self.pointer()).await.map_err(|e| self.storage("reading the live generation", e))
    }

    /// The new generation's consumer, not yet caught up: the next generation after the live
    /// one, built by `build(generation)` (create its storage there), with its checkpoint
    /// under [`consumer`](Self::consumer). A rebuild interrupted before resumes from that
    /// checkpoint. Catch it up (watching its [`Subscription::status`]), then
    /// [`switch`](Self::switch); or let [`rebuild`](Self::rebuild) do both.
    pub async fn prepare<F, P, B, Fut>(&self, feed: F, build: B) -> Result<Prepared<F, P, K>, RebuildError>
    where
        F: EventFeed,
        P: Rebuildable<Context = K::Connection>,
        B: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<P, BoxError>> + Send,
    {
        let from = self.stored_live().await?;
        let live = from.map_or(1, generation_of);
        let generation = live.checked_add(1).ok_or_else(|| RebuildError::Build {
            name: self.name.clone(),
            generation: live,
            source: "no generation after u64::MAX".into(),
        })?;
        let projection = build(generation).await.map_err(|source| RebuildError::Build {
            name: self.name.clone(),
            generation,
            source,
        })?;
        let sink = ExactlyOnce::new(self.store.clone(), projection).named(self.consumer(generation));
        let subscription = Subscription::new(feed, sink).options(self.options);
        Ok(Prepared { subscription, generation, from })
    }

    /// Catches `prepared` up once more, then, in one transaction, publishes it
    /// ([`Rebuildable::publish`]) and moves the live pointer to its generation. Events
    /// committed after that last catch-up reach the new generation as its subscription
    /// goes on.
    pub async fn switch<F, P>(&self, prepared: Prepared<F, P, K>) -> Result<Rebuilt<F, P, K>, RebuildError>
    where
        F: EventFeed,
        P: Rebuildable<Context = K::Connection>,
    {
        let Prepared { mut subscription, generation, from } = prepared;
        self.catch_up(&mut subscription, generation).await?;
        let to = Checkpoint::from_parts(0, generation);
        let mut transaction = self.store.begin().await.map_err(|e| self.storage("beginning the switch", e))?;
        subscription.sink().projection().publish(&mut transaction).await.map_err(|source| {
            RebuildError::Projection { name: self.name.clone(), what: "publishing", generation, source }
        })?;
        let moved = self
            .store
            .move_checkpoint(&mut transaction, &self.pointer(), from, to)
            .await
            .map_err(|e| self.storage("moving the live pointer", e))?;
        if !moved {
            drop(transaction);
            let found = self.live().await?;
            return Err(RebuildError::Superseded {
                name: self.name.clone(),
                generation,
                expected: from.map_or(1, generation_of),
                found,
            });
        }
        self.store.commit(transaction).await.map_err(|e| self.storage("committing the switch", e))?;
        let previous = from.map_or(1, generation_of);
        tracing::info!(projection = %self.name, generation, previous, "readers switched to the rebuilt generation");
        Ok(Rebuilt { subscription, generation, previous })
    }

    /// One call: [`prepare`](Self::prepare) the next generation, catch it up while the
    /// live one serves, [`switch`](Self::switch) readers to it.
    pub async fn rebuild<F, P, B, Fut>(&self, feed: F, build: B) -> Result<Rebuilt<F, P, K>, RebuildError>
    where
        F: EventFeed,
        P: Rebuildable<Context = K::Connection>,
        B: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<P, BoxError>> + Send,
    {
        let mut prepared = self.prepare(feed, build).await?;
        self.catch_up(&mut prepared.subscription, prepared.generation).await?;
        self.switch(prepared).await
    }

    /// Drops an older generation: [`Rebuildable::retire`] and its checkpoint, in one
    /// transaction. Stop its consumer first (it would fail on the dropped storage and
    /// stop). Refuses the live generation.
    pub async fn retire<P>(&self, projection: &P, generation: u64) -> Result<(), RebuildError>
    where
        P: Rebuildable<Context = K::Connection>,
    {
        if generation == self.live().await? {
            return Err(RebuildError::RetiringLive { name: self.name.clone(), generation });
        }
        let mut transaction = self.store.begin().await.map_err(|e| self.storage("beginning the retirement", e))?;
        projection.retire(generation, &mut transaction).await.map_err(|source| RebuildError::Projection {
            name: self.name.clone(),
            what: "retiring",
            generation,
            source,
        })?;
        self.store
            .delete_checkpoint(&mut transaction, &self.consumer(generation))
            .await
            .map_err(|e| self.storage("deleting the retired checkpoint", e))?;
        self.store.commit(transaction).await.map_err(|e| self.storage("committing the retirement", e))
    }

    /// Catches the consumer of `generation` up.
    async fn catch_up<F, P>(
        &self,
        subscription: &mut Subscription<F, ExactlyOnce<P, K>>,
        generation: u64,
    ) -> Result<(), RebuildError>
    where
        F: EventFeed,
        P: Rebuildable<Context = K::Connection>,
    {
        subscription.catch_up().await.map(|_| ()).map_err(|source| RebuildError::CatchUp {
            name: self.name.clone(),
            generation,
            source: Box::new(source),
        })
    }

    fn storage(&self, what: &'static str, source: StoreError) -> RebuildError {
        RebuildError::Store { name: self.name.clone(), what, source }
    }
}

/// A new generation, built and subscribed, not yet switched to: what
/// [`BlueGreen::prepare`] returns.
pub struct Prepared<F, P, K> {
    /// Its consumer: catch it up ([`Subscription::catch_up`]), watch its
    /// [`status`](Subscription::status).
    pub subscription: Subscription<F, ExactlyOnce<P, K>>,
    /// Its generation.
    pub generation: u64,
    /// The live pointer it was built against.
    from: Option<Checkpoint>,
}

/// The generation a live pointer names.
fn generation_of(pointer: Checkpoint) -> u64 {
    pointer.parts().1
}
