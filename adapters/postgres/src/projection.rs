//! Projections whose read models live in PostgreSQL, applied exactly once; at-least-once
//! side-effect handlers; one active instance per projection across processes.
//!
//! # Exactly once: [`PgProjection`]
//! A [`Projection`] with `context = annals_postgres::PgConnection` writes its read model
//! with the connection its handlers receive. [`PgProjection`] is the [`Sink`] that feeds
//! it: per batch of events from the feed it
//!
//! 1. begins a transaction;
//! 2. moves the projection's row in `<schema>.projection_checkpoints` from the checkpoint
//!    this instance last saw to the batch's end (`UPDATE … WHERE commit = $seen AND
//!    position = $seen`). The update locks the row, so a second instance blocks here
//!    until the first commits, then finds the checkpoint moved and stops with
//!    [`CheckpointMoved`] instead of applying the batch again (fencing);
//! 3. runs the handler of every event in the transaction;
//! 4. commits.
//!
//! Read-model writes and checkpoint commit together: a crash at any point leaves both as
//! they were before the batch or both after it, so no effect is lost or repeated. A
//! failing handler rolls the whole batch back; the subscription retries it with back-off
//! and stops with a visible error if it keeps failing. Keep the read model in tables, not
//! in fields of the projection: fields are not rolled back with the transaction.
//!
//! # One instance at a time: [`PgProjectionRunner`]
//! Several processes may run the same projection for availability. The runner holds a
//! session-level advisory lock (`pg_try_advisory_lock`, keyed by schema and projection
//! name) on a connection of its own while it runs the subscription; the others poll for
//! the lock. When the active process dies, its connection closes, PostgreSQL releases the
//! lock, and another instance takes over from the stored checkpoint. The fencing above
//! still guards the checkpoint should two instances ever overlap. The lock needs a
//! session-pooled connection: it does not work through a transaction-pooling proxy.
//!
//! # Side effects: [`AtLeastOnce`]
//! Handlers that send email or call other services cannot join a database transaction.
//! [`AtLeastOnce`] runs a [`Projection`] with `context = ()` and saves its checkpoint in
//! the same table after each event whose handler succeeded. A crash between the effect and
//! the checkpoint repeats that one event on restart, so handlers must be idempotent: use
//! [`Envelope::event_id`](annals::Envelope) as the idempotency key towards the other
//! service (or record handled ids).
//!
//! # Rebuilding
//! - **In place**: stop the projection's runners, then [`PgProjection::reset`] deletes
//!   its checkpoint and lets you clear its tables (e.g. `TRUNCATE`) in the same
//!   transaction; the next run replays every event. Reset refuses while a runner holds
//!   the projection's lock.
//! - **Side by side** (the old version keeps serving): give the new version its own
//!   tables and name, e.g. `PgProjection::new(store, CartSummariesV2 { .. })
//!   .named("cart_summaries_v2")`, run it until it has caught up
//!   ([`Subscription::catch_up`] returns), point readers at the new tables (for instance
//!   `CREATE OR REPLACE VIEW cart_summaries AS SELECT * FROM cart_summaries_v2`), start
//!   its runner, stop the old one, and drop the old tables and its checkpoint row.
//!
//! ```no_run
//! use annals::prelude::*;
//! use annals_postgres::{sqlx, PgConnection, PgProjection, PostgresStore};
//! use shopping_cart::ItemAdded;
//!
//! #[derive(Projection)]
//! #[projection(name = "units_added", events(ItemAdded), context = PgConnection)]
//! struct UnitsAdded;
//!
//! impl On<ItemAdded> for UnitsAdded {
//!     async fn on(&mut self, e: ItemAdded, _: &Envelope, tx: &mut PgConnection) -> Result<(), annals::BoxError> {
//!         sqlx::query("INSERT INTO units (sku, n) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET n = units.n + $2")
//!             .bind(&e.sku)
//!             .bind(i64::from(e.qty))
//!             .execute(&mut *tx)
//!             .await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://app@localhost/app").await?;
//! store.migrate().await?;
//! // Runs until an error stops it; start it in every process: one of them is active.
//! PgProjection::new(store, UnitsAdded).runner().run().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use annals::subscription::{
    Checkpoint, FeedEvent, Filter, Sink, SinkError, Subscription, SubscriptionError, SubscriptionOptions,
};
use annals::{BoxError, Projection, StoreError};
use sqlx::{Connection, PgConnection, Row};

