//! Group commit: one-event appends that queue up behind this process's writer lock are
//! written together, in one `BEGIN IMMEDIATE` transaction and one commit (one WAL sync
//! with `synchronous = FULL`).
//!
//! Every one-event append joins the queue, then takes the writer lock. The writer that
//! gets the lock writes every append waiting in the queue, its own among them, and leaves
//! each one's outcome for its caller, who finds it when it gets the lock in turn. An append
//! alone in the queue is written as before: one statement that commits on its own, so a
//! lone writer pays nothing for grouping.
//!
//! Each append keeps its own expected-version check and its own outcome: in a group each
//! is the same `INSERT ... SELECT` as alone, and sees the appends before it in the group
//! (two appends to one stream are numbered one after the other, and the second one's
//! expected version is checked after the first). A unique constraint fails only that
//! statement, not the transaction. When the group cannot be written as a whole (any other
//! error, at any statement or at the commit), it is rolled back and each append runs again
//! alone, so one bad append never fails another. An append whose group was dropped before
//! it was decided (the writer's future was cancelled) runs alone too; should that group
//! have committed, the append's event id is found stored and the stored event returned.

use std::sync::{Arc, Mutex, PoisonError};

use annals::StoreError;

use crate::append::{abort, bind_event, place, EventRow};
use crate::error::{is_unique_violation, store_error};
use crate::rows::Operation;
use crate::sql;
use crate::store::SqliteStore;

/// The histogram of how many appends each group commit wrote in one transaction.
const GROUP_SIZE: &str = "annals_group_commit_appends";

/// The counter of groups that could not be written as a whole, so that each of their
/// appends ran alone.
const GROUP_FAILURES: &str = "annals_group_commit_failures_total";

/// The one-event appends waiting for the writer lock, oldest first.
#[derive(Default)]
pub(crate) struct Queue(Mutex<Vec<Arc<Waiting>>>);

impl Queue {
    fn push(&self, waiting: Arc<Waiting>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(waiting);
    }

    fn take(&self) -> Vec<Arc<Waiting>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A one-event append: what its statement binds, and its outcome once a group decided it.
pub(crate) struct Waiting {
    stream_id: String,
    expected: Option<i64>,
    row: Arc<EventRow>,
    recorded_nanos: i64,
    decided: Mutex<Option<Decided>>,
}

/// What the statement of a one-event append did.
#[derive(Clone, Copy)]
pub(crate) enum Decided {
    /// Committed at this (stream version, global position).
    Written((u64, u64)),
    /// The stream was not at the expected version; nothing was written.
    WrongVersion,
    /// A unique constraint stopped the insert; nothing was written.
    Taken,
}

impl Waiting {
    fn decided(&self) -> Option<Decided> {
        *self.decided.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, decided: Decided) {
        *self.decided.lock().unwrap_or_else(PoisonError::into_inner) = Some(decided);
    }
}

impl SqliteStore {
    /// Appends one event ([`EventRow`]) to `stream_id`, in a group with the one-event
    /// appends waiting with it, or alone.
    pub(crate) async fn append_one(
        &self,
        stream_id: &str,
        expected: Option<i64>,
        row: Arc<EventRow>,
        recorded_nanos: i64,
        operation: Operation<'_>,
    ) -> Result<Decided, StoreError> {
        let me = Arc::new(Waiting {
            stream_id: stream_id.to_owned(),
            expected,
            row,
            recorded_nanos,
            decided: Mutex::new(None),
        });
        self.inner.waiting.push(Arc::clone(&me));
        let writer = self.inner.writer.lock().await;
        if let Some(decided) = me.decided() {
            return Ok(decided);
        }
        let mut group = self.inner.waiting.take();
        if !group.iter().any(|waiting| Arc::ptr_eq(waiting, &me)) {
            // Taken by a group that was dropped before it decided: run alone.
            group.push(Arc::clone(&me));
        }
        if group.len() > 1 {
            match self.write_group(&group, operation).await {
                Ok(()) => {
                    if let Some(decided) = me.decided() {
                        return Ok(decided);
                    }
                }
                Err(error) => {
                    metrics::counter!(GROUP_FAILURES).increment(1);
                    tracing::debug!(appends = group.len(), %error, "group commit failed; its appends run alone");
                }
            }
        }
        let inserted = bind_event(sql::INSERT_FIRST, &me.stream_id, me.expected, &me.row, me.recorded_nanos)
            .fetch_optional(&self.inner.pool)
            .await;
        drop(writer);
        let decided = match inserted {
            Ok(Some(row)) => Decided::Written(place(&row, operation)?),
            Ok(None) => Decided::WrongVersion,
            Err(error) if is_unique_violation(&error) => Decided::Taken,
            Err(error) => return Err(store_error(operation(), error)),
        };
        if let Decided::Written((_, position)) = decided {
            self.inner.head.send_replace(position);
        }
        Ok(decided)
    }

