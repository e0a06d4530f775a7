//! Subscriptions on PostgreSQL: [`EventFeed`] for [`PostgresStore`], reading the events
//! table in commit order without gaps, without a global write lock and without a time
//! margin.
//!
//! # Why positions alone are not enough
//! `global_position` is an identity column: a writer takes its values when its insert
//! runs, not when its transaction commits. Transaction A may take position 10, transaction
//! B position 11, and B commit first. A reader that saw 11 and resumed "after 11" would
//! never see 10. Waiting a fixed time before reading recent positions only makes that
//! unlikely; a global write lock makes it impossible but serializes every writer.
//!
//! # The horizon
//! Every event row records the id of the transaction that wrote it
//! (`transaction_id xid8 DEFAULT pg_current_xact_id()`, the top-level transaction's id,
//! also for rows written in a subtransaction). A reader takes its statement's snapshot
//! `S = pg_current_snapshot()`: `xmax(S)`, the first transaction id not yet assigned, and
//! `xip(S)`, the ids of the transactions running when it was taken (only transactions
//! that have an id: read-only ones have none). From them it computes the horizon
//!
//! ```text
//! h = least(xmax(S), min { x in xip(S) : x is not confirmed running in another database })
//! ```
//!
//! where *confirmed running in another database* means: after `S` was taken, the same
//! statement found `x` as the `backend_xid` of a session in `pg_stat_activity` whose
//! `datname` is not `current_database()`, or as a prepared transaction in
//! `pg_prepared_xacts` whose `database` is not `current_database()` (`feed_horizon()` of
//! migrations 9 and 10, a `STABLE` function: it runs on the calling statement's snapshot;
//! when `xip(S)` is empty it answers `xmax(S)` without looking in the catalogs). The
//! reader returns only rows with `transaction_id < h`, ordered by
//! `(transaction_id, global_position)`, and resumes strictly after a [`Checkpoint`] whose
//! parts are the transaction id and the global position of the last event it returned
//! (`Checkpoint::from_parts(transaction id, global position)`; consumers keep both parts
//! in `<schema>.projection_checkpoints`, columns `commit` and `position`).
//!
//! ## Why no event is ever skipped
//! Take any transaction `T` with id `x < h` that writes events of this table. Either:
//!
//! 1. `x` is not in `xip(S)`. Since `x < xmax(S)`, `T` had ended when `S` was taken: its
//!    rows, if it committed, are all visible to `S`, so the read sees every one of them.
//! 2. `x` is in `xip(S)` and was skipped: then it was confirmed running in another
//!    database *after* `S` was taken. Transaction ids are never reused, so that session
//!    (or prepared transaction) is `T` itself, and it was running then, so it was running
//!    in that database all along: a transaction belongs to the database its session is
//!    connected to for its whole life, and can read and write only that database's
//!    tables. `T` cannot write this database's events table: it has no rows here, now or
//!    ever. (It is not skipped if it had ended by the time of the check, nor if its
//!    session's database is unknown: see below.)
//!
//! So every row with `transaction_id < h` that will ever exist is already committed and
//! visible to `S`, and every transaction that may still write rows here has an id of at
//! least `h`: rows written later sort after every row read so far, and nothing can appear
//! behind a checkpoint. Subscribers never skip an event and, resuming strictly after their
//! checkpoint, never repeat one. The narrowing never skips too much in the remaining
//! cases either:
//!
//! - An id of `xip(S)` not found by the check (the transaction ended between `S` and the
//!   check, so its committed rows are *invisible* to `S`; or its session's database is
//!   unknown, `datname` NULL; or `pg_stat_activity` hides it) holds the horizon, exactly
//!   as before the narrowing: the next read sees its rows.
//! - Subtransaction ids never appear in an event row (the column holds the top-level
//!   id), and a subtransaction's top-level transaction has an id, so it is in `xip(S)`
//!   and is judged by its own database.
//! - The check happens after `S` was taken (it is part of the same statement, evaluated
//!   during its execution), so "running at the check" and "in `xip(S)`" together mean
//!   "running from before `S` until the check".
//!
//! The horizon is at least `xmin(S)` (the cluster-wide one), so it moves at least as
//! fast as it used to. The remaining facts carry over:
//!
//! - A rolled-back transaction simply leaves the running set: nobody waits for it, and
//!   its rows are never visible.
//! - Commit order between transactions is approximated by transaction id order, which is
//!   what makes the order *stable*: a checkpoint names one place in it forever.
//!
//! # Caveats
//! - **A long-running writing transaction in this database delays subscribers**: the
//!   horizon cannot pass it, so events committed after it started are held back until it
//!   ends (necessarily: it may still append events that sort before them). This includes
//!   sessions left "idle in transaction" after a write, to any table of the database;
//!   `idle_in_transaction_session_timeout` bounds those.
//!   [`PostgresStore::feed_blockers`] lists the transactions holding the feed back (pid,
//!   transaction id, age, state, the start of the query, application name), and the store
//!   logs a `tracing` warning naming them once the feed has been held back by the same
//!   transaction for longer than
//!   [`warn_when_feed_held_back_for`](PostgresStore::warn_when_feed_held_back_for)
//!   (default 30 s). End one with `SELECT pg_terminate_backend(pid)`, or a prepared one
//!   with `ROLLBACK PREPARED`.
//! - Transactions in **other databases** of the same server do not hold the feed back
//!   (see above): they cannot write this database's tables.
//! - Read-only transactions do not hold the horizon back: they have no transaction id.
//! - The reader must not itself hold a transaction id while reading the feed (do not call
//!   [`read_feed`](EventFeed::read_feed) inside a transaction that has written): the
//!   horizon would then stop at its own transaction. `read_feed` runs on a pool
//!   connection outside any transaction.
//! - Prepared (two-phase) transactions of this database count as running until
//!   committed or rolled back.
//! - A role that may not see other sessions' `backend_xid` in `pg_stat_activity` (it is
//!   shown to every role on PostgreSQL 15) gets the cluster-wide horizon back: unknown
//!   transactions hold it, never the reverse.
//!
//! # One round trip per read
//! [`read_feed`](EventFeed::read_feed) is one statement: it computes the horizon, the page
//! of matching events after the checkpoint below the horizon (event types and streams
//! filtered in SQL) and the last event below the horizon whatever its type. When the page
//! is not full, every matching event below the horizon was returned, and the next read
//! starts after that last event: events the filter skipped are not scanned again. When
//! no event was appended, the next read starts where this one did, so a subscription
//! waits instead of spinning (moving the checkpoint to the horizon itself would move it
//! at every unrelated transaction in the cluster, including the subscriber's own
//! checkpoint writes).
//!
//! # Wake-ups
//! Migration 2 adds a statement-level `AFTER INSERT` trigger on the events table that
//! calls `pg_notify('annals:<schema>', '')`, since migration 8 only for an insert that
//! wrote rows (an append rejected for its expected version notifies nobody). [`wakeups`](EventFeed::wakeups) does not
//! open a connection per subscriber: the store's first subscriber starts **one** listener
//! connection outside the pool (on the pool's connect options), whose notifications a
//! task fans out to every subscriber of the store in the process; it reconnects after a
//! connection loss (waking every subscriber, since notifications may have been lost
//! meanwhile), and closes when the last subscriber is gone. A hundred subscriptions take
//! one connection for listening, and borrow pool connections only while they read.
//! Subscriptions also poll, so a lost notification only delays them.
//!
//! NOTIFY has a cost under many concurrent writers: PostgreSQL serializes the commits of
//! notifying transactions. A writer that needs all its append throughput sets
//! `annals.notify = off` on its connections
//! (`PgConnectOptions::options([("annals.notify", "off")])`): the trigger then skips its
//! appends, and subscribers find them by polling (`SubscriptionOptions::poll_interval`).
//!
//! ```no_run
//! use annals::store::{Checkpoint, EventFeed, Filter};
//! # async fn run(store: annals_postgres::PostgresStore) -> Result<(), annals::StoreError> {
//! let batch = store.read_feed(Checkpoint::START, &Filter::all().category("cart"), 500).await?;
//! for event in &batch.events {
//!     println!("{:?} {}", event.checkpoint, event.envelope.event_type);
//! }
//! // The next read resumes strictly after `batch.next`.
//! # Ok(()) }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use annals::store::{kit, BoxStream, Checkpoint, EventFeed, FeedBatch, Filter, StreamFilter};
use annals::StoreError;
use futures::TryStreamExt;
use sqlx::Row;

