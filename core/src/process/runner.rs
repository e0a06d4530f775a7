//! [`ProcessRunner`]: follows a store's feed and deadline table, lets each process
//! instance react, records the reaction, then carries it out.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::effects::Effects;
use super::error::ProcessError;
use super::record::{reaction_event_id, Reaction, Trigger, REACTED};
use super::{instance_stream, Process};
use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::projection::{Permanent, Projection, ProjectionError};
use crate::retry::RetryPolicy;
use crate::store::{CheckpointStore, Deadline, DeadlineStore, EventFeed, EventStore, ExpectedVersion, StoreError};
use crate::subscription::{
    AtLeastOnce, PoisonPolicy, Subscription, SubscriptionError, SubscriptionOptions, SubscriptionStatus,
};
use crate::telemetry;

/// How many due deadlines one round fires.
const DEADLINE_BATCH: u32 = 100;

/// How long the deadline loop sleeps at most between looks at the table (a deadline set
/// by another runner is found within this time).
const DEADLINE_POLL: Duration = Duration::from_secs(1);

/// A process instance as its stream records it.
#[derive(Debug)]
pub struct InstanceView<P> {
    /// Its correlation id.
    pub instance: String,
    /// Its stream ([`instance_stream`]).
    pub stream: String,
    /// Its stream's version: how many reactions it recorded.
    pub version: u64,
    /// Its state after the last reaction (`Default` before the first).
    pub state: P,
    /// Whether it completed.
    pub completed: bool,
    /// The deadlines set and neither fired nor cancelled.
    pub pending: Vec<Deadline>,
    /// Every recorded reaction, oldest first.
    pub reactions: Vec<Reaction>,
}

impl<P: Process> InstanceView<P> {
    /// Reads instance `instance` of `P` from `store`.
    pub async fn load<S: EventStore>(store: &S, instance: &str) -> Result<Self, ProcessError> {
        Recorded::load::<P, S>(store, instance).await?.view()
    }
}

/// An instance's recorded reactions: what the runner keeps (and caches) of an instance.
#[derive(Clone)]
struct Recorded {
    instance: String,
    stream: String,
    version: u64,
    reactions: Vec<Reaction>,
}

impl Recorded {
    async fn load<P: Process, S: EventStore>(store: &S, instance: &str) -> Result<Self, ProcessError> {
        let stream = instance_stream::<P>(instance);
        let mut reactions = Vec::new();
        let mut version = 0;
        {
            let mut events = store.read_stream(&stream, (..).into());
            while let Some(envelope) = events.next().await {
                let envelope = envelope.map_err(|source| ProcessError::Store {
                    process: P::NAME,
                    instance: instance.to_owned(),
                    what: "reading the instance",
                    source: Box::new(source),
                })?;
                version = envelope.stream_version;
                reactions.push(reaction_of::<P>(envelope)?);
            }
        }
        Ok(Recorded { instance: instance.to_owned(), stream, version, reactions })
    }

    /// The state after the last reaction (`Default` before the first).
    fn state<P: Process>(&self) -> Result<P, ProcessError> {
        match self.reactions.last() {
            Some(last) => P::deserialize(&last.state).map_err(|source| ProcessError::Json {
                process: P::NAME,
                instance: self.instance.clone(),
                what: format!("the state recorded at version {} of `{}`", self.version, self.stream),
                source,
            }),
            None => Ok(P::default()),
        }
    }

    /// The deadlines set and neither fired nor cancelled.
    fn pending(&self) -> Vec<Deadline> {
        let mut pending: Vec<Deadline> = Vec::new();
        for reaction in &self.reactions {
            reaction.update_pending(&mut pending);
        }
        pending
    }

    fn completed(&self) -> bool {
        self.reactions.iter().any(|reaction| reaction.completed)
    }

    /// The index of the recorded reaction to the input with this id.
    fn reaction_to(&self, trigger: uuid::Uuid) -> Option<usize> {
        self.reactions.iter().position(|reaction| reaction.trigger.id() == trigger)
    }

    /// The correlation id of the instance: that of the first event it reacted to.
    fn correlation(&self) -> Option<uuid::Uuid> {
        self.reactions.iter().find_map(|reaction| reaction.trigger.correlation())
    }

