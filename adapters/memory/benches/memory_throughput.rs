//! Throughput of the in-memory store through the full annals path (load, decide, append),
//! on the shopping-cart domain. Run with `cargo bench -p annals-memory`.

use std::time::{Duration, Instant};

use annals::snapshot::SnapshotPolicy;
use annals::store::SnapshotStore;
use annals::{EventStore, Repository, RetryPolicy};
use annals_memory::MemoryStore;
use shopping_cart::{AddItem, Cart};

fn add(i: u64) -> AddItem {
    AddItem { sku: format!("sku-{}", i % 50), qty: 1, unit_price_cents: 100 + i % 7 }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("annals in-memory store, release build, {} cores", std::thread::available_parallelism()?.get());

    // 1. Commands, each on a new cart: load (empty), decide, append.
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    let n = 100_000u64;
    let started = Instant::now();
    for i in 0..n {
        carts.execute(&i.to_string(), add(i)).await?;
    }
    let elapsed = started.elapsed();
    println!(
        "1. {n} commands on new carts, one task:       {:>10.0} commands/s ({elapsed:.2?})",
        per_second(n, elapsed)
    );

    // 2. Commands over 1,000 carts of 10 events each, from 8 concurrent tasks.
    let carts = Repository::<Cart, _>::new(MemoryStore::new())
        .with_retry(RetryPolicy { max_attempts: 100, ..Default::default() });
    let (tasks, per_task) = (8u64, 1_250u64);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let carts = carts.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let cart = (t * per_task + i) % 1_000;
                carts.execute(&cart.to_string(), add(i)).await?;
            }
            Ok::<_, annals::ExecuteError<shopping_cart::CartError>>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let elapsed = started.elapsed();
    let total = tasks * per_task;
    println!(
        "2. {total} commands over 1,000 carts, 8 tasks:  {:>10.0} commands/s ({elapsed:.2?})",
        per_second(total, elapsed)
    );

    // 3. Hydration: load one cart with 100,000 events (median of 10 loads).
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let events = 100_000u64;
    let batch: Vec<annals::NewEvent> = (0..events)
        .map(|i| {
            let payload = serde_json::json!({ "sku": format!("sku-{}", i % 50), "qty": 1, "unit_price_cents": 100 });
            annals::NewEvent::new("cart.item_added", 1, payload)
        })
        .collect();
    store.append("cart-big", annals::ExpectedVersion::Exact(0), batch).await?;
    let mut samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let loaded = carts.load("big").await?;
        samples.push(started.elapsed());
        assert_eq!(loaded.version, events);
    }
    let m = median(samples);
    println!(
        "3. load a cart of {events} events (median of 10): {:>10.0} events/s ({m:.2?} per load)",
        per_second(events, m)
    );

    // 4. The same cart with a snapshot at its head version (median of 10 loads).
    let snapshotted = Repository::<Cart, _>::new(store.clone()).with_snapshots(SnapshotPolicy::AfterReading(1_000));
    snapshotted.load("big").await?; // reads 100,000 events, then snapshots in the background
    while store.load_snapshot("cart-big").await?.is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let loaded = snapshotted.load("big").await?;
        samples.push(started.elapsed());
        assert_eq!(loaded.version, events);
    }
    let with_snapshot = median(samples);
    let speedup = m.as_secs_f64() / with_snapshot.as_secs_f64();
    println!("4. the same load from a snapshot (median of 10):  {with_snapshot:.2?} per load, {speedup:.0}x faster");
    Ok(())
}