use crate::error::{backend, store_error};
use crate::feed_window::{self, Refresh};
use crate::sql::{FeedShape, StreamShape};
use crate::{rows, sql, PostgresStore};

/// The metric of how long the feed's horizon has been held at one running transaction,
/// in seconds, by schema: what subscribers wait for (see [`PostgresStore::feed_blockers`]).
const FEED_HELD_BACK: &str = "annals_feed_held_back_seconds";

/// The longest pause between two looks at the horizon in `settle`.
const SETTLE_MAX_PAUSE: Duration = Duration::from_millis(50);

/// A transaction of this database that holds the feed back: it was running when the feed
/// was last read, so no event committed after it started can be delivered until it ends
/// (it may still append events that sort before them). See [the module docs](self#caveats)
/// and [`PostgresStore::feed_blockers`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FeedBlocker {
    /// The backend running it (`pg_terminate_backend(pid)` ends it); `None` for a
    /// prepared (two-phase) transaction, or one that ended while it was being looked up.
    pub pid: Option<i32>,
    /// Its transaction id (`xid8`).
    pub xid: i64,
    /// How long ago it began (for a prepared transaction: was prepared).
    pub age: Option<Duration>,
    /// `pg_stat_activity.state`, e.g. `idle in transaction`; `prepared` for a prepared
    /// transaction.
    pub state: Option<String>,
    /// The first 200 characters of its current or last statement.
    pub query: Option<String>,
    /// The `application_name` of its session.
    pub application_name: Option<String>,
}

