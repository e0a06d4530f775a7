//! Two services through NATS JetStream, end to end: the shop (in this process, on a
//! SQLite file) and the fulfillment service (its binary, a child process with a SQLite
//! file of its own), and a throwaway `nats-server -js`. A checkout in the shop becomes a
//! shipment in the fulfillment service, which the shop shows; each service is killed and
//! restarted once on the way, and every order gets exactly one shipment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals::store::Inspect;
use annals_nats::testing::Server;
use annals_sqlite::testing::TempDir;
use annals_sqlite::SqliteStore;
use serde_json::{json, Value};

fn fulfillment(database: &Path, nats: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fulfillment-service"))
        .env("DATABASE_URL", format!("sqlite://{}", database.display()))
        .env("NATS_URL", nats)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn shop(database: &Path, nats: &Server) -> shop_service::Running {
    let store = SqliteStore::connect(&format!("sqlite://{}", database.display())).await.unwrap();
    store.migrate().await.unwrap();
    let client = nats.connect().await.unwrap();
    shop_service::start_with_shutdown(
        store,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(client),
        std::future::pending(),
    )
    .await
    .unwrap()
}

async fn checkout(http: &reqwest::Client, shop: &shop_service::Running, order: &str) {
    let item = json!({ "sku": "tea", "qty": 2, "unit_price_cents": 450 });
    let added = http.post(format!("{}/carts/{order}/items", shop.url())).json(&item).send().await.unwrap();
    assert_eq!(added.status(), 201);
    let done = http.post(format!("{}/carts/{order}/checkout", shop.url())).send().await.unwrap();
    assert_eq!(done.status(), 200);
}

/// Waits (bounded: 60 s) until the shop shows `order`'s shipment.
async fn shipment(http: &reqwest::Client, shop: &shop_service::Running, order: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http.get(format!("{}/orders/{order}/shipment", shop.url())).send().await.unwrap();
        if response.status() == 200 {
            return response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no shipment for `{order}` in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_becomes_one_shipment_across_services_through_kills_and_restarts() {
    let nats = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let (shop_db, fulfillment_db) = (dir.path().join("shop.db"), dir.path().join("fulfillment.db"));
    let http = reqwest::Client::new();
    let mut other = fulfillment(&fulfillment_db, nats.url());
    let running = shop(&shop_db, &nats).await;

    checkout(&http, &running, "o1").await;
    let first = shipment(&http, &running, "o1").await;
    assert_eq!((first["status"].as_str(), first["total_cents"].as_u64()), (Some("scheduled"), Some(900)));

    // The fulfillment service dies (SIGKILL); a checkout while it is down is served when
    // it is back.
    other.kill().unwrap();
    other.wait().unwrap();
    checkout(&http, &running, "o2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let missing = http.get(format!("{}/orders/o2/shipment", running.url())).send().await.unwrap();
    assert_eq!(missing.status(), 404, "no shipment while the fulfillment service is down");
    let mut other = fulfillment(&fulfillment_db, nats.url());
    shipment(&http, &running, "o2").await;

    // The shop restarts on its file: its in-memory view of shipments is rebuilt from
    // JetStream, each once.
    drop(running);
    let running = shop(&shop_db, &nats).await;
    for order in ["o1", "o2"] {
        assert_eq!(shipment(&http, &running, order).await["deliveries"], 1, "{order} once");
    }
    checkout(&http, &running, "o3").await;
    assert_eq!(shipment(&http, &running, "o3").await["deliveries"], 1);
    other.kill().unwrap();
    other.wait().unwrap();

    // In the fulfillment service's own store: one shipment stream per order, one event each.
    let store = SqliteStore::connect(&format!("sqlite://{}", fulfillment_db.display())).await.unwrap();
    let streams: Vec<(String, u64)> =
        store.streams(Some("shipment"), 100).await.unwrap().into_iter().map(|s| (s.stream_id, s.version)).collect();
    assert_eq!(streams, [("shipment-o1".to_owned(), 1), ("shipment-o2".to_owned(), 1), ("shipment-o3".to_owned(), 1)]);
}
