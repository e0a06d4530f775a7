//! [`PgProjectionRunner`]: one active instance of a consumer among all processes, on a
//! PostgreSQL advisory lock, and the reset that takes the same lock.

use std::time::Duration;

use annals::subscription::{ExactlyOnce, Reset, Sink, Subscription, SubscriptionError};
use annals::{Projection, RetryPolicy, StoreError};
use sqlx::{Connection, PgConnection};

use crate::error::{is_transient, store_error};
use crate::{sql, PostgresStore};

/// How often a waiting runner asks for the lock by default, and how often the active one
/// checks that its lock connection is alive.
const LOCK_POLL: Duration = Duration::from_secs(1);

/// Runs a [`Subscription`] in exactly one process at a time: the consumer's read models
/// in PostgreSQL, applied exactly once, kept up to date by one active instance among all
/// the processes that run it.
///
/// # Exactly once
/// A [`Projection`] with `context = annals_postgres::PgConnection` writes its read model
/// through the connection its handlers receive. [`ExactlyOnce`] feeds it: per batch of
/// events from the feed it begins a transaction, moves the consumer's checkpoint in
/// `<schema>.projection_checkpoints` from the checkpoint it last saw to the batch's end
/// (the update locks the row, so a second instance waits here, then finds the checkpoint
/// moved and does not apply the batch again), runs the handler of every event in the
/// transaction, and commits. Read model and checkpoint commit together: a crash at any
/// point leaves both as they were before the batch or both after it. A failing handler
/// rolls the whole batch back; the subscription retries it with back-off and stops with a
/// visible error if it keeps failing. Keep the read model in tables, not in fields of the
/// projection: fields are not rolled back with the transaction.
///
/// # One instance at a time
/// Several processes may run the same consumer for availability. The runner holds a
/// session-level advisory lock (`pg_try_advisory_lock`, keyed by schema and consumer
/// name) on a connection of its own while it runs the subscription; the others poll for
/// the lock every [`lock_poll_interval`](Self::lock_poll_interval). When the active
/// process dies, its connection closes, PostgreSQL releases the lock, and another
/// instance takes over from the stored checkpoint. The fencing above still guards the
/// checkpoint should two instances ever overlap. The lock needs a session-pooled
/// connection: it does not work through a transaction-pooling proxy.
///
/// # Side effects
/// Handlers that send email or call other services cannot join a database transaction:
/// run them as [`AtLeastOnce`](annals::subscription::AtLeastOnce) consumers
/// (`context = ()`), whose checkpoint moves after each handled event. A crash between the
/// effect and the checkpoint repeats that one event, so use
/// [`Envelope::event_id`](annals::Envelope) as the idempotency key towards the other
/// service. The runner runs them the same way, one instance at a time.
///
/// # Rebuilding
/// - **In place**: stop the consumer's runners, then [`reset`](Self::reset) deletes its
///   checkpoint and lets you clear its tables (e.g. `TRUNCATE`) in the same transaction;
///   the next run replays every event. The reset refuses while a runner holds the lock.
/// - **Side by side** (the old version keeps serving): give the new version its own tables
///   and name, `ExactlyOnce::new(store, CartSummariesV2 { .. }).named("cart_summaries_v2")`,
///   catch it up ([`Subscription::catch_up`]), point readers at the new tables (for
///   instance `CREATE OR REPLACE VIEW cart_summaries AS SELECT * FROM cart_summaries_v2`),
///   run it, stop the old one, and drop the old tables and its checkpoint row.
///
/// The subscription carries every other setting: what it reads
/// ([`Subscription::filter`]), its batch size, polling and retries
/// ([`Subscription::options`]).
///
/// ```no_run
/// use annals::prelude::*;
/// use annals::subscription::{ExactlyOnce, Subscription, SubscriptionOptions};
/// use annals_postgres::{sqlx, PgConnection, PgProjectionRunner, PostgresStore};
/// use shopping_cart::ItemAdded;
///
/// #[derive(Projection)]
/// #[projection(name = "units_added", events(ItemAdded), context = PgConnection)]
/// struct UnitsAdded;
///
/// impl On<ItemAdded> for UnitsAdded {
///     async fn on(&mut self, e: ItemAdded, _: &Envelope, tx: &mut PgConnection) -> Result<(), annals::BoxError> {
///         sqlx::query("INSERT INTO units (sku, n) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET n = units.n + $2")
///             .bind(&e.sku)
///             .bind(i64::from(e.qty))
///             .execute(&mut *tx)
///             .await?;
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// let units = ExactlyOnce::new(store.clone(), UnitsAdded);
/// let options = SubscriptionOptions { batch_size: 200, ..SubscriptionOptions::default() };
/// let subscription = Subscription::new(store.clone(), units).options(options);
/// // Runs until an error stops it; start it in every process: one of them is active.
/// PgProjectionRunner::new(store, subscription).run().await?;
/// # Ok(()) }
/// ```
pub struct PgProjectionRunner<S> {
    store: PostgresStore,
    subscription: Subscription<PostgresStore, S>,
    lock_poll: Duration,
}