impl std::fmt::Display for FeedBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let age = self.age.map_or_else(|| "?".to_owned(), |age| format!("{:.1} s", age.as_secs_f64()));
        write!(
            f,
            "pid {pid}, xid {}, running for {age}, state `{}`, application `{}`, query `{}`",
            self.xid,
            self.state.as_deref().unwrap_or("?"),
            self.application_name.as_deref().unwrap_or(""),
            self.query.as_deref().unwrap_or(""),
        )
    }
}

/// Since when the feed's horizon has been held at the same running transaction, to warn
/// once it lasts (`PostgresStore::warn_when_feed_held_back_for`).
#[derive(Default)]
pub(crate) struct HeldBack(Mutex<Option<Held>>);

struct Held {
    /// The transaction id the horizon stops at.
    xid: i64,
    since: Instant,
    warned: bool,
}

impl HeldBack {
    /// How long the horizon has been held at the same running transaction (zero when
    /// nothing holds it).
    fn held_for(&self) -> Duration {
        let held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.as_ref().map_or(Duration::ZERO, |held| held.since.elapsed())
    }

    /// Records a read's horizon; returns whether it has now been held at the same
    /// running transaction for longer than `after` (once per transaction).
    fn observe(&self, horizon: i64, xmax: i64, after: Duration) -> bool {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if horizon >= xmax {
            // Nothing running holds it back.
            *held = None;
            return false;
        }
        match held.as_mut() {
            Some(held) if held.xid == horizon => {
                if !held.warned && held.since.elapsed() >= after {
                    held.warned = true;
                    return true;
                }
                false
            }
            _ => {
                *held = Some(Held { xid: horizon, since: Instant::now(), warned: false });
                false
            }
        }
    }
}

