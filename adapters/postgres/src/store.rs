//! [`PostgresStore`]: the pool, the schema and its statements, how to connect, and the
//! [`EventStore`] contract (implemented in `append.rs` and `read.rs`).

use std::sync::Arc;
use std::time::Duration;

use annals::store::BoxStream;
use annals::{Envelope, EventStore, ExpectedVersion, NewEvent, StoreError, VersionRange};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::{is_dead_connection, store_error};
use crate::schema::SchemaName;
use crate::sql::Statements;

/// The annals store on PostgreSQL: [`EventStore`], [`EventFeed`](annals::EventFeed),
/// [`SnapshotStore`](annals::store::SnapshotStore) and
/// [`CheckpointStore`](annals::store::CheckpointStore), on the tables of one schema
/// (default `annals`). Cheap to clone: clones share the connection pool.
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
    /// The one LISTEN connection every subscriber of this store shares (`listener.rs`).
    listener: crate::listener::SharedListener,
    /// Whether and since when the feed's horizon is held back (`feed.rs`).
    held_back: crate::feed::HeldBack,
    /// How long the feed may be held back before a warning names the blockers.
    warn_held_back_after: Duration,
    /// Feed reads take turns on at most half the pool, so that a crowd of subscribers
    /// woken by the same append never takes every connection from the writers.
    feed_reads: tokio::sync::Semaphore,
    /// The window of the feed its subscribers share (`feed_window.rs`).
    feed_window: crate::feed_window::FeedWindow,
    /// Appends waiting to be written together (`group_commit.rs`).
    group_commit: crate::group_commit::GroupCommit,
    /// Set once the server was found to hash stream ids into partitions as
    /// [`annals::store::stream_hash`] does (`feed.rs`).
    partition_hash_agrees: tokio::sync::OnceCell<()>,
}

/// What [`PostgresStore`]'s builder methods set.
struct Settings {
    schema: SchemaName,
    warn_held_back_after: Duration,
    group_limit: usize,
}

/// How long the feed may be held back by one transaction before the store warns, by default.
const WARN_HELD_BACK_AFTER: Duration = Duration::from_secs(30);

impl Inner {
    fn new(pool: PgPool, settings: Settings) -> Self {
        Inner {
            sql: Statements::new(settings.schema),
            listener: crate::listener::SharedListener::default(),
            held_back: crate::feed::HeldBack::default(),
            warn_held_back_after: settings.warn_held_back_after,
            group_commit: crate::group_commit::GroupCommit::new(settings.group_limit),
            feed_reads: tokio::sync::Semaphore::new(
                usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(1).max(1),
            ),
            feed_window: crate::feed_window::FeedWindow::default(),
            partition_hash_agrees: tokio::sync::OnceCell::new(),
            pool,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            schema: self.sql.schema.clone(),
            warn_held_back_after: self.warn_held_back_after,
            group_limit: self.group_commit.limit(),
        }
    }
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

