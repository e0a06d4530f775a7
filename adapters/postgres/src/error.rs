//! Mapping sqlx failures to [`StoreError`].

use annals::store::kit::OutOfRange;
use annals::StoreError;

/// A failure the adapter itself detects (a row breaking an invariant, an event
/// PostgreSQL cannot store), carried as the `source` of a [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Problem(pub(crate) String);

/// A [`StoreError::Backend`] for a problem the adapter found itself.
pub(crate) fn backend(operation: String, problem: String) -> StoreError {
    StoreError::Backend { operation, source: Box::new(Problem(problem)) }
}

/// A [`StoreError::Backend`] for an integer that does not fit where it has to go.
pub(crate) fn out_of_range(operation: String, error: OutOfRange) -> StoreError {
    StoreError::Backend { operation, source: Box::new(error) }
}

/// Maps a sqlx error: connection failures become [`StoreError::Unavailable`] (transient),
/// everything else [`StoreError::Backend`].
pub(crate) fn store_error(operation: String, error: sqlx::Error) -> StoreError {
    if is_transient(&error) {
        StoreError::Unavailable { operation, source: Box::new(error) }
    } else {
        StoreError::Backend { operation, source: Box::new(error) }
    }
}

/// Whether `error` means the server could not be reached or the connection broke.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// Whether `error` says the connection it ran on was already dead or died under it (the
/// server ended the session, restarted, or the network dropped it), rather than that the
/// server cannot be reached: running the operation again on another pooled connection
/// may succeed at once. A refused connection is not one (the pool already waits for the
/// server to accept connections again, up to its acquire timeout).
pub(crate) fn is_dead_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(e) => !matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut),
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02"))
        }
        _ => false,
    }
}

/// SQLSTATEs of a lost or refused connection: class 08 (connection exception),
/// 57P01-57P03 (admin/crash shutdown, cannot connect now), 53300 (too many connections).
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// The name of the unique constraint `error` violated, if it is a unique violation.
pub(crate) fn violated_unique_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Some(db.constraint().unwrap_or("")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_transient() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(store_error("reading stream `a`".into(), refused).is_transient());
        assert!(store_error("x".into(), sqlx::Error::PoolTimedOut).is_transient());
        assert!(!store_error("x".into(), sqlx::Error::RowNotFound).is_transient());
        for code in ["08006", "08001", "57P01", "53300"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P05"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn dead_connections_are_told_from_a_server_that_refuses() {
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let eof = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_dead_connection(&reset) && is_dead_connection(&eof));
        assert!(!is_dead_connection(&refused), "the pool already waits for a refusing server");
        assert!(!is_dead_connection(&sqlx::Error::PoolTimedOut));
        assert!(!is_dead_connection(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn errors_name_the_operation() {
        let error = store_error("appending to stream `cart-1`".into(), sqlx::Error::PoolClosed);
        assert!(error.to_string().contains("appending to stream `cart-1`"), "{error}");
    }
}