impl PostgresStore {
    /// The transactions of this database that hold the event feed back right now: every
    /// running transaction that has a transaction id (it has written something) and may
    /// therefore still append events, oldest first. Transactions of other databases of
    /// the server never hold the feed back and are not listed. An entry that stays here
    /// long (an `idle in transaction` session, a forgotten prepared transaction) delays
    /// every subscriber until it ends; see [`feed`](crate::feed#caveats).
    ///
    /// ```no_run
    /// # async fn run(store: annals_postgres::PostgresStore) -> Result<(), annals::StoreError> {
    /// for blocker in store.feed_blockers().await? {
    ///     println!("subscribers wait for {blocker}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn feed_blockers(&self) -> Result<Vec<FeedBlocker>, StoreError> {
        let operation = || "listing the transactions that hold the event feed back".to_owned();
        let rows = self
            .on_live_connection(|| sqlx::query(sql::FEED_BLOCKERS).fetch_all(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter()
            .map(|row| {
                let age: Option<f64> = row.try_get("age_seconds")?;
                Ok(FeedBlocker {
                    pid: row.try_get("pid")?,
                    xid: row.try_get("xid")?,
                    age: age.and_then(|age| Duration::try_from_secs_f64(age.max(0.0)).ok()),
                    state: row.try_get("state")?,
                    query: row.try_get("query")?,
                    application_name: row.try_get("application_name")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| store_error(operation(), e))
    }

    /// Warns, naming the blockers, that the feed has been held back too long.
    async fn warn_held_back(&self) {
        let after = self.warn_held_back_after();
        match self.feed_blockers().await {
            Ok(blockers) => {
                let names: Vec<String> = blockers.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    schema = self.schema().as_str(),
                    blockers = %names.join("; "),
                    "the event feed has been held back for more than {after:?} by running transactions of this \
                     database: subscribers cannot pass them until they end (commit, roll back, or \
                     `pg_terminate_backend(pid)`)"
                );
            }
            Err(error) => tracing::warn!(
                schema = self.schema().as_str(),
                %error,
                "the event feed has been held back for more than {after:?} by a running transaction"
            ),
        }
    }
}

/// The feed read's SQL for `store` with an event type filter and, if `partition`, a
/// partition, for pages of `limit` events (parameters: checkpoint transaction id and
/// position, event types, then partition count and index), for benchmarks and tests that
/// show its plan. Not part of the API.
#[doc(hidden)]
pub fn page_sql_for_benchmarks(store: &PostgresStore, partition: bool, limit: u64) -> String {
    let shape = FeedShape { types: true, streams: StreamShape::All, partition };
    store.sql().feed_page(shape, limit).unwrap_or_default()
}

/// A feed page as its rows are decoded: the header row, the events, or the error that
/// stopped decoding.
struct Page {
    header: Option<rows::FeedHeader>,
    events: Vec<annals::store::FeedEvent>,
    failed: Option<StoreError>,
}

impl Page {
    /// Decodes one row of the feed read: an event, or the header (no commit).
    fn decode(&mut self, row: &sqlx::postgres::PgRow, operation: impl Fn() -> String + Copy) -> Result<(), StoreError> {
        match rows::feed_commit(row, operation)? {
            Some(commit) => {
                self.events.push(rows::feed_event(
                    row,
                    |position| Checkpoint::from_parts(commit, position),
                    operation,
                )?);
            }
            None => self.header = Some(rows::feed_header(row, operation)?),
        }
        Ok(())
    }
}

/// Reads in commit order below the horizon; see the [module docs](self).
impl EventFeed for PostgresStore {
    /// With several subscribers following, reads near the head are answered from the
    /// window of the feed they share (`feed_window.rs`): one feed query serves them all.
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        if self.listener().followers() < feed_window::MIN_FOLLOWERS {
            return self.read_feed_alone(after, filter, limit).await;
        }
        let window = self.feed_window();
        let need = window.stamp(self.listener().woken_at());
        if let Some(batch) = window.serve(need, after, filter, limit) {
            return Ok(batch);
        }
        if let Refresh::Alone = window.refresh_for(after) {
            return self.read_alone_and_start_window(after, filter, limit).await;
        }
        let _turn = window.refreshing.lock().await;
        // The refresh this reader waited for may have been enough.
        if let Some(batch) = window.serve(need, after, filter, limit) {
            return Ok(batch);
        }
        match window.refresh_for(after) {
            Refresh::After(end) => {
                let (stamp, began) = (window.stamp(self.listener().notifications()), Instant::now());
                let batch = self.read_feed_alone(end, &Filter::all(), feed_window::REFRESH_LIMIT).await?;
                window.extend(end, batch, stamp, began);
                match window.serve(need, after, filter, limit) {
                    Some(batch) => Ok(batch),
                    None => self.read_feed_alone(after, filter, limit).await,
                }
            }
            Refresh::Alone => self.read_alone_and_start_window(after, filter, limit).await,
        }
    }

    /// Waits until the horizon passes every transaction id assigned before the call
    /// (`pg_snapshot_xmax` of a snapshot taken now), polling with a growing pause.
    async fn settle(&self) -> Result<(), StoreError> {
        self.settle_horizon().await?;
        self.feed_window().settled();
        Ok(())
    }

    /// A wake-up stream on the store's one shared listener connection (see
    /// [Wake-ups](self#wake-ups)).
    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        self.listener().subscribe(self).await
    }

    /// The event's writing transaction and position: one primary-key lookup.
    async fn checkpoint_of(&self, event: &annals::Envelope) -> Result<Checkpoint, StoreError> {
        let position = event.global_position;
        let operation = || format!("finding the checkpoint of the event at global position {position}");
        let commit: Option<i64> = self
            .on_live_connection(|| {
                sqlx::query_scalar(&self.sql().transaction_of)
                    .bind(kit::bound_to_db(position))
                    .fetch_optional(self.pool())
            })
            .await
            .map_err(|e| store_error(operation(), e))?;
        let Some(commit) = commit else {
            return Err(StoreError::Backend {
                operation: operation(),
                source: format!("no event is stored at global position {position}").into(),
            });
        };
        rows::checkpoint(commit, i64::try_from(position).unwrap_or(i64::MAX))
            .map_err(|e| crate::error::out_of_range(operation(), e))
    }
}

impl PostgresStore {
    /// A reader's own read, behind the shared window or without one: when it reaches the
    /// head of the feed, the window starts there if there is none.
    async fn read_alone_and_start_window(
        &self,
        after: Checkpoint,
        filter: &Filter,
        limit: usize,
    ) -> Result<FeedBatch, StoreError> {
        let window = self.feed_window();
        let (stamp, began) = (window.stamp(self.listener().notifications()), Instant::now());
        let batch = self.read_feed_alone(after, filter, limit).await?;
        if !batch.more {
            window.start_at(batch.next, stamp, began);
        }
        Ok(batch)
    }