    /// The pool settings [`connect`](Self::connect) uses: 10 connections, a 3 s acquire
    /// timeout, and no health-check query before each use (it would cost a round trip per
    /// operation). The short timeout is what makes an outage visible: an operation that
    /// cannot get a connection fails with a transient [`StoreError::Unavailable`] after
    /// 3 s, which commands retry within their [`RetryPolicy`](annals::RetryPolicy)
    /// budget and subscriptions report as `Retrying` while they wait, instead of hanging
    /// silently for longer. Instead, an operation that finds its pooled connection dead (the
    /// server restarted, or ended the session) is run again at once on another
    /// connection, up to once per pooled connection plus one: a restart costs callers
    /// neither an error nor a retry attempt.
    ///
    /// ```
    /// let options = annals_postgres::PostgresStore::pool_options().max_connections(20);
    /// assert_eq!(options.get_max_connections(), 20);
    /// ```
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new().max_connections(10).acquire_timeout(Duration::from_secs(3)).test_before_acquire(false)
    }

    /// A store on an existing pool, using schema `annals`.
    ///
    /// ```no_run
    /// use annals_postgres::{sqlx::PgPool, PostgresStore};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPool::connect("postgres://app@localhost/app").await?;
    /// let store = PostgresStore::new(pool);
    /// assert_eq!(store.schema().as_str(), "annals");
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        let settings = Settings {
            schema: SchemaName::default(),
            warn_held_back_after: WARN_HELD_BACK_AFTER,
            group_limit: crate::group_commit::DEFAULT_GROUP_LIMIT,
        };
        PostgresStore { inner: Arc::new(Inner::new(pool, settings)) }
    }

    /// The same store with its tables in `schema` (sharing the pool).
    ///
    /// ```no_run
    /// use annals_postgres::{PostgresStore, SchemaName};
    /// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let tenant = store.with_schema(SchemaName::new("tenant_42")?);
    /// tenant.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_schema(self, schema: SchemaName) -> Self {
        self.with_settings(Settings { schema, ..self.inner.settings() })
    }

    /// The same store (same pool and schema), warning (`tracing::warn!`, naming the
    /// [`feed_blockers`](Self::feed_blockers)) once the event feed has been held back by
    /// the same running transaction for longer than `after` (default 30 s). See
    /// [`feed`](crate::feed#caveats).
    ///
    /// ```no_run
    /// # fn run(store: annals_postgres::PostgresStore) {
    /// let store = store.warn_when_feed_held_back_for(std::time::Duration::from_secs(5));
    /// # }
    /// ```
    pub fn warn_when_feed_held_back_for(self, after: Duration) -> Self {
        self.with_settings(Settings { warn_held_back_after: after, ..self.inner.settings() })
    }

    /// The same store (same pool and schema), writing at most `appends` appends per group
    /// commit (default 64); `1` turns group commit off.
    ///
    /// With group commit, appends to different streams that arrive while another append
    /// of this store is in flight are written together when it is done: one statement
    /// and one commit (one WAL flush, one NOTIFY) for all of them, each with its own
    /// expected-version check and its own outcome. A lone append never waits for a
    /// group; a queued one waits for the append in flight, then goes with its group
    /// (under load that is quicker than the commits queueing at the server one by one:
    /// the README's Performance section measures both throughput and latency).
    ///
    /// ```no_run
    /// # fn run(store: annals_postgres::PostgresStore) {
    /// let one_by_one = store.group_commit_up_to(1);
    /// # }
    /// ```
    pub fn group_commit_up_to(self, appends: usize) -> Self {
        self.with_settings(Settings { group_limit: appends, ..self.inner.settings() })
    }

    /// A store on the same pool with `settings` (and state of its own).
    fn with_settings(&self, settings: Settings) -> Self {
        PostgresStore { inner: Arc::new(Inner::new(self.inner.pool.clone(), settings)) }
    }

    pub(crate) fn group_commit(&self) -> &crate::group_commit::GroupCommit {
        &self.inner.group_commit
    }

    /// How long the feed may be held back before a warning; see
    /// [`warn_when_feed_held_back_for`](Self::warn_when_feed_held_back_for).
    pub(crate) fn warn_held_back_after(&self) -> Duration {
        self.inner.warn_held_back_after
    }

    pub(crate) fn held_back(&self) -> &crate::feed::HeldBack {
        &self.inner.held_back
    }

    /// Turns for feed reads: at most half the pool's connections read the feed at once.
    pub(crate) fn partition_hash_agrees(&self) -> &tokio::sync::OnceCell<()> {
        &self.inner.partition_hash_agrees
    }

    pub(crate) fn feed_reads(&self) -> &tokio::sync::Semaphore {
        &self.inner.feed_reads
    }

    pub(crate) fn feed_window(&self) -> &crate::feed_window::FeedWindow {
        &self.inner.feed_window
    }

    pub(crate) fn listener(&self) -> &crate::listener::SharedListener {
        &self.inner.listener
    }

    /// The schema the tables live in.
    ///
    /// ```no_run
    /// # fn show(store: &annals_postgres::PostgresStore) {
    /// println!("events in {}.events", store.schema().quoted());
    /// # }
    /// ```
    pub fn schema(&self) -> &SchemaName {
        &self.inner.sql.schema
    }

    /// The connection pool.
    ///
    /// ```no_run
    /// # async fn run(store: annals_postgres::PostgresStore) -> Result<(), annals_postgres::sqlx::Error> {
    /// let one: i32 = annals_postgres::sqlx::query_scalar("SELECT 1").fetch_one(store.pool()).await?;
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The statements of this store's schema.
    pub(crate) fn sql(&self) -> &Statements {
        &self.inner.sql
    }

    /// Runs `operation` (one statement on a pooled connection) and runs it again at once
    /// when it failed because its connection was dead (see [`is_dead_connection`]):
    /// after a restart every idle pooled connection is dead, and each is found and
    /// dropped by one failed attempt, so up to `max_connections + 1` attempts. Only for
    /// operations that are safe to repeat: reads, and appends (which re-send the same
    /// event ids, so a lost reply is recognized as already stored).
    pub(crate) async fn on_live_connection<T, F, Fut>(&self, mut operation: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut left = self.pool().options().get_max_connections().saturating_add(1);
        loop {
            match operation().await {
                Err(error) if left > 0 && is_dead_connection(&error) => left -= 1,
                done => return done,
            }
        }
    }
}

/// Appends are one statement and one round trip (`append.rs`); stream reads are one
/// streamed query (`read.rs`).
impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Envelope>, StoreError> {
        crate::append::append(self, stream_id, expected, events).await
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        crate::read::read_stream(self, stream_id, versions)
    }

    /// Reads five columns of ten: positions, type, schema version and payload.
    fn read_stream_to_fold<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        crate::read::read_stream_to_fold(self, stream_id, versions)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        crate::read::stream_version(self, stream_id).await
    }
}
