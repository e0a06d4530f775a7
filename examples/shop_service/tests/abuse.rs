//! HTTP abuse against the running service on the in-memory store: numbers the cart
//! cannot represent, numbers of the wrong kind, hostile ids and unknown fields. Every
//! request gets the exact status of the service's error mapping (422 for what the cart
//! or the body's shape can never accept, 409 for what the cart's state refuses, 400 for a
//! malformed request or id, 413 for a body too large), nothing is stored by a refused
//! command, and the cart is never bricked: it still loads, and a valid command still
//! succeeds afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// The service on the memory store, on a free port, and a client.
async fn service() -> (shop_service::Running, Client) {
    let store = annals_memory::MemoryStore::new();
    let running = shop_service::start(store, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    (running, Client::new())
}

/// Sends `request`; asserts its status; returns the JSON body.
#[track_caller]
fn expect(request: RequestBuilder, status: StatusCode) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let response = request.send().await.unwrap();
        let got = response.status();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{caller}: status {got}: the body is not JSON ({e}): {text:.300}"));
        assert_eq!(got, status, "{caller}: unexpected status; body: {text:.300}");
        if !status.is_success() {
            assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{caller}: an error message: {body}");
        }
        body
    }
}

/// A JSON body sent as it is written (numbers serde_json cannot build, duplicate keys).
fn raw(request: RequestBuilder, body: &str) -> RequestBuilder {
    request.header("content-type", "application/json").body(body.to_owned())
}

/// The cart's stored version (its history, read from the store), 0 if it has none.
async fn version(http: &Client, base: &str, cart: &str) -> u64 {
    let response = http.get(format!("{base}/carts/{cart}/history")).send().await.unwrap();
    if response.status() == StatusCode::NOT_FOUND {
        return 0;
    }
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["version"].as_u64().unwrap()
}

/// The cart loads and takes a valid command: one unit of `sku` at 1 cent.
async fn still_works(http: &Client, base: &str, cart: &str, sku: &str) -> u64 {
    let before = version(http, base, cart).await;
    let add =
        http.post(format!("{base}/carts/{cart}/items")).json(&json!({ "sku": sku, "qty": 1, "unit_price_cents": 1 }));
    let added = expect(add, StatusCode::CREATED).await;
    assert_eq!(added["version"], before + 1, "the cart {cart} takes a valid command after the abuse");
    before + 1
}

