//! The append: the new events bound as statement parameters, and the algorithm around the
//! one statement that writes them.
//!
//! An append is **one statement and one round trip**: an insert that numbers the new
//! events after the stream's current version and inserts only if that version is the
//! expected one; the unique `(stream_id, stream_version)` index turns a lost race into a
//! conflict. Writers on different streams never lock each other out (appends that queue
//! up behind one in flight are written together, `group_commit.rs`). Only a failed
//! insert costs one more round trip: one statement looks up the events' ids (an
//! idempotent retry returns the stored events, [`kit::already_stored`]) and the stream's
//! version (the conflict's `actual`).

use std::collections::{BTreeMap, HashMap};

use annals::store::kit;
use annals::{Envelope, ExpectedVersion, NewEvent, StoreError};
use sqlx::Row;
use uuid::Uuid;

use crate::error::{backend, store_error, violated_unique_constraint};
use crate::group_commit::Start;
use crate::json::JsonText;
use crate::rows::{self, Written};
use crate::{read, PostgresStore};

/// How often an append with [`ExpectedVersion::Any`] is retried when a concurrent writer
/// takes the same versions first.
const ANY_VERSION_ATTEMPTS: u32 = 100;

/// [`EventStore::append`](annals::EventStore::append) on PostgreSQL.
pub(crate) async fn append(
    store: &PostgresStore,
    stream_id: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<Envelope>, StoreError> {
    kit::validate_append(stream_id, &events)?;
    if events.is_empty() {
        let actual = read::stream_version(store, stream_id).await?;
        if !expected.accepts(actual) {
            return Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual });
        }
        return Ok(Vec::new());
    }
    // No stream is beyond `i64::MAX`: a larger expected version selects the same (no)
    // stream as `i64::MAX`, and the append is rejected as a conflict.
    let expected_version = match expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::Exact(version) => Some(kit::bound_to_db(version)),
    };
    // A bad event fails before it waits for a group.
    for event in &events {
        schema_version(stream_id, event)?;
    }
    let started = crate::group_commit::start(store, stream_id, expected_version, events).await?;
    let (events, mut first, mut turn) = match started {
        Start::Alone(events, turn) => (events, None, turn),
        Start::Decided(events, attempt) => (events, Some(attempt), None),
    };
    // Bound for this append's own attempts only: an append its group wrote needs none.
    let mut batch = None;
    let mut attempts = 0;
    let mut written = loop {
        attempts += 1;
        let attempt = match first.take() {
            Some(attempt) => attempt,
            None => {
                let batch = match &mut batch {
                    Some(batch) => batch,
                    empty => empty.insert(Batch::new(stream_id, &events)?),
                };
                try_append(store, stream_id, expected_version, batch).await?
            }
        };
        // Appends queued behind this one's first attempt go on as a group.
        drop(turn.take());
        match attempt {
            Attempt::Written(written) => break written,
            Attempt::Taken { versions: true }
                if expected == ExpectedVersion::Any && attempts < ANY_VERSION_ATTEMPTS =>
            {
                // A concurrent writer took the versions first: number after its events.
                tokio::task::yield_now().await;
            }
            Attempt::WrongVersion | Attempt::Taken { .. } => {
                return reject(store, stream_id, expected, &events).await;
            }
        }
    };
    drop(batch);
    if written.len() != events.len() {
        return Err(backend(
            format!("appending to stream `{stream_id}`"),
            format!("PostgreSQL reported {} stored events for {} appended", written.len(), events.len()),
        ));
    }
    // RETURNING gives no order guarantee: sort by version (positions grow with it).
    written.sort_unstable_by_key(|w| w.stream_version);
    Ok(events
        .into_iter()
        .zip(written)
        .map(|(event, written)| Envelope {
            event_id: event.event_id,
            stream_id: stream_id.to_owned(),
            stream_version: written.stream_version,
            global_position: written.global_position,
            recorded_at: written.recorded_at,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload.into(),
            metadata: event.metadata,
        })
        .collect())
}

/// The outcome of one attempt of the append statement.
pub(crate) enum Attempt {
    /// The events were written.
    Written(Vec<Written>),
    /// The stream was not at the expected version; nothing was written.
    WrongVersion,
    /// A unique constraint stopped the insert: a concurrent writer took the versions
    /// (`stream_version`), or an event id is already stored (`event_id`).
    Taken { versions: bool },
}

/// One attempt of the append statement for `events` alone (a group of one).
pub(crate) async fn attempt_alone(
    store: &PostgresStore,
    stream_id: &str,
    expected: Option<i64>,
    events: &[NewEvent],
) -> Result<Attempt, StoreError> {
    try_append(store, stream_id, expected, &Batch::new(stream_id, events)?).await
}

async fn try_append(
    store: &PostgresStore,
    stream_id: &str,
    expected: Option<i64>,
    batch: &Batch<'_>,
) -> Result<Attempt, StoreError> {
    let operation = || format!("appending to stream `{stream_id}`");
    let sql = store.sql();
    let query = || match batch {
        // A new stream: its first version is 1, and the unique (stream_id,
        // stream_version) index is the whole expected-version check.
        Batch::One { event, version } if expected == Some(0) => {
            bind_one(sqlx::query(&sql.append_first).bind(stream_id), event, *version)
        }
        Batch::One { event, version } => {
            bind_one(sqlx::query(&sql.append_one).bind(stream_id).bind(expected), event, *version)
        }
        Batch::Many(columns) => columns.bind(sqlx::query(&sql.append).bind(stream_id).bind(expected)),
    };
    // A dead pooled connection costs no attempt; a lost reply is safe to repeat: the
    // same event ids are sent again, and an already stored append is recognized.
    let rows = match store.on_live_connection(|| query().fetch_all(store.pool())).await {
        Ok(rows) => rows,
        Err(error) => {
            return match violated_unique_constraint(&error) {
                Some("events_event_id_unique") => Ok(Attempt::Taken { versions: false }),
                Some(_) => Ok(Attempt::Taken { versions: true }),
                None => Err(store_error(operation(), error)),
            };
        }
    };
    if rows.is_empty() {
        return Ok(Attempt::WrongVersion);
    }
    let written = rows.iter().map(|row| rows::written(row, operation)).collect::<Result<_, _>>()?;
    Ok(Attempt::Written(written))
}

