//! `aliases(...)`: events stored under older names decode as this event, in an aggregate's
//! event enum as in a projection.

use annals::{Aggregate, Apply, Envelope, Event, EventSet, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", aliases("ItemAdded", "cart.added"))]
pub struct ItemAdded {
    pub sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
pub struct CheckedOut;

#[derive(Aggregate, Default)]
#[aggregate(name = "cart", events(ItemAdded, CheckedOut))]
pub struct Cart;

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, _: ItemAdded) {}
}

impl Apply<CheckedOut> for Cart {
    fn apply(&mut self, _: CheckedOut) {}
}

fn envelope(event_type: &str) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::now_v7(),
        stream_id: "cart-1".into(),
        stream_version: 1,
        global_position: 1,
        recorded_at: serde_json::from_value(json!("2024-05-01T10:00:00Z")).unwrap(),
        event_type: event_type.into(),
        event_version: 1,
        payload: json!({"sku": "tea"}).into(),
        metadata: Metadata::default(),
    }
}

fn main() {
    assert_eq!(ItemAdded::ALIASES, ["ItemAdded", "cart.added"]);
    assert_eq!(CheckedOut::ALIASES, [""; 0]);
    assert_eq!(CartEvent::NAMES, ["cart.item_added", "ItemAdded", "cart.added", "cart.checked_out"]);
    let expected = CartEvent::ItemAdded(ItemAdded { sku: "tea".into() });
    for name in ["cart.item_added", "ItemAdded", "cart.added"] {
        assert_eq!(CartEvent::decode(&envelope(name)).unwrap(), expected);
    }
    // New events are written under the name, never an alias.
    assert_eq!(expected.event_type(), "cart.item_added");
    assert!(CartEvent::decode(&envelope("cart.item_removed")).is_err());
}
