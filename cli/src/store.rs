//! Which store a URL names, connected.

use annals::StoreError;
use annals_postgres::{PostgresStore, SchemaName};
use annals_sqlite::SqliteStore;

/// A connected store.
pub(crate) enum Store {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

/// Why the command line names no store it can open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("`{0}` is not a store URL: use sqlite://FILE or postgres://USER@HOST/DB")]
    UnknownScheme(String),
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Connects to the store at `url`: `sqlite:` or `postgres:`/`postgresql:`, in `schema`
/// on PostgreSQL (default `annals`). Does not migrate.
pub(crate) async fn connect(url: &str, schema: Option<&str>) -> Result<Store, ConnectError> {
    if url.starts_with("sqlite:") {
        return Ok(Store::Sqlite(SqliteStore::connect(url).await?));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = PostgresStore::connect(url).await?;
        return Ok(Store::Postgres(match schema {
            Some(schema) => {
                store.with_schema(SchemaName::new(schema).map_err(|e| ConnectError::Schema(e.to_string()))?)
            }
            None => store,
        }));
    }
    Err(ConnectError::UnknownScheme(url.to_owned()))
}