/// After a failed insert: the stored events if this append already happened (its reply
/// was lost), [`StoreError::DuplicateEventId`] if an id is reused, and otherwise the
/// conflict with the stream's current version.
async fn reject(
    store: &PostgresStore,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<Vec<Envelope>, StoreError> {
    let operation = || format!("appending to stream `{stream_id}` (looking up event ids and the stream's version)");
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let rows = store
        .on_live_connection(|| {
            sqlx::query(&store.sql().rejected_append).bind(&ids).bind(stream_id).fetch_all(store.pool())
        })
        .await
        .map_err(|e| store_error(operation(), e))?;
    // Every row carries the version; the outer join gives at least one row.
    let actual: i64 = match rows.first() {
        Some(row) => row.try_get("actual").map_err(|e| store_error(operation(), e))?,
        None => return Err(backend(operation(), "PostgreSQL returned no row for the stream's version".to_owned())),
    };
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        // The outer join's one row of NULLs when no event has these ids.
        let stored: Option<Uuid> = row.try_get("event_id").map_err(|e| store_error(operation(), e))?;
        if stored.is_some() {
            let envelope = rows::envelope(row, operation)?;
            found.insert(envelope.event_id, envelope);
        }
    }
    if let Some(stored) = kit::already_stored(stream_id, expected, events, |id| found.get(id))? {
        return Ok(stored);
    }
    let actual = read::stream_version_from_db(stream_id, actual)?;
    Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual })
}

/// The new events, checked and ready to bind.
enum Batch<'a> {
    /// The common case, one event: bound as scalars, inserted without arrays.
    One { event: &'a NewEvent, version: i32 },
    /// Several events: one array per column.
    Many(Columns<'a>),
}

impl<'a> Batch<'a> {
    fn new(stream_id: &str, events: &'a [NewEvent]) -> Result<Self, StoreError> {
        match events {
            [event] => Ok(Batch::One { event, version: schema_version(stream_id, event)? }),
            _ => Columns::new(stream_id, events).map(Batch::Many),
        }
    }
}

/// New events as one array per column, borrowed from the events.
pub(crate) struct Columns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i32>,
    payloads: Vec<JsonText<'a, serde_json::Value>>,
    metadata: Vec<Option<JsonText<'a, BTreeMap<String, serde_json::Value>>>>,
    correlation_ids: Vec<Option<Uuid>>,
    causation_ids: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn new(stream_id: &str, events: &'a [NewEvent]) -> Result<Self, StoreError> {
        let mut columns = Columns::with_capacity(events.len());
        for event in events {
            columns.push(stream_id, event)?;
        }
        Ok(columns)
    }

    pub(crate) fn with_capacity(events: usize) -> Self {
        Columns {
            ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            correlation_ids: Vec::with_capacity(events),
            causation_ids: Vec::with_capacity(events),
        }
    }

    /// Adds `event`, appended to `stream_id`.
    pub(crate) fn push(&mut self, stream_id: &str, event: &'a NewEvent) -> Result<(), StoreError> {
        self.ids.push(event.event_id);
        self.types.push(&event.event_type);
        self.versions.push(schema_version(stream_id, event)?);
        self.payloads.push(JsonText(&event.payload));
        self.metadata.push(extra_metadata(event));
        self.correlation_ids.push(event.metadata.correlation_id);
        self.causation_ids.push(event.metadata.causation_id);
        Ok(())
    }

    /// Binds the seven arrays after the parameters already bound.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .bind(&self.correlation_ids)
            .bind(&self.causation_ids)
    }
}

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the columns of one new event after the parameters already bound.
fn bind_one<'q>(query: PgQuery<'q>, event: &'q NewEvent, version: i32) -> PgQuery<'q> {
    query
        .bind(event.event_id)
        .bind(event.event_type.as_str())
        .bind(version)
        .bind(JsonText(&event.payload))
        .bind(extra_metadata(event))
        .bind(event.metadata.correlation_id)
        .bind(event.metadata.causation_id)
}

/// The event's free-form metadata, or `None` (stored as `{}` by the statement) when it
/// has none, which spares encoding and parsing an empty object.
fn extra_metadata(event: &NewEvent) -> Option<JsonText<'_, BTreeMap<String, serde_json::Value>>> {
    (!event.metadata.extra.is_empty()).then_some(JsonText(&event.metadata.extra))
}

/// The event's schema version as PostgreSQL's `integer`.
fn schema_version(stream_id: &str, event: &NewEvent) -> Result<i32, StoreError> {
    i32::try_from(event.event_version).map_err(|_| {
        backend(
            format!("appending to stream `{stream_id}`"),
            format!(
                "event {} (`{}`) has schema version {}, above PostgreSQL's integer range",
                event.event_id, event.event_type, event.event_version
            ),
        )
    })
}
