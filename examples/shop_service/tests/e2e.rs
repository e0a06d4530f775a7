//! End to end over real HTTP: the service on an ephemeral port, one shopping scenario,
//! on the in-memory store, on a SQLite file and on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use shop_service::ServiceStore;

const CORRELATION: &str = "x-correlation-id";

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn body(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"))
}

async fn expect(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let value = body(response).await;
    assert_eq!(got, status, "unexpected status; body: {value}");
    value
}

/// Polls `url` (bounded: 5 s) until `ready` holds for its JSON body; returns the body.
async fn eventually(http: &Client, url: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..250 {
        let response = http.get(url).send().await.unwrap();
        if response.status() == StatusCode::OK {
            last = body(response).await;
            if ready(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never became ready; last body: {last}");
}

/// The whole scenario against a fresh store.
async fn scenario<S: ServiceStore>(store: S) {
    let service = shop_service::start(store, any_port()).await.unwrap();
    let base = service.url();
    let http = Client::new();
    let cart = format!("{base}/carts/c1");

    // Add items: 201, stream versions 1 and 2, the stored events in the response.
    let added = http
        .post(format!("{cart}/items"))
        .json(&json!({ "sku": "tea", "qty": 3, "unit_price_cents": 450 }))
        .send()
        .await
        .unwrap();
    assert!(added.headers().contains_key(CORRELATION), "every response carries a correlation id");
    let added = expect(added, StatusCode::CREATED).await;
    assert_eq!(added["version"], 1);
    assert_eq!(added["events"][0]["event_type"], "cart.item_added");
    assert_eq!(added["events"][0]["payload"], json!({ "sku": "tea", "qty": 3, "unit_price_cents": 450 }));
    let added = http
        .post(format!("{cart}/items"))
        .json(&json!({ "sku": "mug", "qty": 1, "unit_price_cents": 1200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(added, StatusCode::CREATED).await["version"], 2);

    // A command the cart refuses: 409 with the domain's message; nothing stored.
    let refused = http.delete(format!("{cart}/items/mug?qty=5")).send().await.unwrap();
    let refused = expect(refused, StatusCode::CONFLICT).await;
    assert_eq!(refused["error"], "cannot remove 5 of `mug`: the cart holds 1");

    // Remove one tea: version 3.
    let removed = http.delete(format!("{cart}/items/tea?qty=1")).send().await.unwrap();
    assert_eq!(expect(removed, StatusCode::OK).await["version"], 3);

    // Checkout with the client's correlation id, echoed back and stored on the event.
    let correlation = "0190f5a4-7d3c-7b1a-9c2e-5f6a7b8c9d0e";
    let checked_out = http.post(format!("{cart}/checkout")).header(CORRELATION, correlation).send().await.unwrap();
    assert_eq!(checked_out.headers()[CORRELATION], correlation);
    let checked_out = expect(checked_out, StatusCode::OK).await;
    assert_eq!(checked_out["version"], 4);
    assert_eq!(checked_out["correlation_id"], correlation);
    let checkout_event = &checked_out["events"][0];
    assert_eq!(checkout_event["event_type"], "cart.checked_out");
    assert_eq!(checkout_event["payload"]["total_cents"], 2 * 450 + 1200);
    assert_eq!(checkout_event["metadata"]["correlation_id"], correlation);
    let position = checked_out["position"].as_u64().unwrap();
    let checkpoint = checked_out["checkpoint"].clone();

    // The fulfillment workflow reacts to the checkout: the shipment is packed, the
    // process completes (its packing deadline cancelled), after two recorded reactions.
    let order = eventually(&http, &format!("{base}/orders/c1"), |o| o["completed"] == true).await;
    assert_eq!(order["step"], "packed");
    assert_eq!((order["reactions"].as_u64(), order["pending_deadlines"].as_u64()), (Some(2), Some(0)));

    // A checked-out cart refuses more: 409.
    let late =
        http.post(format!("{cart}/items")).json(&json!({ "sku": "tea", "qty": 1, "unit_price_cents": 450 })).send();
    assert_eq!(expect(late.await.unwrap(), StatusCode::CONFLICT).await["error"], "the cart is already checked out");

    // Read side, eventually consistent: a bounded wait with ?min_version ...
    let summary = http.get(format!("{cart}?min_version=4")).send().await.unwrap();
    let summary = expect(summary, StatusCode::OK).await;
    assert_eq!(summary["cart"]["version"], 4);
    assert_eq!(summary["cart"]["status"], "checked_out");
    assert_eq!(summary["cart"]["total_cents"], 2100);
    assert_eq!(summary["cart"]["item_count"], 3);
    assert_eq!(summary["cart"]["items"]["tea"], json!({ "qty": 2, "unit_price_cents": 450 }));
    // ... and a bounded poll by the client.
    let best = eventually(&http, &format!("{base}/products/best-sellers"), |b| b["checked_out_carts"] == 1).await;
    assert_eq!(best["products"], json!([{ "sku": "tea", "units_sold": 2 }, { "sku": "mug", "units_sold": 1 }]));
    assert!(best["position"].as_u64().unwrap() >= position);
    assert!(best["as_of"].as_str().unwrap().parse::<annals::store::Checkpoint>().is_ok());
    let waited = http.get(format!("{base}/products/best-sellers?min_position={position}&limit=1")).send();
    assert_eq!(
        expect(waited.await.unwrap(), StatusCode::OK).await["products"],
        json!([{ "sku": "tea", "units_sold": 2 }])
    );
    // Read-your-writes, exact on every store: the checkout's checkpoint.
    let after = checkpoint.as_str().expect("a command that stored events returns its checkpoint");
    let waited = http.get(format!("{base}/products/best-sellers?after={after}&limit=1")).send();
    let waited = expect(waited.await.unwrap(), StatusCode::OK).await;
    assert_eq!(waited["checked_out_carts"], 1);
    assert!(waited["as_of"].as_str().unwrap().parse::<annals::store::Checkpoint>().unwrap() >= after.parse().unwrap());

    // The audit trail: 4 events, versions 1..4, with positions, times and metadata.
    let history = expect(http.get(format!("{cart}/history")).send().await.unwrap(), StatusCode::OK).await;
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["cart.item_added", "cart.item_added", "cart.item_removed", "cart.checked_out"]);
    let versions: Vec<u64> = events.iter().map(|e| e["stream_version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(history["version"], 4);
    assert!(events.iter().all(|e| e["global_position"].as_u64().unwrap() > 0 && e["recorded_at"].is_string()));
    assert!(events.iter().all(|e| e["event_version"] == 1 && e["metadata"]["correlation_id"].is_string()));
    assert_eq!(events[3]["event_id"], checkout_event["event_id"]);

    // The independent consumer queued exactly one email for the checkout.
    let sent = eventually(&http, &format!("{base}/notifications"), |n| n["deliveries"] == 1).await;
    let notifications = sent["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{sent}");
    assert_eq!(notifications[0]["cart_id"], "c1");
    assert_eq!(notifications[0]["event_id"], checkout_event["event_id"]);
    assert_eq!(notifications[0]["correlation_id"], correlation);
    assert_eq!(notifications[0]["total_cents"], 2100);

    // Bad input: 4xx with a message, never a 500.
    let bad_requests = [
        http.post(format!("{cart}/items")).header("content-type", "application/json").body("{not json"),
        http.post(format!("{base}/carts/c2/items")).json(&json!({ "sku": "tea", "qty": 1 })),
        http.post(format!("{base}/carts/c2/items"))
            .json(&json!({ "sku": "tea", "qty": 1, "unit_price_cents": 1, "x": 1 })),
        http.post(format!("{base}/carts/c2/items")).json(&json!({ "sku": "tea", "qty": -1, "unit_price_cents": 1 })),
        http.post(format!("{base}/carts/c2/items")).body("sku=tea"),
        http.delete(format!("{base}/carts/c2/items/tea")),
        http.delete(format!("{base}/carts/c2/items/tea?qty=many")),
        http.post(format!("{base}/carts/c2/checkout")).header(CORRELATION, "not-a-uuid"),
        http.post(format!("{base}/carts/c2/items")).json(&json!({ "sku": "", "qty": 1, "unit_price_cents": 1 })),
    ];
    for request in bad_requests {
        let response = request.send().await.unwrap();
        let status = response.status();
        let error = body(response).await;
        assert!(status.is_client_error(), "{status}: {error}");
        assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()), "{status}: {error}");
    }
    // Zero quantity is the cart's rule: 422 with its message.
    let zero =
        http.post(format!("{base}/carts/c2/items")).json(&json!({ "sku": "tea", "qty": 0, "unit_price_cents": 1 }));
    assert_eq!(
        expect(zero.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await["error"],
        "quantity must be at least 1"
    );
    // Empty carts cannot check out, unknown carts have no history or summary.
    let empty = http.post(format!("{base}/carts/c2/checkout")).send().await.unwrap();
    assert_eq!(expect(empty, StatusCode::CONFLICT).await["error"], "cannot check out an empty cart");
    expect(http.get(format!("{base}/carts/c2/history")).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    expect(http.get(format!("{base}/carts/c2")).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    expect(http.get(format!("{base}/nowhere")).send().await.unwrap(), StatusCode::NOT_FOUND).await;

    // Nothing the bad requests did reached the consumer.
    let sent = expect(http.get(format!("{base}/notifications")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(sent["notifications"].as_array().unwrap().len(), 1);

    // The operator's view: annals' metrics in Prometheus' text format. (The recorder is the
    // process's, shared by the scenarios of this binary, so only what every run adds is
    // asserted.)
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    for line in [
        "annals_commands_total{aggregate=\"cart\",outcome=\"committed\"}",
        "annals_commands_total{aggregate=\"cart\",outcome=\"rejected\"}",
        "annals_events_appended_total{aggregate=\"cart\"}",
        "annals_consumer_events_total{consumer=",
    ] {
        assert!(text.contains(line), "`{line}` in:\n{text}");
    }

    // An order over the parcel limit: the warehouse refuses, the process records why.
    let big = format!("{base}/carts/big");
    let add = http.post(format!("{big}/items")).json(&json!({ "sku": "piano", "qty": 1, "unit_price_cents": 500_000 }));
    expect(add.send().await.unwrap(), StatusCode::CREATED).await;
    expect(http.post(format!("{big}/checkout")).send().await.unwrap(), StatusCode::OK).await;
    let refused = eventually(&http, &format!("{base}/orders/big"), |o| o["completed"] == true).await;
    assert_eq!(refused["step"], json!({ "failed": "an order worth 500000 cents is over the parcel limit of 100000" }));
    let unknown = http.get(format!("{base}/orders/nobody")).send().await.unwrap();
    expect(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn shopping_on_the_memory_store() {
    scenario(annals_memory::MemoryStore::new()).await;
}

/// A restarted service rebuilds its read models and the consumer's state from the events.
#[tokio::test]
async fn a_restarted_service_rebuilds_its_read_models() {
    let store = annals_memory::MemoryStore::new();
    let http = Client::new();
    {
        let first = shop_service::start(store.clone(), any_port()).await.unwrap();
        let add = http
            .post(format!("{}/carts/r1/items", first.url()))
            .json(&json!({ "sku": "tea", "qty": 2, "unit_price_cents": 450 }));
        expect(add.send().await.unwrap(), StatusCode::CREATED).await;
        expect(http.post(format!("{}/carts/r1/checkout", first.url())).send().await.unwrap(), StatusCode::OK).await;
    }
    let second = shop_service::start(store, any_port()).await.unwrap();
    let summary = http.get(format!("{}/carts/r1?min_version=2", second.url())).send().await.unwrap();
    assert_eq!(expect(summary, StatusCode::OK).await["cart"]["status"], "checked_out");
    let sent = eventually(&http, &format!("{}/notifications", second.url()), |n| n["deliveries"] == 1).await;
    assert_eq!(sent["notifications"][0]["cart_id"], "r1");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn shopping_on_sqlite() {
    let store = annals_sqlite::testing::fresh_store().await;
    scenario(store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn shopping_on_postgres() {
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    scenario(store).await;
}
