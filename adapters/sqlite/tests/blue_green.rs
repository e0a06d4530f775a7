//! Blue/green rebuilds on SQLite (`annals::conformance::blue_green`): generations in
//! tables of their own, readers on a view that the switch drops and creates again in the
//! transaction that moves the live pointer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::time::Duration;

use annals::conformance::blue_green::{self, Fixture};
use annals::prelude::*;
use annals::subscription::Rebuildable;
use annals::BoxError;
use annals_sqlite::testing::fresh_store;
use annals_sqlite::{sqlx, SqliteConnection, SqliteStore};
use shopping_cart::ItemAdded;

/// Units per cart in `balances_g<generation>`, read through the view `balances`.
#[derive(Projection)]
#[projection(name = "balances", events(ItemAdded), context = SqliteConnection)]
struct Balances {
    generation: u64,
    delay: Duration,
}

impl On<ItemAdded> for Balances {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        sqlx::query(&format!(
            "INSERT INTO balances_g{g} (cart, units, generation) VALUES ($1, $2, $3)
             ON CONFLICT (cart) DO UPDATE SET units = balances_g{g}.units + excluded.units",
            g = self.generation
        ))
        .bind(&env.stream_id)
        .bind(i64::from(e.qty))
        .bind(i64::try_from(self.generation)?)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl Rebuildable for Balances {
    async fn publish(&self, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query("DROP VIEW IF EXISTS balances").execute(&mut *tx).await?;
        let view = format!("CREATE VIEW balances AS SELECT cart, units, generation FROM balances_g{}", self.generation);
        sqlx::query(&view).execute(&mut *tx).await?;
        Ok(())
    }

    async fn retire(&self, generation: u64, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("DROP TABLE balances_g{generation}")).execute(&mut *tx).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct Tables(SqliteStore);

impl Fixture for Tables {
    type Store = SqliteStore;
    type Projection = Balances;

    fn store(&self) -> &SqliteStore {
        &self.0
    }

    async fn build(&self, generation: u64, delay: Duration) -> Result<Balances, BoxError> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS balances_g{generation} (
                 cart TEXT PRIMARY KEY, units INTEGER NOT NULL, generation INTEGER NOT NULL)"
        ))
        .execute(self.0.pool())
        .await?;
        Ok(Balances { generation, delay })
    }

    async fn read_view(&self) -> (i64, i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*), coalesce(sum(units), 0), coalesce(min(generation), 0), coalesce(max(generation), 0) \
             FROM balances",
        )
        .fetch_one(self.0.pool())
        .await
        .unwrap()
    }

    async fn rows_of(&self, generation: u64) -> Option<i64> {
        let table = format!("balances_g{generation}");
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(&table)
                .fetch_optional(self.0.pool())
                .await
                .unwrap();
        exists?;
        Some(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(self.0.pool()).await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after() {
    let tables = Tables(fresh_store().await);
    blue_green::readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after(tables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins() {
    blue_green::of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins(Tables(fresh_store().await)).await;
}
