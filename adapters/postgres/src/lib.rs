//! The PostgreSQL event store for annals.
//!
//! [`PostgresStore`] implements the [`EventStore`] contract on one table,
//! `<schema>.events`, in a schema of your choice (default `annals`):
//!
//! - an append is **one statement and one round trip**: a multi-row insert from arrays
//!   that numbers the new events after the stream's current version and inserts only if
//!   that version is the expected one; the unique `(stream_id, stream_version)` index
//!   turns a lost race into [`StoreError::Conflict`]. Writers on different streams never
//!   wait for each other;
//! - stream reads are one streamed query (constant memory, however long the stream);
//!   `read_all` pages through the store by global position;
//! - connection failures are [`StoreError::Unavailable`] (`is_transient()`), everything
//!   else [`StoreError::Backend`].
//!
//! Start with [`PostgresStore::connect`] and [`PostgresStore::migrate`]:
//!
//! ```no_run
//! use annals::Repository;
//! use annals_postgres::PostgresStore;
//! use shopping_cart::{AddItem, Cart};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://app@localhost/app").await?;
//! store.migrate().await?; // creates schema `annals` and its tables, once
//! let carts = Repository::<Cart, _>::new(store);
//! carts.execute("42", AddItem { sku: "tea".into(), qty: 2, unit_price_cents: 450 }).await?;
//! # Ok(()) }
//! ```
//!
//! Teams that run their own migrations take the SQL from [`migrations()`] instead of
//! calling `migrate`.
#![warn(missing_docs)]

mod correlation;
mod error;
pub mod feed;
pub mod projection;
mod rows;
mod schema;
mod snapshot;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use annals::snapshot::StoredSnapshot;
use annals::store::{validate_append, BoxStream};
use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{backend, store_error, violated_unique_constraint};
pub use crate::schema::{migrations, InvalidSchemaName, Migration, SchemaName};
use crate::sql::Statements;

pub use crate::projection::{
    AtLeastOnce, CheckpointMoved, PgProjection, PgProjectionRunner, Reset, ResetError, RunError,
};
/// The sqlx version this adapter is built on, for building pools by hand.
pub use sqlx;
/// The connection PostgreSQL projection handlers receive: the open transaction of their
/// batch (`#[projection(context = annals_postgres::PgConnection)]`).
pub use sqlx::PgConnection;

/// How often an append with [`ExpectedVersion::Any`] is retried when a concurrent writer
/// takes the same versions first.
const ANY_VERSION_ATTEMPTS: u32 = 100;

