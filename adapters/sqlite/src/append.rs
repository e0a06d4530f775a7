//! Appends: all events or none, the expected version checked under the write lock.
//!
//! A one-event append (what a command usually decides) is one statement: an `INSERT ...
//! SELECT` that takes the write lock, checks the stream's version and inserts the event,
//! and commits on its own, or with the one-event appends that queued up behind this
//! process's writer lock (`group_commit.rs`). A longer append runs in a `BEGIN
//! IMMEDIATE` transaction: the same statement for its first event, then one insert per
//! further event, then `COMMIT`.
//! When the version does not match, or a unique constraint stops the insert, nothing is
//! written and the events' ids decide between an idempotent retry (the stored events are
//! returned), a reused id and a conflict ([`kit::already_stored`]).

use std::collections::HashMap;
use std::sync::Arc;

use annals::store::kit::{self, from_db, to_db};
use annals::{Envelope, ExpectedVersion, NewEvent, StoreError};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::error::{backend, is_unique_violation, out_of_range, store_error};
use crate::group_commit::Decided;
use crate::rows::Operation;
use crate::store::SqliteStore;
use crate::{rows, sql};

/// How often an append is tried again when a unique constraint stopped it but none of
/// its event ids turned out to be stored (a writer that bypassed the write lock).
const ATTEMPTS: u32 = 3;

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// An event encoded for its row: what its insert binds.
pub(crate) struct EventRow {
    event_id: Uuid,
    event_type: String,
    event_version: i64,
    payload: String,
    /// `None` when the event carries no free-form metadata keys.
    metadata: Option<String>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// What one attempt did.
enum Attempt {
    /// Committed: the (stream version, global position) of each event, and the time
    /// recorded.
    Written(Vec<(u64, u64)>, DateTime<Utc>),
    /// The stream was not at the expected version; nothing was written.
    WrongVersion,
    /// A unique constraint stopped the insert; nothing was written.
    Taken,
}

impl SqliteStore {
    pub(crate) async fn append_events(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        kit::validate_append(stream_id, &events)?;
        let operation = || format!("appending to stream `{stream_id}`");
        if events.is_empty() {
            let actual = self.read_stream_version(stream_id).await?;
            if !expected.accepts(actual) {
                return Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual });
            }
            return Ok(Vec::new());
        }
        let expected_version = match expected {
            ExpectedVersion::Any => None,
            // No stream can be at a version beyond what the table stores.
            ExpectedVersion::Exact(version) => Some(to_db(version, "expected version").unwrap_or(-1)),
        };
        // Encode before taking the write lock, so it is held only for the database's work;
        // shared, so that a one-event append waits in the group queue without a copy.
        let encoded =
            events.iter().map(|event| encode(event, &operation).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        let mut attempt = 1;
        loop {
            let outcome = self.try_append(stream_id, expected_version, &encoded, &operation).await?;
            let taken = match outcome {
                Attempt::Written(places, recorded_at) => return Ok(envelopes(stream_id, events, places, recorded_at)),
                Attempt::WrongVersion => false,
                Attempt::Taken => true,
            };
            // Nothing was written. Stored events never change, so whatever is stored under
            // the ids decides, read outside the write lock: a retry of an append whose reply
            // was lost (return it), a reused id, or (nothing stored) a conflict.
            let stored = self.stored_under(&events, &operation).await?;
            if let Some(stored) = kit::already_stored(stream_id, expected, &events, |id| stored.get(id))? {
                return Ok(stored);
            }
            if !taken {
                let actual = self.read_stream_version(stream_id).await?;
                return Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual });
            }
            if attempt >= ATTEMPTS {
                return Err(backend(
                    operation(),
                    "a unique constraint refused the events, though none of their ids is stored and the stream's \
                     version was read under the write lock; is another program writing to the events table without \
                     taking the write lock first?",
                ));
            }
            attempt += 1;
        }
    }

    /// One attempt, under this process's writer lock: one statement for one event (in a
    /// group commit with the one-event appends waiting with it, `group_commit.rs`), a
    /// `BEGIN IMMEDIATE` transaction for more.
    async fn try_append(
        &self,
        stream_id: &str,
        expected: Option<i64>,
        encoded: &[Arc<EventRow>],
        operation: Operation<'_>,
    ) -> Result<Attempt, StoreError> {
        let (recorded_at, recorded_nanos) = rows::now();
        let [first, rest @ ..] = encoded else {
            return Ok(Attempt::Written(Vec::new(), recorded_at));
        };
        if rest.is_empty() {
            return Ok(
                match self.append_one(stream_id, expected, Arc::clone(first), recorded_nanos, operation).await? {
                    Decided::Written(place) => Attempt::Written(vec![place], recorded_at),
                    Decided::WrongVersion => Attempt::WrongVersion,
                    Decided::Taken => Attempt::Taken,
                },
            );
        }
        let insert_first = bind_event(sql::INSERT_FIRST, stream_id, expected, first, recorded_nanos);
        let writer = self.inner.writer.lock().await;
        let mut transaction =
            self.inner.pool.begin_with(sql::BEGIN_IMMEDIATE).await.map_err(|e| store_error(operation(), e))?;
        let first_place = match insert_first.fetch_optional(&mut *transaction).await {
            Ok(Some(row)) => match place(&row, operation) {
                Ok(place) => place,
                Err(error) => return Err(abort(transaction, error).await),
            },
            Ok(None) => {
                rollback(transaction, operation).await?;
                return Ok(Attempt::WrongVersion);
            }
            Err(error) if is_unique_violation(&error) => {
                rollback(transaction, operation).await?;
                return Ok(Attempt::Taken);
            }
            Err(error) => return Err(abort(transaction, store_error(operation(), error)).await),
        };
        let mut places = Vec::with_capacity(encoded.len());
        places.push(first_place);
        for (offset, event) in (1u64..).zip(rest) {
            let stream_version = first_place.0.saturating_add(offset);
            let version = match to_db(stream_version, "stream version") {
                Ok(version) => version,
                Err(error) => return Err(abort(transaction, out_of_range(operation(), error)).await),
            };
            let inserted = bind_event(sql::INSERT_EVENT, stream_id, Some(version), event, recorded_nanos)
                .execute(&mut *transaction)
                .await;
            match inserted {
                Ok(done) => match from_db(done.last_insert_rowid(), 1, "global position") {
                    Ok(position) => places.push((stream_version, position)),
                    Err(error) => return Err(abort(transaction, out_of_range(operation(), error)).await),
                },
                Err(error) if is_unique_violation(&error) => {
                    rollback(transaction, operation).await?;
                    return Ok(Attempt::Taken);
                }
                Err(error) => return Err(abort(transaction, store_error(operation(), error)).await),
            }
        }
        transaction.commit().await.map_err(|e| store_error(operation(), e))?;
        drop(writer);
        if let Some(&(_, last)) = places.last() {
            self.inner.head.send_replace(last);
        }
        Ok(Attempt::Written(places, recorded_at))
    }

    /// The envelopes stored under the ids of `events`, by id.
    async fn stored_under(
        &self,
        events: &[NewEvent],
        operation: Operation<'_>,
    ) -> Result<HashMap<Uuid, Envelope>, StoreError> {
        let found = sqlx::query(sql::EVENTS_BY_ID)
            .bind(rows::id_list(events.iter().map(|e| &e.event_id)))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        Ok(rows::envelopes(&found, None, operation)?.into_iter().map(|e| (e.event_id, e)).collect())
    }
}

