//! Command execution: load an aggregate, decide, append with optimistic concurrency,
//! retry on conflict.

use std::marker::PhantomData;
use std::time::Duration;

use futures::TryStreamExt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Handle};
use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::event::{DecodeError, EventSet};
use crate::snapshot::{Snapshot, SnapshotPolicy, StoredSnapshot};
use crate::store::{EventStore, ExpectedVersion, StoreError, VersionRange};

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
    /// How many times the command was decided (1 unless it met a conflict).
    pub attempts: u32,
}

/// How [`Repository::execute`] retries after a concurrency conflict or a transient store
/// failure.
///
/// On a conflict the repository reloads the aggregate and decides the command again
/// against the new state. When the store is unavailable (`StoreError::is_transient`), a
/// failed load is retried, and a failed append is re-sent with the *same* events (same
/// ids): if the first append did commit and only its reply was lost, the store returns
/// the stored events instead of writing them twice. Between attempts it waits a random
/// time up to `backoff × 2^(attempt-1)` (capped at `max_backoff`), so competing writers
/// spread out.
///
/// ```
/// # use annals::RetryPolicy;
/// # use std::time::Duration;
/// let policy = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
/// assert_eq!(RetryPolicy::never().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times to decide at most (1 = never retry).
    pub max_attempts: u32,
    /// The base of the exponential back-off.
    pub backoff: Duration,
    /// The longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, back-off from 1 ms up to 50 ms.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(50) }
    }
}

impl RetryPolicy {
    /// Decide once; report a conflict instead of retrying.
    pub fn never() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
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
    /// Every attempt met a concurrent writer.
    #[error(
        "stream `{stream}` kept changing under the command: gave up after {attempts} attempts; \
         retry later or raise RetryPolicy::max_attempts"
    )]
    Conflict {
        /// The contended stream.
        stream: String,
        /// How many times the command was decided.
        attempts: u32,
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
    /// Loading the aggregate failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Appending failed for a reason other than a conflict.
    #[error(transparent)]
    Store(StoreError),
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
/// share an id. Each command costs two store round trips: read the stream, append.
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
    snapshots: Option<Snapshots<A>>,
    aggregate: PhantomData<fn() -> A>,
}

/// How a repository snapshots `A`: set by [`Repository::with_snapshots`], which is the
/// only place that knows `A: Snapshot`, so the rest of the repository needs no such bound.
struct Snapshots<A> {
    policy: SnapshotPolicy,
    schema_version: u32,
    encode: fn(&A) -> Result<serde_json::Value, serde_json::Error>,
    decode: fn(&serde_json::Value) -> Result<A, serde_json::Error>,
}

