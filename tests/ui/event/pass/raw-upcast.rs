//! `upcast(from = k, with = f)`: JSON functions, one per older version, applied in turn.

use annals::{BoxError, Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// v1 called the quantity `quantity`.
fn rename_quantity(mut v1: Value) -> Result<Value, BoxError> {
    let qty = v1.as_object_mut().and_then(|o| o.remove("quantity")).ok_or("v1 payload has no `quantity`")?;
    v1["qty"] = qty;
    Ok(v1)
}

/// v2 kept the price as `"12.50"`; v3 keeps cents.
fn price_to_cents(mut v2: Value) -> Result<Value, BoxError> {
    let price: f64 = v2["price"].as_str().ok_or("v2 payload has no `price`")?.parse()?;
    v2["unit_price_cents"] = json!((price * 100.0).round() as u64);
    Ok(v2)
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(
    name = "cart.item_added",
    version = 3,
    upcast(from = 2, with = price_to_cents),
    upcast(from = 1, with = self::rename_quantity)
)]
pub struct ItemAdded {
    pub sku: String,
    pub qty: u32,
    pub unit_price_cents: u64,
}

fn main() {
    let expected = ItemAdded { sku: "tea".into(), qty: 2, unit_price_cents: 1250 };
    assert_eq!(ItemAdded::decode_version(1, &json!({"sku": "tea", "quantity": 2, "price": "12.50"})).unwrap(), expected);
    assert_eq!(ItemAdded::decode_version(2, &json!({"sku": "tea", "qty": 2, "price": "12.50"})).unwrap(), expected);
    assert_eq!(ItemAdded::decode_version(3, &json!({"sku": "tea", "qty": 2, "unit_price_cents": 1250})).unwrap(), expected);

    let error = ItemAdded::decode_version(1, &json!({"sku": "tea", "price": "1"})).unwrap_err();
    assert!(matches!(error, UpcastError::Failed { from: 1, .. }), "{error:?}");
    assert_eq!(error.to_string(), "upcaster from v1 to v2 failed: v1 payload has no `quantity`");
    assert!(matches!(ItemAdded::decode_version(0, &json!({})), Err(UpcastError::NoUpcaster { from: 0 })));
    assert!(matches!(ItemAdded::decode_version(4, &json!({})), Err(UpcastError::NoUpcaster { from: 4 })));
}
