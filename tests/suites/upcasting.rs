//! The upcasting scenarios, generic over the store: a cart whose history was written by
//! older code (versions 1 and 2 of `cart.item_added`, under old names) loads through
//! today's `ItemAdded` (version 3).
//!
//! Old payloads come from the JSON fixtures in `fixtures/upcasting/`, appended as they
//! were stored. `upcasting.rs` runs the scenarios on the in-memory store; a store adapter
//! runs them by including this file (`#[path = "suites/upcasting.rs"] mod upcasting;`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test helpers: a failure is a failed test")]

use std::collections::BTreeMap;
use std::path::Path;

use annals::{
    Aggregate, Apply, BoxError, DecodeError, Event, EventStore, ExpectedVersion, LoadError, NewEvent, Repository,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version 1 called the quantity `quantity`.
pub fn rename_quantity(mut v1: Value) -> Result<Value, BoxError> {
    let object = v1.as_object_mut().ok_or("a v1 `cart.item_added` payload is a JSON object")?;
    let qty = object.remove("quantity").ok_or("the v1 payload has no `quantity`")?;
    let _ = object.insert("qty".into(), qty);
    Ok(v1)
}

/// Version 2 of `cart.item_added`: no price yet.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 2, upcast(from = 1, with = rename_quantity))]
pub struct ItemAddedV2 {
    /// The product.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// Today's `cart.item_added` (version 3), once stored as `ItemAdded` and `cart.added`.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 3, previous = ItemAddedV2, aliases("ItemAdded", "cart.added"))]
pub struct ItemAdded {
    /// The product.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// The unit price; 0 for items added before prices were recorded.
    pub unit_price_cents: u64,
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v2: ItemAddedV2) -> Self {
        ItemAdded { sku: v2.sku, qty: v2.qty, unit_price_cents: 0 }
    }
}

/// The cart was checked out.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
pub struct CheckedOut;

/// A cart: quantity and unit price per product.
#[derive(Aggregate, Default, Debug, PartialEq)]
#[aggregate(name = "cart", events(ItemAdded, CheckedOut))]
pub struct Cart {
    /// sku → (quantity, unit price in cents).
    pub items: BTreeMap<String, (u32, u64)>,
    /// Whether it was checked out.
    pub checked_out: bool,
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: ItemAdded) {
        let item = self.items.entry(e.sku).or_default();
        item.0 += e.qty;
        item.1 = item.1.max(e.unit_price_cents);
    }
}

impl Apply<CheckedOut> for Cart {
    fn apply(&mut self, _: CheckedOut) {
        self.checked_out = true;
    }
}

/// A stored event as the fixtures hold it.
#[derive(Deserialize)]
struct StoredEvent {
    event_type: String,
    event_version: u32,
    payload: Value,
}

/// The events of `fixtures/upcasting/<name>`, ready to append as they were stored.
pub fn fixture(name: &str) -> Vec<NewEvent> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upcasting").join(name);
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let events: Vec<StoredEvent> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{} is not a list of events: {e}", path.display()));
    events.into_iter().map(|e| NewEvent::new(e.event_type, e.event_version, e.payload)).collect()
}

/// Appends the fixture `name` to the stream of cart `id`, then loads that cart.
async fn load_from_fixture<S: EventStore>(store: S, id: &str, name: &str) -> Result<(Cart, u64), LoadError> {
    let _ = store.append(&format!("cart-{id}"), ExpectedVersion::NoStream, fixture(name)).await.unwrap();
    let carts = Repository::<Cart, S>::new(store);
    carts.load(id).await.map(|loaded| (loaded.state, loaded.version))
}

/// Versions 1 and 2, stored under the name and the aliases, load as version 3.
pub async fn old_versions_and_names_upcast<S: EventStore>(store: S) {
    let (cart, version) = load_from_fixture(store, "1", "cart-history.json").await.unwrap();
    assert_eq!(version, 5);
    let expected = BTreeMap::from([
        ("cups".to_owned(), (6, 0)),
        ("pot".to_owned(), (1, 2500)),
        // v1 under the alias `ItemAdded` (2), then v2 under the alias `cart.added` (1).
        ("tea".to_owned(), (3, 0)),
    ]);
    assert_eq!(cart.items, expected);
    assert!(cart.checked_out);
}

/// A version newer than the code knows is `VersionTooNew`, naming the stored event.
pub async fn a_newer_version_is_rejected<S: EventStore>(store: S) {
    let error = load_from_fixture(store, "2", "newer-version.json").await.unwrap_err();
    let LoadError::Decode(error) = error else { panic!("expected a decode error, got {error:?}") };
    assert!(
        matches!(
            &error,
            DecodeError::VersionTooNew { stream, version: 2, event_type, stored_version: 4, known_version: 3 }
                if stream == "cart-2" && event_type == "cart.item_added"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stream `cart-2` version 2: `cart.item_added` is stored as v4, but this code knows only up to v3; \
         deploy the newer code that wrote it"
    );
}

/// A raw upcaster that fails is `DecodeError::Upcast`, naming stream, version and type.
pub async fn a_failing_upcaster_names_the_event<S: EventStore>(store: S) {
    let error = load_from_fixture(store, "3", "broken-v1.json").await.unwrap_err();
    let LoadError::Decode(error) = error else { panic!("expected a decode error, got {error:?}") };
    assert!(
        matches!(
            &error,
            DecodeError::Upcast { stream, version: 2, event_type, from: 1, .. }
                if stream == "cart-3" && event_type == "ItemAdded"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stream `cart-3` version 2: upcasting `ItemAdded` from v1 to v2 failed: the v1 payload has no `quantity`; \
         fix the upcaster so it accepts this payload"
    );
}
