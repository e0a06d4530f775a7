//! The schema guard fails on an event shape change without a version bump, and passes
//! (recording the new shape) after the bump.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failed unwrap is a failed test")]

use std::path::PathBuf;

use annals::prelude::*;
use annals::schema_guard::{SchemaDrift, SchemaGuard};
use serde::{Deserialize, Serialize};

/// The events as first released.
mod released {
    use super::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added", version = 1)]
    pub struct ItemAdded {
        pub sku: String,
        pub qty: u32,
        pub gift: Option<Wrapping>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Wrapping {
        pub paper: String,
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.checked_out", version = 1)]
    pub struct CheckedOut {
        pub total_cents: u64,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(name = "cart", events(ItemAdded, CheckedOut))]
    pub struct Cart;
    impl Apply<ItemAdded> for Cart {
        fn apply(&mut self, _: ItemAdded) {}
    }
    impl Apply<CheckedOut> for Cart {
        fn apply(&mut self, _: CheckedOut) {}
    }

    pub fn guard(path: &PathBuf) -> SchemaGuard<Cart> {
        SchemaGuard::<Cart>::new(path)
            .allow_updates(true)
            .sample(ItemAdded { sku: "tea".into(), qty: 1, gift: Some(Wrapping { paper: "red".into() }) })
            .sample(CheckedOut { total_cents: 450 })
    }
}

/// `qty` renamed to `quantity` and the gift paper became a number, version unchanged.
mod changed_silently {
    use super::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added", version = 1)]
    pub struct ItemAdded {
        pub sku: String,
        pub quantity: u32,
        pub gift: Option<Wrapping>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Wrapping {
        pub paper: u32,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(name = "cart", events(ItemAdded, super::released::CheckedOut))]
    pub struct Cart;
    impl Apply<ItemAdded> for Cart {
        fn apply(&mut self, _: ItemAdded) {}
    }
    impl Apply<super::released::CheckedOut> for Cart {
        fn apply(&mut self, _: super::released::CheckedOut) {}
    }

    pub fn guard(path: &PathBuf) -> SchemaGuard<Cart> {
        SchemaGuard::<Cart>::new(path)
            .allow_updates(true)
            .sample(ItemAdded { sku: "tea".into(), quantity: 1, gift: Some(Wrapping { paper: 3 }) })
            .sample(super::released::CheckedOut { total_cents: 450 })
    }
}

/// The same change, with the version bumped.
mod bumped {
    use super::*;

