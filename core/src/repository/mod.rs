//! Command execution: load an aggregate, decide, append with optimistic concurrency,
//! retry on conflict.

use std::marker::PhantomData;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use tracing::Instrument;

use chrono::{DateTime, Utc};
use uuid::Uuid;

mod cache;
mod idempotency;
mod pipeline;
mod queue;

use self::cache::StateCache;
use self::idempotency::KeyedIds;
use self::queue::StreamQueue;
use crate::aggregate::{Aggregate, Handle};
use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::event::{DecodeError, EventSet};
use crate::retry::RetryPolicy;
use crate::snapshot::{Snapshot, SnapshotPolicy};
use crate::store::{EventStore, ExpectedVersion, SnapshotStore, StoreError, StoredSnapshot, VersionRange};
use crate::telemetry;

/// An aggregate's state and the stream version it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state after applying every loaded event.
    pub state: A,
    /// The version of the last applied event (0 for a new aggregate).
    pub version: u64,
}

/// The outcome of a successful command.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<A> {
    /// The aggregate's state after the new events.
    pub state: A,
    /// The stream version after the new events.
    pub version: u64,
    /// The stored new events; empty when the command decided nothing needed to change.
    pub events: Vec<Envelope>,
    /// How many times the command was decided: 1 unless it met a conflict; 0 when an
    /// idempotency key showed it was executed before and `events` are that execution's.
    pub attempts: u32,
}

/// Loading an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Executing a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError<E> {
    /// The aggregate rejected the command with its domain error.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Every attempt met a concurrent writer in another process (writers in this process
    /// take turns and never conflict).
    #[error(
        "stream `{stream}` kept changing under the command: gave up after {attempts} attempts in {waited:?}; \
         retry later, or allow more with RetryPolicy::budget / max_attempts"
    )]
    Conflict {
        /// The contended stream.
        stream: String,
        /// How many times the command was decided.
        attempts: u32,
        /// How long the command tried.
        waited: std::time::Duration,
    },
    /// A new event could not be serialized.
    #[error("event `{event_type}` for stream `{stream}` does not serialize to JSON: {source}")]
    Encode {
        /// The stream.
        stream: String,
        /// The event's stored name.
        event_type: &'static str,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event of the aggregate could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The store failed (loading or appending) for a reason other than a conflict, after
    /// the retries the [`RetryPolicy`] allows for transient failures.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<LoadError> for ExecuteError<E> {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Store(e) => ExecuteError::Store(e),
            LoadError::Decode(e) => ExecuteError::Decode(e),
        }
    }
}

