//! `cargo run -p fulfillment-service`: the fulfillment service, on its own store
//! (`DATABASE_URL=sqlite://FILE` or `postgres://...`; the in-memory store without it) and
//! the NATS server at `NATS_URL` (default `nats://127.0.0.1:4222`).

use std::process::ExitCode;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulfillment-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&nats_url).await.map_err(|e| format!("cannot reach NATS at {nats_url}: {e}"))?;
    eprintln!("fulfillment-service: consuming the shop's checkouts from {nats_url}");
    match std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty()) {
        None => fulfillment_service::run(annals_memory::MemoryStore::new(), client).await,
        Some(url) if url.starts_with("sqlite:") => {
            let store = annals_sqlite::SqliteStore::connect(&url).await?;
            store.migrate().await?;
            fulfillment_service::run(store, client).await
        }
        Some(url) => {
            let store = annals_postgres::PostgresStore::connect(&url).await?;
            store.migrate().await?;
            fulfillment_service::run(store, client).await
        }
    }
}
