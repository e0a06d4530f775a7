//! A bounded random-input loop over decoding and upcasting: 20,000 stored events with
//! random names, schema versions and payloads (random JSON, and payloads near the right
//! shape with wrong types, missing and extra fields, huge numbers, deep nesting), decoded
//! through `Envelope::decode` and through an aggregate's generated event enum. Each
//! result is checked against an oracle written by hand from the events' declarations:
//! the decoded value where it should decode, and otherwise the `DecodeError` variant,
//! naming the stream and version. Never a panic, never a silently wrong value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::BTreeMap;

use annals::{Aggregate, Apply, BoxError, DecodeError, Envelope, EventSet, Metadata, Payload};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Version 1 called the quantity `quantity`.
fn rename_quantity(mut v1: Value) -> Result<Value, BoxError> {
    let object = v1.as_object_mut().ok_or("a v1 payload is a JSON object")?;
    let qty = object.remove("quantity").ok_or("the v1 payload has no `quantity`")?;
    let _ = object.insert("qty".into(), qty);
    Ok(v1)
}

#[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "item.added", version = 2, upcast(from = 1, with = rename_quantity))]
struct ItemAddedV2 {
    sku: String,
    qty: u32,
}

#[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "item.added", version = 3, previous = ItemAddedV2, aliases("ItemAdded"))]
struct ItemAdded {
    sku: String,
    qty: u32,
    unit_price_cents: u64,
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v2: ItemAddedV2) -> Self {
        ItemAdded { sku: v2.sku, qty: v2.qty, unit_price_cents: 0 }
    }
}

#[derive(annals::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "item.removed")]
struct ItemRemoved {
    sku: String,
}

#[derive(annals::Aggregate, Default)]
#[aggregate(name = "basket", events(ItemAdded, ItemRemoved))]
struct Basket {
    items: BTreeMap<String, u64>,
}

impl Apply<ItemAdded> for Basket {
    fn apply(&mut self, e: ItemAdded) {
        let qty = self.items.entry(e.sku).or_default();
        *qty = qty.saturating_add(u64::from(e.qty));
    }
}

impl Apply<ItemRemoved> for Basket {
    fn apply(&mut self, e: ItemRemoved) {
        self.items.remove(&e.sku);
    }
}

/// What decoding must give, worked out from the declarations above.
#[derive(Debug, PartialEq)]
enum Expected {
    Added(ItemAdded),
    Removed(ItemRemoved),
    UnknownType,
    TooNew,
    NoUpcaster,
    Payload,
    Upcast,
}

fn oracle(event_type: &str, version: u32, payload: &Value) -> Expected {
    let payload_as = |result: Result<ItemAdded, serde_json::Error>| result.map_or(Expected::Payload, Expected::Added);
    match event_type {
        "item.added" | "ItemAdded" => match version {
            4.. => Expected::TooNew,
            3 => payload_as(serde_json::from_value(payload.clone())),
            2 => payload_as(serde_json::from_value::<ItemAddedV2>(payload.clone()).map(Into::into)),
            1 => match rename_quantity(payload.clone()) {
                Err(_) => Expected::Upcast,
                Ok(v2) => payload_as(serde_json::from_value::<ItemAddedV2>(v2).map(Into::into)),
            },
            0 => Expected::NoUpcaster,
        },
        "item.removed" => match version {
            2.. => Expected::TooNew,
            1 => serde_json::from_value(payload.clone()).map_or(Expected::Payload, Expected::Removed),
            0 => Expected::NoUpcaster,
        },
        _ => Expected::UnknownType,
    }
}

fn outcome(result: Result<BasketEvent, DecodeError>, envelope: &Envelope) -> Expected {
    let named = |stream: &str, version: u64| {
        assert_eq!(
            (stream, version),
            (envelope.stream_id.as_str(), envelope.stream_version),
            "the error names the event"
        );
    };
    match result {
        Ok(BasketEvent::ItemAdded(e)) => Expected::Added(e),
        Ok(BasketEvent::ItemRemoved(e)) => Expected::Removed(e),
        Err(error) => match &error {
            DecodeError::UnknownEventType { stream, version, .. } => {
                named(stream, *version);
                Expected::UnknownType
            }
            DecodeError::VersionTooNew { stream, version, .. } => {
                named(stream, *version);
                Expected::TooNew
            }
            DecodeError::NoUpcaster { stream, version, .. } => {
                named(stream, *version);
                Expected::NoUpcaster
            }
            DecodeError::Payload { stream, version, .. } => {
                named(stream, *version);
                Expected::Payload
            }
            DecodeError::Upcast { stream, version, .. } => {
                named(stream, *version);
                Expected::Upcast
            }
            other => panic!("an unexpected kind of decode error: {other:?}"),
        },
    }
}

