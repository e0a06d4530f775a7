//! [`SqliteStore`]: the store, its connection pool and the settings of its connections.

use std::any::Any;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use annals::store::BoxStream;
use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
use futures::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

use crate::error::{backend, store_error};
use crate::sql;

/// How long a connection waits for another connection's write lock before the operation
/// fails with [`StoreError::Unavailable`].
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An annals store in one SQLite file: [`EventStore`], [`EventFeed`](annals::EventFeed),
/// [`SnapshotStore`](annals::store::SnapshotStore) and
/// [`CheckpointStore`](annals::store::CheckpointStore).
///
/// Cheap to clone: clones share the connection pool and wake each other's subscriptions.
/// Several processes may open the same file; SQLite lets one of them write at a time.
///
/// ```
/// use annals::{EventStore, ExpectedVersion, NewEvent};
/// use annals_sqlite::SqliteStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = annals_sqlite::testing::TempDir::new()?;
/// # let path = dir.path().join("events.db");
/// // Creates the file and its tables if they are missing.
/// let store = SqliteStore::open(&path).await?;
/// let event = NewEvent::new("greeted", 1, serde_json::json!({"name": "Ada"}));
/// let stored = store.append("greeter-1", ExpectedVersion::Exact(0), vec![event]).await?;
/// assert_eq!((stored[0].stream_version, stored[0].global_position), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: SqlitePool,
    /// Taken by this process's writers before the database's write lock: they queue here
    /// in order, instead of sleeping in SQLite's busy handler.
    pub(crate) writer: tokio::sync::Mutex<()>,
    /// The one-event appends waiting for `writer`, written together by whoever gets it
    /// (`group_commit.rs`).
    pub(crate) waiting: crate::group_commit::Queue,
    /// The position of this process's latest append, published to wake subscriptions.
    pub(crate) head: tokio::sync::watch::Sender<u64>,
    /// Whatever must live as long as the store, e.g. the temporary directory of
    /// [`testing`](crate::testing); dropped after the pool.
    _keep: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.inner.pool.connect_options();
        f.debug_struct("SqliteStore").field("file", &options.get_filename()).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the SQLite file at `path`, creating the file if it is missing,
    /// and [`migrate`](Self::migrate)s it: what most applications call at start-up.
    ///
    /// The connections use [`file_options`](Self::file_options) and the pool
    /// [`pool_options`](Self::pool_options).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = annals_sqlite::testing::TempDir::new()?;
    /// let store = annals_sqlite::SqliteStore::open(dir.path().join("events.db")).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let store = Self::connect_with(Self::file_options(path)).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the database at `url` (`sqlite://path/to/events.db`, `sqlite:events.db`)
    /// with [`connect_options`](Self::connect_options); does not migrate.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = annals_sqlite::testing::TempDir::new()?;
    /// let url = format!("sqlite://{}", dir.path().join("events.db").display());
    /// let store = annals_sqlite::SqliteStore::connect(&url).await?;
    /// store.migrate().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options =
            Self::connect_options(url).map_err(|e| store_error(format!("reading the SQLite URL `{url}`"), e))?;
        Self::connect_with(options).await
    }

    /// Connects with the given connection settings and [`pool_options`](Self::pool_options);
    /// does not migrate. Start from [`file_options`](Self::file_options) or
    /// [`connect_options`](Self::connect_options) to keep the store's settings.
    ///
    /// Refuses an in-memory database: its connections would not share it the way a
    /// store's connections must (use a file, or `annals-memory`).
    ///
    /// ```
    /// use annals_sqlite::SqliteStore;
    /// use annals_sqlite::sqlx::sqlite::SqliteSynchronous;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = annals_sqlite::testing::TempDir::new()?;
    /// // Faster commits that may lose the last transactions on power loss (never corrupt).
    /// let options = SqliteStore::file_options(dir.path().join("events.db")).synchronous(SqliteSynchronous::Normal);
    /// let store = SqliteStore::connect_with(options).await?;
    /// store.migrate().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let file = options.get_filename().display().to_string();
        let operation = || format!("opening the SQLite event store `{file}`");
        let pool = Self::pool_options().connect_with(options).await.map_err(|e| store_error(operation(), e))?;
        let journal: String =
            sqlx::query_scalar(sql::JOURNAL_MODE).fetch_one(&pool).await.map_err(|e| store_error(operation(), e))?;
        if journal.eq_ignore_ascii_case("memory") {
            pool.close().await;
            return Err(backend(
                operation(),
                "an in-memory SQLite database cannot hold an annals store: every pooled connection would see its \
                 own database; open a file (`SqliteStore::open`), or use annals-memory",
            ));
        }
        Ok(Self::new(pool))
    }

    /// The connection settings of the store for the file at `path`: create the file if
    /// it is missing, and the settings of [`connect_options`](Self::connect_options).
    pub fn file_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        Self::configure(SqliteConnectOptions::new().filename(path).create_if_missing(true))
    }

    /// The connection settings of the store for `url`: what the URL says, then
    ///
    /// - `journal_mode = WAL`: readers never wait for the writer, nor the writer for
    ///   readers;
    /// - `synchronous = FULL`: every commit is synced to disk (fsync) before the append
    ///   returns, so an acknowledged append survives a power loss. It is the default; for
    ///   faster commits that may lose the latest ones on power loss (never corrupt the
    ///   file), set `synchronous(SqliteSynchronous::Normal)`;
    /// - `busy_timeout` 5 s: how long a connection waits for another one's write lock;
    /// - `foreign_keys = ON`, for tables of your own next to the store's;
    /// - the file is created if it is missing, unless the URL's `mode` parameter says
    ///   otherwise (`?mode=rw`, `?mode=ro`).
    pub fn connect_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?;
        let has_mode =
            url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("mode=")));
        Ok(Self::configure(if has_mode { options } else { options.create_if_missing(true) }))
    }

    fn configure(options: SqliteConnectOptions) -> SqliteConnectOptions {
        options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
    }

    /// The pool settings of [`connect`](Self::connect) and [`open`](Self::open): up to 8
    /// connections (SQLite reads in parallel; writes take turns), a 10 s acquire timeout,
    /// no test query before each use, and a connection a cancelled operation left inside
    /// a transaction is closed (which rolls it back) instead of reused.
    pub fn pool_options() -> SqlitePoolOptions {
        SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .after_release(|connection, _| {
                async move {
                    if !connection.is_in_transaction() {
                        return Ok(true);
                    }
                    // A dropped transaction queues its rollback: let the connection run it.
                    connection.ping().await?;
                    Ok(!connection.is_in_transaction())
                }
                .boxed()
            })
    }

    /// A store on an existing pool (see [`pool_options`](Self::pool_options) and
    /// [`file_options`](Self::file_options) for the settings it expects); does not
    /// migrate.
    ///
    /// ```
    /// use annals_sqlite::SqliteStore;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = annals_sqlite::testing::TempDir::new()?;
    /// let pool = SqliteStore::pool_options()
    ///     .max_connections(4)
    ///     .connect_with(SqliteStore::file_options(dir.path().join("events.db")))
    ///     .await?;
    /// let store = SqliteStore::new(pool);
    /// store.migrate().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_guard(pool, None)
    }

    /// A store on `pool` that keeps `guard` alive until its last clone is dropped.
    pub(crate) fn with_guard(pool: SqlitePool, guard: Option<Box<dyn Any + Send + Sync>>) -> Self {
        SqliteStore {
            inner: Arc::new(Inner {
                pool,
                writer: tokio::sync::Mutex::new(()),
                waiting: crate::group_commit::Queue::default(),
                head: tokio::sync::watch::Sender::new(0),
                _keep: guard,
            }),
        }
    }

    /// The connection pool, e.g. for the tables of your own read models.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Closes the pool: waits for the connections in use to come back, then closes all.
    /// Every clone of the store is closed; later operations fail.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

impl EventStore for SqliteStore {
    /// Appends under the database's write lock, all events or none: one event in one
    /// `INSERT ... SELECT` that checks the stream's version (it takes the write lock when
    /// it starts and commits on its own, or commits with the one-event appends that
    /// queued up behind this process's writer lock with it), more in a `BEGIN IMMEDIATE`
    /// transaction.
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.append_events(stream_id, expected, events).await
    }

    /// Reads in pages of a few hundred events, each one indexed query.
    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        self.read_stream_pages(stream_id, versions)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.read_stream_version(stream_id).await
    }
}