/// Binds an event's columns to `statement` (`sql::INSERT_FIRST` or `sql::INSERT_EVENT`):
/// `?1` the stream, `?2` the expected or the new version, then the event.
pub(crate) fn bind_event<'q>(
    statement: &'q str,
    stream_id: &'q str,
    version: Option<i64>,
    event: &'q EventRow,
    recorded_nanos: i64,
) -> Query<'q> {
    sqlx::query(statement)
        .bind(stream_id)
        .bind(version)
        .bind(event.event_id)
        .bind(event.event_type.as_str())
        .bind(event.event_version)
        .bind(event.payload.as_str())
        .bind(event.metadata.as_deref())
        .bind(event.correlation_id)
        .bind(event.causation_id)
        .bind(recorded_nanos)
}

/// The (stream version, global position) `sql::INSERT_FIRST` returned.
pub(crate) fn place(row: &SqliteRow, operation: Operation<'_>) -> Result<(u64, u64), StoreError> {
    let get = |name: &str| -> Result<i64, StoreError> { row.try_get(name).map_err(|e| store_error(operation(), e)) };
    let range = |e| out_of_range(operation(), e);
    Ok((
        from_db(get("stream_version")?, 1, "stream version").map_err(range)?,
        from_db(get("global_position")?, 1, "global position").map_err(range)?,
    ))
}

/// Rolls `transaction` back now (rather than when the connection next runs a command),
/// so the write lock is free when the append returns.
async fn rollback(transaction: sqlx::Transaction<'static, Sqlite>, operation: Operation<'_>) -> Result<(), StoreError> {
    transaction.rollback().await.map_err(|e| store_error(operation(), e))
}

/// Rolls `transaction` back and returns `error`, the reason. A failed rollback changes
/// nothing for the caller: the transaction is rolled back when the connection is
/// released, or closed with it.
pub(crate) async fn abort(transaction: sqlx::Transaction<'static, Sqlite>, error: StoreError) -> StoreError {
    let _ = transaction.rollback().await;
    error
}

/// Encodes an event's columns: the payload and metadata as serde_json writes them.
fn encode(event: &NewEvent, operation: Operation<'_>) -> Result<EventRow, StoreError> {
    let problem = |what: &str, e: serde_json::Error| {
        backend(
            operation(),
            format!("the {what} of event {} (`{}`) does not encode: {e}", event.event_id, event.event_type),
        )
    };
    let payload = serde_json::to_string(&event.payload).map_err(|e| problem("payload", e))?;
    let metadata = if event.metadata.extra.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&event.metadata.extra).map_err(|e| problem("metadata", e))?)
    };
    Ok(EventRow {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        event_version: i64::from(event.event_version),
        payload,
        metadata,
        correlation_id: event.metadata.correlation_id,
        causation_id: event.metadata.causation_id,
    })
}

/// The envelopes of appended `events`, given the (stream version, global position) of each.
fn envelopes(
    stream_id: &str,
    events: Vec<NewEvent>,
    places: Vec<(u64, u64)>,
    recorded_at: DateTime<Utc>,
) -> Vec<Envelope> {
    events
        .into_iter()
        .zip(places)
        .map(|(event, (stream_version, global_position))| Envelope {
            event_id: event.event_id,
            stream_id: stream_id.to_owned(),
            stream_version,
            global_position,
            recorded_at,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload.into(),
            metadata: event.metadata,
        })
        .collect()
}
