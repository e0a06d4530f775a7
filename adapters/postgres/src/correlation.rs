//! Finding the events of one request or business transaction by their correlation or
//! causation id, on the partial indexes of migration 1.

use annals::{Envelope, StoreError};
use uuid::Uuid;

use crate::error::store_error;
use crate::{rows, PostgresStore};

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
        let sql = &self.sql().events_by_correlation;
        self.events_by(sql, correlation_id, || format!("reading the events of correlation id {correlation_id}")).await
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
        let sql = &self.sql().events_by_causation;
        self.events_by(sql, causation_id, || format!("reading the events caused by {causation_id}")).await
    }

    async fn events_by(
        &self,
        sql: &str,
        id: Uuid,
        operation: impl Fn() -> String + Copy,
    ) -> Result<Vec<Envelope>, StoreError> {
        let rows = self
            .on_live_connection(|| sqlx::query(sql).bind(id).fetch_all(self.pool()))
            .await
            .map_err(|e| store_error(operation(), e))?;
        rows.iter().map(|row| rows::envelope(row, operation)).collect()
    }
}
