//! One OpenTelemetry trace from a request through the store into a projection (annals'
//! `opentelemetry` feature): a command run inside a request's span stamps the W3C
//! `traceparent` of its `annals.command` span into the events' metadata, the SQLite file
//! stores it, and a subscription in another task handles the event in an `annals.handle`
//! span whose parent is that command span. An OpenTelemetry SDK with an in-memory
//! exporter stands in for the application's tracer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use annals::prelude::*;
use annals::store::EventFeed;
use annals::subscription::{InMemoryProjection, Subscription};
use annals::{Metadata, NewEvent};
use annals_sqlite::testing::fresh_store;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use shopping_cart::{AddItem, Cart, ItemAdded};
use tracing::instrument::WithSubscriber;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Projection, Default)]
#[projection(name = "units", events(ItemAdded))]
struct Units {
    units: u64,
}

impl On<ItemAdded> for Units {
    async fn on(&mut self, e: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.units += u64::from(e.qty);
        Ok(())
    }
}

/// An OpenTelemetry tracer exporting to memory, behind this thread's default subscriber
/// (at INFO) while the guard lives.
fn tracer() -> (InMemorySpanExporter, SdkTracerProvider, tracing::subscriber::DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("annals-test")))
        .with(LevelFilter::INFO);
    let guard = tracing::subscriber::set_default(subscriber);
    (exporter, provider, guard)
}

fn add(qty: u32) -> AddItem {
    AddItem { sku: "tea".into(), qty, unit_price_cents: 450 }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_s_trace_continues_through_the_store_into_the_projection() {
    let (exporter, provider, _default) = tracer();

    let store = fresh_store().await;
    let carts = Repository::<Cart, _>::new(store.clone());
    // The request's ids, read from its span. Whether the request span itself has been
    // exported when the test looks is timing: sqlx's SQLite connection threads receive
    // the current span with every statement and hold it a moment after replying, which
    // keeps the command span, and so its parent, open (it failed 2 runs in 30).
    let request = tracing::info_span!("http.request");
    let request_context = request.context().span().span_context().clone();
    let done = carts.execute("42", add(2)).instrument(request).await.unwrap();
    // An event whose caller set a trace context keeps it.
    let theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let kept = carts
        .execute_with("43", add(1), Metadata::default().with(Metadata::TRACEPARENT, theirs))
        .instrument(tracing::info_span!("http.request"))
        .await
        .unwrap();
    // Without a trace: a command outside any OpenTelemetry span stamps nothing.
    let plain = carts.execute("44", add(1)).with_subscriber(tracing_subscriber::registry()).await.unwrap();
    assert_eq!(plain.events[0].metadata.traceparent(), None);

    // The subscription runs in a task of its own, outside the request's span.
    let view = InMemoryProjection::new(Units::default());
    let (feed, sink) = (store.clone(), view.clone());
    tokio::spawn(async move { Subscription::new(feed, sink).catch_up().await.unwrap() }.with_current_subscriber())
        .await
        .unwrap();
    assert_eq!(view.read().await.units, 4);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let command = *named(&spans, "annals.command")
        .iter()
        .find(|c| c.attributes.iter().any(|a| a.key.as_str() == "stream" && a.value.as_str() == "cart-42"))
        .unwrap();
    assert_eq!(command.parent_span_id, request_context.span_id(), "the command's span is a child of the request's");
    assert_eq!(command.span_context.trace_id(), request_context.trace_id());
    let stored = done.events[0].metadata.traceparent().unwrap();
    let expected = format!("00-{}-{}-01", request_context.trace_id(), command.span_context.span_id());
    assert_eq!(stored, expected, "the command's span context is in the event's metadata");
    // Read back from the file: the feed hands it out as stored.
    let read = store.read_feed(annals::store::Checkpoint::START, &annals::store::Filter::all(), 10).await.unwrap();
    assert_eq!(read.events[0].envelope.metadata.traceparent(), Some(expected.as_str()));
    assert_eq!(kept.events[0].metadata.traceparent(), Some(theirs));

    let handled = named(&spans, "annals.handle");
    assert_eq!(handled.len(), 2, "the two traced events, each in an INFO span of its trace");
    let ours = handled.iter().find(|h| h.span_context.trace_id() == request_context.trace_id()).unwrap();
    assert_eq!(ours.parent_span_id, command.span_context.span_id(), "the handler's parent is the command");
    assert!(ours.parent_span_is_remote, "a parent from another process or task, through the store");
    let other = handled.iter().find(|h| h.span_context.trace_id() != request_context.trace_id()).unwrap();
    assert_eq!(format!("{}", other.span_context.trace_id()), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(format!("{}", other.parent_span_id), "b7ad6b7169203331");
}

/// A stored `traceparent` that is not one (edited by hand, written by another tool) is
/// ignored: the event is handled, in no trace of its own.
#[tokio::test(flavor = "current_thread")]
async fn a_malformed_stored_traceparent_is_ignored() {
    let (exporter, provider, _default) = tracer();
    let store = fresh_store().await;
    for bad in ["", "00-zz", "00-00000000000000000000000000000000-b7ad6b7169203331-01"] {
        let event =
            NewEvent::new("cart.item_added", 1, serde_json::json!({"sku": "tea", "qty": 1, "unit_price_cents": 1}))
                .with_metadata(Metadata::default().with(Metadata::TRACEPARENT, bad));
        store.append("cart-1", ExpectedVersion::Any, vec![event]).await.unwrap();
    }
    let view = InMemoryProjection::new(Units::default());
    Subscription::new(store, view.clone()).catch_up().await.unwrap();
    assert_eq!(view.read().await.units, 3);
    provider.force_flush().unwrap();
    assert!(named(&exporter.get_finished_spans().unwrap(), "annals.handle").is_empty(), "DEBUG spans, filtered out");
}