use crate::error::store_error;
use crate::PostgresStore;

/// How often a waiting runner asks for the lock by default, and how often the active one
/// checks that its lock connection is alive.
const LOCK_POLL: Duration = Duration::from_secs(1);

/// The checkpoint statements, for one store's schema.
struct Checkpoints {
    table: String,
}

impl Checkpoints {
    fn of(store: &PostgresStore) -> Self {
        Checkpoints { table: format!("{}.projection_checkpoints", store.schema().quoted()) }
    }

    /// The stored checkpoint of `name`, creating the row at the start when missing (so the
    /// first batch has a row to lock, too).
    async fn load(&self, conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
        let t = &self.table;
        let row = sqlx::query(&format!(
            "WITH created AS ( \
                 INSERT INTO {t} (name, commit, position) VALUES ($1, 0, 0) \
                 ON CONFLICT (name) DO NOTHING RETURNING commit, position) \
             SELECT commit, position FROM created UNION ALL SELECT commit, position FROM {t} WHERE name = $1"
        ))
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
        decode(row.try_get(0)?, row.try_get(1)?)
    }

    /// The stored checkpoint of `name`, if any.
    async fn current(&self, conn: &mut PgConnection, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT commit, position FROM {} WHERE name = $1", self.table))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| decode(row.try_get(0)?, row.try_get(1)?)).transpose()
    }

    /// Moves `name` from `from` to `to`; false when it was not at `from`. Locks the row
    /// until the transaction ends.
    async fn advance(
        &self,
        conn: &mut PgConnection,
        name: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET commit = $4, position = $5, updated_at = now() \
             WHERE name = $1 AND commit = $2 AND position = $3",
            self.table
        ))
        .bind(name)
        .bind(to_i64(from.commit))
        .bind(to_i64(from.position))
        .bind(to_i64(to.commit))
        .bind(to_i64(to.position))
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DELETE FROM {} WHERE name = $1", self.table)).bind(name).execute(&mut *conn).await?;
        Ok(())
    }
}

fn decode(commit: i64, position: i64) -> Result<Checkpoint, sqlx::Error> {
    let invalid = |what: &str, value: i64| sqlx::Error::Decode(format!("stored checkpoint has {what} {value}").into());
    Ok(Checkpoint {
        commit: u64::try_from(commit).map_err(|_| invalid("commit", commit))?,
        position: u64::try_from(position).map_err(|_| invalid("position", position))?,
    })
}

/// `u64` → `bigint`; feed checkpoints always fit (transaction ids and positions are
/// `bigint`s below `i64::MAX`).
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The advisory-lock key text of projection `name` in `store`'s schema.
fn lock_name(store: &PostgresStore, name: &str) -> String {
    format!("annals projection {}.{name}", store.schema())
}

/// Another instance moved the projection's checkpoint (or the projection was reset)
/// while this one was running: this instance stops rather than apply events twice.
#[derive(Debug, thiserror::Error)]
#[error(
    "projection `{name}`: its checkpoint is at {found:?}, but this instance last saw {expected:?}; another instance \
     is processing it (or it was reset), so this one stops instead of applying events twice"
)]
pub struct CheckpointMoved {
    /// The projection.
    pub name: String,
    /// The checkpoint this instance last saw.
    pub expected: Checkpoint,
    /// The stored checkpoint (`None`: the row was deleted by a reset).
    pub found: Option<Checkpoint>,
}

fn storage(store: &PostgresStore, name: &str, what: &str, error: sqlx::Error) -> SinkError {
    SinkError::Storage(Box::new(store_error(
        format!("{what} of projection `{name}` in schema `{}`", store.schema()),
        error,
    )))
}

