//! `cargo run -p shop-service`: the shop service on `127.0.0.1:$PORT` (default 3000), on
//! the in-memory store, on a SQLite file with `DATABASE_URL=sqlite://FILE` (feature
//! `sqlite`), or on PostgreSQL with `DATABASE_URL=postgres://...` (feature `postgres`).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use shop_service::ServiceStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    // annals' warnings (a retrying subscription, a held-back feed, a parked event) on
    // stderr, and a line per span with its trace: one trace per request.
    let provider = shop_service::traces::provider(shop_service::traces::SpanLog::new(std::io::stderr()));
    shop_service::traces::install(&provider);
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse::<u16>().map_err(|e| format!("PORT=`{port}` is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty()) {
        None => serve(annals_memory::MemoryStore::new(), addr, "the in-memory store").await,
        Some(url) if url.starts_with("sqlite:") => serve(sqlite(&url).await?, addr, "SQLite (DATABASE_URL)").await,
        Some(url) => serve(postgres(&url).await?, addr, "PostgreSQL (DATABASE_URL)").await,
    }
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<annals_sqlite::SqliteStore, BoxError> {
    let store = annals_sqlite::SqliteStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str) -> Result<annals_memory::MemoryStore, BoxError> {
    Err("DATABASE_URL names a SQLite file, but this build has no SQLite support: \
         run `cargo run -p shop-service --features sqlite`, or unset DATABASE_URL for the in-memory store"
        .into())
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<annals_postgres::PostgresStore, BoxError> {
    let store = annals_postgres::PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<annals_memory::MemoryStore, BoxError> {
    Err("DATABASE_URL names a PostgreSQL server, but this build has no PostgreSQL support: \
         run `cargo run -p shop-service --features postgres`, or unset DATABASE_URL for the in-memory store"
        .into())
}

async fn serve<S: ServiceStore>(store: S, addr: SocketAddr, store_name: &str) -> Result<(), BoxError> {
    // With NATS_URL: events to JetStream, shipments back from the fulfillment service.
    let nats = match std::env::var("NATS_URL").ok().filter(|url| !url.trim().is_empty()) {
        Some(url) => Some(async_nats::connect(&url).await.map_err(|e| format!("cannot reach NATS at {url}: {e}"))?),
        None => None,
    };
    let between = if nats.is_some() { ", relaying to NATS" } else { "" };
    let running = shop_service::start_with_shutdown(store, addr, nats, shutdown_signal()).await?;
    println!("shop-service: listening on {} with {store_name}{between}; Ctrl-C or SIGTERM stops it", running.url());
    running.wait().await?;
    println!("shop-service: stopped");
    Ok(())
}

/// Completes on Ctrl-C or, on Unix, SIGTERM (what container runtimes send). A signal
/// that cannot be watched never completes: the server then runs until killed.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
