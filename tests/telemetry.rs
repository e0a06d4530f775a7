//! What annals reports to `tracing` and `metrics` (see `annals::telemetry`): the spans of
//! a command, its load and append, a subscription batch and a handler call, with their
//! fields; and the counters of commands by outcome, appended events and consumed events.
//! A capturing subscriber and recorder stand in for the application's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use annals::prelude::*;
use annals::subscription::{InMemoryProjection, Subscription};
use annals::ExecuteError;
use annals_memory::MemoryStore;
use shopping_cart::{AddItem, Cart, Checkout, ItemAdded};

/// A span as captured: its name and every field recorded on it.
type SpanRecord = (String, BTreeMap<String, String>);

/// Records every span and its fields, and which span is entered (for `Span::current`).
#[derive(Default)]
struct Spans(Mutex<Vec<SpanRecord>>, Mutex<Entered>);

/// The spans entered, innermost last, with each span's metadata by id.
#[derive(Default)]
struct Entered {
    stack: Vec<tracing::span::Id>,
    metadata: Vec<&'static tracing::Metadata<'static>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        // An explicit parent, by the 1-based index of its span in the record.
        if let Some(parent) = span.parent() {
            fields.insert("parent".to_owned(), parent.into_u64().to_string());
        }
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), fields));
        self.1.lock().unwrap().metadata.push(span.metadata());
        tracing::span::Id::from_u64(u64::try_from(spans.len()).unwrap())
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let index = usize::try_from(span.into_u64() - 1).unwrap();
        values.record(&mut Fields(&mut spans[index].1));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, span: &tracing::span::Id) {
        self.1.lock().unwrap().stack.push(span.clone());
    }
    fn exit(&self, span: &tracing::span::Id) {
        let mut entered = self.1.lock().unwrap();
        if let Some(at) = entered.stack.iter().rposition(|id| id == span) {
            entered.stack.remove(at);
        }
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let entered = self.1.lock().unwrap();
        let current = entered.stack.last().and_then(|id| {
            let metadata = entered.metadata.get(usize::try_from(id.into_u64() - 1).ok()?)?;
            Some(tracing_core::span::Current::new(id.clone(), metadata))
        });
        current.unwrap_or_else(tracing_core::span::Current::none)
    }
}

/// Records every counter's total and every histogram's number of samples, by name and
/// labels (`name{label=value,...}`).
#[derive(Default)]
struct Metrics(Mutex<BTreeMap<String, Arc<Value>>>);

#[derive(Default)]
struct Value(AtomicU64);

impl metrics::CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl metrics::GaugeFn for Value {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl metrics::HistogramFn for Value {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Metrics {
    fn value(&self, key: &metrics::Key) -> Arc<Value> {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.0.lock().unwrap().entry(name).or_default())
    }

    fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).map_or(0, |v| v.0.load(Ordering::SeqCst))
    }
}

impl metrics::Recorder for Metrics {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.value(key))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.value(key))
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.value(key))
    }
}

#[derive(Projection, Default)]
#[projection(name = "units", events(ItemAdded))]
struct Units(u64);

impl On<ItemAdded> for Units {
    async fn on(&mut self, e: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.0 += u64::from(e.qty);
        Ok(())
    }
}

fn add(sku: &str) -> AddItem {
    AddItem { sku: sku.into(), qty: 1, unit_price_cents: 100 }
}

