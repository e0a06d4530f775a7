//! `previous = T`: the previous version is its own type, converted with `From`.

use annals::{Event, UpcastError};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAddedV1 {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 2, previous = ItemAddedV1)]
pub struct ItemAdded {
    pub sku: String,
    pub qty: u32,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(v1: ItemAddedV1) -> Self {
        ItemAdded { sku: v1.sku, qty: 1 }
    }
}

fn main() {
    let v1 = ItemAdded::decode_version(1, &json!({"sku": "tea"})).unwrap();
    assert_eq!(v1, ItemAdded { sku: "tea".into(), qty: 1 });
    let v2 = ItemAdded::decode_version(2, &json!({"sku": "tea", "qty": 3})).unwrap();
    assert_eq!(v2, ItemAdded { sku: "tea".into(), qty: 3 });
    assert!(matches!(ItemAdded::decode_version(3, &json!({})), Err(UpcastError::NoUpcaster { from: 3 })));
    assert!(matches!(ItemAdded::decode_version(1, &json!({"id": 1})), Err(UpcastError::Payload(_))));
}
