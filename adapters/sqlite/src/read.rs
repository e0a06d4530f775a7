//! Stream reads: pages of one indexed query each, so memory stays constant however long
//! the stream is, and no read holds a connection (or a snapshot of the database) while
//! the caller works on the events.

use annals::store::kit::{bound_to_db, from_db};
use annals::store::BoxStream;
use annals::{Envelope, StoreError, VersionRange};
use futures::{StreamExt, TryStreamExt};

use crate::error::{out_of_range, store_error};
use crate::store::SqliteStore;
use crate::{rows, sql};

/// Events per page of a stream read.
const PAGE: i64 = 500;

impl SqliteStore {
    pub(crate) fn read_stream_pages<'a>(
        &'a self,
        stream_id: &'a str,
        versions: VersionRange,
    ) -> BoxStream<'a, Result<Envelope, StoreError>> {
        let last = versions.to.map_or(i64::MAX, bound_to_db);
        let first = bound_to_db(versions.from.max(1));
        futures::stream::try_unfold(Some(first), move |from| async move {
            let Some(from) = from.filter(|from| *from <= last) else {
                return Ok(None);
            };
            let operation = || format!("reading stream `{stream_id}` from version {from}");
            let found = sqlx::query(sql::READ_STREAM)
                .bind(stream_id)
                .bind(from)
                .bind(last)
                .bind(PAGE)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| store_error(operation(), e))?;
            let page = rows::envelopes(&found, Some(stream_id), &operation)?;
            let full = i64::try_from(page.len()).is_ok_and(|len| len >= PAGE);
            // A short page is the end of the stream: no need to ask again.
            let next = match page.last() {
                Some(event) if full => i64::try_from(event.stream_version).ok().and_then(|v| v.checked_add(1)),
                _ => None,
            };
            if page.is_empty() {
                return Ok(None);
            }
            Ok(Some((futures::stream::iter(page.into_iter().map(Ok)), next)))
        })
        .try_flatten()
        .boxed()
    }

    pub(crate) async fn read_stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let operation = || format!("reading the version of stream `{stream_id}`");
        let version: i64 = sqlx::query_scalar(sql::STREAM_VERSION)
            .bind(stream_id)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| store_error(operation(), e))?;
        from_db(version, 0, "stream version").map_err(|e| out_of_range(operation(), e))
    }
}
