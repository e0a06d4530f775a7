//! What annals' instrumentation costs a command, in one run: 20,000 commands on the
//! in-memory store (no I/O, so the instrumentation's share is as large as it gets) with
//! no `tracing` subscriber and no metrics recorder, then with a subscriber that formats
//! every INFO span and event (to a sink), then with a subscriber that keeps only WARN
//! and above, then with an OpenTelemetry layer at INFO (an SDK tracer with no exporter:
//! every INFO span is made and ended, and each command stamps its `traceparent` into the
//! events' metadata). Best of 5 rounds each; `cargo bench -p annals-tests --bench telemetry`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::Repository;
use annals_memory::MemoryStore;
use shopping_cart::{AddItem, Cart};

const COMMANDS: u64 = 20_000;
const ROUNDS: usize = 5;

async fn commands() -> Duration {
    let carts = Repository::<Cart, _>::new(MemoryStore::new()).with_cache(1_000);
    let started = Instant::now();
    for n in 0..COMMANDS {
        let add = AddItem { sku: format!("sku-{}", n % 7), qty: 1, unit_price_cents: 100 };
        carts.execute(&format!("c{}", n % 100), add).await.unwrap();
    }
    started.elapsed()
}

fn best(runtime: &tokio::runtime::Runtime) -> Duration {
    (0..ROUNDS).map(|_| runtime.block_on(commands())).min().unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(commands()); // warm up
    let bare = best(&runtime);
    let info = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::sink)
        .finish();
    let with_info = tracing::subscriber::with_default(info, || best(&runtime));
    let warn = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::sink)
        .finish();
    let with_warn = tracing::subscriber::with_default(warn, || best(&runtime));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(tracing_subscriber::filter::LevelFilter::INFO)
    };
    let with_otel = tracing::subscriber::with_default(otel, || best(&runtime));
    let per = |t: Duration| t.as_secs_f64() * 1e6 / COMMANDS as f64;
    println!("{COMMANDS} commands on the in-memory store (cached aggregates), best of {ROUNDS}:");
    println!("   no subscriber, no recorder: {:>7.2} µs per command", per(bare));
    println!(
        "   subscriber at WARN:         {:>7.2} µs per command ({:+.1}%)",
        per(with_warn),
        100.0 * (with_warn.as_secs_f64() / bare.as_secs_f64() - 1.0)
    );
    println!(
        "   subscriber at INFO:         {:>7.2} µs per command ({:+.1}%)",
        per(with_info),
        100.0 * (with_info.as_secs_f64() / bare.as_secs_f64() - 1.0)
    );
    println!(
        "   OpenTelemetry layer at INFO: {:>6.2} µs per command ({:+.1}%)",
        per(with_otel),
        100.0 * (with_otel.as_secs_f64() / bare.as_secs_f64() - 1.0)
    );
}
