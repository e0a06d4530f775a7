//! The shopping-cart story: commands in, events appended, a rejected command, the
//! current state, the audit trail, the state as of an earlier version, and a read model
//! fed from the event feed.
//!
//! Run it with `cargo run -p shopping-cart` on the embedded in-memory store; on a SQLite
//! file with `DATABASE_URL=sqlite://cart.db cargo run -p shopping-cart --features sqlite`
//! (the file is created and migrated on first run); or on PostgreSQL with
//! `DATABASE_URL=postgres://user@host/db cargo run -p shopping-cart --features postgres`
//! (tables in schema `annals`). The story is the same code for every store.

use std::collections::BTreeMap;

use annals::subscription::{InMemoryProjection, Subscription};
use annals::{BoxError, Committed, Envelope, EventFeed, EventStore, ExecuteError, On, Projection, Repository};
use annals_memory::MemoryStore;
use shopping_cart::{AddItem, Cart, CartError, CheckedOut, Checkout, ItemAdded, RemoveItem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty());
    match url.as_deref() {
        None => {
            println!("(on the in-memory store; set DATABASE_URL=sqlite://FILE or postgres://... to persist)\n");
            story(MemoryStore::new(), "42").await
        }
        Some(url) if url.starts_with("sqlite:") => sqlite(url).await,
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => postgres(url).await,
        Some(url) => Err(format!("DATABASE_URL `{url}` is neither sqlite:// nor postgres://").into()),
    }
}

/// A new cart id on every run of a persistent store, so the story reads the same each time.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn fresh_cart_id() -> String {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("42-{run}")
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("(on SQLite: {url})\n");
    let store = annals_sqlite::SqliteStore::connect(url).await?;
    store.migrate().await?;
    story(store, &fresh_cart_id()).await
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    Err("DATABASE_URL names a SQLite file, but this build has no SQLite support: \
         run `cargo run -p shopping-cart --features sqlite`"
        .into())
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("(on PostgreSQL)\n");
    let store = annals_postgres::PostgresStore::connect(url).await?;
    store.migrate().await?;
    let cart_id = fresh_cart_id();
    story(store.clone(), &cart_id).await?;
    postgres_read_models(&store, &cart_id).await
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    Err("DATABASE_URL names a PostgreSQL server, but this build has no PostgreSQL support: \
         run `cargo run -p shopping-cart --features postgres`"
        .into())
}

/// The read side in PostgreSQL tables: projections catch up from their checkpoints,
/// writing their tables and checkpoint in one transaction per batch, then answer queries.
#[cfg(feature = "postgres")]
async fn postgres_read_models(
    store: &annals_postgres::PostgresStore,
    cart_id: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use annals::subscription::ExactlyOnce;
    use annals::Aggregate;
    use shopping_cart::projections::{BestSellers, CartSummaries};

    println!("\n== Read models kept exactly once in PostgreSQL tables");
    let summaries = ExactlyOnce::new(store.clone(), CartSummaries::new(store).await?);
    let mut subscription = Subscription::new(store.clone(), summaries);
    subscription.catch_up().await?;
    let stream = Cart::stream_id(cart_id);
    if let Some(summary) = subscription.sink().projection().get(store, &stream).await? {
        println!(
            "cart_summaries:  {} holds {} unit(s) worth {} cents, checked out: {} (as of version {})",
            summary.cart, summary.units, summary.total_cents, summary.checked_out, summary.version
        );
    }
    let best_sellers = ExactlyOnce::new(store.clone(), BestSellers::new(store).await?);
    let mut subscription = Subscription::new(store.clone(), best_sellers);
    subscription.catch_up().await?;
    println!("best_sellers:    units sold over every checked-out cart in this database");
    for (sku, units) in subscription.sink().projection().top(store, 5).await? {
        println!("  {sku:<5} {units}");
    }
    Ok(())
}

/// Units sold per product over every checked-out cart: a read model in memory, fed from
/// the store's event feed (the same code on every store).
#[derive(Projection, Default)]
#[projection(name = "units_sold", events(ItemAdded, shopping_cart::ItemRemoved, CheckedOut))]
struct UnitsSold {
    /// Units in each open cart, by stream and product.
    open: BTreeMap<String, BTreeMap<String, i64>>,
    /// Units sold, by product.
    sold: BTreeMap<String, i64>,
}

impl On<ItemAdded> for UnitsSold {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        *self.open.entry(env.stream_id.clone()).or_default().entry(e.sku).or_default() += i64::from(e.qty);
        Ok(())
    }
}

impl On<shopping_cart::ItemRemoved> for UnitsSold {
    async fn on(&mut self, e: shopping_cart::ItemRemoved, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        *self.open.entry(env.stream_id.clone()).or_default().entry(e.sku).or_default() -= i64::from(e.qty);
        Ok(())
    }
}

impl On<CheckedOut> for UnitsSold {
    async fn on(&mut self, _: CheckedOut, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        for (sku, units) in self.open.remove(&env.stream_id).unwrap_or_default() {
            *self.sold.entry(sku).or_default() += units;
        }
        Ok(())
    }
}

/// The story, the same on every store.
async fn story<S: EventStore + EventFeed>(store: S, cart_id: &str) -> Result<(), Box<dyn std::error::Error>> {
    let carts = Repository::<Cart, _>::new(store.clone());

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

    println!("\n== A read model fed from the event feed, in commit order");
    let units_sold = InMemoryProjection::new(UnitsSold::default());
    let reached = Subscription::new(store, units_sold.clone()).catch_up().await?;
    println!("units_sold (checkpoint {reached}): what every checked-out cart in this store bought");
    for (sku, units) in &units_sold.read().await.sold {
        println!("  {sku:<5} {units}");
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