    fn view<P: Process>(self) -> Result<InstanceView<P>, ProcessError> {
        Ok(InstanceView {
            state: self.state()?,
            completed: self.completed(),
            pending: self.pending(),
            instance: self.instance,
            stream: self.stream,
            version: self.version,
            reactions: self.reactions,
        })
    }
}

/// How many instances a runner keeps in memory between inputs (then it reads them again).
const CACHED_INSTANCES: usize = 10_000;

/// The instances a runner recorded or read last, by instance id: a reaction then costs no
/// read of the instance stream. An instance another runner changed meanwhile makes the
/// append conflict, which drops it from here and reads it again.
type Cache = Arc<Mutex<HashMap<String, Arc<Recorded>>>>;

/// Reads one recorded reaction.
fn reaction_of<P: Process>(envelope: Envelope) -> Result<Reaction, ProcessError> {
    let record = |detail: String| ProcessError::Record {
        process: P::NAME,
        stream: envelope.stream_id.clone(),
        version: envelope.stream_version,
        detail,
    };
    if envelope.event_type != REACTED {
        return Err(record(format!("its type is `{}`, not `{REACTED}`", envelope.event_type)));
    }
    envelope.payload.decode::<Reaction>().map_err(|e| record(e.to_string()))
}

/// Reacts to inputs and carries reactions out; the projection the runner's subscription
/// feeds, and what fires deadlines.
pub(crate) struct Reactor<P, S> {
    store: S,
    cache: Cache,
    /// What a reaction waits for (a transient failure it waits out), shared by the
    /// runner's reactors: [`ProcessRunner::waiting`].
    waiting: Arc<watch::Sender<Option<String>>>,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process, S: EventStore + DeadlineStore> Reactor<P, S> {
    fn new(store: S, cache: Cache, waiting: Arc<watch::Sender<Option<String>>>) -> Self {
        Reactor { store, cache, waiting, _process: PhantomData }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Recorded>>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instance as last recorded or read, else read now.
    async fn recorded(&self, instance: &str) -> Result<Arc<Recorded>, ProcessError> {
        let cached = self.cache().get(instance).map(Arc::clone);
        match cached {
            Some(recorded) => Ok(recorded),
            None => Ok(Arc::new(Recorded::load::<P, S>(&self.store, instance).await?)),
        }
    }

    fn remember(&self, recorded: &Arc<Recorded>) {
        let mut cache = self.cache();
        if recorded.completed() {
            cache.remove(&recorded.instance);
            return;
        }
        if cache.len() >= CACHED_INSTANCES && !cache.contains_key(&recorded.instance) {
            cache.clear();
        }
        cache.insert(recorded.instance.clone(), Arc::clone(recorded));
    }

    fn forget(&self, instance: &str) {
        self.cache().remove(instance);
    }

    fn store_error<'i>(instance: &'i str, what: &'static str) -> impl FnOnce(StoreError) -> ProcessError + 'i {
        move |source| ProcessError::Store {
            process: P::NAME,
            instance: instance.to_owned(),
            what,
            source: Box::new(source),
        }
    }

    /// Reacts to `trigger` in `instance` (once: a recorded reaction is not decided again)
    /// and carries the reaction out.
    fn handle<'a>(&'a self, instance: &'a str, trigger: Trigger) -> BoxFuture<'a, Result<(), ProcessError>> {
        let span = tracing::info_span!(
            telemetry::REACT_SPAN,
            process = P::NAME,
            instance,
            input = %trigger.input_type(),
            trigger = %trigger.id(),
            outcome = tracing::field::Empty,
            commands = tracing::field::Empty,
        );
        let recorded = span.clone();
        let outcome = move |outcome: &'static str, commands: usize| {
            let span = &recorded;
            span.record("outcome", outcome);
            span.record("commands", commands);
            telemetry::process_reaction(P::NAME, outcome);
        };
        async move {
            loop {
                let loaded = self.recorded(instance).await?;
                if let Some(index) = loaded.reaction_to(trigger.id()) {
                    self.remember(&loaded);
                    outcome("carried_out_again", loaded.reactions.get(index).map_or(0, |r| r.commands.len()));
                    return self.settle(&loaded, index).await;
                }
                // A completed instance ignores new inputs, but still hears of the rejection
                // of a command it sent: compensation that fails must not go unnoticed.
                if loaded.completed() && !matches!(trigger, Trigger::Rejected { .. }) {
                    tracing::debug!(process = P::NAME, instance, trigger = %trigger.describe(), "ignored: the instance completed");
                    outcome("ignored", 0);
                    if let Trigger::Deadline { deadline_id, .. } = &trigger {
                        self.store.remove(&[*deadline_id]).await.map_err(Self::store_error(instance, "removing a deadline"))?;
                    }
                    return Ok(());
                }
                let correlation = trigger.correlation().or_else(|| loaded.correlation());
                let mut state = loaded.state::<P>()?;
                let mut effects = Effects::<P>::new(instance, Utc::now());
                state.react_to(&trigger, &mut effects).map_err(|e| e.in_instance(instance))?;
                let reaction =
                    effects.into_reaction(instance, &loaded.stream, trigger.clone(), &state, &loaded.pending())?;
                let mut metadata = Metadata::default().causation_id(trigger.id());
                metadata.correlation_id = correlation;
                let payload = serde_json::to_value(&reaction).map_err(|source| ProcessError::Json {
                    process: P::NAME,
                    instance: instance.to_owned(),
                    what: "the reaction".to_owned(),
                    source,
                })?;
                let mut event = NewEvent::new(REACTED, 1, payload).with_metadata(metadata);
                event.event_id = reaction_event_id(&loaded.stream, trigger.id());
                let appended = self.store.append(&loaded.stream, ExpectedVersion::Exact(loaded.version), vec![event]).await;
                match appended {
                    // Recorded, after exactly the reactions loaded (none of which answers this
                    // trigger): what is stored is this reaction.
                    Ok(_) => {
                        // Out of the cache first, so that the instance is extended in place.
                        self.forget(instance);
                        let mut recorded = Arc::unwrap_or_clone(loaded);
                        recorded.version = recorded.version.saturating_add(1);
                        recorded.reactions.push(reaction);
                        let index = recorded.reactions.len().saturating_sub(1);
                        let loaded = Arc::new(recorded);
                        self.remember(&loaded);
                        outcome("reacted", loaded.reactions.get(index).map_or(0, |r| r.commands.len()));
                        return self.settle(&loaded, index).await;
                    }
                    // Another runner recorded a reaction meanwhile: read the instance again.
                    Err(StoreError::Conflict { .. } | StoreError::DuplicateEventId { .. }) => self.forget(instance),
                    Err(source) => return Err(Self::store_error(instance, "recording a reaction")(source)),
                }
            }
        }
        .instrument(span)
        .boxed()
    }

    /// Carries out the recorded reaction `index` of `loaded`: schedules and cancels its
    /// deadlines, sends its commands (each idempotently, so again is harmless), reacts to
    /// their rejections, and removes the deadline that triggered it.
    async fn settle(&self, loaded: &Recorded, index: usize) -> Result<(), ProcessError> {
        let instance = loaded.instance.as_str();
        let Some(reaction) = loaded.reactions.get(index) else { return Ok(()) };
        if !reaction.deadlines.is_empty() {
            self.store
                .schedule(&reaction.deadlines)
                .await
                .map_err(Self::store_error(instance, "scheduling deadlines"))?;
        }
        if !reaction.cancelled.is_empty() {
            self.store
                .remove(&reaction.cancelled)
                .await
                .map_err(Self::store_error(instance, "cancelling deadlines"))?;
        }
        let correlation = reaction.trigger.correlation().or_else(|| loaded.correlation());
        for command in &reaction.commands {
            let rejection = Trigger::rejected(command, "");
            if loaded.reaction_to(rejection.id()).is_some() {
                // Rejected before, and the rejection recorded: carry out that reaction
                // instead of sending the command again (it might succeed now).
                self.handle(instance, rejection).await?;
                continue;
            }
            let mut metadata =
                Metadata::default().causation_id(reaction.trigger.id()).idempotency_key(command.id.to_string());
            metadata.correlation_id = correlation;
            match P::dispatch(&self.store, command, metadata).await? {
                Ok(()) => {}
                Err(reason) => {
                    tracing::info!(
                        process = P::NAME,
                        instance,
                        command = %command.command_type,
                        target = %command.target,
                        %reason,
                        "a command was rejected; reacting to the rejection"
                    );
                    self.handle(instance, Trigger::rejected(command, reason)).await?;
                }
            }
        }
        if let Trigger::Deadline { deadline_id, .. } = &reaction.trigger {
            self.store
                .remove(&[*deadline_id])
                .await
                .map_err(Self::store_error(instance, "removing a fired deadline"))?;
        }
        Ok(())
    }

    /// [`handle`](Self::handle), waiting out transient failures with capped back-off.
    async fn handle_patiently(&self, instance: &str, trigger: Trigger) -> Result<(), ProcessError> {
        let mut attempts = RetryPolicy::forever().start();
        let mut failures = 0_u32;
        loop {
            match self.handle(instance, trigger.clone()).await {
                Err(error) if error.is_transient() => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(process = P::NAME, instance, failures, %error, "a reaction could not be carried out yet; retrying");
                    }
                    self.waiting.send_replace(Some(format!("instance `{instance}` (attempt {failures}): {error}")));
                    tokio::time::sleep(attempts.failed().unwrap_or(RetryPolicy::forever().max_backoff)).await;
                }
                outcome => {
                    if failures > 0 {
                        tracing::info!(process = P::NAME, instance, failures, "the reaction went through; resuming");
                        self.waiting.send_replace(None);
                    }
                    return outcome;
                }
            }
        }
    }

    /// Fires the deadlines of `P` due at `now`; returns how many fired.
    async fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, ProcessError> {
        let mut fired = 0;
        loop {
            let due = self
                .store
                .due(P::NAME, now, DEADLINE_BATCH)
                .await
                .map_err(Self::store_error("*", "reading due deadlines"))?;
            let full = u32::try_from(due.len()).is_ok_and(|n| n >= DEADLINE_BATCH);
            let mut failed = 0;
            for deadline in &due {
                match self.handle_patiently(&deadline.instance, Trigger::deadline(deadline)).await {
                    Ok(()) => fired += 1,
                    Err(error) => {
                        failed += 1;
                        tracing::error!(
                            process = P::NAME,
                            instance = %deadline.instance,
                            deadline = %deadline.id,
                            %error,
                            "a deadline could not fire; it stays in the deadline table and is tried again"
                        );
                    }
                }
            }
            if !full || failed > 0 {
                return Ok(fired);
            }
        }
    }
}