    /// One feed query: the events matching `filter` after `after`.
    async fn read_feed_alone(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let operation = || format!("reading the event feed after {after}");
        let limit = limit.max(1);
        let (stream, streams) = match &filter.streams {
            StreamFilter::All => (None, StreamShape::All),
            StreamFilter::Stream(stream) => (Some(stream.as_str()), StreamShape::Stream),
            StreamFilter::Category(category) => (Some(category.as_str()), StreamShape::Category),
        };
        let (commit, position) = after.parts();
        let partition = match filter.partition.filter(|partition| !partition.is_everything()) {
            Some(partition) => {
                self.check_partition_hash().await?;
                Some((i64::from(partition.count()), i64::from(partition.index())))
            }
            None => None,
        };
        let shape = FeedShape { types: filter.event_types.is_some(), streams, partition: partition.is_some() };
        let statement = self
            .sql()
            .feed_page(shape, u64::try_from(limit).unwrap_or(u64::MAX))
            .ok_or_else(|| backend(operation(), format!("no feed statement for filter shape {shape:?}")))?;
        // Never closed: the store owns it.
        let _turn = self.feed_reads().acquire().await.ok();
        // Rows are decoded as they arrive, while the server still produces the rest.
        let page = self
            .on_live_connection(|| async {
                // The parameters of the shape's filters only, in `Statements::feed`'s order.
                let mut query = sqlx::query(&statement).bind(kit::bound_to_db(commit)).bind(kit::bound_to_db(position));
                if let Some(types) = filter.event_types.as_deref() {
                    query = query.bind(types);
                }
                if let Some(stream) = stream {
                    query = query.bind(stream);
                }
                if let Some((count, index)) = partition {
                    query = query.bind(count).bind(index);
                }
                let mut rows = query.fetch(self.pool());
                let mut page = Page { header: None, events: Vec::new(), failed: None };
                while let Some(row) = rows.try_next().await? {
                    if let Err(error) = page.decode(&row, operation) {
                        page.failed = Some(error);
                        break;
                    }
                }
                Ok(page)
            })
            .await
            .map_err(|e| store_error(operation(), e))?;
        let Page { header, mut events, failed } = page;
        if let Some(error) = failed {
            return Err(error);
        }
        let Some(header) = header else {
            return Err(backend(operation(), "the feed read returned no row with its horizon".to_owned()));
        };
        // The rows come in no promised order (they do come in order: this is a check).
        if !events.is_sorted_by_key(|event| event.checkpoint) {
            events.sort_by_key(|event| event.checkpoint);
        }
        if self.held_back().observe(header.horizon, header.xmax, self.warn_held_back_after()) {
            self.warn_held_back().await;
        }
        metrics::gauge!(FEED_HELD_BACK, "schema" => self.schema().as_str().to_owned())
            .set(self.held_back().held_for().as_secs_f64());
        let tail = header.tail;
        let (next, more) = match events.last() {
            // A full page: more matching events may follow it.
            Some(last) if events.len() >= limit => (last.checkpoint, true),
            // Every matching event below the horizon was returned: continue after the
            // last event below it, past the ones the filter skipped.
            _ => (tail.into_iter().chain(events.last().map(|e| e.checkpoint)).max().unwrap_or(after), false),
        };
        Ok(FeedBatch { events, next: next.max(after), more })
    }