#[tokio::test]
async fn quantities_that_overflow_are_refused_and_the_cart_is_never_bricked() {
    let (running, http) = service().await;
    let base = running.url();
    let items = format!("{base}/carts/qty/items");

    // The most units of one product the cart counts: accepted.
    let most = http.post(&items).json(&json!({ "sku": "tea", "qty": u32::MAX, "unit_price_cents": 1 }));
    assert_eq!(expect(most, StatusCode::CREATED).await["version"], 1);
    // One more, in a second step: refused by the cart, nothing stored.
    let more = http.post(&items).json(&json!({ "sku": "tea", "qty": 1, "unit_price_cents": 1 }));
    let refused = expect(more, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        refused["error"],
        "cannot add 1 of `tea`: the cart holds 4294967295, and it holds at most 4294967295 of a product"
    );
    let again = http.post(&items).json(&json!({ "sku": "tea", "qty": u32::MAX, "unit_price_cents": 1 }));
    expect(again, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(version(&http, &base, "qty").await, 1, "refused commands store nothing");
    // More than a u32 in one step: the body's shape refuses it.
    let huge = http.post(&items).json(&json!({ "sku": "tea", "qty": 4_294_967_296u64, "unit_price_cents": 1 }));
    expect(huge, StatusCode::UNPROCESSABLE_ENTITY).await;
    let removal = http.delete(format!("{items}/tea?qty=4294967296"));
    expect(removal, StatusCode::BAD_REQUEST).await;

    // The cart loads, takes other products, gives units back, and checks out for the right total.
    assert_eq!(still_works(&http, &base, "qty", "mug").await, 2);
    let removed = expect(http.delete(format!("{items}/tea?qty=1")), StatusCode::OK).await;
    assert_eq!(removed["version"], 3);
    let added = http.post(&items).json(&json!({ "sku": "tea", "qty": 1, "unit_price_cents": 1 }));
    assert_eq!(expect(added, StatusCode::CREATED).await["version"], 4);
    let checked_out = expect(http.post(format!("{base}/carts/qty/checkout")), StatusCode::OK).await;
    assert_eq!(checked_out["events"][0]["payload"]["total_cents"], u64::from(u32::MAX) + 1);
    // The read model followed, without overflowing either.
    let summary = expect(http.get(format!("{base}/carts/qty?min_version=5")), StatusCode::OK).await;
    assert_eq!(summary["cart"]["total_cents"], u64::from(u32::MAX) + 1);
    assert_eq!(summary["cart"]["items"]["tea"]["qty"], u32::MAX);
}

#[tokio::test]
async fn totals_beyond_u64_cents_are_refused_never_wrapped() {
    let (running, http) = service().await;
    let base = running.url();
    let items = format!("{base}/carts/cents/items");
    let half = 1u64 << 63;

    // One unit at u64::MAX cents is representable ...
    let priciest = http.post(&items).json(&json!({ "sku": "gold", "qty": 1, "unit_price_cents": u64::MAX }));
    expect(priciest, StatusCode::CREATED).await;
    // ... two are not, nor is anything more on top.
    let two = http.post(&items).json(&json!({ "sku": "gold", "qty": 1, "unit_price_cents": u64::MAX }));
    let refused = expect(two, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(refused["error"], "the cart's total would exceed 18446744073709551615 cents");
    let penny = http.post(&items).json(&json!({ "sku": "penny", "qty": 1, "unit_price_cents": 1 }));
    expect(penny, StatusCode::UNPROCESSABLE_ENTITY).await;
    // A price beyond u64 does not even parse.
    let beyond = raw(http.post(&items), r#"{"sku": "gold", "qty": 1, "unit_price_cents": 18446744073709551616}"#);
    expect(beyond, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(version(&http, &base, "cents").await, 1);
    // Checkout charges exactly u64::MAX.
    let checked_out = expect(http.post(format!("{base}/carts/cents/checkout")), StatusCode::OK).await;
    assert_eq!(checked_out["events"][0]["payload"]["total_cents"], u64::MAX);

    // Two lines of 2^63 cents would wrap to a total of 0: the second is refused.
    let lines = format!("{base}/carts/halves/items");
    expect(http.post(&lines).json(&json!({ "sku": "a", "qty": 1, "unit_price_cents": half })), StatusCode::CREATED)
        .await;
    let second = http.post(&lines).json(&json!({ "sku": "b", "qty": 1, "unit_price_cents": half }));
    expect(second, StatusCode::UNPROCESSABLE_ENTITY).await;
    // u32::MAX units at u64::MAX cents in one request.
    let both = http.post(&lines).json(&json!({ "sku": "c", "qty": u32::MAX, "unit_price_cents": u64::MAX }));
    expect(both, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Still a working cart: it takes a valid command and checks out for 2^63 + 1.
    assert_eq!(still_works(&http, &base, "halves", "d").await, 2);
    let checked_out = expect(http.post(format!("{base}/carts/halves/checkout")), StatusCode::OK).await;
    assert_eq!(checked_out["events"][0]["payload"]["total_cents"], half + 1);
    let summary = expect(http.get(format!("{base}/carts/halves?min_version=3")), StatusCode::OK).await;
    assert_eq!(summary["cart"]["total_cents"], half + 1);
}

#[tokio::test]
async fn numbers_of_the_wrong_kind_are_refused_by_the_bodys_shape() {
    let (running, http) = service().await;
    let base = running.url();
    let items = format!("{base}/carts/kinds/items");
    let bodies = [
        r#"{"sku": "tea", "qty": -1, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1, "unit_price_cents": -1}"#,
        r#"{"sku": "tea", "qty": 1.5, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1.0, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1e3, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1, "unit_price_cents": 4.5}"#,
        r#"{"sku": "tea", "qty": "1", "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1, "unit_price_cents": "450"}"#,
        r#"{"sku": "tea", "qty": null, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": true, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": [1], "unit_price_cents": 1}"#,
        r#"{"sku": 7, "qty": 1, "unit_price_cents": 1}"#,
        r#"{"sku": "tea", "qty": 1}"#,
        r#"{"sku": "tea", "qty": 1, "unit_price_cents": 1, "discount": 100}"#,
        r#"{"sku": "tea", "qty": 1, "unit_price_cents": 1, "qty": 2}"#,
        r#"[]"#,
        r#"null"#,
    ];
    for body in bodies {
        let refused = expect(raw(http.post(&items), body), StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(refused["error"].as_str().unwrap().contains("deserialize"), "{body}: {refused}");
    }
    // Zero is the cart's rule, with its own message.
    let zero = http.post(&items).json(&json!({ "sku": "tea", "qty": 0, "unit_price_cents": 1 }));
    assert_eq!(expect(zero, StatusCode::UNPROCESSABLE_ENTITY).await["error"], "quantity must be at least 1");
    // Nested 1,000 deep where a string belongs: refused at the first level, by its shape.
    let deep = format!(r#"{{"sku": {}1{}, "qty": 1, "unit_price_cents": 1}}"#, "[".repeat(1000), "]".repeat(1000));
    expect(raw(http.post(&items), &deep), StatusCode::UNPROCESSABLE_ENTITY).await;
    // Not JSON: malformed, 400.
    for body in [r#"{"sku": "tea", "qty": 1, "#, "qty=1", r#"{"sku": "tea", "qty": NaN, "unit_price_cents": 1}"#] {
        expect(raw(http.post(&items), body), StatusCode::BAD_REQUEST).await;
    }
    // Without a JSON content type: 415.
    expect(
        http.post(&items).body(r#"{"sku": "tea", "qty": 1, "unit_price_cents": 1}"#),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    // A body beyond axum's 2 MB limit: 413.
    let big = format!(r#"{{"sku": "{}", "qty": 1, "unit_price_cents": 1}}"#, "x".repeat(3 << 20));
    expect(raw(http.post(&items), &big), StatusCode::PAYLOAD_TOO_LARGE).await;
    // Quantities to remove that are not a u32: 400.
    for qty in ["-1", "1.5", "one", "", "4294967296", "1&qty=2", "1&extra=1"] {
        expect(http.delete(format!("{items}/tea?qty={qty}")), StatusCode::BAD_REQUEST).await;
    }
    // Nothing was stored; the cart takes a valid command.
    assert_eq!(version(&http, &base, "kinds").await, 0);
    assert_eq!(still_works(&http, &base, "kinds", "tea").await, 1);
    let removal = expect(http.delete(format!("{items}/tea?qty=1")), StatusCode::OK).await;
    assert_eq!(removal["version"], 2);
}

#[tokio::test]
async fn hostile_ids_and_skus_are_refused_before_the_store_sees_them() {
    let (running, http) = service().await;
    let base = running.url();
    let long = "a".repeat(10 * 1024);
    let add = |cart: &str| format!("{base}/carts/{cart}/items");
    let tea = json!({ "sku": "tea", "qty": 1, "unit_price_cents": 1 });

    // Cart ids in the path: 10 KB, NUL, unicode, quotes, SQL, spaces, a 65th character.
    let carts = [
        long.clone(),
        "c%00".to_owned(),
        "%00".to_owned(),
        "%C3%BC".to_owned(),
        "cart%F0%9F%9B%92".to_owned(),
        "x'%3B%20DROP%20TABLE%20events%3B--".to_owned(),
        "a%20b".to_owned(),
        "%E2%80%AE".to_owned(),
        "b".repeat(65),
    ];
    for cart in &carts {
        expect(http.post(add(cart)).json(&tea), StatusCode::BAD_REQUEST).await;
        expect(http.post(format!("{base}/carts/{cart}/checkout")), StatusCode::BAD_REQUEST).await;
        expect(http.delete(format!("{base}/carts/{cart}/items/tea?qty=1")), StatusCode::BAD_REQUEST).await;
        expect(http.get(format!("{base}/carts/{cart}/history")), StatusCode::BAD_REQUEST).await;
        expect(http.get(format!("{base}/carts/{cart}")), StatusCode::BAD_REQUEST).await;
    }
    // An invalid percent-encoding (not UTF-8) in the path: 400 as well.
    expect(http.post(add("%FF")).json(&tea), StatusCode::BAD_REQUEST).await;

    // Skus in the body and in the path.
    let c65 = "c".repeat(65);
    let skus = [long.as_str(), "tea\0", "\0", "ü", "🛒", "tea\u{202e}", "", " ", "tea; --", c65.as_str()];
    for sku in skus {
        let body = json!({ "sku": sku, "qty": 1, "unit_price_cents": 1 });
        expect(http.post(add("ok")).json(&body), StatusCode::BAD_REQUEST).await;
    }
    for sku in [long.as_str(), "tea%00", "%C3%BC", "%F0%9F%9B%92", "a%20b"] {
        expect(http.delete(format!("{}/{sku}?qty=1", add("ok"))), StatusCode::BAD_REQUEST).await;
    }
    // An unknown cart has no history and no summary; an unknown route is 404 too.
    expect(http.get(format!("{base}/carts/ok/history")), StatusCode::NOT_FOUND).await;
    expect(http.get(format!("{base}/carts/ok")), StatusCode::NOT_FOUND).await;
    expect(http.get(format!("{base}/carts/ok/items/tea/more")), StatusCode::NOT_FOUND).await;
    // Unknown query parameters: 400.
    expect(http.get(format!("{base}/carts/ok?min_version=1&sneaky=1")), StatusCode::BAD_REQUEST).await;

    // The longest valid ids work, and nothing else was stored.
    let cart = "k".repeat(64);
    let sku = "s".repeat(64);
    let body = json!({ "sku": sku, "qty": 1, "unit_price_cents": 1 });
    assert_eq!(expect(http.post(add(&cart)).json(&body), StatusCode::CREATED).await["version"], 1);
    assert_eq!(still_works(&http, &base, &cart, "tea").await, 2);
    assert_eq!(still_works(&http, &base, "ok", "tea").await, 1);
    let best = expect(http.get(format!("{base}/products/best-sellers")), StatusCode::OK).await;
    assert_eq!(best["checked_out_carts"], 0);
}
