//! v1 → v2 with a raw upcaster on the v2 type, v2 → v3 with `previous` on the v3 type.

use annals::{BoxError, Event};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn rename_quantity(mut v1: Value) -> Result<Value, BoxError> {
    let qty = v1.as_object_mut().and_then(|o| o.remove("quantity")).ok_or("v1 payload has no `quantity`")?;
    v1["qty"] = qty;
    Ok(v1)
}

mod v2 {
    use serde::{Deserialize, Serialize};

    #[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added", version = 2, upcast(from = 1, with = super::rename_quantity))]
    pub struct ItemAdded {
        pub sku: String,
        pub qty: u32,
    }
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 3, previous = v2::ItemAdded)]
pub struct ItemAdded {
    pub sku: String,
    pub qty: u32,
    pub unit_price_cents: u64,
}

impl From<v2::ItemAdded> for ItemAdded {
    fn from(v2: v2::ItemAdded) -> Self {
        ItemAdded { sku: v2.sku, qty: v2.qty, unit_price_cents: 0 }
    }
}

fn main() {
    let expected = ItemAdded { sku: "tea".into(), qty: 2, unit_price_cents: 0 };
    assert_eq!(ItemAdded::decode_version(1, &json!({"sku": "tea", "quantity": 2})).unwrap(), expected);
    assert_eq!(ItemAdded::decode_version(2, &json!({"sku": "tea", "qty": 2})).unwrap(), expected);
    assert_eq!(
        ItemAdded::decode_version(3, &json!({"sku": "tea", "qty": 2, "unit_price_cents": 0})).unwrap(),
        expected
    );
}