    /// Version 1 called the quantity `qty` and could carry a gift wrapping.
    fn v1_to_v2(mut v1: serde_json::Value) -> Result<serde_json::Value, annals::BoxError> {
        let object = v1.as_object_mut().ok_or("a v1 `cart.item_added` is an object")?;
        let qty = object.remove("qty").ok_or("a v1 `cart.item_added` has a `qty`")?;
        object.remove("gift");
        object.insert("quantity".into(), qty);
        Ok(v1)
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added", version = 2, upcast(from = 1, with = v1_to_v2))]
    pub struct ItemAdded {
        pub sku: String,
        pub quantity: u32,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(name = "cart", events(ItemAdded, super::released::CheckedOut))]
    pub struct Cart;
    impl Apply<ItemAdded> for Cart {
        fn apply(&mut self, _: ItemAdded) {}
    }
    impl Apply<super::released::CheckedOut> for Cart {
        fn apply(&mut self, _: super::released::CheckedOut) {}
    }

    pub fn guard(path: &PathBuf) -> SchemaGuard<Cart> {
        SchemaGuard::<Cart>::new(path)
            .sample(ItemAdded { sku: "tea".into(), quantity: 1 })
            .sample(super::released::CheckedOut { total_cents: 450 })
    }
}

fn fresh_path() -> PathBuf {
    std::env::temp_dir().join(format!("annals-schema-guard-{}", uuid::Uuid::now_v7())).join("cart.json")
}

#[test]
fn the_first_run_records_every_event_and_the_next_run_passes() {
    let path = fresh_path();
    let report = released::guard(&path).verify().unwrap();
    assert_eq!(report.added, ["cart.checked_out", "cart.item_added"]);
    assert!(report.written);
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        recorded["cart.item_added"],
        serde_json::json!({"version": 1, "shape": {"sku": "string", "qty": "integer", "gift": {"paper": "string"}}})
    );
    let again = released::guard(&path).verify().unwrap();
    assert_eq!((again.added.len(), again.bumped.len(), again.written), (0, 0, false));
}

#[test]
fn a_shape_change_without_a_version_bump_fails_with_a_readable_diff() {
    let path = fresh_path();
    released::guard(&path).verify().unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let message = match changed_silently::guard(&path).verify() {
        Err(SchemaDrift::Breaking(message)) => message,
        other => panic!("expected a breaking change, got {other:?}"),
    };
    assert!(message.contains("event `cart.item_added` changed its JSON shape but is still version 1"), "{message}");
    assert!(message.contains("- `qty`: integer (removed)"), "{message}");
    assert!(message.contains("+ `quantity`: integer (added)"), "{message}");
    assert!(message.contains("~ `gift.paper`: string → integer"), "{message}");
    assert!(message.contains("bump it to `#[event(version = 2)]`"), "{message}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "a failing check leaves the file alone");
}

#[test]
fn the_same_change_with_a_version_bump_passes_and_records_the_new_shape() {
    let path = fresh_path();
    released::guard(&path).verify().unwrap();
    let report = bumped::guard(&path).allow_updates(true).verify().unwrap();
    assert_eq!(report.bumped, ["cart.item_added"]);
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(recorded["cart.item_added"]["version"], 2);
    assert_eq!(recorded["cart.item_added"]["shape"], serde_json::json!({"sku": "string", "quantity": "integer"}));
    // Going back to the old code is a version going down: refused.
    assert!(matches!(released::guard(&path).verify(), Err(SchemaDrift::Breaking(m)) if m.contains("down to 1")));
}

#[test]
fn in_ci_an_unrecorded_change_asks_for_the_file_to_be_committed() {
    let path = fresh_path();
    released::guard(&path).verify().unwrap();
    match bumped::guard(&path).allow_updates(false).verify() {
        Err(e @ SchemaDrift::NotRecorded { .. }) => {
            assert!(e.to_string().contains("bumped: cart.item_added"), "{e}");
            assert!(e.to_string().contains("commit the file"), "{e}");
        }
        other => panic!("expected NotRecorded, got {other:?}"),
    }
}

#[test]
fn every_event_needs_a_sample() {
    let path = fresh_path();
    let partial =
        SchemaGuard::<released::Cart>::new(&path).allow_updates(true).sample(released::CheckedOut { total_cents: 1 });
    match partial.verify() {
        Err(SchemaDrift::MissingSamples(names)) => assert_eq!(names, "cart.item_added"),
        other => panic!("expected MissingSamples, got {other:?}"),
    }
}

/// An event with an older stored name: the alias needs no sample of its own.
mod renamed {
    use super::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added", version = 1, aliases("ItemAdded"))]
    pub struct ItemAdded {
        pub sku: String,
    }

    #[derive(Aggregate, Default)]
    #[aggregate(name = "cart", events(ItemAdded))]
    pub struct Cart;
    impl Apply<ItemAdded> for Cart {
        fn apply(&mut self, _: ItemAdded) {}
    }
}

#[test]
fn aliases_are_covered_by_their_events_sample() {
    let report = SchemaGuard::<renamed::Cart>::new(fresh_path())
        .allow_updates(true)
        .sample(renamed::ItemAdded { sku: "tea".into() })
        .verify()
        .unwrap();
    assert_eq!(report.added, ["cart.item_added"]);
}