/// A [`Sink`] applying a PostgreSQL projection exactly once: each batch's read-model
/// writes and its checkpoint commit in one transaction. See the [module docs](self).
///
/// ```no_run
/// # use annals::prelude::*;
/// # use annals_postgres::{PgConnection, PgProjection, PostgresStore};
/// # #[derive(Projection)]
/// # #[projection(events(shopping_cart::CheckedOut), context = PgConnection)]
/// # struct Orders;
/// # impl On<shopping_cart::CheckedOut> for Orders {
/// #     async fn on(&mut self, _: shopping_cart::CheckedOut, _: &Envelope, _: &mut PgConnection) -> Result<(), annals::BoxError> { Ok(()) }
/// # }
/// use annals::subscription::Subscription;
/// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// // Catch up once (e.g. in a batch job) ...
/// Subscription::new(store.clone(), PgProjection::new(store.clone(), Orders)).catch_up().await?;
/// // ... or keep following, one active instance among all processes.
/// PgProjection::new(store, Orders).runner().run().await?;
/// # Ok(()) }
/// ```
pub struct PgProjection<P> {
    store: PostgresStore,
    projection: P,
    name: String,
    /// The checkpoint this instance last read or committed.
    seen: Option<Checkpoint>,
}

impl<P: Projection<Context = PgConnection>> PgProjection<P> {
    /// Feeds `projection`, with its checkpoint under [`Projection::NAME`].
    pub fn new(store: PostgresStore, projection: P) -> Self {
        PgProjection { store, projection, name: P::NAME.to_owned(), seen: None }
    }

    /// The same projection with its checkpoint under `name` instead, e.g. a new version
    /// built beside the old one (see [Rebuilding](self#rebuilding)).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.seen = None;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The stored checkpoint, `None` before the first run or after a reset.
    pub async fn stored_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        stored_checkpoint(&self.store, &self.name).await
    }

    /// A runner keeping this projection up to date, one active instance at a time.
    pub fn runner(self) -> PgProjectionRunner<Self> {
        let store = self.store.clone();
        PgProjectionRunner::new(store, self)
    }

    /// Starts resetting the projection so that its next run replays every event: takes
    /// its lock, begins a transaction and deletes its checkpoint in it. Clear the read
    /// model on [`Reset::connection`], then [`Reset::commit`]: checkpoint and read model
    /// are reset together, or (dropped without commit) not at all. Fails with
    /// [`ResetError::Running`] while a [`PgProjectionRunner`] of it is active anywhere;
    /// stop the runners first.
    ///
    /// ```no_run
    /// # use annals_postgres::{sqlx, PgProjection, PgConnection};
    /// # async fn run<P: annals::Projection<Context = PgConnection>>(mut projection: PgProjection<P>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut reset = projection.reset().await?;
    /// sqlx::query("TRUNCATE cart_summaries").execute(reset.connection()).await?;
    /// reset.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset(&mut self) -> Result<Reset, ResetError> {
        self.seen = None;
        let name = self.name.clone();
        let operation = || format!("resetting projection `{name}` in schema `{}`", self.store.schema());
        let fail = |e| ResetError::Store(store_error(operation(), e));
        let mut lock = self.store.pool().acquire().await.map_err(fail)?.detach();
        if !try_lock(&mut lock, &lock_name(&self.store, &name)).await.map_err(fail)? {
            let _ = lock.close().await;
            return Err(ResetError::Running { name });
        }
        let mut tx = self.store.pool().begin().await.map_err(fail)?;
        Checkpoints::of(&self.store).delete(&mut tx, &name).await.map_err(fail)?;
        Ok(Reset { lock, tx, operation: operation() })
    }

    async fn load(&mut self) -> Result<Checkpoint, sqlx::Error> {
        let mut conn = self.store.pool().acquire().await?;
        let seen = Checkpoints::of(&self.store).load(&mut conn, &self.name).await?;
        self.seen = Some(seen);
        Ok(seen)
    }
}

