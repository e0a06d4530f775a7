//! Finding the events of one request or business transaction by their correlation or
//! causation id, on the partial indexes of migration 1.

use annals::{Envelope, StoreError};
use uuid::Uuid;

use crate::error::store_error;
use crate::{rows, sql, PostgresStore};

/// `$1` id. `{column} = $1` implies the partial index's `{column} IS NOT NULL`, so the
/// index serves generic plans too (a bitmap index scan, then a sort of the few matches).
fn by_sql(store: &PostgresStore, column: &str) -> String {
    format!(
        "SELECT {} FROM {}.events WHERE {column} = $1 ORDER BY global_position",
        sql::columns(),
        store.schema().quoted()
    )
}

impl PostgresStore {
    /// Every event whose metadata carries `correlation_id`, across all streams, in
    /// global order: everything one request or business transaction caused.
    ///
    /// One query on the `events_correlation_id_idx` index.
    ///
    /// ```no_run
    /// use annals::{Metadata, Repository};
    /// use annals_postgres::PostgresStore;
    /// use shopping_cart::{AddItem, Cart};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
    /// let carts = Repository::<Cart, _>::new(store.clone());
    /// let request = uuid::Uuid::now_v7();
    /// let tea = AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 };
    /// carts.execute_with("42", tea, Metadata::default().correlation_id(request)).await?;
    /// for event in store.events_by_correlation(request).await? {
    ///     println!("{} v{}: {}", event.stream_id, event.stream_version, event.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn events_by_correlation(&self, correlation_id: Uuid) -> Result<Vec<Envelope>, StoreError> {
        self.events_by("correlation_id", correlation_id, || {
            format!("reading the events of correlation id {correlation_id}")
        })
        .await
    }

    /// Every event whose metadata names `causation_id` as its direct cause (a command's
    /// or an event's id, see [`Metadata::caused_by`](annals::Metadata::caused_by)), in
    /// global order.
    ///
    /// One query on the `events_causation_id_idx` index.
    ///
    /// ```no_run
    /// # async fn run(store: annals_postgres::PostgresStore, cause: annals::Envelope) -> Result<(), annals::StoreError> {
    /// let effects = store.events_by_causation(cause.event_id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn events_by_causation(&self, causation_id: Uuid) -> Result<Vec<Envelope>, StoreError> {
        self.events_by("causation_id", causation_id, || format!("reading the events caused by {causation_id}")).await
    }

    async fn events_by(
        &self,
        column: &str,
        id: Uuid,
        operation: impl Fn() -> String + Copy,
    ) -> Result<Vec<Envelope>, StoreError> {
        let rows = sqlx::query(&by_sql(self, column))
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter().map(|row| rows::envelope(row, operation)).collect()
    }
}
