//! Pipelined commands on a hot stream (repositories with a cache): a command decides on
//! the state the commands before it will leave, without waiting for their appends, and
//! the commands that decide while one append is in flight are appended together in the
//! next one, one round trip and one commit for all of them.
//!
//! A stream's [`Pipe`] holds the *tip*: the state after every event sent or waiting to be
//! sent, and its version. A command takes the stream's turn, decides on the tip (or, when
//! nothing is in flight, on the cached or loaded state), and adds its events to the batch
//! that goes next, then gives the turn to the next command and waits for its batch. One
//! task per stream sends the batches one after another, each expecting the version the
//! previous one ends at, so every command keeps its own optimistic-concurrency check: a
//! writer in another process makes the batch a conflict and its commands load and decide
//! again, as they would alone.
//!
//! What a command decided on events that then fail is void: when a batch fails, the
//! batch behind it is not sent and its commands decide again on what is stored. A
//! rejection or an empty decision made on the tip is reported only once the events it
//! was decided after are stored. A batch of several commands that fails as a whole for
//! another reason than a conflict or an outage (an event the store refuses) is not
//! retried together: each of its commands runs again alone, so the bad one gets its own
//! error and the others are stored.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::cache::StateCache;
use super::queue::{Line, StreamQueue};
use super::{encode, Committed, ExecuteError, LoadError, Loaded, Repository};
use crate::aggregate::{Aggregate, Handle};
use crate::envelope::{Envelope, Metadata, NewEvent};
use crate::retry::{Attempts, RetryPolicy};
use crate::store::{EventStore, ExpectedVersion, StoreError};
use crate::telemetry;

/// The most commands one append carries: more wait (holding the stream's turn, so the
/// rest wait behind them) for the batch in flight, and start the next. It bounds one
/// append's size and what a command waiting behind a long outage waits for.
const MOST_COMMANDS_PER_APPEND: usize = 64;

/// A stream's appends in flight and waiting, and the state they will leave.
pub(crate) struct Pipe<A> {
    /// The state after every event sent or waiting to be sent, and its version: `Some`
    /// exactly while a batch is in flight.
    tip: Option<(A, u64)>,
    /// Bumped when a batch fails: a decision made on an earlier generation's tip is void.
    generation: u64,
    /// The outcome of the batch in flight.
    in_flight: Option<watch::Receiver<Option<Arc<Outcome>>>>,
    /// The batch that goes when the one in flight is stored.
    pending: Option<Batch>,
}

impl<A> Default for Pipe<A> {
    fn default() -> Self {
        Pipe { tip: None, generation: 0, in_flight: None, pending: None }
    }
}

/// The events of one or more commands, appended together.
struct Batch {
    /// The stream version the batch's first event follows.
    expected: u64,
    events: Vec<NewEvent>,
    commands: usize,
    done: watch::Sender<Option<Arc<Outcome>>>,
    /// The span of the command that opened the batch: its append's parent.
    opened_by: tracing::Span,
}

/// How a batch ended.
enum Outcome {
    /// Every event of the batch, as stored, in the order of the batch; each command takes
    /// its own out (no copy).
    Stored(Mutex<Vec<Option<Envelope>>>),
    /// The append failed; nothing of the batch is stored (or, after an outage that
    /// outlasted the retries, nobody knows).
    Failed {
        conflict: bool,
        transient: bool,
        commands: usize,
        /// The store's error, for a batch of one command (it is that command's error).
        error: Mutex<Option<StoreError>>,
        /// What the error said, for the commands of a larger batch.
        said: String,
    },
    /// The batch was decided after events that were not stored: it was never sent.
    Void,
}

/// Where a rejection or an empty decision stands.
enum Settled {
    /// Decided on stored events: it stands.
    Now,
    /// Decided on events in flight: it stands once they are stored.
    After(watch::Receiver<Option<Arc<Outcome>>>),
    /// Decided on events that failed meanwhile: decide again.
    Void,
}

