//! The migration runner: [`PostgresStore::migrate`].

use std::collections::HashSet;

use annals::StoreError;
// `Executor::execute` rather than `RawSql::execute`: the latter's lifetimes make the
// future not `Send`, so `tokio::spawn(store.migrate())` would not compile.
use sqlx::Executor;

use crate::error::store_error;
use crate::schema::migrations;
use crate::{sql, PostgresStore};

impl PostgresStore {
    /// Creates the schema if it is missing and applies every [`migrations()`] step not yet
    /// recorded in `<schema>.annals_migrations`, in one transaction. Safe to call at every
    /// start-up and from several processes at once (they take turns on an advisory lock).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), annals::StoreError> {
    /// let store = annals_postgres::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// store.migrate().await?;
    /// store.migrate().await?; // nothing left to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let statements = self.sql();
        let operation = || format!("migrating schema `{}`", statements.schema);
        let fail = |e| store_error(operation(), e);
        let mut tx = self.pool().begin().await.map_err(fail)?;
        sqlx::query(sql::ADVISORY_XACT_LOCK)
            .bind(&statements.migrate_lock_key)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let schema_exists: bool = sqlx::query_scalar(sql::SCHEMA_EXISTS)
            .bind(statements.schema.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        if !schema_exists {
            (&mut *tx).execute(sqlx::raw_sql(&statements.create_schema)).await.map_err(fail)?;
        }
        (&mut *tx).execute(sqlx::raw_sql(&statements.bootstrap)).await.map_err(fail)?;
        let applied: HashSet<i32> = sqlx::query_scalar(&statements.applied_migrations)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?
            .into_iter()
            .collect();
        for migration in migrations().iter().filter(|m| !applied.contains(&m.version)) {
            let step = |e| store_error(format!("{} (step {} `{}`)", operation(), migration.version, migration.name), e);
            let step_sql = migration.sql(&statements.schema);
            (&mut *tx).execute(sqlx::raw_sql(&step_sql)).await.map_err(step)?;
            sqlx::query(&statements.record_migration)
                .bind(migration.version)
                .bind(migration.name)
                .execute(&mut *tx)
                .await
                .map_err(step)?;
        }
        tx.commit().await.map_err(fail)
    }
}