impl<P: Projection<Context = PgConnection>> Sink for PgProjection<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        let name = self.name.clone();
        self.load().await.map_err(|e| Box::new(store_error(format!("loading the checkpoint of `{name}`"), e)) as _)
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let seen = match self.seen {
            Some(seen) => seen,
            None => self.load().await.map_err(|e| storage(&self.store, &self.name, "loading the checkpoint", e))?,
        };
        if next <= seen {
            return Ok(());
        }
        let fail = |e| storage(&self.store, &self.name, "applying a batch", e);
        let checkpoints = Checkpoints::of(&self.store);
        let mut tx = self.store.pool().begin().await.map_err(fail)?;
        if !checkpoints.advance(&mut tx, &self.name, seen, next).await.map_err(fail)? {
            // The stored checkpoint is not the one this instance last saw: another instance
            // (or a previous owner whose commit landed after it lost the lock, or our own
            // commit whose reply was lost) moved it. The stored checkpoint always matches
            // the read model, since both commit together: continue from it, never apply
            // this batch on top of it.
            let found = checkpoints.current(&mut tx, &self.name).await.map_err(fail)?;
            drop(tx);
            let resumed = found.unwrap_or(Checkpoint::START);
            self.seen = Some(resumed);
            if next <= resumed {
                return Ok(()); // everything in this batch is already in the read model
            }
            // The subscription retries the batch; this time only the events after the
            // stored checkpoint are applied.
            return Err(SinkError::Storage(Box::new(CheckpointMoved {
                name: self.name.clone(),
                expected: seen,
                found,
            })));
        }
        for event in events.iter().filter(|e| e.checkpoint > seen) {
            self.projection.project(&event.envelope, &mut tx).await?;
        }
        tx.commit().await.map_err(|e| storage(&self.store, &self.name, "committing a batch", e))?;
        self.seen = Some(next);
        Ok(())
    }
}

/// A [`Sink`] for side effects outside the database (email, other services): runs a
/// [`Projection`] with `context = ()` and saves its checkpoint in
/// `<schema>.projection_checkpoints` after each event whose handler succeeded.
///
/// At least once: after a crash between an effect and its checkpoint, that event is
/// handled again. Use the envelope's `event_id` as the idempotency key towards the other
/// service. A failing handler leaves the checkpoint at the event before it; the
/// subscription retries with back-off and stops with a visible error if it keeps failing.
///
/// ```no_run
/// # use annals::prelude::*;
/// # use annals_postgres::{AtLeastOnce, PostgresStore};
/// #[derive(Projection)]
/// #[projection(name = "receipt_mailer", events(shopping_cart::CheckedOut))]
/// struct ReceiptMailer;
///
/// impl On<shopping_cart::CheckedOut> for ReceiptMailer {
///     async fn on(&mut self, e: shopping_cart::CheckedOut, env: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
///         // mailer.send(idempotency_key = env.event_id, ...)
///         println!("receipt for {} cents, key {}", e.total_cents, env.event_id);
///         Ok(())
///     }
/// }
/// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// AtLeastOnce::new(store, ReceiptMailer).runner().run().await?;
/// # Ok(()) }
/// ```
pub struct AtLeastOnce<P> {
    store: PostgresStore,
    handler: P,
    name: String,
    seen: Option<Checkpoint>,
}

impl<P: Projection<Context = ()>> AtLeastOnce<P> {
    /// Feeds `handler`, with its checkpoint under [`Projection::NAME`].
    pub fn new(store: PostgresStore, handler: P) -> Self {
        AtLeastOnce { store, handler, name: P::NAME.to_owned(), seen: None }
    }

