//! The schema, as embedded migrations, and [`SqliteStore::migrate`], which applies them.

use std::collections::HashMap;

use annals::StoreError;
use sqlx::Executor;

use crate::error::{backend, store_error};
use crate::store::SqliteStore;
use crate::{rows, sql};

/// One step of the schema, as shipped in `adapters/sqlite/migrations/`.
///
/// [`SqliteStore::migrate`] applies the steps not yet recorded in table
/// `annals_migrations`. Teams that run their own migration tool can take the SQL instead:
///
/// ```
/// for m in annals_sqlite::migrations() {
///     assert!(m.version >= 1 && !m.sql.is_empty());
///     // write `m.sql` into your tool's migration `m.version`, `m.name` ...
/// }
/// assert!(annals_sqlite::migrations()[0].sql.contains("CREATE TABLE events"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// Applied in increasing order, each once.
    pub version: i64,
    /// What the step does, e.g. `create_events`.
    pub name: &'static str,
    /// The SQL of the step: one or more statements.
    pub sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "create_events", sql: include_str!("../migrations/0001_create_events.sql") },
    Migration { version: 2, name: "create_snapshots", sql: include_str!("../migrations/0002_create_snapshots.sql") },
    Migration {
        version: 3,
        name: "create_checkpoints",
        sql: include_str!("../migrations/0003_create_checkpoints.sql"),
    },
    Migration {
        version: 4,
        name: "refuse_invalid_rows",
        sql: include_str!("../migrations/0004_refuse_invalid_rows.sql"),
    },
    Migration {
        version: 5,
        name: "create_dead_letters",
        sql: include_str!("../migrations/0005_create_dead_letters.sql"),
    },
    Migration {
        version: 6,
        name: "index_correlation_ids",
        sql: include_str!("../migrations/0006_index_correlation_ids.sql"),
    },
    Migration { version: 7, name: "create_deadlines", sql: include_str!("../migrations/0007_create_deadlines.sql") },
];

/// Every migration this version of annals-sqlite knows, oldest first.
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

impl SqliteStore {
    /// Creates the store's tables: applies every [`migrations()`] step not yet recorded
    /// in table `annals_migrations`, in one `BEGIN IMMEDIATE` transaction. Safe to call at
    /// every start-up and from several processes at once: they take turns on the write
    /// lock, and the later ones find nothing left to do.
    ///
    /// Fails when the database records a step under another name than this version of
    /// annals-sqlite gives it (the file belongs to something else).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = annals_sqlite::testing::TempDir::new()?;
    /// let store = annals_sqlite::SqliteStore::connect_with(
    ///     annals_sqlite::SqliteStore::file_options(dir.path().join("events.db")),
    /// )
    /// .await?;
    /// store.migrate().await?;
    /// store.migrate().await?; // nothing left to do
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let operation = || "migrating the SQLite event store".to_owned();
        let fail = |e| store_error(operation(), e);
        let mut transaction = self.inner.pool.begin_with(sql::BEGIN_IMMEDIATE).await.map_err(fail)?;
        sqlx::query(sql::CREATE_MIGRATIONS_TABLE).execute(&mut *transaction).await.map_err(fail)?;
        let applied: HashMap<i64, String> = sqlx::query_as(sql::APPLIED_MIGRATIONS)
            .fetch_all(&mut *transaction)
            .await
            .map_err(fail)?
            .into_iter()
            .collect();
        for migration in migrations() {
            let step = || format!("{} (step {} `{}`)", operation(), migration.version, migration.name);
            match applied.get(&migration.version) {
                Some(name) if name == migration.name => continue,
                Some(name) => {
                    return Err(backend(
                        step(),
                        format!(
                            "the database recorded step {} as `{name}`: it was not created by annals-sqlite, or by an \
                             incompatible version",
                            migration.version
                        ),
                    ))
                }
                None => {}
            }
            // Several statements, sent unprepared (`raw_sql` would do the same, but its
            // future does not prove `Send` inside this one).
            Executor::execute(&mut *transaction, migration.sql).await.map_err(|e| store_error(step(), e))?;
            let (_, now) = rows::now();
            sqlx::query(sql::RECORD_MIGRATION)
                .bind(migration.version)
                .bind(migration.name)
                .bind(now)
                .execute(&mut *transaction)
                .await
                .map_err(|e| store_error(step(), e))?;
        }
        transaction.commit().await.map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (expected, migration) in (1..).zip(migrations()) {
            assert_eq!(migration.version, expected, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty(), "{}", migration.name);
        }
    }
}