#[test]
fn commands_loads_appends_batches_and_handlers_are_traced_and_counted() {
    let (spans, recorder) = (Arc::new(Spans::default()), Metrics::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(Arc::clone(&spans), || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let store = MemoryStore::new();
                let carts = Repository::<Cart, _>::new(store.clone());
                carts.execute("1", add("tea")).await.unwrap();
                carts.execute("1", add("mug")).await.unwrap();
                carts.execute("1", Checkout).await.unwrap();
                let rejected = carts.execute("1", add("pot")).await;
                assert!(matches!(rejected, Err(ExecuteError::Rejected(_))));
                let units = InMemoryProjection::new(Units::default());
                Subscription::new(store.clone(), units.clone()).catch_up().await.unwrap();
                assert_eq!(units.read().await.0, 2);
            });
        });
    });

    let spans = spans.0.lock().unwrap();
    let named = |name: &str| spans.iter().filter(|(n, _)| n == name).map(|(_, f)| f.clone()).collect::<Vec<_>>();
    let commands = named("annals.command");
    assert_eq!(commands.len(), 4);
    let first = &commands[0];
    for (field, value) in [
        ("aggregate", "cart"),
        ("command", "AddItem"),
        ("stream", "cart-1"),
        ("outcome", "committed"),
        ("attempts", "1"),
        ("version", "1"),
    ] {
        assert_eq!(first.get(field).map(String::as_str), Some(value), "{field} in {first:?}");
    }
    assert_eq!(commands[2]["command"], "Checkout");
    assert_eq!(commands[3]["outcome"], "rejected");
    let loads = named("annals.load");
    assert_eq!(loads.len(), 4);
    assert_eq!(
        (loads[1]["stream"].as_str(), loads[1]["from_snapshot"].as_str(), loads[1]["events"].as_str()),
        ("cart-1", "false", "1")
    );
    let appends = named("annals.append");
    assert_eq!(appends.len(), 3, "the rejected command appends nothing");
    assert_eq!((appends[1]["events"].as_str(), appends[1]["expected_version"].as_str()), ("1", "1"));
    assert_eq!((appends[1]["first_position"].as_str(), appends[1]["last_position"].as_str()), ("2", "2"));
    let batches = named("annals.batch");
    assert!(!batches.is_empty() && batches.iter().all(|b| b["consumer"] == "units"), "{batches:?}");
    assert_eq!(batches.iter().map(|b| b["events"].parse::<u64>().unwrap()).sum::<u64>(), 2);
    let handled = named("annals.handle");
    assert_eq!(handled.len(), 2);
    assert_eq!((handled[1]["projection"].as_str(), handled[1]["event_type"].as_str()), ("units", "cart.item_added"));
    assert_eq!(
        (handled[1]["stream"].as_str(), handled[1]["version"].as_str(), handled[1]["position"].as_str()),
        ("cart-1", "2", "2")
    );

    assert_eq!(recorder.get("annals_commands_total{aggregate=cart,outcome=committed}"), 3);
    assert_eq!(recorder.get("annals_commands_total{aggregate=cart,outcome=rejected}"), 1);
    assert_eq!(recorder.get("annals_command_duration_seconds{aggregate=cart}"), 4, "one sample per command");
    assert_eq!(recorder.get("annals_events_appended_total{aggregate=cart}"), 3);
    assert_eq!(recorder.get("annals_append_duration_seconds{aggregate=cart}"), 3);
    assert_eq!(recorder.get("annals_consumer_events_total{consumer=units}"), 2);
    assert!(recorder.get("annals_consumer_lag_seconds{consumer=units}") >= 1, "the lag gauge was set");
    assert_eq!(recorder.get("annals_command_retries_total{aggregate=cart,reason=conflict}"), 0);
}

/// With a cache, appends are sent by the stream's pipeline task: each is still an
/// `annals.append` span, a child of the command that opened its batch, with the number of
/// commands it carries, and the commands per append are a histogram.
#[test]
fn pipelined_appends_are_children_of_their_commands_and_counted() {
    let (spans, recorder) = (Arc::new(Spans::default()), Metrics::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(Arc::clone(&spans), || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let carts = Repository::<Cart, _>::new(MemoryStore::new()).with_cache(10);
                carts.execute("1", add("tea")).await.unwrap();
                carts.execute("1", add("mug")).await.unwrap();
            });
        });
    });
    let spans = spans.0.lock().unwrap();
    let appends: Vec<&SpanRecord> = spans.iter().filter(|(name, _)| name == "annals.append").collect();
    assert_eq!(appends.len(), 2);
    for (_, fields) in appends {
        assert_eq!((fields["commands"].as_str(), fields["events"].as_str()), ("1", "1"), "{fields:?}");
        let parent = usize::try_from(fields["parent"].parse::<u64>().unwrap() - 1).unwrap();
        assert_eq!(spans[parent].0, "annals.command", "{fields:?}");
    }
    assert_eq!(recorder.get("annals_command_batch_commands{aggregate=cart}"), 2, "one sample per append");
    assert_eq!(recorder.get("annals_events_appended_total{aggregate=cart}"), 2);
}