    /// The same handler with its checkpoint under `name` instead.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.seen = None;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &P {
        &self.handler
    }

    /// The stored checkpoint, `None` before the first run.
    pub async fn stored_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        stored_checkpoint(&self.store, &self.name).await
    }

    /// A runner keeping this handler fed, one active instance at a time.
    pub fn runner(self) -> PgProjectionRunner<Self> {
        let store = self.store.clone();
        PgProjectionRunner::new(store, self)
    }

    async fn load(&mut self) -> Result<Checkpoint, sqlx::Error> {
        let mut conn = self.store.pool().acquire().await?;
        let seen = Checkpoints::of(&self.store).load(&mut conn, &self.name).await?;
        self.seen = Some(seen);
        Ok(seen)
    }

    /// Moves the stored checkpoint from what this instance saw to `to`.
    async fn save(&mut self, seen: Checkpoint, to: Checkpoint) -> Result<(), SinkError> {
        let fail = |e| storage(&self.store, &self.name, "saving the checkpoint", e);
        let checkpoints = Checkpoints::of(&self.store);
        let mut conn = self.store.pool().acquire().await.map_err(fail)?;
        if !checkpoints.advance(&mut conn, &self.name, seen, to).await.map_err(fail)? {
            let found = checkpoints.current(&mut conn, &self.name).await.map_err(fail)?;
            self.seen = None;
            return Err(SinkError::Storage(Box::new(CheckpointMoved {
                name: self.name.clone(),
                expected: seen,
                found,
            })));
        }
        self.seen = Some(to);
        Ok(())
    }
}

impl<P: Projection<Context = ()>> Sink for AtLeastOnce<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> Filter {
        Filter::for_projection::<P>()
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint, BoxError> {
        let name = self.name.clone();
        self.load().await.map_err(|e| Box::new(store_error(format!("loading the checkpoint of `{name}`"), e)) as _)
    }

    async fn process(&mut self, events: &[FeedEvent], next: Checkpoint) -> Result<(), SinkError> {
        let mut seen = match self.seen {
            Some(seen) => seen,
            None => self.load().await.map_err(|e| storage(&self.store, &self.name, "loading the checkpoint", e))?,
        };
        for event in events {
            if event.checkpoint <= seen {
                continue; // handled before a retry
            }
            self.handler.project(&event.envelope, &mut ()).await?;
            self.save(seen, event.checkpoint).await?;
            seen = event.checkpoint;
        }
        if next > seen {
            self.save(seen, next).await?;
        }
        Ok(())
    }
}

/// A reset in progress (see [`PgProjection::reset`]): the projection's lock and a
/// transaction in which its checkpoint is already deleted. Dropping it without
/// [`commit`](Self::commit) rolls back and releases the lock.
pub struct Reset {
    lock: PgConnection,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    operation: String,
}

impl Reset {
    /// The reset's transaction: clear the projection's tables here.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Commits the reset and releases the projection's lock.
    pub async fn commit(self) -> Result<(), ResetError> {
        let Reset { lock, tx, operation } = self;
        let committed = tx.commit().await.map_err(|e| ResetError::Store(store_error(operation, e)));
        let _ = lock.close().await; // releases the lock; dropping the connection would too
        committed
    }
}

impl std::fmt::Debug for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reset").field("operation", &self.operation).finish_non_exhaustive()
    }
}

async fn stored_checkpoint(store: &PostgresStore, name: &str) -> Result<Option<Checkpoint>, StoreError> {
    let operation = || format!("reading the checkpoint of projection `{name}`");
    let mut conn = store.pool().acquire().await.map_err(|e| store_error(operation(), e))?;
    Checkpoints::of(store).current(&mut conn, name).await.map_err(|e| store_error(operation(), e))
}

async fn try_lock(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))").bind(key).fetch_one(&mut *conn).await
}