impl<A> Pipe<A> {
    /// Where a decision made on generation `generation` stands.
    fn settled(&self, generation: u64) -> Settled {
        if self.generation != generation {
            return Settled::Void;
        }
        match (&self.pending, &self.in_flight) {
            (Some(batch), _) => Settled::After(batch.done.subscribe()),
            (None, Some(in_flight)) => Settled::After(in_flight.clone()),
            (None, None) => Settled::Now,
        }
    }
}

/// How a command that decided on a stream's tip joins the next batch.
enum Join {
    /// In the batch that goes next: its outcome, and where the command's events start.
    Joined(watch::Receiver<Option<Arc<Outcome>>>, usize),
    /// The next batch is full: wait for the one in flight, then join the one after.
    WaitFor(watch::Receiver<Option<Arc<Outcome>>>),
    /// The tip it decided on failed meanwhile: decide again.
    Void,
}

/// Waits for a batch's outcome. A batch whose task ended without one (the runtime shut
/// down under it) counts as an outage.
async fn outcome_of(mut done: watch::Receiver<Option<Arc<Outcome>>>) -> Arc<Outcome> {
    let ended = match done.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    };
    ended.unwrap_or_else(|| {
        Arc::new(Outcome::Failed {
            conflict: false,
            transient: true,
            commands: 0,
            error: Mutex::new(None),
            said: "the task sending the append ended before it finished (is the runtime shutting down?)".to_owned(),
        })
    })
}

