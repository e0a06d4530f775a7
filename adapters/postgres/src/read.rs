//! Reading one stream: [`read_stream`] and [`stream_version`] of
//! [`EventStore`](annals::EventStore).

use annals::store::{kit, BoxStream};
use annals::{Envelope, StoreError, VersionRange};
use futures::StreamExt;

use crate::error::{is_dead_connection, store_error};
use crate::{rows, PostgresStore};

/// One streamed query: constant memory, however long the stream.
pub(crate) fn read_stream<'a>(
    store: &'a PostgresStore,
    stream_id: &'a str,
    versions: VersionRange,
) -> BoxStream<'a, Result<Envelope, StoreError>> {
    read(store, &store.sql().read_stream, stream_id, versions, move |row, operation| {
        rows::stream_envelope(row, stream_id, operation)
    })
}

/// [`read_stream`] of the columns a fold needs only (`EventStore::read_stream_to_fold`).
pub(crate) fn read_stream_to_fold<'a>(
    store: &'a PostgresStore,
    stream_id: &'a str,
    versions: VersionRange,
) -> BoxStream<'a, Result<Envelope, StoreError>> {
    read(store, &store.sql().read_stream_to_fold, stream_id, versions, move |row, operation| {
        rows::fold_envelope(row, stream_id, operation)
    })
}

/// The events of `stream_id` within `versions` by `statement` (`$1` stream, `$2` first
/// version, `$3` last), each row decoded by `decode` (given what to name in an error).
fn read<'a>(
    store: &'a PostgresStore,
    statement: &'a str,
    stream_id: &'a str,
    versions: VersionRange,
    decode: impl Fn(&sqlx::postgres::PgRow, &dyn Fn() -> String) -> Result<Envelope, StoreError> + Send + 'a,
) -> BoxStream<'a, Result<Envelope, StoreError>> {
    let from = kit::bound_to_db(versions.from.max(1));
    let to = versions.to.map_or(i64::MAX, kit::bound_to_db);
    if from > to {
        return futures::stream::empty().boxed();
    }
    let operation = move || format!("reading stream `{stream_id}`");
    let open = move || sqlx::query(statement).bind(stream_id).bind(from).bind(to).fetch(store.pool());
    // A dead pooled connection fails the first row: open the query again on another
    // connection (nothing was returned yet), as `PostgresStore::on_live_connection` does.
    let attempts = store.pool().options().get_max_connections().saturating_add(1);
    futures::stream::once(async move {
        let mut rows = open();
        let mut left = attempts;
        loop {
            match rows.next().await {
                Some(Err(e)) if left > 0 && is_dead_connection(&e) => {
                    left -= 1;
                    rows = open();
                }
                first => return futures::stream::iter(first).chain(rows),
            }
        }
    })
    .flatten()
    .map(move |row| match row {
        Ok(row) => decode(&row, &operation),
        Err(e) => Err(store_error(operation(), e)),
    })
    .boxed()
}

/// One index lookup of the stream's highest version.
pub(crate) async fn stream_version(store: &PostgresStore, stream_id: &str) -> Result<u64, StoreError> {
    let operation = || format!("reading the version of stream `{stream_id}`");
    let version: i64 = store
        .on_live_connection(|| sqlx::query_scalar(&store.sql().stream_version).bind(stream_id).fetch_one(store.pool()))
        .await
        .map_err(|e| store_error(operation(), e))?;
    stream_version_from_db(stream_id, version)
}

/// A stream's version as read from PostgreSQL (`coalesce(max(stream_version), 0)`);
/// out of range is a corrupt stream.
pub(crate) fn stream_version_from_db(stream_id: &str, version: i64) -> Result<u64, StoreError> {
    kit::from_db(version, 0, "stream version").map_err(|e| StoreError::Corrupt {
        stream: stream_id.to_owned(),
        version: None,
        position: None,
        detail: format!("its highest {e}"),
    })
}