    /// Writes `group` in one transaction; decides every append of it once committed.
    /// Nothing is decided when it fails.
    async fn write_group(&self, group: &[Arc<Waiting>], operation: Operation<'_>) -> Result<(), StoreError> {
        metrics::histogram!(GROUP_SIZE).record(u32::try_from(group.len()).map_or(f64::MAX, f64::from));
        let mut transaction =
            self.inner.pool.begin_with(sql::BEGIN_IMMEDIATE).await.map_err(|e| store_error(operation(), e))?;
        let mut decided = Vec::with_capacity(group.len());
        for waiting in group {
            let inserted = bind_event(
                sql::INSERT_FIRST,
                &waiting.stream_id,
                waiting.expected,
                &waiting.row,
                waiting.recorded_nanos,
            )
            .fetch_optional(&mut *transaction)
            .await;
            decided.push(match inserted {
                Ok(Some(row)) => match place(&row, operation) {
                    Ok(place) => Decided::Written(place),
                    Err(error) => return Err(abort(transaction, error).await),
                },
                Ok(None) => Decided::WrongVersion,
                Err(error) if is_unique_violation(&error) => Decided::Taken,
                Err(error) => return Err(abort(transaction, store_error(operation(), error)).await),
            });
        }
        transaction.commit().await.map_err(|e| store_error(operation(), e))?;
        let mut head = None;
        for (waiting, decided) in group.iter().zip(decided) {
            if let Decided::Written((_, position)) = decided {
                head = head.max(Some(position));
            }
            waiting.decide(decided);
        }
        if let Some(head) = head {
            self.inner.head.send_replace(head);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a test reports failure by panicking")]

    use std::time::{Duration, Instant};

    use annals::telemetry::Recorded;
    use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
    use futures::TryStreamExt;

    use crate::testing::fresh_store;
    use crate::SqliteStore;

    fn events(n: usize) -> Vec<NewEvent> {
        (0..n).map(|i| NewEvent::new("test.happened", 1, serde_json::json!({ "i": i }))).collect()
    }

    fn waiting(store: &SqliteStore) -> usize {
        store.inner.waiting.0.lock().unwrap().len()
    }

    /// Appends in a task of its own, once the `queued` appends before it are waiting.
    async fn queue(
        store: &SqliteStore,
        queued: usize,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> tokio::task::JoinHandle<Result<Vec<Envelope>, StoreError>> {
        let (owner, stream_id) = (store.clone(), stream.to_owned());
        let task = tokio::spawn(async move { owner.append(&stream_id, expected, events).await });
        let start = Instant::now();
        while waiting(store) != queued + 1 {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {} queued appends", queued + 1);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task
    }

    async fn versions(store: &SqliteStore, stream: &str) -> Vec<u64> {
        let read: Vec<Envelope> = store.read_stream(stream, VersionRange::ALL).try_collect().await.unwrap();
        read.iter().map(|e| e.stream_version).collect()
    }

    fn written(outcome: Result<Vec<Envelope>, StoreError>) -> Vec<u64> {
        outcome.unwrap().iter().map(|e| e.stream_version).collect()
    }

    #[tokio::test]
    async fn appends_waiting_for_the_writer_are_written_together_each_with_its_own_outcome() {
        // The test's runtime has one thread: every append reports here.
        let recorded = Recorded::default();
        let _recorder = metrics::set_default_local_recorder(&recorded);
        let store = fresh_store().await;
        store.append("b", ExpectedVersion::Exact(0), events(2)).await.unwrap();
        let original = events(1);
        store.append("x", ExpectedVersion::Exact(0), original.clone()).await.unwrap();
        let writer = store.inner.writer.lock().await;
        let a = queue(&store, 0, "a", ExpectedVersion::Exact(0), events(1)).await;
        let stale = queue(&store, 1, "b", ExpectedVersion::Exact(1), events(1)).await;
        let any = queue(&store, 2, "c", ExpectedVersion::Any, events(1)).await;
        // The same stream again, in the same group: it sees the append before it.
        let a_again = queue(&store, 3, "a", ExpectedVersion::Exact(1), events(1)).await;
        // An id already stored: only this append is refused.
        let reused = queue(&store, 4, "y", ExpectedVersion::Exact(0), original.clone()).await;
        // The same append again (its reply was lost): the stored event comes back.
        let resent = queue(&store, 5, "x", ExpectedVersion::Exact(0), original.clone()).await;
        // A caller that stops waiting: the group writes its append all the same.
        let abandoned = queue(&store, 6, "d", ExpectedVersion::Exact(0), events(1)).await;
        abandoned.abort();
        drop(writer);

        assert_eq!(written(a.await.unwrap()), [1]);
        match stale.await.unwrap() {
            Err(StoreError::Conflict { stream, expected, actual }) => {
                assert_eq!((stream.as_str(), expected, actual), ("b", ExpectedVersion::Exact(1), 2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(written(any.await.unwrap()), [1]);
        assert_eq!(written(a_again.await.unwrap()), [2]);
        match reused.await.unwrap() {
            Err(StoreError::DuplicateEventId { stream, existing_stream, .. }) => {
                assert_eq!((stream.as_str(), existing_stream.as_str()), ("y", "x"));
            }
            other => panic!("expected a duplicate event id, got {other:?}"),
        }
        assert_eq!(written(resent.await.unwrap()), [1]);
        assert_eq!(versions(&store, "x").await, [1], "one copy of the re-sent event");
        assert_eq!(versions(&store, "y").await, Vec::<u64>::new());
        assert_eq!(versions(&store, "d").await, [1], "the abandoned append was written");
        assert_eq!(recorded.of("annals_group_commit_appends"), [7.0], "one group of the 7 that waited");
        assert!(recorded.of("annals_group_commit_failures_total").is_empty());
    }

    #[tokio::test]
    async fn a_group_that_cannot_commit_as_a_whole_runs_each_append_alone() {
        let recorded = Recorded::default();
        let _recorder = metrics::set_default_local_recorder(&recorded);
        let store = fresh_store().await;
        // An error other than a unique constraint fails the group's transaction.
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.event_type = 'test.refused' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let writer = store.inner.writer.lock().await;
        let a = queue(&store, 0, "a", ExpectedVersion::Exact(0), events(1)).await;
        let refused = vec![NewEvent::new("test.refused", 1, serde_json::json!({}))];
        let bad = queue(&store, 1, "bad", ExpectedVersion::Exact(0), refused).await;
        let c = queue(&store, 2, "c", ExpectedVersion::Exact(0), events(1)).await;
        drop(writer);

        assert_eq!(written(a.await.unwrap()), [1]);
        let error = bad.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("refused by the test"), "{error}");
        assert_eq!(written(c.await.unwrap()), [1]);
        assert_eq!(versions(&store, "bad").await, Vec::<u64>::new());
        assert_eq!(recorded.of("annals_group_commit_appends"), [3.0]);
        assert_eq!(recorded.of("annals_group_commit_failures_total"), [1.0]);
    }
}
