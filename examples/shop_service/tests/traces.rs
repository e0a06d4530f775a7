//! One trace per request: the service's span log (`shop_service::traces`) shows the
//! `http.request` of a command, its `annals.command`, and the `annals.handle` spans of the
//! projections that applied its event in other tasks, all under one trace id; every
//! request has a trace of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use serde_json::json;
use shop_service::traces::{provider, SpanLog};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A line of the span log: (trace, span, parent, name).
fn parse(line: &str) -> (String, String, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((words[0], words[2], words[4]), ("trace", "span", "parent"), "{line}");
    (words[1].to_owned(), words[3].to_owned(), words[5].to_owned(), words[6].to_owned())
}

// One thread: the subscriber set here is the default of every task the service spawns.
#[tokio::test(flavor = "current_thread")]
async fn every_request_is_one_trace_through_the_store_into_the_projections() {
    let log = Buffer::default();
    let provider = provider(SpanLog::new(log.clone()));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop-service")))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    let _default = tracing::subscriber::set_default(subscriber);

    let service =
        shop_service::start(annals_memory::MemoryStore::new(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let http = reqwest::Client::new();
    let added = http
        .post(format!("{}/carts/t1/items", service.url()))
        .json(&json!({ "sku": "tea", "qty": 2, "unit_price_cents": 450 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let read = http.get(format!("{}/carts/t1?min_version=1", service.url())).send().await.unwrap();
    assert_eq!(read.status(), 200);
    // The best-seller and summary projections apply it too; give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.force_flush().unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let spans: Vec<_> = text.lines().map(parse).collect();

    let requests: Vec<_> = spans.iter().filter(|s| s.3 == "http.request").collect();
    assert_eq!(requests.len(), 2, "{text}");
    let traces: BTreeSet<&String> = requests.iter().map(|s| &s.0).collect();
    assert_eq!(traces.len(), 2, "each request has a trace of its own:\n{text}");
    let commands: Vec<_> = spans.iter().filter(|s| s.3 == "annals.command").collect();
    assert_eq!(commands.len(), 1, "{text}");
    let command = commands[0];
    assert!(requests.iter().any(|r| r.0 == command.0 && r.1 == command.2), "the command is in its request:\n{text}");
    let handled: Vec<_> = spans.iter().filter(|s| s.3 == "annals.handle" && s.0 == command.0).collect();
    assert!(handled.len() >= 2, "the projections applied the event in the request's trace:\n{text}");
    assert!(handled.iter().all(|h| h.2 == command.1), "under the command's span:\n{text}");
    println!("{text}");
}
