//! [`PgPartitionedRunner`]: one consumer split into partitions by stream, each partition
//! run by one instance at a time, the partitions spread over the instances and taken over
//! when one dies.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use annals::store::{InvalidPartition, Partition};
use annals::subscription::{Sink, Subscription, SubscriptionError};
use annals::RetryPolicy;
use sqlx::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{is_transient, store_error};
use crate::runner::{try_lock, RunError};
use crate::{sql, PostgresStore};

/// How often an instance looks at its share by default.
const BALANCE_EVERY: Duration = Duration::from_secs(1);

/// The metric of how many partitions of a consumer this process runs, by consumer.
const PARTITIONS_HELD: &str = "annals_partitions_held";

/// The consumer name of `partition` of consumer `name`: its checkpoint's key and its lock's.
///
/// ```
/// # use annals::store::Partition;
/// let name = annals_postgres::partition_consumer_name("units_added", Partition::new(2, 4)?);
/// assert_eq!(name, "units_added[2/4]");
/// # Ok::<(), annals::store::InvalidPartition>(())
/// ```
pub fn partition_consumer_name(name: &str, partition: Partition) -> String {
    format!("{name}[{partition}]")
}

/// Runs a consumer split into `count` partitions by stream
/// ([`Partition`], [`Filter::partition`](annals::store::Filter::partition)): each
/// partition is a consumer of its own (its own checkpoint, named by
/// [`partition_consumer_name`], e.g. `units_added[2/4]`) that reads only its streams' events,
/// in commit order, so the order of every stream's events is kept while the partitions
/// work in parallel, in one process or spread over several.
///
/// # One instance per partition, spread and rebalanced
/// Start the same runner in every process. Each holds, on one connection of its own, a
/// session-level advisory lock that says it is there (two `int4` keys: the consumer's
/// and a random one of its own), and one lock per partition it runs, the same lock a
/// [`PgProjectionRunner`](crate::PgProjectionRunner) of that partition's consumer would
/// take. Every [`balance_interval`](Self::balance_interval) it counts the instances in
/// `pg_locks` and aims at its share, `count / instances` rounded up: it takes free
/// partitions while it runs fewer, and hands one back (stops it, then releases its lock)
/// while it runs more, so a new instance gets partitions within a few intervals. When an
/// instance dies its connection closes, PostgreSQL releases its locks, and the others
/// take its partitions over from their stored checkpoints. A checkpoint that moved
/// under a partition (two instances overlapping) is refused by the
/// [`ExactlyOnce`](annals::subscription::ExactlyOnce) fencing, as for one runner.
///
/// # Outages and failures
/// If the lock connection breaks, the locks are gone: the runner stops its partitions and
/// connects again, with back-off, for as long as the outage lasts
/// ([`status`](Self::status) says so). A partition whose subscription stops with an error
/// (a handler that kept failing) stops the runner with that error, as
/// [`PgProjectionRunner`](crate::PgProjectionRunner) does, and releases every lock, so
/// that another instance retries it.
///
/// # Choosing the count
/// The count is part of each partition's name: changing it makes a new set of consumers
/// that start from the first event, so rebuild the read model beside the old one (see
/// [`PgProjectionRunner`](crate::PgProjectionRunner), *Rebuilding*) when you change it.
/// Partitions pay when handlers do the work (writes to the read model, calls): every
/// partition reads the feed itself and skips the other partitions' events in SQL.
///
/// ```no_run
/// use annals::prelude::*;
/// use annals::subscription::{ExactlyOnce, Subscription};
/// use annals_postgres::{PgConnection, PgPartitionedRunner, PostgresStore};
/// use shopping_cart::ItemAdded;
///
/// #[derive(Projection, Clone)]
/// #[projection(name = "units_added", events(ItemAdded), context = PgConnection)]
/// struct UnitsAdded;
///
/// impl On<ItemAdded> for UnitsAdded {
///     async fn on(&mut self, e: ItemAdded, _: &Envelope, tx: &mut PgConnection) -> Result<(), annals::BoxError> {
///         Ok(()) // writes through `tx`
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// let partitions = store.clone();
/// let runner = PgPartitionedRunner::new(store, "units_added", 4, move |_partition, name| {
///     let consumer = ExactlyOnce::new(partitions.clone(), UnitsAdded).named(name);
///     Subscription::new(partitions.clone(), consumer)
/// })?;
/// // Start it in every process: the four partitions are spread over them.
/// runner.run().await?;
/// # Ok(()) }
/// ```
pub struct PgPartitionedRunner<S, M> {
    store: PostgresStore,
    name: String,
    count: u32,
    make: M,
    balance_every: Duration,
    status: watch::Sender<PartitionedStatus>,
    _sink: std::marker::PhantomData<fn() -> S>,
}

