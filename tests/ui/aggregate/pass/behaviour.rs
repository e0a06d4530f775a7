//! What the generated code does at run time: names and versions, payloads, decoding an
//! envelope back into the event enum (and its errors), apply and handle dispatch.

use annals::{Aggregate, Apply, Decision, DecodeError, Envelope, Event, EventSet, Handle, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded {
    pub sku: String,
    pub qty: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_removed", version = 2, oldest = 2)]
pub struct ItemRemoved {
    pub sku: String,
}

pub struct AddItem {
    pub sku: String,
    pub qty: u32,
}

pub struct RemoveItem {
    pub sku: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CartError {
    #[error("quantity must be positive")]
    ZeroQuantity,
    #[error("`{0}` is not in the cart")]
    NotInCart(String),
}

#[derive(Aggregate, Default, Debug, PartialEq)]
#[aggregate(
    name = "cart",
    events(ItemAdded, ItemRemoved),
    commands(AddItem, RemoveItem),
    error = CartError
)]
pub struct Cart {
    items: Vec<(String, u32)>,
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: ItemAdded) {
        self.items.push((e.sku, e.qty));
    }
}

impl Apply<ItemRemoved> for Cart {
    fn apply(&mut self, e: ItemRemoved) {
        self.items.retain(|(sku, _)| *sku != e.sku);
    }
}

impl Handle<AddItem> for Cart {
    fn handle(&self, c: &AddItem) -> Decision<Self> {
        if c.qty == 0 {
            return Err(CartError::ZeroQuantity);
        }
        Ok(vec![ItemAdded { sku: c.sku.clone(), qty: c.qty }.into()])
    }
}

impl Handle<RemoveItem> for Cart {
    fn handle(&self, c: &RemoveItem) -> Decision<Self> {
        if !self.items.iter().any(|(sku, _)| *sku == c.sku) {
            return Err(CartError::NotInCart(c.sku.clone()));
        }
        Ok(vec![ItemRemoved { sku: c.sku.clone() }.into()])
    }
}

fn envelope(event: &CartEvent) -> Envelope {
    let json = json!({
        "event_id": "0190a0b4-4c8e-7cc2-8d2a-2a6c1e3b7f00",
        "stream_id": Cart::stream_id("42"),
        "stream_version": 1,
        "global_position": 1,
        "recorded_at": "2024-01-01T00:00:00Z",
        "event_type": event.event_type(),
        "event_version": event.event_version(),
        "payload": event.to_payload().unwrap(),
        "metadata": Metadata::default(),
    });
    serde_json::from_value(json).unwrap()
}

fn main() {
    // Names and versions.
    assert_eq!(Cart::NAME, "cart");
    assert_eq!(Cart::stream_id("42"), "cart-42");
    assert_eq!(CartEvent::NAMES, ["cart.item_added", "cart.item_removed"]);
    let added = CartEvent::from(ItemAdded { sku: "tea".into(), qty: 2 });
    let removed: CartEvent = ItemRemoved { sku: "tea".into() }.into();
    assert_eq!((added.event_type(), added.event_version()), ("cart.item_added", 1));
    assert_eq!((removed.event_type(), removed.event_version()), ("cart.item_removed", 2));
    assert_eq!(added.to_payload().unwrap(), json!({"sku": "tea", "qty": 2}));

    // Clone, Debug and PartialEq of the event enum, as `#[derive]` writes them.
    assert_eq!(format!("{added:?}"), r#"ItemAdded(ItemAdded { sku: "tea", qty: 2 })"#);
    assert_eq!(format!("{removed:#?}"), format!("{:#?}", (ItemRemoved { sku: "tea".into() },)).replacen('(', "ItemRemoved(", 1));
    assert_eq!(added.clone(), added);
    assert_ne!(added, removed);
    assert_ne!(added, CartEvent::from(ItemAdded { sku: "tea".into(), qty: 3 }));

    // Decode round trip through an envelope.
    for event in [added.clone(), removed.clone()] {
        assert_eq!(CartEvent::decode(&envelope(&event)).unwrap(), event);
    }

    // Decode errors.
    let mut unknown = envelope(&added);
    unknown.event_type = "cart.renamed".into();
    assert!(matches!(
        CartEvent::decode(&unknown),
        Err(DecodeError::UnknownEventType { ref known, .. }) if known == "cart.item_added, cart.item_removed"
    ));
    let mut old = envelope(&removed);
    old.event_version = 1;
    assert!(matches!(CartEvent::decode(&old), Err(DecodeError::NoUpcaster { .. })));
    let mut newer = envelope(&added);
    newer.event_version = 2;
    assert!(matches!(CartEvent::decode(&newer), Err(DecodeError::VersionTooNew { .. })));
    let mut bad = envelope(&added);
    bad.payload = json!({"sku": 7}).into();
    assert!(matches!(CartEvent::decode(&bad), Err(DecodeError::Payload { .. })));

    // Apply dispatch.
    let mut cart = Cart::default();
    cart.apply_event(added);
    assert_eq!(cart.items, [("tea".to_string(), 2)]);

    // Handle dispatch through the command enum.
    let command = CartCommand::from(AddItem { sku: "milk".into(), qty: 1 });
    let decided = cart.handle(&command).unwrap();
    assert_eq!(decided, [CartEvent::ItemAdded(ItemAdded { sku: "milk".into(), qty: 1 })]);
    assert_eq!(cart.handle(&CartCommand::AddItem(AddItem { sku: "x".into(), qty: 0 })), Err(CartError::ZeroQuantity));
    assert_eq!(
        cart.handle(&CartCommand::from(RemoveItem { sku: "jam".into() })),
        Err(CartError::NotInCart("jam".into()))
    );
    let decided = cart.handle(&CartCommand::RemoveItem(RemoveItem { sku: "tea".into() })).unwrap();
    for event in decided {
        cart.apply_event(event);
    }
    assert!(cart.items.is_empty());
}
