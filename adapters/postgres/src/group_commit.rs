//! Group commit: appends to different streams that arrive while an append of the same
//! store is in flight are written together, in one statement and one transaction.
//!
//! A durable commit is what an append costs (the WAL flush, and the NOTIFY that wakes
//! subscribers, which PostgreSQL serializes across all notifying transactions). Writing
//! the appends that queued up behind one in flight together shares that cost among them.
//! Nothing waits for a group to fill: an append that finds none in flight runs at once,
//! alone, as without group commit, so a lone writer keeps its latency.
//!
//! Each append in a group keeps its own expected-version check and its own outcome:
//! the statement writes a stream's events only if that stream is at its expected
//! version, and reports which streams it wrote. An append whose stream was not at its
//! version is rejected alone, as usual; the others are written. When the statement fails
//! as a whole (a unique index: a concurrent writer of another process took a version,
//! or an event id is already stored; a lost connection; anything else), no append of
//! the group was written, and each is run again alone, so one bad append never fails
//! another. A group holds at most one append per stream: a second append to a stream
//! waits for the next group, in arrival order.
//!
//! Groups are written by a task of their own (spawned on the caller's runtime), one
//! group at a time per store. Dropping the future of an append waiting in a group leaves
//! its outcome unknown, as for any append whose statement may have been sent: the group
//! still writes it, unless the group fails as a whole (then nobody runs it alone).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use annals::{NewEvent, StoreError};
use sqlx::Row;
use tokio::sync::oneshot;

use crate::append::{Attempt, Columns};
use crate::error::{backend, store_error};
use crate::{rows, PostgresStore};

/// The most appends one group commit writes, by default.
pub(crate) const DEFAULT_GROUP_LIMIT: usize = 64;

/// The histogram of how many appends each group commit wrote in one statement.
const GROUP_SIZE: &str = "annals_group_commit_appends";

/// The counter of groups whose statement failed as a whole, so that each of their
/// appends ran alone.
const GROUP_FAILURES: &str = "annals_group_commit_failures_total";

/// The appends waiting for the group in flight to finish.
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    /// The most appends per group; 1 turns group commit off.
    limit: usize,
}

#[derive(Default)]
struct State {
    /// Whether an append or a group is in flight (then new appends queue up).
    busy: bool,
    queue: VecDeque<Queued>,
}

/// An append waiting for its group.
struct Queued {
    stream_id: String,
    expected: Option<i64>,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Reply>,
}

/// What the group did with an append, and its events back.
struct Reply {
    events: Vec<NewEvent>,
    outcome: Outcome,
}

enum Outcome {
    /// The group statement's verdict on this append (written, or not at its version).
    Decided(Attempt),
    /// The group statement failed as a whole: nothing of this append was written; run it
    /// alone.
    Alone,
}

/// How an append starts: the first attempt of `append.rs`'s loop.
pub(crate) enum Start {
    /// Run the first attempt alone now, holding `Turn` until it is done (appends that
    /// arrive meanwhile queue up for a group).
    Alone(Vec<NewEvent>, Option<Turn>),
    /// A group already made the first attempt.
    Decided(Vec<NewEvent>, Attempt),
}