impl<A> Clone for Snapshots<A> {
    fn clone(&self) -> Self {
        Snapshots { policy: self.policy, schema_version: self.schema_version, encode: self.encode, decode: self.decode }
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            retry: self.retry,
            snapshots: self.snapshots.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` with the default [`RetryPolicy`].
    pub fn new(store: S) -> Self {
        Repository { store, retry: RetryPolicy::default(), snapshots: None, aggregate: PhantomData }
    }

    /// The same repository, loading from and taking snapshots under `policy`.
    /// See [`snapshot`](crate::snapshot).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self
    where
        A: Snapshot,
    {
        self.snapshots = Some(Snapshots {
            policy,
            schema_version: A::SNAPSHOT_VERSION,
            encode: |state| serde_json::to_value(state),
            decode: |value| A::deserialize(value),
        });
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
        let mut loaded = Loaded { state: A::default(), version: 0 };
        self.apply_stream(&A::stream_id(id), &mut loaded, (..=version).into(), None).await?;
        Ok(loaded)
    }

    /// Loads aggregate `id` as it was at time `at` (time travel): only events recorded at
    /// or before `at` are applied.
    pub async fn load_as_of(&self, id: &str, at: DateTime<Utc>) -> Result<Loaded<A>, LoadError> {
        let mut loaded = Loaded { state: A::default(), version: 0 };
        self.apply_stream(&A::stream_id(id), &mut loaded, VersionRange::ALL, Some(at)).await?;
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
        let mut loaded = match &self.snapshots {
            Some(snapshots) => self.usable_snapshot(stream, snapshots).await?,
            None => None,
        }
        .unwrap_or(Loaded { state: A::default(), version: 0 });
        let after_snapshot = (loaded.version + 1..).into();
        let applied = self.apply_stream(stream, &mut loaded, after_snapshot, None).await?;
        if let Some(snapshots) = &self.snapshots {
            if snapshots.policy.after_load(applied) {
                self.save_snapshot_in_background(stream, &loaded.state, loaded.version, snapshots);
            }
        }
        Ok(loaded)
    }

    /// The stored snapshot of `stream` if it was taken by this schema version of `A` and
    /// still deserializes; `None` otherwise, so the caller rebuilds from events.
    async fn usable_snapshot(&self, stream: &str, snapshots: &Snapshots<A>) -> Result<Option<Loaded<A>>, StoreError> {
        let Some(stored) = self.store.load_snapshot(stream).await? else {
            return Ok(None);
        };
        if stored.schema_version != snapshots.schema_version {
            return Ok(None);
        }
        Ok((snapshots.decode)(&stored.state).ok().map(|state| Loaded { state, version: stored.stream_version }))
    }

    fn save_snapshot_in_background(&self, stream: &str, state: &A, version: u64, snapshots: &Snapshots<A>) {
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
        let store = self.store.clone();
        // A failed snapshot write loses nothing: the next load reads the events instead.
        tokio::spawn(async move { store.save_snapshot(snapshot).await });
    }

    /// Applies the events of `stream` within `versions` (recorded at or before `until`,
    /// if given) to `loaded`; returns how many it applied.
    async fn apply_stream(
        &self,
        stream: &str,
        loaded: &mut Loaded<A>,
        versions: VersionRange,
        until: Option<DateTime<Utc>>,
    ) -> Result<u64, LoadError> {
        let mut applied = 0;
        let mut events = self.store.read_stream(stream, versions);
        while let Some(envelope) = events.try_next().await? {
            if until.is_some_and(|until| envelope.recorded_at > until) {
                break;
            }
            let event = A::Event::decode(&envelope)?;
            loaded.state.apply_event(event);
            loaded.version = envelope.stream_version;
            applied += 1;
        }
        Ok(applied)
    }

    /// Executes `command` on aggregate `id`: loads it, decides, and appends the new
    /// events expecting the loaded version. On a conflict it reloads and decides again,
    /// as the [`RetryPolicy`] allows.
    pub async fn execute<C>(&self, id: &str, command: C) -> Result<Committed<A>, ExecuteError<A::Error>>
    where
        A: Handle<C>,
    {
        self.execute_with(id, command, Metadata::default()).await
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
        let stream = A::stream_id(id);
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Loaded { mut state, version } = match self.load_latest(&stream).await {
                Err(LoadError::Store(e)) if e.is_transient() && attempt < max_attempts => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    continue;
                }
                loaded => loaded?,
            };
            let decided = state.handle(&command).map_err(ExecuteError::Rejected)?;
            if decided.is_empty() {
                return Ok(Committed { state, version, events: Vec::new(), attempts: attempt });
            }
            // The ids are fixed before the first send, so re-sending after a lost reply is
            // an idempotent re-append of the same events, never a second copy of them.
            let ids: Vec<Uuid> = decided.iter().map(|_| Uuid::now_v7()).collect();
            let mut sends = 0;
            let appended = loop {
                sends += 1;
                let new_events = encode(&stream, &decided, &ids, &metadata)?;
                match self.store.append(&stream, ExpectedVersion::Exact(version), new_events).await {
                    Err(e) if e.is_transient() && sends < max_attempts => {
                        tokio::time::sleep(self.retry.delay(sends)).await;
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
                    if let Some(snapshots) = &self.snapshots {
                        if snapshots.policy.after_append(version, new_version) {
                            self.save_snapshot_in_background(&stream, &state, new_version, snapshots);
                        }
                    }
                    return Ok(Committed { state, version: new_version, events, attempts: attempt });
                }
                Err(e) if e.is_conflict() => {
                    if attempt >= max_attempts {
                        return Err(ExecuteError::Conflict { stream, attempts: attempt });
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(e) => return Err(ExecuteError::Store(e)),
            }
        }
    }
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