/// A process runner's reactions are spans (`annals.react`) and counted by outcome; the
/// commands they send are `annals.command` spans inside them.
#[test]
fn process_reactions_are_traced_and_counted() {
    use annals::conformance::process::{CheckOut, CheckedOut, Fulfillment, Order, Step};
    use annals::process::ProcessRunner;
    let (spans, recorder) = (Arc::new(Spans::default()), Metrics::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(Arc::clone(&spans), || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let store = MemoryStore::new();
                let checked_out = CheckedOut { order_id: "o-1".into(), sku: "sku".into(), qty: 1, card: "visa".into() };
                Repository::<Order, _>::new(store.clone()).execute("o-1", CheckOut(checked_out)).await.unwrap();
                let mut runner = ProcessRunner::<Fulfillment, _>::new(store.clone());
                for _ in 0..4 {
                    runner.catch_up().await.unwrap();
                }
                assert_eq!(runner.instance("o-1").await.unwrap().state.step, Step::Shipped);
            });
        });
    });
    let spans = spans.0.lock().unwrap();
    let reactions: Vec<_> = spans.iter().filter(|(n, _)| n == "annals.react").map(|(_, f)| f.clone()).collect();
    let inputs: Vec<&str> = reactions.iter().map(|r| r["input"].as_str()).collect();
    assert_eq!(
        inputs,
        [
            "conformance.order.checked_out",
            "conformance.stock.reserved",
            "conformance.payment.taken",
            "conformance.shipment.shipped"
        ]
    );
    assert!(
        reactions.iter().all(|r| r["process"] == "conformance_fulfillment" && r["instance"] == "o-1"),
        "{reactions:?}"
    );
    assert!(reactions.iter().all(|r| r["outcome"] == "reacted"), "{reactions:?}");
    assert_eq!(reactions[0]["commands"], "1");
    assert_eq!(recorder.get("annals_process_reactions_total{outcome=reacted,process=conformance_fulfillment}"), 4);
    assert_eq!(recorder.get("annals_commands_total{aggregate=shipment,outcome=committed}"), 1);
}

/// The NATS relay: an `annals.relay` span per published batch with OpenTelemetry's
/// messaging fields, and `annals_relay_published_total` counting what the JetStream
/// stream stored.
#[test]
fn relay_publishes_are_traced_and_counted() {
    use annals::{EventStore, ExpectedVersion, NewEvent};
    let (spans, recorder) = (Arc::new(Spans::default()), Metrics::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = format!("TRACED_{}", uuid::Uuid::now_v7().simple());
    tracing::subscriber::with_default(Arc::clone(&spans), || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let server = annals_nats::testing::Server::start().await.unwrap();
                let client = server.connect().await.unwrap();
                let store = MemoryStore::new();
                for n in 0..300u64 {
                    let event = NewEvent::new("test.happened", 1, serde_json::json!({ "n": n }));
                    store.append(&format!("cart-{}", n % 7), ExpectedVersion::Any, vec![event]).await.unwrap();
                }
                let relay = annals_nats::Relay::new(store, client.clone(), stream.as_str(), stream.to_lowercase());
                let running = tokio::spawn(relay.run());
                let js = async_nats::jetstream::new(client);
                loop {
                    let stored = match js.get_stream(&stream).await {
                        Ok(s) => s.cached_info().state.messages,
                        Err(_) => 0,
                    };
                    if stored >= 300 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                running.abort();
            });
        });
    });
    let spans = spans.0.lock().unwrap();
    let relayed: Vec<_> = spans.iter().filter(|(n, _)| n == "annals.relay").map(|(_, f)| f.clone()).collect();
    assert!(!relayed.is_empty());
    let counted: u64 = relayed.iter().map(|f| f["messaging.batch.message_count"].parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 300, "{relayed:?}");
    let first = &relayed[0];
    assert_eq!(
        (
            first["messaging.system"].as_str(),
            first["messaging.destination.name"].as_str(),
            first["after_sequence"].as_str()
        ),
        ("nats", stream.as_str(), "0")
    );
    assert_eq!(first["last_sequence"], first["messaging.batch.message_count"]);
    assert_eq!(recorder.get(&format!("annals_relay_published_total{{stream={stream}}}")), 300);
}
