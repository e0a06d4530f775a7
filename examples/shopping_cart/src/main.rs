//! The shopping-cart story: commands in, events appended, a rejected command, the
//! current state, the audit trail, and the state as of an earlier version.
//!
//! Run it with `cargo run -p shopping-cart` on the embedded in-memory store, or with
//! `DATABASE_URL=postgres://user@host/db cargo run -p shopping-cart` on PostgreSQL (tables
//! in schema `annals`, created on first run). The story is the same code for both stores.

use annals::subscription::Subscription;
use annals::{Aggregate, Committed, EventStore, ExecuteError, Repository};
use annals_memory::MemoryStore;
use annals_postgres::{PgProjection, PostgresStore};
use shopping_cart::projections::{BestSellers, CartSummaries};
use shopping_cart::{AddItem, Cart, CartError, Checkout, RemoveItem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            println!("(on PostgreSQL)\n");
            let store = PostgresStore::connect(&url).await?;
            store.migrate().await?;
            // A new cart on every run, so the story reads the same each time.
            let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let cart_id = format!("42-{run}");
            story(store.clone(), &cart_id).await?;
            read_models(&store, &cart_id).await
        }
        _ => {
            println!("(on the in-memory store; set DATABASE_URL to run on PostgreSQL)\n");
            story(MemoryStore::new(), "42").await
        }
    }
}

/// The read side on PostgreSQL: projections catch up from their checkpoints, writing
/// their tables and checkpoint in one transaction per batch, then answer queries.
async fn read_models(store: &PostgresStore, cart_id: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Read models kept by projections, in PostgreSQL tables");
    let summaries = PgProjection::new(store.clone(), CartSummaries::new(store).await?);
    let mut subscription = Subscription::new(store.clone(), summaries);
    subscription.catch_up().await?;
    let stream = Cart::stream_id(cart_id);
    if let Some(summary) = subscription.sink().projection().get(store, &stream).await? {
        println!(
            "cart_summaries:  {} holds {} unit(s) worth {} cents, checked out: {} (as of version {})",
            summary.cart, summary.units, summary.total_cents, summary.checked_out, summary.version
        );
    }
    let best_sellers = PgProjection::new(store.clone(), BestSellers::new(store).await?);
    let mut subscription = Subscription::new(store.clone(), best_sellers);
    subscription.catch_up().await?;
    println!("best_sellers:    units sold over every checked-out cart in this database");
    for (sku, units) in subscription.sink().projection().top(store, 5).await? {
        println!("  {sku:<5} {units}");
    }
    Ok(())
}

/// The story, the same on every store.
async fn story<S: EventStore>(store: S, cart_id: &str) -> Result<(), Box<dyn std::error::Error>> {
    let carts = Repository::<Cart, _>::new(store);

    println!("== Commands in, events out (cart {cart_id}, stream `cart-{cart_id}`)");
    report("add 2 × tea", carts.execute(cart_id, AddItem { sku: "tea".into(), qty: 2, unit_price_cents: 450 }).await)?;
    report("add 1 × mug", carts.execute(cart_id, AddItem { sku: "mug".into(), qty: 1, unit_price_cents: 1200 }).await)?;
    report("remove 1 × tea", carts.execute(cart_id, RemoveItem { sku: "tea".into(), qty: 1 }).await)?;

    println!("\n== Commands the cart refuses, and one it accepts");
    report("remove 5 × mug", carts.execute(cart_id, RemoveItem { sku: "mug".into(), qty: 5 }).await)?;
    report("checkout", carts.execute(cart_id, Checkout).await)?;
    report("add 1 × tea", carts.execute(cart_id, AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 }).await)?;

    println!("\n== Current state, rebuilt from the events");
    let cart = carts.load(cart_id).await?;
    println!(
        "version {}: {} line(s), total {} cents, checked out: {}",
        cart.version,
        cart.state.items.len(),
        cart.state.total_cents(),
        cart.state.checked_out
    );
    for (sku, line) in &cart.state.items {
        println!("  {sku:<5} × {} at {} cents", line.qty, line.unit_price_cents);
    }

    println!("\n== History: the audit trail of stream `cart-{cart_id}`");
    for e in carts.history(cart_id, ..).await? {
        println!(
            "  v{} #{} {} {:<18} {}",
            e.stream_version,
            e.global_position,
            e.recorded_at.format("%H:%M:%S%.3f"),
            e.event_type,
            e.payload
        );
    }

    println!("\n== Time travel: the cart as of version 2");
    let then = carts.load_at_version(cart_id, 2).await?;
    println!(
        "version {}: total {} cents, checked out: {}",
        then.version,
        then.state.total_cents(),
        then.state.checked_out
    );
    for (sku, line) in &then.state.items {
        println!("  {sku:<5} × {} at {} cents", line.qty, line.unit_price_cents);
    }

    let changes = carts.history(cart_id, 2..=3).await?;
    println!("\n== What changed between versions 2 and 3, and the cart as of that moment");
    for e in &changes {
        println!("  v{} {} {}", e.stream_version, e.event_type, e.payload);
    }
    if let Some(last) = changes.last() {
        let at = last.recorded_at;
        let as_of = carts.load_as_of(cart_id, at).await?;
        println!(
            "as of {}: version {}, total {} cents, checked out: {}",
            at.format("%H:%M:%S%.6f"),
            as_of.version,
            as_of.state.total_cents(),
            as_of.state.checked_out
        );
    }
    Ok(())
}

/// Prints what became of a command: its events, or the domain error that rejected it.
/// Failures other than a rejection (the store, decoding) end the story.
fn report(
    what: &str,
    outcome: Result<Committed<Cart>, ExecuteError<CartError>>,
) -> Result<(), ExecuteError<CartError>> {
    match outcome {
        Ok(done) => {
            for e in &done.events {
                println!(
                    "{what:<16} -> {} {} (stream version {}, global position {})",
                    e.event_type, e.payload, e.stream_version, e.global_position
                );
            }
            Ok(())
        }
        Err(ExecuteError::Rejected(error)) => {
            println!("{what:<16} -> rejected: {error}");
            Ok(())
        }
        Err(other) => Err(other),
    }
}