/// Random JSON up to `depth` levels: any type, awkward numbers and strings.
fn random_json(rng: &mut fastrand::Rng, depth: u32) -> Value {
    let leaf_only = depth == 0;
    match rng.u8(..if leaf_only { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.u64(..)),
        4 => {
            let f = f64::from_bits(rng.u64(..));
            if f.is_finite() {
                json!(f)
            } else {
                json!(-0.0)
            }
        }
        5 => json!(["", "tea", "\u{0}", "ü🍵", "a\"b\\c", "x".repeat(300).as_str()][rng.usize(..6)]),
        6 => Value::Array((0..rng.usize(..4)).map(|_| random_json(rng, depth - 1)).collect()),
        _ => Value::Object(
            (0..rng.usize(..4))
                .map(|_| {
                    (
                        ["sku", "qty", "quantity", "unit_price_cents", "k", ""][rng.usize(..6)].to_owned(),
                        random_json(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

/// A payload near the right shape: each expected field present (right or wrong type) or
/// missing, sometimes an extra field.
fn near_shape(rng: &mut fastrand::Rng) -> Value {
    let mut object = Map::new();
    let values = |rng: &mut fastrand::Rng| -> Value {
        match rng.u8(..8) {
            0 => json!("tea"),
            1 => json!(rng.u32(..)),
            2 => json!(u64::from(u32::MAX) + 1),
            3 => json!(-1),
            4 => json!(1.5),
            5 => json!(u64::MAX),
            6 => Value::Null,
            _ => random_json(rng, 2),
        }
    };
    for field in ["sku", "qty", "quantity", "unit_price_cents", "extra"] {
        if rng.u8(..8) > 0 {
            // Mostly the right type, so that many decode.
            let value = match (field, rng.u8(..4)) {
                (_, 0) => values(rng),
                ("sku", _) => json!(["mug", "tea", ""][rng.usize(..3)]),
                ("qty" | "quantity", _) => json!(rng.u32(..)),
                ("unit_price_cents", _) => json!(rng.u64(..)),
                _ => values(rng),
            };
            object.insert(field.to_owned(), value);
        }
    }
    Value::Object(object)
}

#[test]
fn random_stored_events_decode_or_fail_as_the_declarations_say() {
    const ROUNDS: u64 = 20_000;
    let mut rng = fastrand::Rng::with_seed(0xdec0de);
    let names = ["item.added", "ItemAdded", "item.removed", "item.gone", "", "ITEM.ADDED"];
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for round in 0..ROUNDS {
        let event_type = match rng.u8(..10) {
            0..=3 => "item.added",
            4 => "ItemAdded",
            5..=7 => "item.removed",
            _ => names[rng.usize(..names.len())],
        };
        let event_version = match rng.u8(..20) {
            0 => u32::MAX,
            1 => 0,
            2..=4 => 4,
            _ if event_type == "item.removed" => 1,
            _ => rng.u32(1..=3),
        };
        let payload = if rng.u8(..4) > 0 { near_shape(&mut rng) } else { random_json(&mut rng, 4) };
        let envelope = Envelope {
            event_id: uuid::Uuid::from_u64_pair(0, round),
            stream_id: format!("basket-{}", round % 97),
            stream_version: round + 1,
            global_position: round + 1,
            recorded_at: chrono::Utc::now(),
            event_type: event_type.to_owned(),
            event_version,
            payload: payload.clone().into(),
            metadata: Metadata::default(),
        };
        // The same event as a store keeping JSON text returns it (decoded from the text).
        let stored_as_text = Envelope { payload: Payload::from_json_text(payload.to_string()), ..envelope.clone() };
        let expected = oracle(event_type, event_version, &payload);
        let decoded = BasketEvent::decode(&envelope);
        if let Ok(event) = &decoded {
            // What decodes applies.
            let mut basket = Basket::default();
            basket.apply_event(event.clone());
            assert!(basket.items.len() <= 1);
        }
        let through_enum = outcome(decoded, &envelope);
        assert_eq!(through_enum, expected, "{event_type} v{event_version}: {payload}");
        let from_text = outcome(BasketEvent::decode(&stored_as_text), &stored_as_text);
        assert_eq!(from_text, expected, "from text: {event_type} v{event_version}: {payload}");
        // The single-event decode agrees on events of its own type.
        if matches!(event_type, "item.added" | "ItemAdded") {
            let single = envelope.decode::<ItemAdded>().map(BasketEvent::ItemAdded);
            assert_eq!(outcome(single, &envelope), expected, "{event_type} v{event_version}: {payload}");
        }
        let kind = match &expected {
            Expected::Added(_) => "decoded: added",
            Expected::Removed(_) => "decoded: removed",
            Expected::UnknownType => "unknown type",
            Expected::TooNew => "version too new",
            Expected::NoUpcaster => "no upcaster",
            Expected::Payload => "payload does not decode",
            Expected::Upcast => "upcaster failed",
        };
        *counts.entry(kind).or_default() += 1;
    }
    println!("{counts:#?}");
    // Every path was taken, many times.
    assert_eq!(counts.len(), 7, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 100), "{counts:?}");
}