impl<E> ExecuteError<E> {
    /// The domain error, if the aggregate rejected the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            ExecuteError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// Loads aggregates of type `A` from store `S` and executes commands on them.
///
/// Aggregate ids are mapped to streams as `{A::NAME}-{id}`, so a cart and an order may
/// share an id. Each command costs two store round trips: read the stream, append
/// ([`with_cache`](Self::with_cache) saves the read on aggregates used before;
/// [`create`](Self::create) on new ones).
///
/// Commands on the same stream through one repository (or its clones, which share it)
/// take turns: one loads, decides and appends while the others wait, so a hot stream
/// causes no conflicts within a process. With a cache the turn ends at the decision:
/// the commands that decide while an append is in flight go together in the next one
/// (see [`with_cache`](Self::with_cache)). Writers in other processes still conflict;
/// those conflicts are retried as the [`RetryPolicy`] allows.
///
/// ```
/// # use annals::prelude::*;
/// # use annals_memory::MemoryStore;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # pub struct Noted { text: String }
/// # pub struct Note { text: String }
/// # #[derive(Aggregate, Default)]
/// # #[aggregate(events(Noted), commands(Note))]
/// # pub struct Notebook { notes: Vec<String> }
/// # impl Apply<Noted> for Notebook { fn apply(&mut self, e: Noted) { self.notes.push(e.text) } }
/// # impl Handle<Note> for Notebook {
/// #     fn handle(&self, c: &Note) -> Decision<Self> { Ok(vec![Noted { text: c.text.clone() }.into()]) }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let notebooks = Repository::<Notebook, _>::new(MemoryStore::new())
///     .with_retry(RetryPolicy { max_attempts: 10, ..Default::default() });
/// let done = notebooks.execute("n1", Note { text: "hello".into() }).await?;
/// assert_eq!(done.version, 1);
/// assert_eq!(done.events[0].stream_id, "notebook-n1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # use annals::RetryPolicy;
/// ```
pub struct Repository<A, S> {
    store: S,
    retry: RetryPolicy,
    snapshots: Option<Snapshots<A, S>>,
    queue: StreamQueue<A>,
    cache: Option<StateCache<A>>,
    aggregate: PhantomData<fn() -> A>,
}

/// How a repository snapshots `A` in `S`: set by [`Repository::with_snapshots`], the only
/// place that knows `A: Snapshot` and `S: SnapshotStore`, so the rest of the repository
/// needs neither bound.
struct Snapshots<A, S> {
    policy: SnapshotPolicy,
    schema_version: u32,
    encode: fn(&A) -> Result<serde_json::Value, serde_json::Error>,
    decode: fn(&serde_json::Value) -> Result<A, serde_json::Error>,
    load: fn(S, String) -> SnapshotLoad,
    save: fn(S, StoredSnapshot) -> BoxFuture<'static, Result<(), StoreError>>,
}

/// A snapshot being loaded by [`SnapshotStore::load_snapshot`].
type SnapshotLoad = BoxFuture<'static, Result<Option<StoredSnapshot>, StoreError>>;

impl<A, S> Clone for Snapshots<A, S> {
    fn clone(&self) -> Self {
        Snapshots {
            policy: self.policy,
            schema_version: self.schema_version,
            encode: self.encode,
            decode: self.decode,
            load: self.load,
            save: self.save,
        }
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            retry: self.retry,
            snapshots: self.snapshots.clone(),
            queue: self.queue.clone(),
            cache: self.cache.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` with the default [`RetryPolicy`].
    pub fn new(store: S) -> Self {
        Repository {
            store,
            retry: RetryPolicy::default(),
            snapshots: None,
            queue: StreamQueue::default(),
            cache: None,
            aggregate: PhantomData,
        }
    }

    /// The same repository, loading from and taking snapshots under `policy`.
    /// See [`snapshot`](crate::snapshot).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self
    where
        A: Snapshot,
        S: SnapshotStore,
    {
        self.snapshots = Some(Snapshots {
            policy,
            schema_version: A::SNAPSHOT_VERSION,
            encode: |state| serde_json::to_value(state),
            decode: |value| A::deserialize(value),
            load: |store, stream| async move { store.load_snapshot(&stream).await }.boxed(),
            save: |store, snapshot| async move { store.save_snapshot(snapshot).await }.boxed(),
        });
        self
    }

    /// The same repository, keeping the state each command leaves behind for up to
    /// `capacity` aggregates (the least recently used go first), shared by its clones: the
    /// next command on one of them starts from it instead of loading the stream, so it
    /// costs one round trip (the append) instead of two.
    ///
    /// Safe with other writers: the append expects the cached version, so if another
    /// process appended meanwhile, the append is a conflict, the entry is dropped, and the
    /// command loads the stream and decides again.
    ///
    /// Commands on a hot stream are pipelined: a command decides on the state the
    /// commands before it will leave, without waiting for their append, and the commands
    /// that decide while one append is in flight are appended together in the next, in the
    /// order they decided, at most 64 to an append: one round trip and one commit for all
    /// of them. Each keeps its
    /// own outcome (its events, at its versions, and the state after them). What was
    /// decided on an append that then fails is decided again on what is stored (a
    /// rejection too: it is reported only once the events it was decided after are
    /// stored). If an append of several commands fails as a whole for another reason than
    /// a conflict or an outage (the store refuses one of its events), each of them runs
    /// again alone, so the refused one gets its own error and the others are stored. A
    /// command whose caller gives up while it waits for its append may still be stored,
    /// as any append already sent may. The metric `annals_command_batch_commands` shows
    /// how many commands each append carried. Loads ([`load`](Self::load) and the
    /// time-travel reads) never use the cache; a command with an
    /// [idempotency key](Metadata::idempotency_key) loads the stream, to find an earlier
    /// execution.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals_memory::MemoryStore;
    /// # #[derive(Aggregate, Default, Clone)]
    /// # #[aggregate(events(Noted))]
    /// # struct Notebook { notes: u32 }
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// # struct Noted;
    /// # impl Apply<Noted> for Notebook { fn apply(&mut self, _: Noted) { self.notes += 1; } }
    /// # struct Note;
    /// # impl Handle<Note> for Notebook {
    /// #     fn handle(&self, _: &Note) -> Decision<Self> { Ok(vec![Noted.into()]) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let notebooks = Repository::<Notebook, _>::new(MemoryStore::new()).with_cache(10_000);
    /// notebooks.execute("n1", Note).await?;
    /// let second = notebooks.execute("n1", Note).await?; // no load: one round trip
    /// assert_eq!((second.version, second.state.notes), (2, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn with_cache(mut self, capacity: usize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(StateCache::new(capacity, A::clone));
        self
    }

    /// The same repository with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Loads the current state of aggregate `id`, starting from its latest usable
    /// snapshot when snapshots are on.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        self.load_latest(&A::stream_id(id)).await
    }

    /// Loads aggregate `id` as it was at stream `version` (time travel): only events up
    /// to and including `version` are applied.
    pub async fn load_at_version(&self, id: &str, version: u64) -> Result<Loaded<A>, LoadError> {
        let mut loaded = Loaded { state: A::initial(), version: 0 };
        self.apply_stream(&A::stream_id(id), &mut loaded, (..=version).into(), None, &mut None).await?;
        Ok(loaded)
    }

    /// Loads aggregate `id` as it was at time `at` (time travel): only events recorded at
    /// or before `at` are applied.
    pub async fn load_as_of(&self, id: &str, at: DateTime<Utc>) -> Result<Loaded<A>, LoadError> {
        let mut loaded = Loaded { state: A::initial(), version: 0 };
        self.apply_stream(&A::stream_id(id), &mut loaded, VersionRange::ALL, Some(at), &mut None).await?;
        Ok(loaded)
    }

    /// The stored events of aggregate `id` within `versions` (`..` for all), oldest
    /// first: its audit trail.
    pub async fn history(&self, id: &str, versions: impl Into<VersionRange>) -> Result<Vec<Envelope>, StoreError> {
        let stream = A::stream_id(id);
        self.store.read_stream(&stream, versions.into()).try_collect().await
    }

    /// Loads the newest state of `stream`: from the latest usable snapshot, then the
    /// events after it. Takes a snapshot afterwards if the policy asks for one.
    async fn load_latest(&self, stream: &str) -> Result<Loaded<A>, LoadError> {
        self.load_latest_watching(stream, &mut None).await
    }

    /// [`load_latest`](Self::load_latest), collecting the events of an idempotent command
    /// (if `keyed`) among the events it reads.
    async fn load_latest_watching(&self, stream: &str, keyed: &mut Option<KeyedIds>) -> Result<Loaded<A>, LoadError> {
        let span = tracing::debug_span!(
            "annals.load",
            stream,
            from_snapshot = tracing::field::Empty,
            events = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        self.load_latest_in(stream, keyed, &span).instrument(span.clone()).await
    }

    /// [`load_latest_watching`](Self::load_latest_watching) inside its `span`.
    async fn load_latest_in(
        &self,
        stream: &str,
        keyed: &mut Option<KeyedIds>,
        span: &tracing::Span,
    ) -> Result<Loaded<A>, LoadError> {
        let snapshot = match &self.snapshots {
            Some(snapshots) => self.usable_snapshot(stream, snapshots).await?,
            None => None,
        };
        let mut applied = 0;
        let mut loaded = match snapshot {
            // Read from the snapshot's own version: its event must be there (not applied
            // again), or the snapshot is ahead of its stream and would make a wrong state.
            Some(mut loaded) => match self.apply_stream_after_snapshot(stream, &mut loaded, keyed).await? {
                Some(n) => {
                    applied = n;
                    Some(loaded)
                }
                None => {
                    tracing::warn!(
                        stream,
                        snapshot_version = loaded.version,
                        "the stream has no event at its snapshot's version: the snapshot is ignored and the \
                         state rebuilt from the events"
                    );
                    None
                }
            },
            None => None,
        }
        .unwrap_or(Loaded { state: A::initial(), version: 0 });
        let from_snapshot = loaded.version > 0;
        if !from_snapshot {
            if let Some(keyed) = keyed {
                keyed.forget();
            }
            applied = self.apply_stream(stream, &mut loaded, VersionRange::ALL, None, keyed).await?;
        }
        if let Some(snapshots) = &self.snapshots {
            if snapshots.policy.after_load(applied) {
                self.save_snapshot_in_background(stream, &loaded.state, loaded.version, snapshots);
            }
        }
        span.record("from_snapshot", from_snapshot);
        span.record("events", applied);
        span.record("version", loaded.version);
        Ok(loaded)
    }

    /// The stored snapshot of `stream` if it was taken by this schema version of `A` and
    /// still deserializes; `None` otherwise, so the caller rebuilds from events.
    async fn usable_snapshot(
        &self,
        stream: &str,
        snapshots: &Snapshots<A, S>,
    ) -> Result<Option<Loaded<A>>, StoreError> {
        let stored = match (snapshots.load)(self.store.clone(), stream.to_owned()).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(None),
            // A snapshot row annals did not write is only a lost shortcut: rebuild from events.
            Err(error @ StoreError::Corrupt { .. }) => {
                tracing::warn!(stream, %error, "the stored snapshot is unreadable: it is ignored and the state rebuilt from the events");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        if stored.schema_version != snapshots.schema_version {
            return Ok(None);
        }
        Ok((snapshots.decode)(&stored.state).ok().map(|state| Loaded { state, version: stored.stream_version }))
    }

    fn save_snapshot_in_background(&self, stream: &str, state: &A, version: u64, snapshots: &Snapshots<A, S>) {
        // Serializing needs the state, so it happens here; the write does not hold up the caller.
        let Ok(state) = (snapshots.encode)(state) else {
            return; // a state that does not serialize is simply not snapshotted
        };
        let snapshot = StoredSnapshot {
            stream_id: stream.to_owned(),
            stream_version: version,
            schema_version: snapshots.schema_version,
            state,
            taken_at: Utc::now(),
        };
        // A failed snapshot write loses nothing: the next load reads the events instead.
        tokio::spawn((snapshots.save)(self.store.clone(), snapshot));
    }

    /// The events of `stream` within `versions` to apply: whole when `whole` (event ids
    /// are read only to find an idempotency key's events, times only for a load as of a
    /// time), else the fold's read, which may leave those out.
    fn read_to_apply<'a>(
        &'a self,
        stream: &'a str,
        versions: VersionRange,
        whole: bool,
    ) -> crate::store::BoxStream<'a, Result<Envelope, crate::StoreError>> {
        if whole {
            self.store.read_stream(stream, versions)
        } else {
            self.store.read_stream_to_fold(stream, versions)
        }
    }

    /// Applies the events of `stream` within `versions` (recorded at or before `until`,
    /// if given) to `loaded`; returns how many it applied. Hands every event to `keyed`,
    /// if given.
    async fn apply_stream(
        &self,
        stream: &str,
        loaded: &mut Loaded<A>,
        versions: VersionRange,
        until: Option<DateTime<Utc>>,
        keyed: &mut Option<KeyedIds>,
    ) -> Result<u64, LoadError> {
        let mut applied: u64 = 0;
        let mut events = self.read_to_apply(stream, versions, keyed.is_some() || until.is_some());
        while let Some(envelope) = events.try_next().await? {
            if until.is_some_and(|until| envelope.recorded_at > until) {
                break;
            }
            apply_next(loaded, &envelope, keyed)?;
            applied = applied.saturating_add(1);
        }
        Ok(applied)
    }

    /// Applies the events of `stream` after the one at `loaded.version` (a snapshot's),
    /// which must be stored; `Ok(None)` when it is not (the snapshot is ahead of its
    /// stream), having applied nothing.
    async fn apply_stream_after_snapshot(
        &self,
        stream: &str,
        loaded: &mut Loaded<A>,
        keyed: &mut Option<KeyedIds>,
    ) -> Result<Option<u64>, LoadError> {
        let versions = VersionRange { from: loaded.version, to: None };
        let mut events = self.read_to_apply(stream, versions, keyed.is_some());
        match events.try_next().await? {
            Some(anchor) if anchor.stream_version == loaded.version => {}
            _ => return Ok(None),
        }
        let mut applied: u64 = 0;
        while let Some(envelope) = events.try_next().await? {
            apply_next(loaded, &envelope, keyed)?;
            applied = applied.saturating_add(1);
        }
        Ok(Some(applied))
    }

    /// Executes `command` on aggregate `id`: loads it, decides, and appends the new
    /// events expecting the loaded version. On a conflict it reloads and decides again,
    /// as the [`RetryPolicy`] allows.
    ///
    ///
    /// (It returns a boxed future rather than being an `async fn`: a command the aggregate
    /// does not handle is then one compile error at the call, instead of one each for the
    /// call, its future and its `.await`.)
    pub fn execute<'a, C: Send + 'a>(
        &'a self,
        id: &'a str,
        command: C,
    ) -> BoxFuture<'a, Result<Committed<A>, ExecuteError<A::Error>>>
    where
        A: Handle<C>,
    {
        self.execute_with(id, command, Metadata::default()).boxed()
    }

    /// Like [`execute`](Self::execute), stamping `metadata` (correlation and causation
    /// ids, user keys) on every new event.
    pub async fn execute_with<C>(
        &self,
        id: &str,
        command: C,
        metadata: Metadata,
    ) -> Result<Committed<A>, ExecuteError<A::Error>>
    where
        A: Handle<C>,
    {
        self.run(id, command, metadata, Start::Load).await
    }

    /// Executes `command`, which starts aggregate `id`, in one round trip: decides it on
    /// the aggregate's initial state without reading the stream, and appends expecting
    /// the stream to be empty. Use it where ids are new (a UUID minted for the order the
    /// command opens).
    ///
    /// It is never wrong, only slower when the guess is: if the stream has events after
    /// all, the append is refused and the command runs as [`execute`](Self::execute)
    /// runs it (load, decide again, append), at once, without a retry's back-off. A
    /// command the initial state rejects or leaves unchanged is decided again on the
    /// loaded stream too, since its events may decide otherwise. With an idempotency key
    /// a repeated `create` finds its events as `execute` does.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals_memory::MemoryStore;
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// # pub struct Noted { text: String }
    /// # pub struct Note { text: String }
    /// # #[derive(Aggregate, Default)]
    /// # #[aggregate(events(Noted), commands(Note))]
    /// # pub struct Notebook { notes: Vec<String> }
    /// # impl Apply<Noted> for Notebook { fn apply(&mut self, e: Noted) { self.notes.push(e.text) } }
    /// # impl Handle<Note> for Notebook {
    /// #     fn handle(&self, c: &Note) -> Decision<Self> { Ok(vec![Noted { text: c.text.clone() }.into()]) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let notebooks = Repository::<Notebook, _>::new(MemoryStore::new());
    /// let id = uuid::Uuid::now_v7().to_string();
    /// let created = notebooks.create(&id, Note { text: "first".into() }).await?;
    /// assert_eq!((created.version, created.attempts), (1, 1));
    /// // On a stream that exists, it loads and decides again: two decisions.
    /// let again = notebooks.create(&id, Note { text: "second".into() }).await?;
    /// assert_eq!((again.version, again.attempts), (2, 2));
    /// assert_eq!(again.state.notes, ["first", "second"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn create<'a, C: Send + 'a>(
        &'a self,
        id: &'a str,
        command: C,
    ) -> BoxFuture<'a, Result<Committed<A>, ExecuteError<A::Error>>>
    where
        A: Handle<C>,
    {
        self.create_with(id, command, Metadata::default()).boxed()
    }

    /// Like [`create`](Self::create), stamping `metadata` on every new event.
    pub async fn create_with<C>(
        &self,
        id: &str,
        command: C,
        metadata: Metadata,
    ) -> Result<Committed<A>, ExecuteError<A::Error>>
    where
        A: Handle<C>,
    {
        self.run(id, command, metadata, Start::AssumeNew).await
    }

    /// [`execute_with`](Self::execute_with) and [`create_with`](Self::create_with): the
    /// command's span and metrics around [`execute_in_turn`](Self::execute_in_turn).
    async fn run<C>(
        &self,
        id: &str,
        command: C,
        metadata: Metadata,
        start: Start,
    ) -> Result<Committed<A>, ExecuteError<A::Error>>
    where
        A: Handle<C>,
    {
        let stream = A::stream_id(id);
        let span = tracing::info_span!(
            telemetry::COMMAND_SPAN,
            aggregate = A::NAME,
            command = telemetry::short_type_name::<C>(),
            stream = %stream,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.execute_in_turn(stream, command, metadata, start).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(committed) => {
                span.record("attempts", committed.attempts);
                span.record("version", committed.version);
                if committed.events.is_empty() {
                    telemetry::Outcome::Unchanged
                } else {
                    telemetry::Outcome::Committed
                }
            }
            Err(ExecuteError::Rejected(_)) => telemetry::Outcome::Rejected,
            Err(ExecuteError::Conflict { .. }) => telemetry::Outcome::Conflict,
            Err(_) => telemetry::Outcome::Failed,
        };
        span.record("outcome", outcome.as_str());
        telemetry::command_finished(A::NAME, outcome, started.elapsed());
        result
    }

    /// [`execute_with`](Self::execute_with) inside its span: waits for the stream's turn,
    /// then loads (or takes the cached state), decides and appends.
    async fn execute_in_turn<C>(
        &self,
        stream: String,
        mut command: C,
        metadata: Metadata,
        start: Start,
    ) -> Result<Committed<A>, ExecuteError<A::Error>>
    where
        A: Handle<C>,
    {
        // Inside the command's span: its trace context goes into the events' metadata.
        let metadata = crate::trace_context::stamp(metadata);
        let mut keyed = KeyedIds::from_metadata(&stream, &metadata);
        // Every failed load, send and conflict counts against one policy (attempts and
        // time budget); `decisions` counts how often the command was decided.
        let mut tries = self.retry.start();
        let mut decisions = 0;
        // With a cache, commands on a stream are pipelined: each decides on the state the
        // ones before it leave, and those deciding while an append is in flight are
        // appended together (see `pipeline.rs`). Commands that need the stream as stored
        // (a `create`, a key to look for) run alone.
        if let (Start::Load, Some(cache), None) = (start, &self.cache, &keyed) {
            let pipelined = self.execute_pipelined(&stream, &mut command, &metadata, cache, &mut tries, &mut decisions);
            if let Some(result) = pipelined.await {
                return result;
            }
            // A batch it was in failed as a whole: it runs alone, so that its own error
            // (or the other commands' events) is what the store says of it alone.
            telemetry::command_retried(A::NAME, "alone");
        }
        // Commands on this stream through this repository (and its clones) take turns:
        // they never conflict with each other, only with other processes.
        let turn = self.queue.turn(&stream).await;
        turn.line().drained().await;
        // The cached state, on the first try of a command without a key; a conflict
        // drops it, and the retries load.
        let mut cached = match (start, &self.cache, &keyed) {
            (Start::AssumeNew, _, _) => None,
            (Start::Load, Some(cache), None) => cache.get(&stream),
            (Start::Load, _, _) => None,
        };
        // `create`: the first decision is on the initial state, unread; the retries load.
        let mut assume_new = start == Start::AssumeNew;
        loop {
            if let Some(keyed) = &mut keyed {
                keyed.forget();
            }
            let assumed = std::mem::take(&mut assume_new);
            let loaded = match cached.take() {
                Some((state, version)) => Ok(Loaded { state, version }),
                None if assumed => Ok(Loaded { state: A::initial(), version: 0 }),
                None => self.load_latest_watching(&stream, &mut keyed).await,
            };
            let Loaded { mut state, version } = match loaded {
                Err(LoadError::Store(e)) if e.is_transient() => {
                    if tries.wait_after_failure().await {
                        telemetry::command_retried(A::NAME, "unavailable");
                        continue;
                    }
                    return Err(ExecuteError::Store(e));
                }
                loaded => loaded?,
            };
            if let Some(first) = keyed.as_mut().and_then(KeyedIds::take_found) {
                // Executed before with this idempotency key: its events are in the stream.
                return Ok(Committed { state, version, events: first, attempts: decisions });
            }
            decisions = decisions.saturating_add(1);
            let decided = match state.handle(&command) {
                Ok(decided) => decided,
                // The stream may have events that decide otherwise: read them.
                Err(_) if assumed => continue,
                Err(rejected) => {
                    self.remember(&stream, &state, version);
                    return Err(ExecuteError::Rejected(rejected));
                }
            };
            if decided.is_empty() {
                if assumed {
                    continue;
                }
                self.remember(&stream, &state, version);
                return Ok(Committed { state, version, events: Vec::new(), attempts: decisions });
            }
            // The ids are fixed before the first send (derived from the idempotency key, if
            // any), so re-sending after a lost reply is an idempotent re-append of the same
            // events, never a second copy of them.
            let ids: Vec<Uuid> = match &keyed {
                Some(keyed) => (0..decided.len()).map(|i| keyed.id(i)).collect(),
                None => decided.iter().map(|_| Uuid::now_v7()).collect(),
            };
            let appended = loop {
                let new_events = encode(&stream, &decided, &ids, &metadata)?;
                let count = new_events.len();
                let span = tracing::debug_span!(
                    "annals.append",
                    stream = %stream,
                    events = count,
                    expected_version = version,
                    first_position = tracing::field::Empty,
                    last_position = tracing::field::Empty,
                );
                let started = Instant::now();
                let outcome = self
                    .store
                    .append(&stream, ExpectedVersion::Exact(version), new_events)
                    .instrument(span.clone())
                    .await;
                if let Ok(events) = &outcome {
                    telemetry::appended(A::NAME, count, started.elapsed());
                    if let (Some(first), Some(last)) = (events.first(), events.last()) {
                        span.record("first_position", first.global_position);
                        span.record("last_position", last.global_position);
                    }
                }
                match outcome {
                    Err(e) if e.is_transient() && tries.wait_after_failure().await => {
                        telemetry::command_retried(A::NAME, "unavailable");
                    }
                    outcome => break outcome,
                }
            };
            match appended {
                Ok(events) => {
                    for event in decided {
                        state.apply_event(event);
                    }
                    let new_version = events.last().map_or(version, |e| e.stream_version);
                    self.remember(&stream, &state, new_version);
                    if let Some(snapshots) = &self.snapshots {
                        if snapshots.policy.after_append(version, new_version) {
                            self.save_snapshot_in_background(&stream, &state, new_version, snapshots);
                        }
                    }
                    return Ok(Committed { state, version: new_version, events, attempts: decisions });
                }
                Err(e) if e.is_conflict() => {
                    if let Some(cache) = &self.cache {
                        cache.forget(&stream);
                    }
                    telemetry::command_retried(A::NAME, "conflict");
                    // A `create` on a stream that exists: nobody to wait for, load it now.
                    if assumed {
                        continue;
                    }
                    if !tries.wait_after_failure().await {
                        return Err(ExecuteError::Conflict { stream, attempts: decisions, waited: tries.elapsed() });
                    }
                }
                // The keyed events are already stored where this load did not read them
                // (before the snapshot it started from, or committed since by an earlier
                // execution whose caller gave up on it): load everything to find them.
                Err(error @ StoreError::DuplicateEventId { .. }) if keyed.is_some() => {
                    if let Some(keyed) = &mut keyed {
                        keyed.forget();
                    }
                    let mut loaded = Loaded { state: A::initial(), version: 0 };
                    self.apply_stream(&stream, &mut loaded, VersionRange::ALL, None, &mut keyed).await?;
                    return match keyed.as_mut().and_then(KeyedIds::take_found) {
                        Some(first) => {
                            Ok(Committed { state: loaded.state, version: loaded.version, events: first, attempts: 0 })
                        }
                        None => Err(ExecuteError::Store(error)),
                    };
                }
                Err(e) => return Err(ExecuteError::Store(e)),
            }
        }
    }
}

/// Where a command's first decision starts from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The stream as stored (or the cached state): [`Repository::execute`].
    Load,
    /// The initial state, unread: [`Repository::create`].
    AssumeNew,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Keeps `state` at `version` for the next command on `stream`, when caching.
    fn remember(&self, stream: &str, state: &A, version: u64) {
        if let Some(cache) = &self.cache {
            cache.put(stream, state, version);
        }
    }
}

/// Applies the next stored event of a stream to `loaded`, after checking it follows the
/// last one, and shows it to `keyed`.
fn apply_next<A: Aggregate>(
    loaded: &mut Loaded<A>,
    envelope: &Envelope,
    keyed: &mut Option<KeyedIds>,
) -> Result<(), LoadError> {
    check_next_version(loaded.version, envelope)?;
    if let Some(keyed) = keyed {
        keyed.see(envelope);
    }
    loaded.state.apply_event(A::Event::decode(envelope)?);
    loaded.version = envelope.stream_version;
    Ok(())
}

/// A stream's events must follow one another: version `at + 1` after `at`. A gap means
/// events are missing, and the state built without them would be wrong.
fn check_next_version(at: u64, envelope: &Envelope) -> Result<(), StoreError> {
    if Some(envelope.stream_version) == at.checked_add(1) {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        stream: envelope.stream_id.clone(),
        version: Some(envelope.stream_version),
        position: Some(envelope.global_position),
        detail: format!(
            "the stream goes from version {at} to version {}: the events in between are missing",
            envelope.stream_version
        ),
    })
}

fn encode<E: EventSet, Err>(
    stream: &str,
    events: &[E],
    ids: &[Uuid],
    metadata: &Metadata,
) -> Result<Vec<NewEvent>, ExecuteError<Err>> {
    events
        .iter()
        .zip(ids)
        .map(|(event, &event_id)| {
            let payload = event.to_payload().map_err(|source| ExecuteError::Encode {
                stream: stream.to_owned(),
                event_type: event.event_type(),
                source,
            })?;
            Ok(NewEvent {
                event_id,
                event_type: event.event_type().to_owned(),
                event_version: event.event_version(),
                payload,
                metadata: metadata.clone(),
            })
        })
        .collect()
}
