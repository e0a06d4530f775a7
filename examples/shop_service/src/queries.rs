//! The read side: queries answered from the in-memory [projections](crate::projections),
//! never from the event store. The projections lag the writes by a few milliseconds
//! (eventual consistency), so every answer says how far it has read (`as_of`), and a
//! client that has just written can ask to wait: `GET /carts/{id}?min_version=N` waits
//! until the summary reflects stream version `N` (what the command returned), and
//! `GET /products/best-sellers?min_position=N` until the projection has applied an event
//! at global position `N` or later. Waits are bounded by [`MAX_WAIT`]; past it the answer is a 503 with
//! `Retry-After`.

use std::time::Duration;

use annals::subscription::{Checkpoint, InMemoryProjection};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::commands::validate_id;
use crate::error::ApiError;
use crate::projections::{BestSeller, BestSellers, CartSummaries, CartSummary};

/// The longest a query waits for `min_version` / `min_position`.
pub const MAX_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting query looks again.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// The read models the queries use; clones share them.
#[derive(Clone)]
pub struct ReadModels {
    /// `GET /carts/{id}`.
    pub carts: InMemoryProjection<CartSummaries>,
    /// `GET /products/best-sellers`.
    pub best_sellers: InMemoryProjection<BestSellers>,
}

impl Default for ReadModels {
    fn default() -> Self {
        ReadModels {
            carts: InMemoryProjection::new(CartSummaries::default()),
            best_sellers: InMemoryProjection::new(BestSellers::default()),
        }
    }
}

/// The query routes, on `read`.
pub(crate) fn router(read: ReadModels) -> Router {
    Router::new().route("/carts/{id}", get(cart)).route("/products/best-sellers", get(best_sellers)).with_state(read)
}

/// Query of `GET /carts/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartQuery {
    /// Wait until the summary reflects at least this stream version.
    pub min_version: Option<u64>,
}

/// Body of `GET /carts/{id}`.
#[derive(Debug, Serialize)]
pub struct CartResponse {
    /// The cart.
    pub cart: CartSummary,
    /// How far the projection has read.
    pub as_of: Checkpoint,
}

async fn cart(
    State(read): State<ReadModels>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<CartQuery>, QueryRejection>,
) -> Result<Json<CartResponse>, ApiError> {
    let Path(id) = path?;
    let Query(query) = query?;
    validate_id("cart id", &id)?;
    let min_version = query.min_version.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        let as_of = read.carts.checkpoint().await;
        let found = read.carts.read().await.get(&id).cloned();
        let reached = found.as_ref().map_or(0, |c| c.version);
        if reached >= min_version {
            if let Some(cart) = found {
                return Ok(Json(CartResponse { cart, as_of }));
            }
            return Err(ApiError::not_found(format!(
                "no cart `{id}` in the read model (as of checkpoint {as_of}); if it was just created, \
                 pass ?min_version=<the version the command returned>"
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                format!("the cart read model is at version {reached} of cart `{id}`, not yet {min_version}; retry"),
                1,
            ));
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
}

/// Query of `GET /products/best-sellers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestSellersQuery {
    /// How many products (default 10, at most 100).
    pub limit: Option<usize>,
    /// Wait until the projection has applied an event at this global position or later
    /// (exact on the memory and SQLite stores only; see `after`).
    pub min_position: Option<u64>,
    /// Wait until the projection has applied every event up to this feed checkpoint, the
    /// `checkpoint` a command returned: read-your-writes, exact on every store.
    pub after: Option<Checkpoint>,
}

/// Body of `GET /products/best-sellers`.
#[derive(Debug, Serialize)]
pub struct BestSellersResponse {
    /// Most units sold first.
    pub products: Vec<BestSeller>,
    /// How many carts were checked out.
    pub checked_out_carts: u64,
    /// How far the projection has read.
    pub as_of: Checkpoint,
    /// The highest global position among the events it applied.
    pub position: u64,
}

async fn best_sellers(
    State(read): State<ReadModels>,
    query: Result<Query<BestSellersQuery>, QueryRejection>,
) -> Result<Json<BestSellersResponse>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 100"));
    }
    let mut as_of = wait_for_position(&read.best_sellers, query.min_position.unwrap_or(0)).await?;
    if let Some(after) = query.after {
        as_of =
            read.best_sellers.wait_for(after, MAX_WAIT).await.map_err(|e| ApiError::unavailable(e.to_string(), 1))?;
    }
    let view = read.best_sellers.read().await;
    Ok(Json(BestSellersResponse {
        products: view.top(limit),
        checked_out_carts: view.checked_out_carts(),
        as_of,
        position: view.position(),
    }))
}

/// Waits (at most [`MAX_WAIT`]) until `projection` has applied an event at global
/// position `min_position` or later; returns its checkpoint.
///
/// On the memory and SQLite stores commit order is position order, so this is exact. On
/// PostgreSQL a transaction that took a lower position can commit after one that took a
/// higher position, so while writers race, having applied position `N` does not prove
/// that every event below `N` was applied. `min_version` on a single cart is exact on
/// every store.
async fn wait_for_position(
    projection: &InMemoryProjection<BestSellers>,
    min_position: u64,
) -> Result<Checkpoint, ApiError> {
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        let position = projection.read().await.position();
        if position >= min_position {
            return Ok(projection.checkpoint().await);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                format!("the read model is at position {position}, not yet {min_position}; retry"),
                1,
            ));
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
}