impl GroupCommit {
    pub(crate) fn new(limit: usize) -> Self {
        GroupCommit { state: Mutex::new(State::default()), limit: limit.max(1) }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts an append on `store`: alone at once when nothing is in flight (or group commit
/// is off), otherwise queued for the next group and decided by it.
pub(crate) async fn start(
    store: &PostgresStore,
    stream_id: &str,
    expected: Option<i64>,
    events: Vec<NewEvent>,
) -> Result<Start, StoreError> {
    let group = store.group_commit();
    if group.limit == 1 {
        return Ok(Start::Alone(events, None));
    }
    let receiver = {
        let mut state = group.state();
        if !state.busy {
            state.busy = true;
            drop(state);
            return Ok(Start::Alone(events, Some(Turn { store: store.clone(), released: false })));
        }
        let (reply, receiver) = oneshot::channel();
        state.queue.push_back(Queued { stream_id: stream_id.to_owned(), expected, events, reply });
        receiver
    };
    match receiver.await {
        Ok(Reply { events, outcome: Outcome::Decided(attempt) }) => Ok(Start::Decided(events, attempt)),
        Ok(Reply { events, outcome: Outcome::Alone }) => Ok(Start::Alone(events, None)),
        // The writer task was dropped with its runtime, this append with it.
        Err(_) => Err(backend(
            format!("appending to stream `{stream_id}`"),
            "the group commit stopped before this append was written (its runtime shut down); \
             nothing of it was written unless a re-send finds its event ids stored"
                .to_owned(),
        )),
    }
}

/// The right to write: held by the append or the group in flight. Dropping it hands the
/// queue on to a writer task, or marks the store idle when nothing waits.
pub(crate) struct Turn {
    store: PostgresStore,
    /// Set once [`next_group`](Self::next_group) found nothing waiting and marked the
    /// store idle: then dropping the turn does nothing (another append may hold the
    /// next one already).
    released: bool,
}

impl Turn {
    /// The next group: up to the limit, one append per stream, oldest first. `None`, and
    /// the store idle, when nothing waits.
    fn next_group(mut self) -> Option<(Turn, Vec<Queued>)> {
        let group = self.store.group_commit();
        let mut state = group.state();
        if state.queue.is_empty() {
            state.busy = false;
            drop(state);
            self.released = true;
            return None;
        }
        let mut taken: Vec<Queued> = Vec::new();
        let mut left = VecDeque::with_capacity(state.queue.len());
        while let Some(queued) = state.queue.pop_front() {
            // At most 64 appends by default: a scan is cheaper than hashing each stream id.
            if taken.len() < group.limit && !taken.iter().any(|t| t.stream_id == queued.stream_id) {
                taken.push(queued);
            } else {
                left.push_back(queued);
            }
        }
        state.queue = left;
        drop(state);
        Some((self, taken))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let group = self.store.group_commit();
        let mut state = group.state();
        if state.queue.is_empty() {
            state.busy = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(state);
                runtime.spawn(write_groups(Turn { store: self.store.clone(), released: false }));
            }
            Err(_) => {
                // No runtime to write them on: the waiting appends fail (their replies
                // are dropped), none is written.
                state.queue.clear();
                state.busy = false;
            }
        }
    }
}

/// Writes groups until nothing waits.
async fn write_groups(mut turn: Turn) {
    while let Some((next, group)) = turn.next_group() {
        turn = next;
        metrics::histogram!(GROUP_SIZE, "schema" => turn.store.schema().as_str().to_owned())
            .record(u32::try_from(group.len()).map_or(f64::MAX, f64::from));
        let outcomes = match group.as_slice() {
            [one] => vec![crate::append::attempt_alone(&turn.store, &one.stream_id, one.expected, &one.events)
                .await
                .map_or(Outcome::Alone, Outcome::Decided)],
            _ => write_group(&turn.store, &group).await.unwrap_or_else(|error| {
                metrics::counter!(GROUP_FAILURES, "schema" => turn.store.schema().as_str().to_owned()).increment(1);
                tracing::debug!(appends = group.len(), %error, "group commit failed; its appends run alone");
                group.iter().map(|_| Outcome::Alone).collect()
            }),
        };
        for (queued, outcome) in group.into_iter().zip(outcomes) {
            // A caller that stopped waiting is told nothing; its append is decided anyway.
            let _ = queued.reply.send(Reply { events: queued.events, outcome });
        }
    }
}

/// One statement for the whole group: each append's outcome, in the group's order.
async fn write_group(store: &PostgresStore, group: &[Queued]) -> Result<Vec<Outcome>, StoreError> {
    let operation = || format!("appending to {} streams in one group commit", group.len());
    let events = group.iter().map(|q| q.events.len()).sum();
    let mut streams = Vec::with_capacity(events);
    let mut expected = Vec::with_capacity(events);
    let mut steps = Vec::with_capacity(events);
    let mut columns = Columns::with_capacity(events);
    for queued in group {
        for (index, event) in queued.events.iter().enumerate() {
            let Some(step) = i32::try_from(index).ok().and_then(|index| index.checked_add(1)) else {
                return Err(backend(
                    operation(),
                    format!("an append to stream `{}` holds more events than an integer counts", queued.stream_id),
                ));
            };
            streams.push(queued.stream_id.as_str());
            expected.push(queued.expected);
            steps.push(step);
            columns.push(&queued.stream_id, event)?;
        }
    }
    let rows = store
        .on_live_connection(|| {
            columns
                .bind(sqlx::query(&store.sql().append_grouped).bind(&streams).bind(&expected).bind(&steps))
                .fetch_all(store.pool())
        })
        .await
        .map_err(|e| store_error(operation(), e))?;
    let mut written: Vec<Vec<rows::Written>> = group.iter().map(|_| Vec::new()).collect();
    for row in &rows {
        let stream: &str = row.try_get("stream_id").map_err(|e| store_error(operation(), e))?;
        let Some(index) = group.iter().position(|q| q.stream_id == stream) else {
            return Err(backend(
                operation(),
                format!("PostgreSQL returned a row of stream `{stream}`, not in the group"),
            ));
        };
        if let Some(of_stream) = written.get_mut(index) {
            of_stream.push(rows::written(row, operation)?);
        }
    }
    Ok(written
        .into_iter()
        .map(|w| Outcome::Decided(if w.is_empty() { Attempt::WrongVersion } else { Attempt::Written(w) }))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a test reports failure by panicking")]

    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use annals::telemetry::Recorded;
    use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError};

    use crate::testing::fresh_store;
    use crate::PostgresStore;

    fn events(n: usize) -> Vec<NewEvent> {
        (0..n).map(|i| NewEvent::new("test.happened", 1, serde_json::json!({ "i": i }))).collect()
    }

    /// Waits until `condition` holds of the store's group commit state.
    async fn until(store: &PostgresStore, what: &str, condition: impl Fn(&super::State) -> bool) {
        let start = Instant::now();
        while !condition(&store.group_commit().state()) {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Appends in a task of its own, once the `queued` appends before it are waiting.
    async fn queue(
        store: &PostgresStore,
        queued: usize,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> tokio::task::JoinHandle<Result<Vec<Envelope>, StoreError>> {
        let (owner, stream_id) = (store.clone(), stream.to_owned());
        let task = tokio::spawn(async move { owner.append(&stream_id, expected, events).await });
        until(store, &format!("{} queued appends", queued + 1), |s| s.queue.len() == queued + 1).await;
        task
    }

    /// Holds every insert into the store's events table back until the transaction ends.
    async fn hold_inserts(store: &PostgresStore) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut lock = store.pool().begin().await.unwrap();
        let sql = format!("LOCK TABLE {}.events IN SHARE MODE", store.schema().quoted());
        sqlx::query(&sql).execute(&mut *lock).await.unwrap();
        lock
    }

    /// Holds inserts back and starts an append to stream `lead`, which runs alone and
    /// stays in flight until the returned transaction ends: the appends after it queue.
    async fn lead_in_flight(
        store: &PostgresStore,
    ) -> (sqlx::Transaction<'static, sqlx::Postgres>, tokio::task::JoinHandle<Result<Vec<Envelope>, StoreError>>) {
        let lock = hold_inserts(store).await;
        let lead = {
            let store = store.clone();
            tokio::spawn(async move { store.append("lead", ExpectedVersion::Exact(0), events(1)).await })
        };
        until(store, "the lead append", |s| s.busy).await;
        (lock, lead)
    }

    /// Each stream's versions, with the id of the transaction that wrote each version.
    async fn stored(store: &PostgresStore) -> BTreeMap<String, Vec<(i64, String)>> {
        let sql = format!(
            "SELECT stream_id, stream_version, transaction_id::text FROM {}.events ORDER BY global_position",
            store.schema().quoted()
        );
        let rows: Vec<(String, i64, String)> = sqlx::query_as(&sql).fetch_all(store.pool()).await.unwrap();
        let mut streams = BTreeMap::<String, Vec<(i64, String)>>::new();
        for (stream, version, transaction) in rows {
            streams.entry(stream).or_default().push((version, transaction));
        }
        streams
    }

    fn versions(written: &[Envelope]) -> Vec<u64> {
        written.iter().map(|e| e.stream_version).collect()
    }

    #[tokio::test]
    async fn appends_queued_behind_one_in_flight_are_written_together_each_with_its_own_outcome() {
        // The test's runtime has one thread: the group writer task records here too.
        let recorded = Recorded::default();
        let _recorder = metrics::set_default_local_recorder(&recorded);
        let store = fresh_store().await.unwrap();
        store.append("b", ExpectedVersion::Exact(0), events(2)).await.unwrap();
        let (lock, lead) = lead_in_flight(&store).await;
        let a = queue(&store, 0, "a", ExpectedVersion::Exact(0), events(1)).await;
        let stale = queue(&store, 1, "b", ExpectedVersion::Exact(1), events(1)).await;
        let any = queue(&store, 2, "c", ExpectedVersion::Any, events(3)).await;
        let a_again = queue(&store, 3, "a", ExpectedVersion::Exact(1), events(1)).await;
        // A caller that stops waiting: the group writes its append all the same.
        let abandoned = queue(&store, 4, "d", ExpectedVersion::Exact(0), events(1)).await;
        abandoned.abort();
        lock.rollback().await.unwrap();

        assert_eq!(versions(&lead.await.unwrap().unwrap()), [1]);
        assert_eq!(versions(&a.await.unwrap().unwrap()), [1]);
        match stale.await.unwrap() {
            Err(StoreError::Conflict { stream, expected, actual }) => {
                assert_eq!((stream.as_str(), expected, actual), ("b", ExpectedVersion::Exact(1), 2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(versions(&any.await.unwrap().unwrap()), [1, 2, 3]);
        assert_eq!(versions(&a_again.await.unwrap().unwrap()), [2]);

        let streams = stored(&store).await;
        let transaction = |stream: &str, version: i64| {
            streams[stream].iter().find(|(v, _)| *v == version).map(|(_, t)| t.clone()).unwrap()
        };
        assert_eq!(streams["b"].len(), 2, "the stale append wrote nothing");
        assert_eq!(streams["c"].len(), 3);
        // `a` and `c` queued together and were written in one transaction; the second
        // append to `a` waited for the next group; the lead went alone.
        assert_eq!(transaction("a", 1), transaction("c", 1));
        assert_eq!(transaction("c", 1), transaction("c", 3));
        assert_ne!(transaction("a", 2), transaction("a", 1));
        assert_ne!(transaction("lead", 1), transaction("a", 1));
        assert_eq!(transaction("d", 1), transaction("a", 1), "the abandoned append was written with its group");
        until(&store, "the store to be idle", |s| !s.busy && s.queue.is_empty()).await;
        // Operators see the groups: a, b, c and d together, then the second append to a.
        assert_eq!(recorded.of("annals_group_commit_appends"), [4.0, 1.0]);
        assert!(recorded.of("annals_group_commit_failures_total").is_empty());
    }

    #[tokio::test]
    async fn a_group_that_fails_as_a_whole_runs_each_append_alone() {
        let recorded = Recorded::default();
        let _recorder = metrics::set_default_local_recorder(&recorded);
        let store = fresh_store().await.unwrap();
        let original = events(1);
        let stored_before = store.append("x", ExpectedVersion::Exact(0), original.clone()).await.unwrap();
        let (lock, lead) = lead_in_flight(&store).await;
        let a = queue(&store, 0, "a", ExpectedVersion::Exact(0), events(1)).await;
        // Another stream, an id already stored: the group's statement fails on the unique index.
        let reused = queue(&store, 1, "y", ExpectedVersion::Exact(0), original.clone()).await;
        // The same append again (its reply was lost): the stored events come back.
        let resent = queue(&store, 2, "x", ExpectedVersion::Exact(0), original.clone()).await;
        let c = queue(&store, 3, "c", ExpectedVersion::Exact(0), events(2)).await;
        lock.rollback().await.unwrap();

        assert_eq!(versions(&lead.await.unwrap().unwrap()), [1]);
        assert_eq!(versions(&a.await.unwrap().unwrap()), [1]);
        match reused.await.unwrap() {
            Err(StoreError::DuplicateEventId { event_id, stream, existing_stream, existing_version }) => {
                assert_eq!(event_id, original[0].event_id);
                assert_eq!((stream.as_str(), existing_stream.as_str(), existing_version), ("y", "x", 1));
            }
            other => panic!("expected a duplicate event id, got {other:?}"),
        }
        assert_eq!(resent.await.unwrap().unwrap(), stored_before);
        assert_eq!(versions(&c.await.unwrap().unwrap()), [1, 2]);
        until(&store, "the store to be idle", |s| !s.busy && s.queue.is_empty()).await;

        let streams = stored(&store).await;
        let names: Vec<&str> = streams.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "c", "lead", "x"], "nothing of `y`, one copy of `x`");
        assert_eq!((streams["x"].len(), streams["c"].len()), (1, 2));
        let transactions: std::collections::HashSet<_> = streams.values().map(|v| v[0].1.clone()).collect();
        assert_eq!(transactions.len(), 4, "after the group failed, each append went alone");
        assert_eq!(recorded.of("annals_group_commit_appends"), [4.0]);
        assert_eq!(recorded.of("annals_group_commit_failures_total"), [1.0]);
    }

    #[tokio::test]
    async fn with_group_commit_off_nothing_queues() {
        let store = fresh_store().await.unwrap().group_commit_up_to(1);
        let lock = hold_inserts(&store).await;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append(&format!("s{i}"), ExpectedVersion::Exact(0), events(1)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let state = store.group_commit().state();
            assert!(!state.busy && state.queue.is_empty());
        }
        lock.rollback().await.unwrap();
        for task in tasks {
            assert_eq!(versions(&task.await.unwrap().unwrap()), [1]);
        }
        let streams = stored(&store).await;
        let transactions: std::collections::HashSet<_> = streams.values().map(|v| v[0].1.clone()).collect();
        assert_eq!(transactions.len(), 4, "one transaction per append");
    }
}