/// What a pipelined command came to: its result, or that it must run alone.
pub(super) type Pipelined<A> = Option<Result<Committed<A>, ExecuteError<<A as Aggregate>::Error>>>;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Runs `command` on `stream` in the stream's pipeline (borrowed mutably only so that
    /// the future is `Send` without `C: Sync`). `None` when a batch it was in
    /// failed as a whole for another reason than a conflict or an outage: the caller runs
    /// it alone.
    pub(super) async fn execute_pipelined<C>(
        &self,
        stream: &str,
        command: &mut C,
        metadata: &Metadata,
        cache: &StateCache<A>,
        tries: &mut Attempts,
        decisions: &mut u32,
    ) -> Pipelined<A>
    where
        A: Handle<C>,
    {
        loop {
            let turn = self.queue.turn(stream).await;
            let (generation, tip) = {
                let pipe = turn.line().pipe();
                (pipe.generation, pipe.tip.as_ref().map(|(state, version)| (cache.copy(state), *version)))
            };
            let (mut state, version) = match tip.or_else(|| cache.get(stream)) {
                Some(known) => known,
                None => match self.load_latest(stream).await {
                    Ok(Loaded { state, version }) => (state, version),
                    Err(LoadError::Store(e)) if e.is_transient() => {
                        drop(turn);
                        if tries.wait_after_failure().await {
                            telemetry::command_retried(A::NAME, "unavailable");
                            continue;
                        }
                        return Some(Err(ExecuteError::Store(e)));
                    }
                    Err(e) => return Some(Err(e.into())),
                },
            };
            *decisions = decisions.saturating_add(1);
            let decided = match state.handle(&*command) {
                Ok(decided) if !decided.is_empty() => decided,
                // A rejection or nothing to change: it stands once what it was decided
                // on is stored.
                other => {
                    let settled = turn.line().pipe().settled(generation);
                    drop(turn);
                    match settled {
                        Settled::Void => continue,
                        Settled::Now => self.remember(stream, &state, version),
                        Settled::After(done) => {
                            if !matches!(*outcome_of(done).await, Outcome::Stored(_)) {
                                continue;
                            }
                        }
                    }
                    return Some(match other {
                        Ok(_) => Ok(Committed { state, version, events: Vec::new(), attempts: *decisions }),
                        Err(rejected) => Err(ExecuteError::Rejected(rejected)),
                    });
                }
            };
            let ids: Vec<Uuid> = decided.iter().map(|_| Uuid::now_v7()).collect();
            let mut new_events = match encode(stream, &decided, &ids, metadata) {
                Ok(new_events) => new_events,
                Err(e) => return Some(Err(e)),
            };
            let count = new_events.len();
            let end = version.saturating_add(u64::try_from(count).unwrap_or(u64::MAX));
            for event in decided {
                state.apply_event(event);
            }
            // Joins the batch that goes next; a full one waits for the batch in flight,
            // and this command starts the batch after it.
            let joined = loop {
                let step = {
                    let mut pipe = turn.line().pipe();
                    let full = match (&pipe.pending, &pipe.in_flight) {
                        (Some(batch), Some(in_flight)) if batch.commands >= MOST_COMMANDS_PER_APPEND => {
                            Some(in_flight.clone())
                        }
                        _ => None,
                    };
                    if pipe.generation != generation || pipe.tip.as_ref().is_some_and(|(_, at)| *at != version) {
                        Join::Void
                    } else if let Some(in_flight) = full {
                        Join::WaitFor(in_flight)
                    } else {
                        pipe.tip = Some((cache.copy(&state), end));
                        match &mut pipe.pending {
                            Some(batch) => {
                                let offset = batch.events.len();
                                batch.events.append(&mut new_events);
                                batch.commands = batch.commands.saturating_add(1);
                                Join::Joined(batch.done.subscribe(), offset)
                            }
                            None => {
                                let (done, receiver) = watch::channel(None);
                                let opened_by = tracing::Span::current();
                                let batch = Batch {
                                    expected: version,
                                    events: std::mem::take(&mut new_events),
                                    commands: 1,
                                    done,
                                    opened_by,
                                };
                                if pipe.in_flight.is_some() {
                                    pipe.pending = Some(batch);
                                } else {
                                    pipe.in_flight = Some(receiver.clone());
                                    let line = self.queue.hold(stream);
                                    tokio::spawn(self.sender(line, stream.to_owned(), cache.clone()).send(batch));
                                }
                                Join::Joined(receiver, 0)
                            }
                        }
                    }
                };
                match step {
                    Join::WaitFor(in_flight) => drop(outcome_of(in_flight).await),
                    Join::Void => break None, // decided on events that failed meanwhile
                    Join::Joined(done, offset) => break Some((done, offset)),
                }
            };
            let Some((done, offset)) = joined else {
                continue;
            };
            drop(turn);
            match &*outcome_of(done).await {
                Outcome::Stored(stored) => {
                    let (returned, mine) = {
                        let mut stored = stored.lock().unwrap_or_else(PoisonError::into_inner);
                        let mine: Option<Vec<Envelope>> = offset
                            .checked_add(count)
                            .and_then(|to| stored.get_mut(offset..to))
                            .and_then(|slots| slots.iter_mut().map(Option::take).collect());
                        (stored.len(), mine)
                    };
                    let Some(events) = mine else {
                        return Some(Err(ExecuteError::Store(StoreError::Backend {
                            operation: format!("appending to stream `{stream}`"),
                            source: format!(
                                "the store returned {returned} events for an append of more than {offset} + {count}; \
                                 it breaks the EventStore contract"
                            )
                            .into(),
                        })));
                    };
                    let new_version = events.last().map_or(end, |e| e.stream_version);
                    if let Some(snapshots) = &self.snapshots {
                        if snapshots.policy.after_append(version, new_version) {
                            self.save_snapshot_in_background(stream, &state, new_version, snapshots);
                        }
                    }
                    return Some(Ok(Committed { state, version: new_version, events, attempts: *decisions }));
                }
                Outcome::Void => telemetry::command_retried(A::NAME, "void"),
                Outcome::Failed { conflict: true, .. } => {
                    telemetry::command_retried(A::NAME, "conflict");
                    if !tries.wait_after_failure().await {
                        return Some(Err(ExecuteError::Conflict {
                            stream: stream.to_owned(),
                            attempts: *decisions,
                            waited: tries.elapsed(),
                        }));
                    }
                }
                Outcome::Failed { commands: 1, error, said, .. } => {
                    let error = error.lock().unwrap_or_else(PoisonError::into_inner).take();
                    return Some(Err(ExecuteError::Store(error.unwrap_or_else(|| StoreError::Unavailable {
                        operation: format!("appending to stream `{stream}`"),
                        source: said.clone().into(),
                    }))));
                }
                Outcome::Failed { transient: true, commands, said, .. } => {
                    return Some(Err(ExecuteError::Store(StoreError::Unavailable {
                        operation: format!(
                            "appending to stream `{stream}` together with {} other commands",
                            commands.saturating_sub(1)
                        ),
                        source: said.clone().into(),
                    })));
                }
                Outcome::Failed { .. } => return None,
            }
        }
    }

    /// The task that sends `stream`'s batches, holding `line` until it is done.
    fn sender(&self, line: Arc<Line<A>>, stream: String, cache: StateCache<A>) -> Sender<A, S> {
        Sender { store: self.store.clone(), queue: self.queue.clone(), retry: self.retry, line, stream, cache }
    }
}