/// An [`EventStore`] on PostgreSQL. Cheap to clone: clones share the connection pool.
///
/// ```no_run
/// use annals_postgres::{PostgresStore, SchemaName};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // A store in schema `billing`, on a pool configured by hand.
/// let options = PostgresStore::connect_options("postgres://app@localhost/app")?;
/// let pool = PostgresStore::pool_options().max_connections(20).connect_with(options).await?;
/// let store = PostgresStore::new(pool).with_schema(SchemaName::new("billing")?);
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    sql: Statements,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("schema", &self.inner.sql.schema.as_str()).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) with
    /// [`pool_options`](Self::pool_options), using schema `annals`.
    ///
    /// Fails with [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), annals::StoreError> {
    /// let store = annals_postgres::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(Self::pool_options(), url).await
    }

    /// Connects to `url` with the given pool options, using schema `annals`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use annals_postgres::PostgresStore;
    /// # async fn run() -> Result<(), annals::StoreError> {
    /// let options = PostgresStore::pool_options().acquire_timeout(Duration::from_secs(2));
    /// let store = PostgresStore::connect_with(options, "postgres://app@localhost/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(options: PgPoolOptions, url: &str) -> Result<Self, StoreError> {
        let operation = || "connecting to the PostgreSQL event store".to_owned();
        let connect_options = Self::connect_options(url).map_err(|e| store_error(operation(), e))?;
        let pool = options.connect_with(connect_options).await.map_err(|e| store_error(operation(), e))?;
        Ok(Self::new(pool))
    }

    /// The connection settings [`connect`](Self::connect) uses for `url`: the URL's own.
    /// Use it when building a pool for [`new`](Self::new) by hand.
    ///
    /// (PostgreSQL's default plan caching suits the store's statements: after five
    /// executions each connection keeps a generic plan. Forcing generic plans from the
    /// start, `plan_cache_mode = force_generic_plan`, was measured to gain nothing.)
    ///
    /// ```
    /// let options = annals_postgres::PostgresStore::connect_options("postgres://app@localhost/app")?;
    /// # Ok::<(), annals_postgres::sqlx::Error>(())
    /// ```
    pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
        url.parse::<PgConnectOptions>()
    }

    /// The pool settings [`connect`](Self::connect) uses: 10 connections, a 10 s acquire
    /// timeout, and no health-check query before each use (it would cost a round trip per
    /// operation; a broken connection surfaces as [`StoreError::Unavailable`]).
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new().max_connections(10).acquire_timeout(Duration::from_secs(10)).test_before_acquire(false)
    }

    /// A store on an existing pool, using schema `annals`.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { inner: Arc::new(Inner { pool, sql: Statements::new(SchemaName::default()) }) }
    }

    /// The same store with its tables in `schema`.
    pub fn with_schema(self, schema: SchemaName) -> Self {
        PostgresStore { inner: Arc::new(Inner { pool: self.inner.pool.clone(), sql: Statements::new(schema) }) }
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &SchemaName {
        &self.inner.sql.schema
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Creates the schema if it is missing and applies every [`migrations()`] step not yet
    /// recorded in `<schema>.annals_migrations`, in one transaction. Safe to call at every
    /// start-up and from several processes at once (they take turns on an advisory lock).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), annals::StoreError> {
    /// let store = annals_postgres::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// store.migrate().await?;
    /// store.migrate().await?; // nothing left to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let sql = &self.inner.sql;
        let operation = || format!("migrating schema `{}`", sql.schema);
        let fail = |e| store_error(operation(), e);
        let mut tx = self.inner.pool.begin().await.map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("annals-postgres migrate {}", sql.schema))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let schema_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(sql.schema.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        if !schema_exists {
            sqlx::raw_sql(&sql.create_schema()).execute(&mut *tx).await.map_err(fail)?;
        }
        sqlx::raw_sql(&sql.bootstrap()).execute(&mut *tx).await.map_err(fail)?;
        let applied: HashSet<i32> =
            sqlx::query_scalar(&sql.applied_migrations).fetch_all(&mut *tx).await.map_err(fail)?.into_iter().collect();
        for migration in migrations().iter().filter(|m| !applied.contains(&m.version)) {
            let step = |e| store_error(format!("{} (step {} `{}`)", operation(), migration.version, migration.name), e);
            sqlx::raw_sql(&migration.sql(&sql.schema)).execute(&mut *tx).await.map_err(step)?;
            sqlx::query(&sql.record_migration)
                .bind(migration.version)
                .bind(migration.name)
                .execute(&mut *tx)
                .await
                .map_err(step)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// Fetches the envelopes already stored under the ids of `events`, and decides:
    /// the same batch at the same place (a retry) returns them; any other stored id is a
    /// [`StoreError::DuplicateEventId`]; `None` when no id is stored.
    async fn already_stored(
        &self,
        stream_id: &str,
        events: &[NewEvent],
        ids: &[Uuid],
    ) -> Result<Option<Result<Vec<Envelope>, StoreError>>, StoreError> {
        let operation = || format!("appending to stream `{stream_id}` (looking up event ids)");
        let rows = sqlx::query(&self.inner.sql.events_by_id)
            .bind(ids)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut found = BTreeMap::new();
        for row in &rows {
            let envelope = rows::envelope(row, operation)?;
            found.insert(envelope.event_id, envelope);
        }
        let stored: Option<Vec<&Envelope>> = events.iter().map(|e| found.get(&e.event_id)).collect();
        if let Some(stored) = stored {
            let same_batch = stored.iter().all(|s| s.stream_id == stream_id)
                && stored.windows(2).all(|w| w[1].stream_version == w[0].stream_version + 1);
            if same_batch {
                return Ok(Some(Ok(stored.into_iter().cloned().collect())));
            }
        }
        let Some((duplicate, existing)) = events.iter().find_map(|e| Some((e, found.get(&e.event_id)?))) else {
            return Ok(None);
        };
        Ok(Some(Err(StoreError::DuplicateEventId {
            event_id: duplicate.event_id,
            stream: stream_id.to_owned(),
            existing_stream: existing.stream_id.clone(),
            existing_version: existing.stream_version,
        })))
    }

    /// The conflict to report when the expected version did not hold, unless the events
    /// were already stored (an idempotent retry) or an id is reused.
    async fn reject(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        ids: &[Uuid],
        actual: Option<u64>,
    ) -> Result<Vec<Envelope>, StoreError> {
        if let Some(outcome) = self.already_stored(stream_id, events, ids).await? {
            return outcome;
        }
        let actual = match actual {
            Some(actual) => actual,
            None => self.stream_version(stream_id).await?,
        };
        Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual })
    }
}

