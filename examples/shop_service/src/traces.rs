//! The service's log: annals' warnings, and one line per finished span with its trace,
//! so that everything one request caused reads as one trace: the `http.request` span,
//! its `annals.command`, and the `annals.handle` spans of the projections that applied
//! its events later, in other tasks (annals' `opentelemetry` feature carries the trace
//! through each event's metadata). A real deployment exports the same spans to its
//! collector with an OTLP exporter instead of [`SpanLog`].
//!
//! ```text
//! trace 1b689d3b63f2331e5fd2abc903055b0b  span 5fd2abc903055b0b  parent -                 http.request     2.41 ms
//! trace 1b689d3b63f2331e5fd2abc903055b0b  span fb114f8195389b8f  parent 5fd2abc903055b0b  annals.command   2.02 ms
//! trace 1b689d3b63f2331e5fd2abc903055b0b  span 0c1e0d91a7e4b2c4  parent fb114f8195389b8f  annals.handle    0.03 ms
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where [`SpanLog`] writes.
type Sink = Arc<Mutex<dyn Write + Send>>;

/// An exporter that writes each finished span as one line: trace id, span id, parent
/// span id, name, duration.
#[derive(Clone)]
pub struct SpanLog {
    out: Sink,
}

impl std::fmt::Debug for SpanLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanLog")
    }
}

impl SpanLog {
    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        SpanLog { out: Arc::new(Mutex::new(out)) }
    }

    /// The line of one span.
    pub fn line(span: &SpanData) -> String {
        let parent =
            if span.parent_span_id == SpanId::INVALID { "-".to_owned() } else { span.parent_span_id.to_string() };
        let took = span.end_time.duration_since(span.start_time).unwrap_or_default();
        format!(
            "trace {}  span {}  parent {parent:<16}  {:<16} {:.2} ms",
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.name,
            took.as_secs_f64() * 1000.0
        )
    }
}

impl SpanExporter for SpanLog {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // A poisoned lock or a closed stderr loses log lines, never the service.
        if let Ok(mut out) = self.out.lock() {
            for span in &batch {
                let _ = writeln!(out, "{}", Self::line(span));
            }
        }
        Ok(())
    }
}

/// The tracer provider exporting every span to `log` as it ends.
pub fn provider(log: SpanLog) -> SdkTracerProvider {
    SdkTracerProvider::builder().with_simple_exporter(log).build()
}

/// Installs the process's subscriber: INFO events (annals' warnings) on stderr, and every
/// INFO span into `provider`. Keep the provider until the end (dropping it flushes).
pub fn install(provider: &SdkTracerProvider) {
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop-service")))
        .with(LevelFilter::INFO)
        .try_init();
}