/// Why [`PgProjection::reset`] did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    /// A runner of the projection is active.
    #[error("projection `{name}` is running; stop its runners before resetting it")]
    Running {
        /// The projection.
        name: String,
    },
    /// The database failed; nothing was reset.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a [`PgProjectionRunner`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The subscription stopped (a handler kept failing, the store was unreachable, or
    /// another instance moved the checkpoint).
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// The projection's lock could not be taken: the database was unreachable.
    #[error("projection `{name}`: could not take its lock: {source}")]
    Lock {
        /// The projection.
        name: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

/// Runs a subscription for a [`Sink`] in exactly one process at a time: holds the
/// sink's advisory lock on a dedicated connection while it runs, polls for it while
/// another instance holds it, and takes over when that instance's connection closes.
/// See the [module docs](self#one-instance-at-a-time-pgprojectionrunner).
///
/// ```no_run
/// # use std::time::Duration;
/// # use annals_postgres::{PgConnection, PgProjection, PgProjectionRunner, PostgresStore};
/// # async fn run<P: annals::Projection<Context = PgConnection> + Sync>(store: PostgresStore, projection: P) -> Result<(), annals_postgres::RunError> {
/// let runner = PgProjectionRunner::new(store.clone(), PgProjection::new(store, projection))
///     .lock_poll_interval(Duration::from_millis(500));
/// // Stop it by dropping or aborting the task: its lock is released with its connection.
/// tokio::spawn(runner.run());
/// # Ok(()) }
/// ```
pub struct PgProjectionRunner<S> {
    store: PostgresStore,
    sink: S,
    options: SubscriptionOptions,
    filter: Option<Filter>,
    lock_poll: Duration,
}

impl<S: Sink> PgProjectionRunner<S> {
    /// A runner feeding `sink` from `store`, the lock keyed by the sink's name and the
    /// store's schema.
    pub fn new(store: PostgresStore, sink: S) -> Self {
        PgProjectionRunner { store, sink, options: SubscriptionOptions::default(), filter: None, lock_poll: LOCK_POLL }
    }

    /// Subscription tuning (batch size, polling, retries).
    pub fn options(mut self, options: SubscriptionOptions) -> Self {
        self.options = options;
        self
    }

    /// Only events matching `filter` (replaces the sink's own filter).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// How often a waiting instance asks for the lock, and how often the active one
    /// checks its lock connection (default 1 s).
    pub fn lock_poll_interval(mut self, interval: Duration) -> Self {
        self.lock_poll = interval;
        self
    }

    /// Waits for the lock, then runs the subscription until it stops with an error. If
    /// the lock's connection breaks, it stops the subscription and waits for the lock
    /// again.
    pub async fn run(self) -> Result<(), RunError> {
        let PgProjectionRunner { store, sink, options, filter, lock_poll } = self;
        let name = sink.name().to_owned();
        let key = lock_name(&store, &name);
        let mut subscription = Subscription::new(store.clone(), sink).options(options);
        if let Some(filter) = filter {
            subscription = subscription.filter(filter);
        }
        loop {
            let mut lock = acquire(&store, &name, &key, lock_poll, options.max_attempts).await?;
            tokio::select! {
                result = subscription.run() => {
                    let _ = lock.close().await;
                    return result.map_err(RunError::from);
                }
                () = hold(&mut lock, lock_poll) => {
                    // The lock's connection broke: the lock is gone and another instance
                    // may take over. Stop, then queue for the lock again.
                }
            }
        }
    }
}

/// A dedicated connection holding the lock `key`, once it is free.
async fn acquire(
    store: &PostgresStore,
    name: &str,
    key: &str,
    poll: Duration,
    max_attempts: u32,
) -> Result<PgConnection, RunError> {
    let mut failures = 0;
    loop {
        let attempt = async {
            // Detached: dropping it closes it, which releases the lock. A pooled
            // connection would go back to the pool still holding it.
            let mut conn = store.pool().acquire().await?.detach();
            let locked = try_lock(&mut conn, key).await?;
            Ok::<_, sqlx::Error>(locked.then_some(conn))
        };
        match attempt.await {
            Ok(Some(conn)) => return Ok(conn),
            Ok(None) => failures = 0,
            Err(e) if crate::error::is_transient(&e) && failures + 1 < max_attempts.max(1) => failures += 1,
            Err(e) => {
                let source = store_error(format!("taking the lock of projection `{name}`"), e);
                return Err(RunError::Lock { name: name.to_owned(), source });
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Returns when the lock connection stops answering.
async fn hold(lock: &mut PgConnection, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if lock.ping().await.is_err() {
            return;
        }
    }
}