/// What a [`PgPartitionedRunner`] is doing, for an operator: read it with
/// [`PgPartitionedRunner::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionedStatus {
    /// The consumer (without a partition).
    pub name: String,
    /// How many partitions it has.
    pub count: u32,
    /// The partitions this instance runs, by index.
    pub held: Vec<u32>,
    /// How many instances were running it at the last count (this one included); 0
    /// before the first.
    pub instances: u32,
    /// Why it is waiting, when it is: the database is unreachable, or it stopped.
    pub waiting: Option<String>,
    /// When `held` or `waiting` last changed.
    pub since: SystemTime,
}

/// A partition this instance runs.
struct Running {
    consumer: String,
    task: JoinHandle<Result<(), SubscriptionError>>,
}

impl<S, M> PgPartitionedRunner<S, M>
where
    S: Sink + Sync + 'static,
    M: FnMut(Partition, &str) -> Subscription<PostgresStore, S> + Send,
{
    /// A runner of consumer `name` split into `count` partitions. `make` builds the
    /// subscription of one partition whenever this instance takes it: it gets the
    /// partition and the name its sink must carry ([`partition_consumer_name`]; for an
    /// [`ExactlyOnce`](annals::subscription::ExactlyOnce), `.named(name)`). The runner
    /// narrows the subscription to the partition's streams itself. Fails if `count` is 0.
    ///
    /// ```no_run
    /// # use annals::subscription::{ExactlyOnce, Subscription};
    /// # use annals_postgres::{PgConnection, PgPartitionedRunner, PostgresStore};
    /// # fn run<P: annals::Projection<Context = PgConnection> + Clone + Sync>(store: PostgresStore, projection: P) -> Result<(), annals::store::InvalidPartition> {
    /// let feed = store.clone();
    /// let runner = PgPartitionedRunner::new(store, "units_added", 4, move |_, name| {
    ///     Subscription::new(feed.clone(), ExactlyOnce::new(feed.clone(), projection.clone()).named(name))
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn new(store: PostgresStore, name: impl Into<String>, count: u32, make: M) -> Result<Self, InvalidPartition> {
        Partition::new(0, count)?;
        let name = name.into();
        let status = watch::Sender::new(PartitionedStatus {
            name: name.clone(),
            count,
            held: Vec::new(),
            instances: 0,
            waiting: None,
            since: SystemTime::now(),
        });
        Ok(PgPartitionedRunner {
            store,
            name,
            count,
            make,
            balance_every: BALANCE_EVERY,
            status,
            _sink: std::marker::PhantomData,
        })
    }

    /// How often the instance counts the instances and takes or hands back partitions
    /// (default 1 s): how soon partitions move when an instance comes or goes.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # fn run<S: annals::subscription::Sink + Sync + 'static, M: FnMut(annals::store::Partition, &str) -> annals::subscription::Subscription<annals_postgres::PostgresStore, S> + Send>(runner: annals_postgres::PgPartitionedRunner<S, M>) {
    /// let runner = runner.balance_interval(Duration::from_millis(200));
    /// # }
    /// ```
    pub fn balance_interval(mut self, interval: Duration) -> Self {
        self.balance_every = interval;
        self
    }

    /// What the runner is doing, now and as it changes (the receiver stays valid while it
    /// runs in another task).
    ///
    /// ```no_run
    /// # fn show<S: annals::subscription::Sink + Sync + 'static, M: FnMut(annals::store::Partition, &str) -> annals::subscription::Subscription<annals_postgres::PostgresStore, S> + Send>(runner: &annals_postgres::PgPartitionedRunner<S, M>) {
    /// let status = runner.status();
    /// println!("runs partitions {:?} of {}", status.borrow().held, status.borrow().count);
    /// # }
    /// ```
    pub fn status(&self) -> watch::Receiver<PartitionedStatus> {
        self.status.subscribe()
    }

    /// Runs this instance's share of the partitions until one of them stops with an
    /// error; waits out outages. Stop it by dropping or aborting the task running it: its
    /// partitions stop and its locks are released with its connection.
    ///
    /// ```no_run
    /// # async fn run<S: annals::subscription::Sink + Sync + 'static, M: FnMut(annals::store::Partition, &str) -> annals::subscription::Subscription<annals_postgres::PostgresStore, S> + Send + 'static>(runner: annals_postgres::PgPartitionedRunner<S, M>) {
    /// let running = tokio::spawn(runner.run());
    /// // ... at shutdown:
    /// running.abort();
    /// # }
    /// ```
    pub async fn run(mut self) -> Result<(), RunError> {
        let mut held = Held::default();
        let result = self.run_held(&mut held).await;
        held.stop_all().await;
        self.publish(&held, result.as_ref().err().map(|e| format!("stopped: {e}")));
        result
    }

    async fn run_held(&mut self, held: &mut Held) -> Result<(), RunError> {
        let members = self.store.sql().consumer_members_key(&self.name, self.count);
        let mut outage = RetryPolicy::forever().start();
        loop {
            let error = match join(&self.store, &members).await {
                Ok(mut lock) => {
                    outage = RetryPolicy::forever().start();
                    match self.balance_until_broken(&mut lock, &members, held).await {
                        Ok(stopped) => return stopped,
                        Err(broken) => broken,
                    }
                }
                Err(e) => e,
            };
            // The lock connection is gone, and the partition locks with it: another
            // instance may take them now.
            held.stop_all().await;
            let retry = if is_transient(&error) { outage.failed() } else { None };
            let Some(wait) = retry else {
                let source = store_error(format!("running the partitions of consumer `{}`", self.name), error);
                return Err(RunError::Lock { name: self.name.clone(), source });
            };
            let reason = format!("the database is unreachable ({error}); trying again in {wait:?}");
            tracing::warn!(consumer = %self.name, "{reason}");
            self.publish(held, Some(reason));
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes and hands back partitions every interval. Returns `Ok` with the runner's
    /// result when a partition stopped, `Err` when the lock connection failed.
    async fn balance_until_broken(
        &mut self,
        lock: &mut PgConnection,
        members: &str,
        held: &mut Held,
    ) -> Result<Result<(), RunError>, sqlx::Error> {
        loop {
            if let Some(stopped) = held.first_stopped(&self.name).await {
                return Ok(stopped);
            }
            let instances: i64 = sqlx::query_scalar(sql::COUNT_MEMBERS).bind(members).fetch_one(&mut *lock).await?;
            let instances = u32::try_from(instances).unwrap_or(u32::MAX).max(1);
            let share = self.count.div_ceil(instances);
            let before: Vec<u32> = held.indexes();
            if held.len() > share {
                // One at a time: the others get a turn to take it before the next goes.
                if let Some((index, running)) = held.running.pop_last() {
                    running.task.abort();
                    let _ = running.task.await;
                    sqlx::query(sql::ADVISORY_UNLOCK)
                        .bind(self.store.sql().consumer_lock_key(&running.consumer))
                        .execute(&mut *lock)
                        .await?;
                    tracing::info!(consumer = %running.consumer, partition = index, instances, "handed the partition back");
                }
            } else if held.len() < share {
                self.take_free(lock, held, share).await?;
            }
            // Also after an outage: the status no longer waits, even if this instance got
            // no partition back.
            let stale = self.status.borrow().instances != instances || self.status.borrow().waiting.is_some();
            if held.indexes() != before || stale {
                self.status.send_modify(|status| status.instances = instances);
                self.publish(held, None);
            }
            tokio::time::sleep(self.balance_every).await;
        }
    }

    /// Takes free partitions until this instance runs `share` of them.
    async fn take_free(&mut self, lock: &mut PgConnection, held: &mut Held, share: u32) -> Result<(), sqlx::Error> {
        for partition in Partition::all(self.count).into_iter().flatten() {
            if held.len() >= share {
                break;
            }
            if held.running.contains_key(&partition.index()) {
                continue;
            }
            let consumer = partition_consumer_name(&self.name, partition);
            if !try_lock(lock, &self.store.sql().consumer_lock_key(&consumer)).await? {
                continue;
            }
            let subscription = (self.make)(partition, &consumer);
            if subscription.sink().name() != consumer {
                // Two partitions under one name would share a checkpoint: refuse.
                let misnamed = subscription.sink().name().to_owned();
                sqlx::query(sql::ADVISORY_UNLOCK)
                    .bind(self.store.sql().consumer_lock_key(&consumer))
                    .execute(&mut *lock)
                    .await?;
                held.misnamed = Some((consumer, misnamed));
                return Ok(());
            }
            let mut subscription = subscription.partition(partition);
            let task = tokio::spawn(async move { subscription.run().await });
            tracing::info!(consumer = %consumer, partition = partition.index(), "took the partition");
            held.running.insert(partition.index(), Running { consumer, task });
        }
        Ok(())
    }

    fn publish(&self, held: &Held, waiting: Option<String>) {
        metrics::gauge!(PARTITIONS_HELD, "consumer" => self.name.clone()).set(f64::from(held.len()));
        self.status.send_modify(|status| {
            status.held = held.indexes();
            status.waiting = waiting;
            status.since = SystemTime::now();
        });
    }
}

/// A connection of its own holding this instance's membership lock (under a random
/// key of its own).
async fn join(store: &PostgresStore, members: &str) -> Result<PgConnection, sqlx::Error> {
    // Detached: dropping it closes it, which releases every lock it holds.
    let mut lock = store.pool().acquire().await?.detach();
    loop {
        let me = fastrand::i32(..);
        let joined: bool = sqlx::query_scalar(sql::TRY_MEMBER_LOCK).bind(members).bind(me).fetch_one(&mut lock).await?;
        if joined {
            return Ok(lock);
        }
    }
}

/// The partitions this instance runs.
#[derive(Default)]
struct Held {
    running: BTreeMap<u32, Running>,
    /// A partition whose subscription `make` gave a sink of another name: (expected, got).
    misnamed: Option<(String, String)>,
}

impl Held {
    fn len(&self) -> u32 {
        u32::try_from(self.running.len()).unwrap_or(u32::MAX)
    }

    fn indexes(&self) -> Vec<u32> {
        self.running.keys().copied().collect()
    }

    /// The result of the first partition that stopped, if one did.
    async fn first_stopped(&mut self, name: &str) -> Option<Result<(), RunError>> {
        if let Some((expected, got)) = self.misnamed.take() {
            return Some(Err(RunError::Misnamed { name: name.to_owned(), expected, got }));
        }
        let index = self.running.iter().find(|(_, running)| running.task.is_finished()).map(|(&index, _)| index)?;
        let running = self.running.remove(&index)?;
        Some(match running.task.await {
            Ok(result) => result.map_err(RunError::from),
            Err(joined) => Err(RunError::Panicked { name: running.consumer, reason: joined.to_string() }),
        })
    }

    /// Stops every partition and waits until each has.
    async fn stop_all(&mut self) {
        for running in std::mem::take(&mut self.running).into_values() {
            running.task.abort();
            let _ = running.task.await;
        }
    }
}
