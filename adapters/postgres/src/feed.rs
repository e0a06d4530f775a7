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
//! and resumes strictly after a [`Checkpoint`] `{ commit: transaction id, position }`.
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
//! use annals::subscription::{Checkpoint, EventFeed, Filter};
//! # async fn run(store: annals_postgres::PostgresStore) -> Result<(), annals::StoreError> {
//! let batch = store.read_feed(Checkpoint::START, &Filter::all().category("cart"), 500).await?;
//! for event in &batch.events {
//!     println!("{:?} {}", event.checkpoint, event.envelope.event_type);
//! }
//! // The next read resumes strictly after `batch.next`.
//! # Ok(()) }
//! ```

use std::time::Duration;

use annals::store::BoxStream;
use annals::subscription::{Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter, StreamFilter};
use annals::StoreError;
use futures::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::Row;

use crate::error::store_error;
use crate::schema::SchemaName;
use crate::{non_negative, rows, PostgresStore};

/// The longest pause between two looks at the horizon in `settle`.
const SETTLE_MAX_PAUSE: Duration = Duration::from_millis(50);

/// How long the wake-up stream waits before listening again after its connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// The feed read.
///
/// `$1` checkpoint transaction id, `$2` checkpoint position, `$3` event types (NULL: all),
/// `$4` stream (NULL: all), `$5` category (NULL: all), `$6` page size. One row per event,
/// or one row of NULL event columns when the page is empty; every row carries the last
/// event below the horizon (`tail_commit`, `tail_position`; NULL when there is none).
/// The first columns are the ones [`crate::rows::envelope`] decodes (unqualified, they
/// can only name the page's columns); the others are read by name.
pub(crate) fn read_feed_sql(schema: &SchemaName) -> String {
    let s = schema.quoted();
    let columns = crate::sql::columns();
    format!(
        "SELECT {columns}, page.transaction_id::text::int8 AS feed_commit, \
                tail.commit AS tail_commit, tail.position AS tail_position \
         FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) AS horizon \
         LEFT JOIN LATERAL ( \
             SELECT transaction_id::text::int8 AS commit, global_position AS position \
             FROM {s}.events \
             WHERE transaction_id < horizon.xmin \
             ORDER BY transaction_id DESC, global_position DESC \
             LIMIT 1 \
         ) AS tail ON true \
         LEFT JOIN LATERAL ( \
             SELECT * FROM {s}.events \
             WHERE (transaction_id, global_position) > ($1::int8::text::xid8, $2::int8) \
               AND transaction_id < horizon.xmin \
               AND ($3::text[] IS NULL OR event_type = ANY($3::text[])) \
               AND ($4::text IS NULL OR stream_id = $4::text) \
               AND ($5::text IS NULL OR starts_with(stream_id, $5::text || '-')) \
             ORDER BY transaction_id, global_position \
             LIMIT $6 \
         ) AS page ON true \
         ORDER BY page.transaction_id, page.global_position"
    )
}

/// The notification channel of the events table in `schema` (what the trigger of
/// migration 2 computes: at most 63 bytes, PostgreSQL's identifier limit).
pub(crate) fn channel(schema: &SchemaName) -> String {
    let mut channel = format!("annals:{}", schema.as_str());
    channel.truncate(63); // schema names are ASCII
    channel
}

/// `u64` → `bigint`, saturating: checkpoints beyond `i64::MAX` are past every stored row.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads in commit order below the horizon; see the [module docs](self).
impl EventFeed for PostgresStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let operation = || format!("reading the event feed after {after:?}");
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let (stream, category) = match &filter.streams {
            StreamFilter::All => (None, None),
            StreamFilter::Stream(stream) => (Some(stream.as_str()), None),
            StreamFilter::Category(category) => (None, Some(category.as_str())),
        };
        let rows = sqlx::query(&read_feed_sql(self.schema()))
            .bind(to_i64(after.commit))
            .bind(to_i64(after.position))
            .bind(filter.event_types.as_deref())
            .bind(stream)
            .bind(category)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        let checkpoint = |commit: i64, position: i64| -> Result<Checkpoint, StoreError> {
            Ok(Checkpoint {
                commit: non_negative(commit, "transaction id", operation)?,
                position: non_negative(position, "global position", operation)?,
            })
        };
        let mut events = Vec::with_capacity(rows.len());
        let mut tail = None;
        for row in &rows {
            let column_error = |e| store_error(operation(), e);
            if tail.is_none() {
                let commit: Option<i64> = row.try_get("tail_commit").map_err(column_error)?;
                let position: Option<i64> = row.try_get("tail_position").map_err(column_error)?;
                if let (Some(commit), Some(position)) = (commit, position) {
                    tail = Some(checkpoint(commit, position)?);
                }
            }
            let Some(commit) = row.try_get::<Option<i64>, _>("feed_commit").map_err(column_error)? else {
                continue; // the empty page's single row
            };
            let envelope = rows::envelope(row, operation)?;
            let at = checkpoint(commit, to_i64(envelope.global_position))?;
            events.push(FeedEvent { checkpoint: at, envelope });
        }
        let next = match events.last() {
            // A full page: more matching events may follow it.
            Some(last) if events.len() as i64 == limit => last.checkpoint,
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
        let target: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
            .fetch_one(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        let mut pause = Duration::from_millis(1);
        loop {
            let horizon: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8")
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
        let channel = channel(self.schema());
        let operation = || format!("listening for appended events on channel `{channel}`");
        let mut listener = PgListener::connect_with(self.pool()).await.map_err(|e| store_error(operation(), e))?;
        listener.listen(&channel).await.map_err(|e| store_error(operation(), e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_postgres_identifiers() {
        assert_eq!(channel(&SchemaName::default()), "annals:annals");
        let long = SchemaName::new("a".repeat(63)).unwrap_or_default();
        assert_eq!(channel(&long).len(), 63);
    }

    #[test]
    fn the_feed_reads_below_the_horizon_in_transaction_order() {
        let sql = read_feed_sql(&SchemaName::default());
        assert!(sql.contains("pg_snapshot_xmin(pg_current_snapshot())"));
        assert!(sql.contains("transaction_id < horizon.xmin"));
        assert!(sql.contains("ORDER BY transaction_id, global_position"));
        assert!(!sql.contains("LIKE"), "category filters need no escaping");
    }
}
