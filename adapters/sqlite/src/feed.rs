//! The feed: every event in commit order, without gaps.
//!
//! SQLite lets one writer at a time hold the write lock, and an append takes it before it
//! numbers its events, so appends commit one after the other and position order is
//! commit order: whatever a reader's snapshot holds is positions `1` to the head, with no
//! holes, and a later event never commits before an earlier one. A checkpoint is the
//! global position: `Checkpoint::from_parts(0, position)`.

use annals::store::kit::bound_to_db;
use annals::store::{BoxStream, Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter, StreamFilter};
use annals::StoreError;
use futures::StreamExt;

use crate::error::{backend, store_error};
use crate::rows::{FeedColumns, FeedRow};
use crate::sql;
use crate::store::SqliteStore;

/// How many positions a feed read scans at most per call when few events match its
/// filter (at least the requested number of events).
const FEED_SCAN_LIMIT: usize = 4096;

/// The feed checkpoint of the event at global position `position`.
fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint::from_parts(0, position)
}

/// The events of `events` in the filter's partition, if it has one. SQLite has no
/// function for the partition hash, so a partition is the one part of a filter applied
/// after the query: the query's limit counts the events of every partition, and a read
/// of one partition returns about `limit / count` events, with `next` past the others.
fn in_partition(mut events: Vec<FeedEvent>, filter: &Filter) -> Vec<FeedEvent> {
    if let Some(partition) = filter.partition {
        events.retain(|event| partition.contains(&event.envelope.stream_id));
    }
    events
}

/// One read is one statement, so it sees one snapshot of the database; the filter runs
/// in SQL, but for its partition (see `in_partition`). When fewer events than asked for
/// match, the batch's `next` moves past the positions the read scanned (up to the head
/// of its snapshot, never beyond), so a consumer of a rare event type does not scan the
/// same events again.
impl EventFeed for SqliteStore {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let (_, after_position) = after.parts();
        let operation = || format!("reading the feed after {after}");
        let limit = limit.max(1);
        let window = i64::try_from(FEED_SCAN_LIMIT.max(limit)).unwrap_or(i64::MAX);
        let start = bound_to_db(after_position);
        let types = match &filter.event_types {
            Some(types) => Some(
                serde_json::to_string(types)
                    .map_err(|e| backend(operation(), format!("the filter's event types do not encode: {e}")))?,
            ),
            None => None,
        };
        let (stream, prefix) = match &filter.streams {
            StreamFilter::All => (None, None),
            StreamFilter::Stream(stream) => (Some(stream.as_str()), None),
            StreamFilter::Category(category) => (None, Some(format!("{category}-").into_bytes())),
        };
        let found = sqlx::query(sql::READ_FEED)
            .bind(start)
            .bind(start.saturating_add(window))
            .bind(types)
            .bind(stream)
            .bind(prefix)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        let mut head = None;
        let mut events: Vec<FeedEvent> = Vec::with_capacity(found.len());
        let columns = match found.first() {
            Some(first) => FeedColumns::of(first, &operation)?,
            None => return Err(backend(operation(), "the feed read returned no head position")),
        };
        for row in &found {
            match columns.row(row, checkpoint, &operation) {
                Ok(FeedRow::Event(event)) => events.push(event),
                Ok(FeedRow::Head(position)) => head = Some(position),
                // A stored row annals did not write that cannot even be placed (its
                // position or version does not decode): the events before it are
                // delivered, and the next read, which starts at it, fails there.
                Err(StoreError::Corrupt { .. }) if !events.is_empty() => {
                    let next = events.last().map_or(after, |last| last.checkpoint);
                    return Ok(FeedBatch { events: in_partition(events, filter), next, more: true });
                }
                Err(error) => return Err(error),
            }
        }
        let Some(head) = head else {
            return Err(backend(operation(), "the feed read returned no head position"));
        };
        if !events.windows(2).all(|pair| pair[0].checkpoint < pair[1].checkpoint) {
            return Err(backend(operation(), "the feed read returned events out of position order"));
        }
        let window_end = after_position.saturating_add(u64::try_from(window).unwrap_or(u64::MAX));
        let (next, more) = match events.last() {
            Some(last) if events.len() >= limit => (last.checkpoint, true),
            // Fewer than asked for: the read saw every position of its window up to the
            // head of its snapshot; more follow at once only if the window ended first.
            _ => {
                let scanned_to = window_end.min(head);
                let next = if scanned_to > after_position { checkpoint(scanned_to) } else { after };
                (next, window_end < head)
            }
        };
        Ok(FeedBatch { events: in_partition(events, filter), next, more })
    }

    /// Wakes on every append of this process (any clone of the store). Appends of other
    /// processes are seen by the subscriptions' polling.
    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        let receiver = self.inner.head.subscribe();
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            Some(((), receiver))
        })
        .boxed())
    }
    /// Commit order is position order here: the checkpoint is the position.
    async fn checkpoint_of(&self, event: &annals::Envelope) -> Result<Checkpoint, StoreError> {
        Ok(checkpoint(event.global_position))
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests report failure by panicking")]

    use sqlx::Row;

    use crate::sql;

    /// The plan SQLite chooses for a statement, one step per `;`.
    async fn plan(store: &crate::SqliteStore, statement: &str) -> String {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {statement}")).fetch_all(store.pool()).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn reads_use_the_primary_key_and_the_stream_index_without_sorting() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let store = crate::testing::fresh_store().await;
            let feed = plan(&store, sql::READ_FEED).await;
            assert!(feed.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), "{feed}");
            assert!(!feed.contains("TEMP B-TREE"), "{feed}");
            let stream = plan(&store, sql::READ_STREAM).await;
            assert!(stream.contains("USING INDEX sqlite_autoindex_events_2"), "{stream}");
            assert!(!stream.contains("TEMP B-TREE"), "{stream}");
            let version = plan(&store, sql::STREAM_VERSION).await;
            assert!(version.contains("USING COVERING INDEX"), "{version}");
        });
    }
}
