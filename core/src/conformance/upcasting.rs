//! The upcasting suite: a cart whose history was written by older code (versions 1 and 2
//! of `cart.item_added`, under old names) loads through today's `ItemAdded` (version 3),
//! so the store keeps each event's stored name, version and payload as written. Run it
//! with [`upcasting_conformance_tests!`](crate::upcasting_conformance_tests).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aggregate::Apply;
use crate::envelope::NewEvent;
use crate::event::DecodeError;
use crate::projection::BoxError;
use crate::repository::{LoadError, Repository};
use crate::store::{EventStore, ExpectedVersion};

/// Version 1 called the quantity `quantity`.
fn rename_quantity(mut v1: Value) -> Result<Value, BoxError> {
    let object = v1.as_object_mut().ok_or("a v1 `cart.item_added` payload is a JSON object")?;
    let qty = object.remove("quantity").ok_or("the v1 payload has no `quantity`")?;
    let _ = object.insert("qty".into(), qty);
    Ok(v1)
}

/// Version 2 of `cart.item_added`: no price yet.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 2, upcast(from = 1, with = rename_quantity))]
struct ItemAddedV2 {
    sku: String,
    qty: u32,
}

/// Today's `cart.item_added` (version 3), once stored as `ItemAdded` and `cart.added`.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 3, previous = ItemAddedV2, aliases("ItemAdded", "cart.added"))]
struct ItemAdded {
    sku: String,
    qty: u32,
    /// The unit price; 0 for items added before prices were recorded.
    unit_price_cents: u64,
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v2: ItemAddedV2) -> Self {
        ItemAdded { sku: v2.sku, qty: v2.qty, unit_price_cents: 0 }
    }
}

/// The cart was checked out.
#[derive(crate::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
struct CheckedOut;

/// A cart: quantity and unit price per product.
#[derive(crate::Aggregate, Default, Debug, PartialEq)]
#[aggregate(name = "cart", events(ItemAdded, CheckedOut))]
struct Cart {
    /// sku → (quantity, unit price in cents).
    items: BTreeMap<String, (u32, u64)>,
    checked_out: bool,
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

/// Stored events as older code wrote them: `(event_type, event_version, payload)`.
fn stored(events: &[(&str, u32, Value)]) -> Vec<NewEvent> {
    events.iter().map(|(name, version, payload)| NewEvent::new(*name, *version, payload.clone())).collect()
}

/// Appends `history` as stored to the stream of cart `id`, then loads that cart.
async fn load<S: EventStore>(store: S, id: &str, history: Vec<NewEvent>) -> Result<(Cart, u64), LoadError> {
    store.append(&format!("cart-{id}"), ExpectedVersion::Exact(0), history).await.unwrap();
    let carts = Repository::<Cart, S>::new(store);
    carts.load(id).await.map(|loaded| (loaded.state, loaded.version))
}

/// Versions 1 and 2, stored under the name and the aliases, load as version 3.
pub async fn old_versions_and_names_upcast<S: EventStore>(store: S) {
    let history = stored(&[
        ("ItemAdded", 1, json!({ "sku": "tea", "quantity": 2 })),
        ("cart.item_added", 2, json!({ "sku": "cups", "qty": 6 })),
        ("cart.added", 2, json!({ "sku": "tea", "qty": 1 })),
        ("cart.item_added", 3, json!({ "sku": "pot", "qty": 1, "unit_price_cents": 2500 })),
        ("cart.checked_out", 1, Value::Null),
    ]);
    let (cart, version) = load(store, "1", history).await.unwrap();
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
    let history = stored(&[
        ("cart.item_added", 3, json!({ "sku": "tea", "qty": 1, "unit_price_cents": 450 })),
        ("cart.item_added", 4, json!({ "sku": "tea", "qty": 1, "unit_price": { "cents": 450, "currency": "EUR" } })),
    ]);
    let error = load(store, "2", history).await.unwrap_err();
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
    let history = stored(&[
        ("cart.item_added", 1, json!({ "sku": "tea", "quantity": 2 })),
        ("ItemAdded", 1, json!({ "sku": "cups", "count": 6 })),
    ]);
    let error = load(store, "3", history).await.unwrap_err();
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

/// A stored name the aggregate does not know is `UnknownEventType`, naming the event.
pub async fn an_unknown_event_type_names_the_event<S: EventStore>(store: S) {
    let history = stored(&[
        ("cart.item_added", 3, json!({ "sku": "tea", "qty": 1, "unit_price_cents": 450 })),
        ("cart.gift_wrapped", 1, json!({ "paper": "gold" })),
    ]);
    let error = load(store, "4", history).await.unwrap_err();
    let LoadError::Decode(error) = error else { panic!("expected a decode error, got {error:?}") };
    assert!(
        matches!(
            &error,
            DecodeError::UnknownEventType { stream, version: 2, event_type, .. }
                if stream == "cart-4" && event_type == "cart.gift_wrapped"
        ),
        "{error:?}"
    );
}
