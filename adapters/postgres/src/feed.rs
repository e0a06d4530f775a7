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
//! (`transaction_id xid8 DEFAULT pg_current_xact_id()`). A reader takes the horizon
//!
//! ```text
//! h = pg_snapshot_xmin(pg_current_snapshot())
//! ```
//!
//! the oldest transaction id still running when its statement's snapshot was taken:
//! every transaction with an id below `h` has committed or rolled back, and every
//! transaction still running or yet to start has an id of at least `h`. The reader returns
//! only rows with `transaction_id < h`, ordered by `(transaction_id, global_position)`,
//! and resumes strictly after a [`Checkpoint`] whose parts are the transaction id and the
//! global position of the last event it returned
//! (`Checkpoint::from_parts(transaction id, global position)`; consumers keep both parts
//! in `<schema>.projection_checkpoints`, columns `commit` and `position`).
//!
//! - Rows below the horizon are final: their transactions are over, and the same
//!   statement snapshot that computed `h` sees all of their committed rows.
//! - Every row written later has a transaction id of at least `h`, so it sorts after
//!   every row read so far: nothing can ever appear behind a checkpoint. Subscribers
//!   never skip an event and, resuming strictly after their checkpoint, never repeat one.
//! - A rolled-back transaction simply leaves the running set: nobody waits for it, and
//!   its rows are never visible.
//! - Commit order between transactions is approximated by transaction id order, which is
//!   what makes the order *stable*: a checkpoint names one place in it forever.
//!
//! # Caveats
//! - **A long-running writing transaction anywhere in the cluster delays subscribers**:
//!   the horizon cannot pass it, so events committed after it started are held back until
//!   it ends (necessarily: it may still append events that sort before them). This
//!   includes transactions in other databases of the same server and idle sessions left
//!   "idle in transaction" after a write; `idle_in_transaction_session_timeout` bounds the
//!   latter.
//! - Read-only transactions do not hold the horizon back: they have no transaction id.
//! - The reader must not itself hold a transaction id while reading the feed (do not call
//!   [`read_feed`](EventFeed::read_feed) inside a transaction that has written): the
//!   horizon would then stop at its own transaction. `read_feed` runs on a pool
//!   connection outside any transaction.
//! - Prepared (two-phase) transactions count as running until committed or rolled back.
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
//! calls `pg_notify('annals:<schema>', '')`; [`wakeups`](EventFeed::wakeups) listens on
//! that channel on a dedicated connection (`sqlx::postgres::PgListener`), reconnecting
//! after a connection loss. Subscriptions also poll, so a lost notification only delays
//! them.
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

use std::time::Duration;

use annals::store::{kit, BoxStream, Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter, StreamFilter};
use annals::StoreError;
use futures::StreamExt;
use sqlx::postgres::PgListener;

use crate::error::store_error;
use crate::{rows, sql, PostgresStore};

/// The longest pause between two looks at the horizon in `settle`.
const SETTLE_MAX_PAUSE: Duration = Duration::from_millis(50);

/// How long the wake-up stream waits before listening again after its connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Reads in commit order below the horizon; see the [module docs](self).
impl EventFeed for PostgresStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let operation = || format!("reading the event feed after {after}");
        let limit = limit.max(1);
        let (stream, category) = match &filter.streams {
            StreamFilter::All => (None, None),
            StreamFilter::Stream(stream) => (Some(stream.as_str()), None),
            StreamFilter::Category(category) => (None, Some(category.as_str())),
        };
        let (commit, position) = after.parts();
        let rows = sqlx::query(&self.sql().feed)
            .bind(kit::bound_to_db(commit))
            .bind(kit::bound_to_db(position))
            .bind(filter.event_types.as_deref())
            .bind(stream)
            .bind(category)
            .bind(kit::bound_to_db(u64::try_from(limit).unwrap_or(u64::MAX)))
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        let mut events = Vec::with_capacity(rows.len());
        let mut tail = None;
        for row in &rows {
            let extras = rows::feed_extras(row, tail.is_none(), operation)?;
            tail = tail.or(extras.tail);
            let Some(commit) = extras.commit else {
                continue; // the empty page's single row
            };
            let envelope = rows::envelope(row, operation)?;
            events.push(FeedEvent { checkpoint: Checkpoint::from_parts(commit, envelope.global_position), envelope });
        }
        let next = match events.last() {
            // A full page: more matching events may follow it.
            Some(last) if events.len() >= limit => last.checkpoint,
            // Every matching event below the horizon was returned: continue after the
            // last event below it, past the ones the filter skipped.
            _ => tail.into_iter().chain(events.last().map(|e| e.checkpoint)).max().unwrap_or(after),
        };
        Ok(FeedBatch { events, next: next.max(after) })
    }

    /// Waits until the horizon passes every transaction id assigned before the call
    /// (`pg_snapshot_xmax` of a snapshot taken now), polling with a growing pause.
    async fn settle(&self) -> Result<(), StoreError> {
        let operation = || "waiting for the transactions running now to end".to_owned();
        let target: i64 = sqlx::query_scalar(sql::SNAPSHOT_XMAX)
            .fetch_one(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        let mut pause = Duration::from_millis(1);
        loop {
            let horizon: i64 = sqlx::query_scalar(sql::SNAPSHOT_XMIN)
                .fetch_one(self.pool())
                .await
                .map_err(|e| store_error(operation(), e))?;
            if horizon >= target {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_MAX_PAUSE);
        }
    }

    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        let channel = &self.sql().channel;
        let operation = || format!("listening for appended events on channel `{channel}`");
        let mut listener = PgListener::connect_with(self.pool()).await.map_err(|e| store_error(operation(), e))?;
        listener.listen(channel).await.map_err(|e| store_error(operation(), e))?;
        Ok(futures::stream::unfold(listener, |mut listener| async move {
            match listener.recv().await {
                Ok(_) => {
                    // Fold notifications that arrived meanwhile into this wake-up.
                    while listener.next_buffered().is_some() {}
                }
                // The connection broke; the next `recv` reconnects and listens again.
                // Events appended meanwhile are found by the wake-up below or by polling.
                Err(_) => tokio::time::sleep(RELISTEN_DELAY).await,
            }
            Some(((), listener))
        })
        .boxed())
    }
}