    /// Fails unless the server places stream ids in partitions as
    /// [`stream_hash`](annals::store::stream_hash) does: the feed filters partitions in
    /// SQL, and the shared window (and every other store) in Rust. `hashtext` differs on
    /// big-endian servers. Checked once per store.
    async fn check_partition_hash(&self) -> Result<(), StoreError> {
        const PROBE: &str = "annals partition probe: ünïcode, more than twelve bytes";
        let operation = || "checking that the server hashes stream ids into partitions as annals does".to_owned();
        let check = || async {
            let server: i64 = self
                .on_live_connection(|| sqlx::query_scalar(sql::PARTITION_HASH_OF).bind(PROBE).fetch_one(self.pool()))
                .await
                .map_err(|e| store_error(operation(), e))?;
            let annals = i64::from(annals::store::stream_hash(PROBE));
            if server == annals {
                Ok(())
            } else {
                let problem = format!(
                    "the server's `hashtext` gives {server} where annals gives {annals} (a big-endian server?); \
                     partitioned consumers cannot run on this server: run the consumer unpartitioned"
                );
                Err(backend(operation(), problem))
            }
        };
        self.partition_hash_agrees().get_or_try_init(check).await.map(|&()| ())
    }

    /// [`settle`](EventFeed::settle) without telling the shared window.
    async fn settle_horizon(&self) -> Result<(), StoreError> {
        let operation = || "waiting for the transactions running now to end".to_owned();
        let target: i64 = self
            .on_live_connection(|| sqlx::query_scalar(sql::SNAPSHOT_XMAX).fetch_one(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        let horizon_sql = &self.sql().horizon;
        let mut pause = Duration::from_millis(1);
        loop {
            let horizon: i64 = self
                .on_live_connection(|| sqlx::query_scalar(horizon_sql).fetch_one(self.pool()))
                .await
                .map_err(|e| store_error(operation(), e))?;
            if horizon >= target {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_MAX_PAUSE);
        }
    }
}
