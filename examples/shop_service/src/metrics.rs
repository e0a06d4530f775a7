//! `GET /metrics`: the process's metrics (annals' among them: commands by outcome,
//! appends, consumers' progress and lag, parked events; see `annals::telemetry`) in
//! Prometheus' text format.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's Prometheus recorder, installed on first use; `None` when the process
/// already had another metrics recorder.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).as_ref()
}

/// `GET /metrics`.
pub fn router() -> Router {
    Router::new().route("/metrics", get(render))
}

async fn render() -> Response {
    match handle() {
        Some(handle) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed in this process").into_response()
        }
    }
}
