//! Blue/green rebuilds on PostgreSQL (`annals::conformance::blue_green`): generations in
//! tables of their own, readers on a view that the switch replaces with
//! `CREATE OR REPLACE VIEW` in the transaction that moves the live pointer.
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use annals::conformance::blue_green::{self, Fixture};
use annals::prelude::*;
use annals::subscription::Rebuildable;
use annals::BoxError;
use annals_postgres::testing::fresh_store;
use annals_postgres::{sqlx, PgConnection, PostgresStore};
use shopping_cart::ItemAdded;

/// Units per cart in `<schema>.balances_g<generation>`, read through `<schema>.balances`.
#[derive(Projection)]
#[projection(name = "balances", events(ItemAdded), context = PgConnection)]
struct Balances {
    schema: String,
    generation: u64,
    delay: Duration,
}

impl On<ItemAdded> for Balances {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, tx: &mut PgConnection) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        sqlx::query(&format!(
            "INSERT INTO {s}.balances_g{g} (cart, units, generation) VALUES ($1, $2, $3)
             ON CONFLICT (cart) DO UPDATE SET units = {s}.balances_g{g}.units + excluded.units",
            s = self.schema,
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
    async fn publish(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "CREATE OR REPLACE VIEW {s}.balances AS SELECT cart, units, generation FROM {s}.balances_g{g}",
            s = self.schema,
            g = self.generation
        ))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn retire(&self, generation: u64, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("DROP TABLE {}.balances_g{generation}", self.schema)).execute(&mut *tx).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct Tables(PostgresStore);

impl Fixture for Tables {
    type Store = PostgresStore;
    type Projection = Balances;

    fn store(&self) -> &PostgresStore {
        &self.0
    }

    async fn build(&self, generation: u64, delay: Duration) -> Result<Balances, BoxError> {
        let schema = self.0.schema().quoted();
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.balances_g{generation} (
                 cart text PRIMARY KEY, units bigint NOT NULL, generation bigint NOT NULL)"
        ))
        .execute(self.0.pool())
        .await?;
        Ok(Balances { schema, generation, delay })
    }

    async fn read_view(&self) -> (i64, i64, i64, i64) {
        sqlx::query_as(&format!(
            "SELECT count(*), coalesce(sum(units), 0)::bigint, coalesce(min(generation), 0), \
                    coalesce(max(generation), 0) FROM {}.balances",
            self.0.schema().quoted()
        ))
        .fetch_one(self.0.pool())
        .await
        .unwrap()
    }

    async fn rows_of(&self, generation: u64) -> Option<i64> {
        let table = format!("{}.balances_g{generation}", self.0.schema().quoted());
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&table).fetch_one(self.0.pool()).await.unwrap();
        exists?;
        Some(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(self.0.pool()).await.unwrap())
    }
}

async fn tables() -> Tables {
    Tables(fresh_store().await.expect("a PostgreSQL store in a fresh schema"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after() {
    blue_green::readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after(tables().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins() {
    blue_green::of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins(tables().await).await;
}