impl<S: Sink> PgProjectionRunner<S> {
    /// A runner for `subscription`, a subscription to `store`'s feed; the lock is keyed by
    /// the sink's name and the store's schema.
    ///
    /// ```no_run
    /// # use annals::subscription::{ExactlyOnce, Subscription};
    /// # use annals_postgres::{PgConnection, PgProjectionRunner, PostgresStore};
    /// # fn run<P: annals::Projection<Context = PgConnection>>(store: PostgresStore, projection: P) {
    /// let consumer = ExactlyOnce::new(store.clone(), projection);
    /// let runner = PgProjectionRunner::new(store.clone(), Subscription::new(store, consumer));
    /// # }
    /// ```
    pub fn new(store: PostgresStore, subscription: Subscription<PostgresStore, S>) -> Self {
        PgProjectionRunner { store, subscription, lock_poll: LOCK_POLL }
    }

    /// How often a waiting instance asks for the lock, and how often the active one checks
    /// its lock connection (default 1 s).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use annals::subscription::Sink;
    /// # use annals_postgres::PgProjectionRunner;
    /// # fn run<S: Sink + 'static>(runner: PgProjectionRunner<S>) {
    /// let runner = runner.lock_poll_interval(Duration::from_millis(500));
    /// # }
    /// ```
    pub fn lock_poll_interval(mut self, interval: Duration) -> Self {
        self.lock_poll = interval;
        self
    }

    /// The subscription the runner runs, e.g. to read its sink.
    ///
    /// ```no_run
    /// # use annals::subscription::Sink;
    /// # fn show<S: Sink>(runner: &annals_postgres::PgProjectionRunner<S>) {
    /// println!("runs consumer `{}`", runner.subscription().sink().name());
    /// # }
    /// ```
    pub fn subscription(&self) -> &Subscription<PostgresStore, S> {
        &self.subscription
    }

    /// Waits for the consumer's lock, then runs the subscription until it stops with an
    /// error. If the lock's connection breaks, it stops the subscription and waits for the
    /// lock again. Stop it by dropping or aborting the task running it: its lock is
    /// released with its connection.
    ///
    /// ```no_run
    /// # use annals::subscription::Sink;
    /// # async fn run<S: Sink + Sync + 'static>(runner: annals_postgres::PgProjectionRunner<S>) {
    /// let running = tokio::spawn(runner.run());
    /// // ... at shutdown:
    /// running.abort();
    /// # }
    /// ```
    pub async fn run(self) -> Result<(), RunError> {
        let PgProjectionRunner { store, mut subscription, lock_poll } = self;
        let name = subscription.sink().name().to_owned();
        let key = store.sql().consumer_lock_key(&name);
        loop {
            let mut lock = acquire(&store, &name, &key, lock_poll).await?;
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

impl<P: Projection<Context = PgConnection>> PgProjectionRunner<ExactlyOnce<P, PostgresStore>> {
    /// Starts resetting `consumer` (whose checkpoint lives in `store`) so that its next
    /// run replays every event: takes the consumer's lock, then
    /// [`ExactlyOnce::reset`] begins a transaction and deletes the checkpoint in it. Clear
    /// the read model through [`LockedReset::connection`], then [`LockedReset::commit`]:
    /// checkpoint and read model are reset together, or (dropped without commit) not at
    /// all. Fails with [`ResetError::Running`] while a runner of the consumer is active
    /// anywhere; stop the runners first.
    ///
    /// ```no_run
    /// # use annals::subscription::ExactlyOnce;
    /// # use annals_postgres::{sqlx, PgConnection, PgProjectionRunner, PostgresStore};
    /// # async fn run<P: annals::Projection<Context = PgConnection>>(store: PostgresStore, projection: P) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut consumer = ExactlyOnce::new(store.clone(), projection);
    /// let mut reset = PgProjectionRunner::reset(&store, &mut consumer).await?;
    /// sqlx::query("TRUNCATE cart_summaries").execute(reset.connection()).await?;
    /// reset.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset(
        store: &PostgresStore,
        consumer: &mut ExactlyOnce<P, PostgresStore>,
    ) -> Result<LockedReset, ResetError> {
        let name = consumer.name().to_owned();
        let operation = || format!("resetting consumer `{name}` in schema `{}`", store.schema());
        let fail = |e| ResetError::Store(store_error(operation(), e));
        // Detached: dropping it closes it, which releases the lock.
        let mut lock = store.pool().acquire().await.map_err(fail)?.detach();
        if !try_lock(&mut lock, &store.sql().consumer_lock_key(&name)).await.map_err(fail)? {
            let _ = lock.close().await;
            return Err(ResetError::Running { name });
        }
        let reset = consumer.reset().await?;
        Ok(LockedReset { lock, reset, name })
    }
}

/// A reset in progress (see [`PgProjectionRunner::reset`]): the consumer's lock, and a
/// transaction in which its checkpoint is already deleted. Dropping it without
/// [`commit`](Self::commit) rolls back and releases the lock.
pub struct LockedReset {
    lock: PgConnection,
    reset: Reset<PostgresStore>,
    name: String,
}

impl LockedReset {
    /// The reset's transaction: clear the consumer's tables here.
    ///
    /// ```no_run
    /// # async fn run(mut reset: annals_postgres::LockedReset) -> Result<(), annals_postgres::sqlx::Error> {
    /// annals_postgres::sqlx::query("TRUNCATE cart_summaries").execute(reset.connection()).await?;
    /// # Ok(()) }
    /// ```
    pub fn connection(&mut self) -> &mut PgConnection {
        self.reset.connection()
    }

    /// Commits the reset and releases the consumer's lock.
    ///
    /// ```no_run
    /// # async fn run(reset: annals_postgres::LockedReset) -> Result<(), annals::StoreError> {
    /// reset.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<(), StoreError> {
        let LockedReset { lock, reset, .. } = self;
        let committed = reset.commit().await;
        let _ = lock.close().await; // releases the lock; dropping the connection would too
        committed
    }
}

impl std::fmt::Debug for LockedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedReset").field("consumer", &self.name).finish_non_exhaustive()
    }
}

