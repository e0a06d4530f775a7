//! Stream reads: pages of one indexed query each, so memory stays constant however long
//! the stream is, and no read holds a connection (or a snapshot of the database) while
//! the caller works on the events.

use annals::store::kit::{bound_to_db, from_db};
use annals::store::BoxStream;
use annals::{Envelope, StoreError, VersionRange};
use futures::{StreamExt, TryStreamExt};

use crate::error::store_error;
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
            let Some(first) = found.first() else {
                return Ok(None);
            };
            let columns = rows::EventColumns::of(first, &operation)?;
            // The events before a stored row annals did not write are delivered, then its
            // error, which ends the read.
            let mut page = Vec::with_capacity(found.len());
            for row in &found {
                let decoded = columns.envelope(row, Some(stream_id), &operation);
                let failed = decoded.is_err();
                page.push(decoded);
                if failed {
                    return Ok(Some((futures::stream::iter(page), None)));
                }
            }
            let full = i64::try_from(page.len()).is_ok_and(|len| len >= PAGE);
            // A short page is the end of the stream: no need to ask again.
            let next = match page.last() {
                Some(Ok(event)) if full => i64::try_from(event.stream_version).ok().and_then(|v| v.checked_add(1)),
                _ => None,
            };
            Ok(Some((futures::stream::iter(page), next)))
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
        from_db(version, 0, "stream version").map_err(|e| StoreError::Corrupt {
            stream: stream_id.to_owned(),
            version: None,
            position: None,
            detail: format!("its highest {e}"),
        })
    }
}