/// Sends a stream's batches one after another while commands keep adding to them.
struct Sender<A, S> {
    store: S,
    queue: StreamQueue<A>,
    retry: RetryPolicy,
    line: Arc<Line<A>>,
    stream: String,
    cache: StateCache<A>,
}

impl<A: Aggregate, S: EventStore> Sender<A, S> {
    /// Sends `batch`, then the batch that gathered meanwhile, until none did. An outage is
    /// retried with the same events (their ids make a re-send after a lost reply
    /// idempotent) as the repository's [`RetryPolicy`] allows.
    async fn send(self, mut batch: Batch) {
        loop {
            let Batch { expected, events, commands, done, opened_by } = batch;
            let count = events.len();
            let span = tracing::debug_span!(
                parent: &opened_by,
                "annals.append",
                stream = %self.stream,
                events = count,
                commands,
                expected_version = expected,
                first_position = tracing::field::Empty,
                last_position = tracing::field::Empty,
            );
            let mut tries = self.retry.start();
            let result = loop {
                let started = Instant::now();
                let sent = self
                    .store
                    .append(&self.stream, ExpectedVersion::Exact(expected), events.clone())
                    .instrument(span.clone())
                    .await;
                match sent {
                    Ok(stored) => {
                        telemetry::appended(A::NAME, count, started.elapsed());
                        telemetry::pipelined(A::NAME, commands);
                        if let (Some(first), Some(last)) = (stored.first(), stored.last()) {
                            span.record("first_position", first.global_position);
                            span.record("last_position", last.global_position);
                        }
                        break Ok(stored);
                    }
                    Err(e) if e.is_transient() && tries.wait_after_failure().await => {
                        tracing::warn!(stream = %self.stream, error = %e, "append failed: retrying");
                    }
                    Err(e) => break Err(e),
                }
            };
            let next = self.settle(result.is_ok());
            let outcome = match result {
                Ok(stored) => Outcome::Stored(Mutex::new(stored.into_iter().map(Some).collect())),
                Err(error) => Outcome::Failed {
                    conflict: error.is_conflict(),
                    transient: error.is_transient(),
                    commands,
                    said: error.to_string(),
                    error: Mutex::new(Some(error)),
                },
            };
            done.send_replace(Some(Arc::new(outcome)));
            match next {
                Some(next) => batch = next,
                None => break,
            }
        }
        self.queue.release(&self.stream);
    }

    /// After a batch: the next one to send, if it was stored and another gathered. When
    /// nothing is left the tip becomes the cached state; when it failed, the tip is void
    /// and so is the batch that gathered on it.
    fn settle(&self, stored: bool) -> Option<Batch> {
        let mut pipe = self.line.pipe();
        pipe.in_flight = None;
        if stored {
            let next = pipe.pending.take();
            match &next {
                Some(next) => pipe.in_flight = Some(next.done.subscribe()),
                None => {
                    if let Some((state, version)) = pipe.tip.take() {
                        self.cache.put(&self.stream, &state, version);
                    }
                }
            }
            return next;
        }
        pipe.generation = pipe.generation.wrapping_add(1);
        pipe.tip = None;
        self.cache.forget(&self.stream);
        if let Some(void) = pipe.pending.take() {
            void.done.send_replace(Some(Arc::new(Outcome::Void)));
        }
        None
    }
}

impl<A> Line<A> {
    /// Waits until no batch of the stream is in flight. The caller holds the stream's
    /// turn, so no new one starts: a command that runs alone starts from what is stored.
    pub(crate) async fn drained(&self) {
        loop {
            let in_flight = self.pipe().in_flight.clone();
            match in_flight {
                Some(done) => drop(outcome_of(done).await),
                None => return,
            }
        }
    }
}