impl<P: Process, S: EventStore + DeadlineStore> Projection for Reactor<P, S> {
    const NAME: &'static str = P::NAME;
    const EVENT_TYPES: &'static [&'static str] = P::EVENT_TYPES;
    type Context = ();

    async fn project(&mut self, envelope: &Envelope, _: &mut ()) -> Result<(), ProjectionError> {
        // Whatever is left after `handle_patiently` waited out the transient failures
        // cannot succeed by retrying: permanent, so the poison policy applies at once.
        let handler =
            |error: ProcessError| ProjectionError::handler(P::NAME, envelope, Box::new(Permanent::new(error)));
        let instance = match P::correlate(envelope) {
            Ok(Some(instance)) => instance,
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(handler(ProcessError::Decode {
                    process: P::NAME,
                    trigger: Trigger::event(envelope).describe(),
                    source: Box::new(source),
                }))
            }
        };
        self.handle_patiently(&instance, Trigger::event(envelope)).await.map_err(handler)
    }
}

/// Why a runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// Its feed subscription stopped (an input it could neither react to nor park).
    #[error(transparent)]
    Feed(#[from] SubscriptionError),
    /// Firing deadlines failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// Runs process `P` against a store: follows the feed for the events `P` lists (with a
/// checkpoint named `<name>.process`, at least once, each input reacted to in effect
/// once) and fires its due deadlines.
///
/// ```
/// # use annals::process::ProcessRunner;
/// # fn start<P: annals::process::Process>(store: annals_memory::MemoryStore) {
/// let mut runner = ProcessRunner::<P, _>::new(store);
/// tokio::spawn(async move { runner.run().await });
/// # }
/// ```
pub struct ProcessRunner<P: Process, S: EventStore + EventFeed + CheckpointStore + DeadlineStore> {
    store: S,
    reactor: Reactor<P, S>,
    policy: PoisonPolicy,
    options: SubscriptionOptions,
    subscription: Subscription<S, AtLeastOnce<Reactor<P, S>, S>>,
}

impl<P: Process, S: EventStore + EventFeed + CheckpointStore + DeadlineStore> ProcessRunner<P, S> {
    /// A runner of `P` on `store`; an input that cannot be reacted to stops it (see
    /// [`poison`](Self::poison)).
    pub fn new(store: S) -> Self {
        Self::build(store, PoisonPolicy::default(), SubscriptionOptions::default())
    }

    fn build(store: S, policy: PoisonPolicy, options: SubscriptionOptions) -> Self {
        let cache = Cache::default();
        let waiting = Arc::new(watch::Sender::new(None));
        let reactor = Reactor::<P, S>::new(store.clone(), Arc::clone(&cache), Arc::clone(&waiting));
        let sink = AtLeastOnce::new(store.clone(), reactor)
            .named(Self::consumer_name())
            .poison(policy)
            // Reactions are idempotent (a recorded one is carried out again, commands by
            // their keys): one checkpoint transaction per batch instead of per input.
            .checkpoint_every(options.batch_size);
        let subscription = Subscription::new(store.clone(), sink).options(options);
        ProcessRunner { reactor: Reactor::new(store.clone(), cache, waiting), store, policy, options, subscription }
    }

    /// The runner's consumer name (its checkpoint and parked inputs): `<name>.process`.
    pub fn consumer_name() -> String {
        format!("{}.process", P::NAME)
    }

    /// What to do with an input the process cannot react to: stop (the default) or park
    /// it, as for projections.
    pub fn poison(self, policy: PoisonPolicy) -> Self {
        Self::build(self.store, policy, self.options)
    }

    /// Batch size and retry of the feed subscription.
    pub fn options(self, options: SubscriptionOptions) -> Self {
        Self::build(self.store, self.policy, options)
    }

    /// Where the feed subscription is: processing, waiting out a failure, stopped.
    pub fn status(&self) -> watch::Receiver<SubscriptionStatus> {
        self.subscription.status()
    }

    /// What a reaction is waiting out, if anything: a reaction, a command or a deadline
    /// that failed for a transient reason (the store unreachable, a command's stream busy)
    /// is retried in place with capped back-off, and says so here (and in a warning) until
    /// it goes through. The feed's own waits show in [`status`](Self::status).
    pub fn waiting(&self) -> watch::Receiver<Option<String>> {
        self.reactor.waiting.subscribe()
    }

    /// Reacts to every event in the feed so far, then fires the deadlines due now.
    pub async fn catch_up(&mut self) -> Result<usize, RunnerError> {
        self.subscription.catch_up().await?;
        Ok(self.reactor.fire_due(Utc::now()).await?)
    }

    /// Fires the deadlines due at `now` (a time in the future fires them early: tests and
    /// operators); returns how many fired.
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, ProcessError> {
        self.reactor.fire_due(now).await
    }

    /// Follows the feed and the deadline table until an input can be neither reacted to
    /// nor parked. Store outages are waited out.
    pub async fn run(&mut self) -> Result<(), RunnerError> {
        let reactor = &self.reactor;
        let deadlines = async move {
            let mut attempts = RetryPolicy::forever().start();
            loop {
                let now = Utc::now();
                let pause = match reactor.fire_due(now).await {
                    Ok(_) => {
                        attempts = RetryPolicy::forever().start();
                        match reactor.store.next_due(P::NAME).await {
                            Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or_default().min(DEADLINE_POLL),
                            Ok(None) => DEADLINE_POLL,
                            Err(error) => {
                                tracing::warn!(process = P::NAME, %error, "could not read the next deadline; retrying");
                                DEADLINE_POLL
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(process = P::NAME, %error, "could not fire deadlines; retrying");
                        attempts.failed().unwrap_or(RetryPolicy::forever().max_backoff)
                    }
                };
                tokio::time::sleep(pause).await;
            }
        };
        tokio::select! {
            outcome = self.subscription.run() => Ok(outcome?),
            () = deadlines => Ok(()),
        }
    }

    /// Instance `instance` as recorded.
    pub async fn instance(&self, instance: &str) -> Result<InstanceView<P>, ProcessError> {
        InstanceView::load(&self.store, instance).await
    }
}