/// The outcome of one attempt of the append statement.
enum Attempt {
    /// The events were written: (global position, stream version, recorded at) of each.
    Written(Vec<(u64, u64, DateTime<Utc>)>),
    /// The stream was not at the expected version; nothing was written.
    WrongVersion,
    /// A unique constraint stopped the insert: a concurrent writer took the versions
    /// (`stream_version`), or an event id is already stored (`event_id`).
    Taken { versions: bool },
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
            [event] => {
                check_storable(stream_id, event)?;
                Ok(Batch::One { event, version: schema_version(stream_id, event)? })
            }
            _ => Columns::new(stream_id, events).map(Batch::Many),
        }
    }

    /// The ids of the new events, in order.
    fn ids(&self) -> &[Uuid] {
        match self {
            Batch::One { event, .. } => std::slice::from_ref(&event.event_id),
            Batch::Many(columns) => &columns.ids,
        }
    }
}

/// The new events as one array per column, borrowed from the events.
struct Columns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i32>,
    payloads: Vec<Json<&'a serde_json::Value>>,
    metadata: Vec<Option<Json<&'a BTreeMap<String, serde_json::Value>>>>,
    correlation_ids: Vec<Option<Uuid>>,
    causation_ids: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn new(stream_id: &str, events: &'a [NewEvent]) -> Result<Self, StoreError> {
        let mut columns = Columns {
            ids: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            correlation_ids: Vec::with_capacity(events.len()),
            causation_ids: Vec::with_capacity(events.len()),
        };
        for event in events {
            check_storable(stream_id, event)?;
            columns.ids.push(event.event_id);
            columns.types.push(&event.event_type);
            columns.versions.push(schema_version(stream_id, event)?);
            columns.payloads.push(Json(&event.payload));
            columns.metadata.push(extra_metadata(event));
            columns.correlation_ids.push(event.metadata.correlation_id);
            columns.causation_ids.push(event.metadata.causation_id);
        }
        Ok(columns)
    }
}

/// The event's free-form metadata, or `None` (stored as `{}` by the statement) when it
/// has none, which spares encoding and parsing an empty object.
fn extra_metadata(event: &NewEvent) -> Option<Json<&BTreeMap<String, serde_json::Value>>> {
    (!event.metadata.extra.is_empty()).then_some(Json(&event.metadata.extra))
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

/// PostgreSQL stores no NUL character in `text` or `jsonb` (`\u0000`): refuse such an
/// event with a clear error before it reaches the server.
fn check_storable(stream_id: &str, event: &NewEvent) -> Result<(), StoreError> {
    let place = if event.event_type.contains('\0') {
        "event type"
    } else if contains_nul(&event.payload) {
        "payload"
    } else if event.metadata.extra.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
        "metadata"
    } else {
        return Ok(());
    };
    Err(backend(
        format!("appending to stream `{stream_id}`"),
        format!(
            "the {place} of event {} (`{}`) contains a NUL character (\\u0000), which PostgreSQL cannot store \
             in text or jsonb; remove it or encode it differently",
            event.event_id,
            event.event_type.replace('\0', "\\u0000")
        ),
    ))
}

fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A stored position or version as `u64`, or a Backend error naming it.
fn non_negative(value: i64, what: &str, operation: impl Fn() -> String) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| backend(operation(), format!("PostgreSQL returned invalid {what} {value}")))
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the columns of one new event after the parameters already bound.
fn bind_one<'q>(query: PgQuery<'q>, event: &'q NewEvent, version: i32) -> PgQuery<'q> {
    query
        .bind(event.event_id)
        .bind(event.event_type.as_str())
        .bind(version)
        .bind(Json(&event.payload))
        .bind(extra_metadata(event))
        .bind(event.metadata.correlation_id)
        .bind(event.metadata.causation_id)
}

impl PostgresStore {
    async fn try_append(
        &self,
        stream_id: &str,
        expected: Option<i64>,
        batch: &Batch<'_>,
    ) -> Result<Attempt, StoreError> {
        let operation = || format!("appending to stream `{stream_id}`");
        let sql = &self.inner.sql;
        let query = match batch {
            // A new stream: its first version is 1, and the unique (stream_id,
            // stream_version) index is the whole expected-version check.
            Batch::One { event, version } if expected == Some(0) => {
                bind_one(sqlx::query(&sql.append_first).bind(stream_id), event, *version)
            }
            Batch::One { event, version } => {
                bind_one(sqlx::query(&sql.append_one).bind(stream_id).bind(expected), event, *version)
            }
            Batch::Many(columns) => sqlx::query(&sql.append)
                .bind(stream_id)
                .bind(expected)
                .bind(&columns.ids)
                .bind(&columns.types)
                .bind(&columns.versions)
                .bind(&columns.payloads)
                .bind(&columns.metadata)
                .bind(&columns.correlation_ids)
                .bind(&columns.causation_ids),
        };
        let result = query.fetch_all(&self.inner.pool).await;
        let rows = match result {
            Ok(rows) => rows,
            Err(error) => {
                return match violated_unique_constraint(&error) {
                    Some("events_event_id_unique") => Ok(Attempt::Taken { versions: false }),
                    Some(_) => Ok(Attempt::Taken { versions: true }),
                    None => Err(store_error(operation(), error)),
                };
            }
        };
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let position: i64 = row.try_get(0).map_err(|e| store_error(operation(), e))?;
            let stream_version: i64 = row.try_get(1).map_err(|e| store_error(operation(), e))?;
            let recorded_at: DateTime<Utc> = row.try_get(2).map_err(|e| store_error(operation(), e))?;
            written.push((
                non_negative(position, "global position", operation)?,
                non_negative(stream_version, "stream version", operation)?,
                recorded_at,
            ));
        }
        // RETURNING gives no order guarantee: sort by version (positions grow with it).
        written.sort_unstable_by_key(|w| w.1);
        if written.is_empty() {
            Ok(Attempt::WrongVersion)
        } else {
            Ok(Attempt::Written(written))
        }
    }
}

impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        validate_append(stream_id, &events)?;
        if events.is_empty() {
            let actual = self.stream_version(stream_id).await?;
            if !expected.accepts(actual) {
                return Err(StoreError::Conflict { stream: stream_id.to_owned(), expected, actual });
            }
            return Ok(Vec::new());
        }
        let expected_version = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => match i64::try_from(v) {
                Ok(v) => Some(v),
                // No stream can be at a version beyond PostgreSQL's bigint.
                Err(_) => return self.reject(stream_id, expected, &events, &[], None).await,
            },
        };
        let batch = Batch::new(stream_id, &events)?;
        let mut attempts = 0;
        let written = loop {
            attempts += 1;
            match self.try_append(stream_id, expected_version, &batch).await? {
                Attempt::Written(written) => break written,
                Attempt::WrongVersion => {
                    return self.reject(stream_id, expected, &events, batch.ids(), None).await;
                }
                Attempt::Taken { versions: true }
                    if expected == ExpectedVersion::Any && attempts < ANY_VERSION_ATTEMPTS =>
                {
                    // A concurrent writer took the versions first: number after its events.
                    tokio::task::yield_now().await;
                }
                Attempt::Taken { .. } => {
                    return self.reject(stream_id, expected, &events, batch.ids(), None).await;
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
        Ok(events
            .into_iter()
            .zip(written)
            .map(|(event, (global_position, stream_version, recorded_at))| Envelope {
                event_id: event.event_id,
                stream_id: stream_id.to_owned(),
                stream_version,
                global_position,
                recorded_at,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
            })
            .collect())
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        let from = i64::try_from(versions.from.max(1)).unwrap_or(i64::MAX);
        let to = versions.to.map_or(i64::MAX, |to| i64::try_from(to).unwrap_or(i64::MAX));
        if from > to {
            return futures::stream::empty().boxed();
        }
        let operation = move || format!("reading stream `{stream_id}`");
        sqlx::query(&self.inner.sql.read_stream)
            .bind(stream_id)
            .bind(from)
            .bind(to)
            .fetch(&self.inner.pool)
            .map(move |row| match row {
                Ok(row) => rows::stream_envelope(&row, stream_id, operation),
                Err(e) => Err(store_error(operation(), e)),
            })
            .boxed()
    }

    fn read_all(&self, after: u64, batch_size: usize) -> BoxStream<'_, Result<Envelope, StoreError>> {
        let limit = i64::try_from(batch_size.max(1)).unwrap_or(i64::MAX);
        let start = i64::try_from(after).ok();
        futures::stream::try_unfold(start, move |after| async move {
            let Some(after) = after else { return Ok(None) };
            let operation = || format!("reading all events after global position {after}");
            let rows = sqlx::query(&self.inner.sql.read_all)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| store_error(operation(), e))?;
            let batch = rows.iter().map(|row| rows::envelope(row, operation)).collect::<Result<Vec<_>, _>>()?;
            let next = match batch.last() {
                // A short batch is the end of the store: no need to ask again.
                Some(last) if batch.len() as i64 == limit => i64::try_from(last.global_position).ok(),
                _ => None,
            };
            if batch.is_empty() {
                return Ok(None);
            }
            Ok(Some((futures::stream::iter(batch.into_iter().map(Ok)), next)))
        })
        .try_flatten()
        .boxed()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let operation = || format!("reading the version of stream `{stream_id}`");
        let version: i64 = sqlx::query_scalar(&self.inner.sql.stream_version)
            .bind(stream_id)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        non_negative(version, "stream version", || format!("{} (stream `{stream_id}`)", operation()))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let operation = || "reading the head position".to_owned();
        let position: i64 = sqlx::query_scalar(&self.inner.sql.head_position)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        non_negative(position, "global position", operation)
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        self.load_stored_snapshot(stream_id).await
    }

    async fn save_snapshot(&self, snapshot: StoredSnapshot) -> Result<(), StoreError> {
        self.save_stored_snapshot(snapshot).await
    }
}
