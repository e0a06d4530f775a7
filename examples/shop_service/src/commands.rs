//! The write side: each command request becomes a `shopping_cart` command executed by
//! `Repository<Cart, S>` (load the cart from its events, decide, append with optimistic
//! concurrency). Responses carry what was stored, nothing from the read models.

use annals::store::Checkpoint;
use annals::{Envelope, Metadata, Repository};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use shopping_cart::{AddItem, Cart, Checkout, RemoveItem};
use uuid::Uuid;

use crate::correlation::CorrelationId;
use crate::error::ApiError;
use crate::ServiceStore;

/// Cart ids and SKUs: 1 to 64 ASCII letters, digits, `-` and `_`.
pub(crate) fn validate_id(what: &str, id: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("invalid {what} `{id}`: use 1 to 64 ASCII letters, digits, `-` or `_`")))
    }
}

/// Body of `POST /carts/{id}/items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddItemRequest {
    /// The product.
    pub sku: String,
    /// Units, at least 1.
    pub qty: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Query of `DELETE /carts/{id}/items/{sku}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveItemQuery {
    /// Units to take out, at least 1.
    pub qty: u32,
}

/// What a successful command returns.
#[derive(Debug, Serialize)]
pub struct CommandResponse {
    /// The cart.
    pub cart_id: String,
    /// The cart's stream version after the command; `GET /carts/{id}?min_version=` waits
    /// for the read model to reach it.
    pub version: u64,
    /// The global position of the last stored event (0 if none was stored).
    pub position: u64,
    /// The feed checkpoint of the last stored event (none if none was stored):
    /// `GET /products/best-sellers?after=` waits until the read model has applied it
    /// (read-your-writes, exact on every store).
    pub checkpoint: Option<Checkpoint>,
    /// The correlation id stamped on the events.
    pub correlation_id: Uuid,
    /// The stored events.
    pub events: Vec<Envelope>,
}

/// `POST /carts/{id}/items`: add units of a product.
pub(crate) async fn add_item<S: ServiceStore>(
    State(carts): State<Repository<Cart, S>>,
    Extension(correlation): Extension<CorrelationId>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<AddItemRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CommandResponse>), ApiError> {
    let Path(id) = path?;
    let Json(body) = body?;
    validate_id("cart id", &id)?;
    validate_id("sku", &body.sku)?;
    let command = AddItem { sku: body.sku, qty: body.qty, unit_price_cents: body.unit_price_cents };
    let done = carts.execute_with(&id, command, metadata(correlation)).await?;
    Ok((StatusCode::CREATED, Json(response(carts.store(), id, correlation, done.version, done.events).await?)))
}

/// `DELETE /carts/{id}/items/{sku}?qty=N`: take units of a product out.
pub(crate) async fn remove_item<S: ServiceStore>(
    State(carts): State<Repository<Cart, S>>,
    Extension(correlation): Extension<CorrelationId>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RemoveItemQuery>, QueryRejection>,
) -> Result<Json<CommandResponse>, ApiError> {
    let Path((id, sku)) = path?;
    let Query(query) = query?;
    validate_id("cart id", &id)?;
    validate_id("sku", &sku)?;
    let done = carts.execute_with(&id, RemoveItem { sku, qty: query.qty }, metadata(correlation)).await?;
    Ok(Json(response(carts.store(), id, correlation, done.version, done.events).await?))
}

/// `POST /carts/{id}/checkout`: pay and close the cart.
pub(crate) async fn checkout<S: ServiceStore>(
    State(carts): State<Repository<Cart, S>>,
    Extension(correlation): Extension<CorrelationId>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CommandResponse>, ApiError> {
    let Path(id) = path?;
    validate_id("cart id", &id)?;
    let done = carts.execute_with(&id, Checkout, metadata(correlation)).await?;
    Ok(Json(response(carts.store(), id, correlation, done.version, done.events).await?))
}

fn metadata(correlation: CorrelationId) -> Metadata {
    Metadata::default().correlation_id(correlation.0)
}

async fn response<S: ServiceStore>(
    store: &S,
    cart_id: String,
    correlation: CorrelationId,
    version: u64,
    events: Vec<Envelope>,
) -> Result<CommandResponse, ApiError> {
    let checkpoint = match events.last() {
        Some(last) => Some(store.checkpoint_of(last).await?),
        None => None,
    };
    Ok(CommandResponse {
        cart_id,
        version,
        position: events.last().map_or(0, |e| e.global_position),
        checkpoint,
        correlation_id: correlation.0,
        events,
    })
}

/// Body of `GET /carts/{id}/history`.
#[derive(Debug, Serialize)]
pub struct HistoryResponse {
    /// The cart.
    pub cart_id: String,
    /// Its current stream version.
    pub version: u64,
    /// Every stored event of the cart, oldest first.
    pub events: Vec<Envelope>,
}

/// `GET /carts/{id}/history`: the cart's audit trail, read straight from its stream (so
/// it is always current, unlike the projections).
pub(crate) async fn history<S: ServiceStore>(
    State(carts): State<Repository<Cart, S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let Path(id) = path?;
    validate_id("cart id", &id)?;
    let events = carts.history(&id, ..).await?;
    let Some(last) = events.last() else {
        return Err(ApiError::not_found(format!("cart `{id}` has no events")));
    };
    Ok(Json(HistoryResponse { cart_id: id, version: last.stream_version, events }))
}
