//! Every failure a request can meet, as an HTTP status and a JSON body `{ "error": ... }`.

use annals::{ExecuteError, StoreError};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use shopping_cart::CartError;

/// A request that did not succeed: the status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u32>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after_secs: None }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing under this id.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503 with `Retry-After`: a read model has not caught up yet, or the store is down.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> Self {
        ApiError { retry_after_secs: Some(retry_after_secs), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }

    /// The status this error responds with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A store failure: 503 if it is transient, 500 otherwise. The message stays in the
    /// server's log; the client gets a generic one.
    fn store(error: &StoreError) -> Self {
        eprintln!("shop-service: store error: {error}");
        if error.is_transient() {
            Self::unavailable("the event store is unavailable; retry shortly", 1)
        } else {
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the event store failed; see the server log")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Domain rejections: 422 for a request the cart can never accept (zero quantity) or
/// whose numbers it cannot represent (more units or cents than it counts), 409 for one
/// the cart's current state refuses.
impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        let status = match error {
            CartError::ZeroQuantity | CartError::TooManyUnits { .. } | CartError::TotalTooLarge => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            CartError::AlreadyCheckedOut | CartError::NotEnough { .. } | CartError::Empty => StatusCode::CONFLICT,
        };
        Self::new(status, error.to_string())
    }
}

impl From<ExecuteError<CartError>> for ApiError {
    fn from(error: ExecuteError<CartError>) -> Self {
        match error {
            ExecuteError::Rejected(e) => e.into(),
            e @ ExecuteError::Conflict { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            ExecuteError::Store(e) => Self::store(&e),
            other => {
                eprintln!("shop-service: command failed: {other}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the command failed; see the server log")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::store(&error)
    }
}

/// Malformed JSON is 400, well-formed JSON of the wrong shape (unknown or missing
/// fields, wrong types) 422, a missing `Content-Type: application/json` 415; the message
/// is axum's, which names the field and what was wrong.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}
