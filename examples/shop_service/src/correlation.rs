//! Correlation ids: every request carries one, from the client's `x-correlation-id`
//! header or made here, and every response echoes it. Commands stamp it on the events
//! they store (`Metadata::correlation_id`), so the notification a checkout causes can be
//! traced back to the HTTP request that caused it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;

/// The request and response header.
pub const HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The correlation id of the current request (a request extension set by the middleware).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

/// Middleware: takes the UUID in `x-correlation-id` or makes a new one (UUID v7), hands
/// it to handlers as a [`CorrelationId`] extension and echoes it in the response.
/// A header that is not a UUID is a 400.
pub(crate) async fn layer(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&HEADER) {
        None => Uuid::now_v7(),
        Some(value) => match value.to_str().ok().and_then(|v| Uuid::parse_str(v.trim()).ok()) {
            Some(id) => id,
            None => {
                return ApiError::bad_request(format!("the `{HEADER}` header must be a UUID")).into_response();
            }
        },
    };
    request.extensions_mut().insert(CorrelationId(id));
    // The request's span: the root of its trace (OpenTelemetry's HTTP field names).
    let span = tracing::info_span!(
        "http.request",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        correlation_id = %id,
        http.response.status_code = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