/// Why [`PgProjectionRunner::reset`] did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    /// A runner of the consumer is active.
    #[error("consumer `{name}` is running; stop its runners before resetting it")]
    Running {
        /// The consumer.
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
    /// another instance kept moving the checkpoint).
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// The consumer's lock could not be taken: the database was unreachable.
    #[error("consumer `{name}`: could not take its lock: {source}")]
    Lock {
        /// The consumer.
        name: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// A [`PgPartitionedRunner`](crate::PgPartitionedRunner)'s `make` built a partition's
    /// subscription whose sink has another name than the partition's: partitions sharing
    /// a name would share one checkpoint.
    #[error(
        "consumer `{name}`: the subscription made for partition consumer `{expected}` has a sink named `{got}`; \
         name the sink with the name `make` receives (for `ExactlyOnce`, `.named(name)`)"
    )]
    Misnamed {
        /// The partitioned consumer.
        name: String,
        /// The partition's consumer name.
        expected: String,
        /// The sink's name.
        got: String,
    },
    /// A partition's subscription panicked (a handler panicked); the runner stopped
    /// every partition and released its locks.
    #[error("consumer `{name}` panicked: {reason}")]
    Panicked {
        /// The partition's consumer name.
        name: String,
        /// The panic, as the task reported it.
        reason: String,
    },
}

/// A dedicated connection holding the lock `key`, once it is free. Transient failures
/// (the database restarting, an outage) are retried for as long as they last, as a
/// long-lived follower does ([`RetryPolicy::forever`]).
async fn acquire(store: &PostgresStore, name: &str, key: &str, poll: Duration) -> Result<PgConnection, RunError> {
    let mut failures = RetryPolicy::forever().start();
    loop {
        let attempt = async {
            // Detached: dropping it closes it, which releases the lock. A pooled
            // connection would go back to the pool still holding it.
            let mut conn = store.pool().acquire().await?.detach();
            let locked = try_lock(&mut conn, key).await?;
            Ok::<_, sqlx::Error>(locked.then_some(conn))
        };
        let failed = match attempt.await {
            Ok(Some(conn)) => return Ok(conn),
            Ok(None) => {
                failures = RetryPolicy::forever().start();
                Ok(poll)
            }
            Err(e) if is_transient(&e) => failures.failed().ok_or(e),
            Err(e) => Err(e),
        };
        match failed {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(e) => {
                let source = store_error(format!("taking the lock of consumer `{name}`"), e);
                return Err(RunError::Lock { name: name.to_owned(), source });
            }
        }
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

pub(crate) async fn try_lock(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(sql::TRY_ADVISORY_LOCK).bind(key).fetch_one(&mut *conn).await
}
