//! Mapping sqlx failures to [`StoreError`], naming what the store was doing.
//!
//! Transient failures, which a retry may get past, become [`StoreError::Unavailable`]:
//! the database stayed locked by another writer for the whole busy timeout
//! (`SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_PROTOCOL`), no pooled connection came free
//! in time, an I/O error on the connection, a crashed connection worker. Everything else
//! (a missing table, a constraint the adapter did not expect, a closed store) is
//! [`StoreError::Backend`].

use annals::store::kit::OutOfRange;
use annals::StoreError;

/// A failure the adapter detects itself (a stored row breaking an invariant), carried as
/// the `source` of a [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Problem(pub(crate) String);

/// A [`StoreError::Backend`] for a problem the adapter found itself.
pub(crate) fn backend(operation: impl Into<String>, problem: impl Into<String>) -> StoreError {
    StoreError::Backend { operation: operation.into(), source: Box::new(Problem(problem.into())) }
}

/// A [`StoreError::Backend`] for a value out of the range the schema admits.
pub(crate) fn out_of_range(operation: impl Into<String>, error: OutOfRange) -> StoreError {
    StoreError::Backend { operation: operation.into(), source: Box::new(error) }
}

/// Maps a sqlx error: transient failures become [`StoreError::Unavailable`], everything
/// else [`StoreError::Backend`].
pub(crate) fn store_error(operation: impl Into<String>, error: sqlx::Error) -> StoreError {
    let operation = operation.into();
    if is_transient(&error) {
        StoreError::Unavailable { operation, source: Box::new(error) }
    } else {
        StoreError::Backend { operation, source: Box::new(error) }
    }
}

/// Whether a retry may get past `error`.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(is_transient_code),
        _ => false,
    }
}

/// `SQLITE_BUSY` (5: another connection holds the lock, still after the busy timeout),
/// `SQLITE_LOCKED` (6: a conflicting lock on a shared connection) and `SQLITE_PROTOCOL`
/// (15: a WAL lock race), with any of their extended codes (the low byte is the primary
/// code).
fn is_transient_code(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 15)
}

/// Whether `error` is a `UNIQUE` constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_codes_are_transient_with_their_extended_codes() {
        // SQLITE_BUSY, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT,
        // SQLITE_LOCKED, SQLITE_LOCKED_SHAREDCACHE, SQLITE_PROTOCOL.
        for code in [5, 261, 517, 773, 6, 262, 15] {
            assert!(is_transient_code(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_READONLY.
        for code in [1, 2067, 11, 13, 14, 8] {
            assert!(!is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn connection_failures_are_transient_and_name_the_operation() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let error = store_error("appending to stream `cart-1`", refused);
        assert!(error.is_transient());
        assert!(error.to_string().contains("appending to stream `cart-1`"), "{error}");
        assert!(store_error("x", sqlx::Error::PoolTimedOut).is_transient());
        assert!(!store_error("x", sqlx::Error::PoolClosed).is_transient());
        assert!(!store_error("x", sqlx::Error::RowNotFound).is_transient());
    }
}
