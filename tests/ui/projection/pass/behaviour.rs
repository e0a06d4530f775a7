//! What the generated `project` does at run time: it decodes an envelope of a listed type
//! (by name or alias, upcasting older versions) and runs its handler, ignores other
//! types, and reports decode and handler errors naming the projection and the event.

use annals::{Envelope, Event, Metadata, On, Projection, ProjectionError};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", aliases("ItemAdded"))]
pub struct ItemAdded {
    pub qty: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.checked_out")]
pub struct CheckedOut;

#[derive(Projection, Default)]
#[projection(events(ItemAdded, CheckedOut))]
pub struct CartTotals {
    items: u32,
    checkouts: u32,
    streams: Vec<String>,
}

impl On<ItemAdded> for CartTotals {
    async fn on(&mut self, e: ItemAdded, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        if e.qty == 0 {
            return Err("quantity must be positive".into());
        }
        self.items += e.qty;
        self.streams.push(envelope.stream_id.clone());
        Ok(())
    }
}

impl On<CheckedOut> for CartTotals {
    async fn on(&mut self, _: CheckedOut, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.checkouts += 1;
        Ok(())
    }
}

fn envelope(event_type: &str, payload: serde_json::Value) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::now_v7(),
        stream_id: "cart-7".into(),
        stream_version: 3,
        global_position: 12,
        recorded_at: serde_json::from_value(json!("2024-05-01T10:00:00Z")).unwrap(),
        event_type: event_type.into(),
        event_version: 1,
        payload: payload.into(),
        metadata: Metadata::default(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut totals = CartTotals::default();
        totals.project(&envelope("cart.item_added", json!({"qty": 2})), &mut ()).await.unwrap();
        totals.project(&envelope("ItemAdded", json!({"qty": 3})), &mut ()).await.unwrap();
        totals.project(&envelope("cart.checked_out", json!(null)), &mut ()).await.unwrap();
        // Not listed: ignored.
        totals.project(&envelope("cart.item_removed", json!({"sku": "tea"})), &mut ()).await.unwrap();
        assert_eq!((totals.items, totals.checkouts), (5, 1));
        assert_eq!(totals.streams, ["cart-7", "cart-7"]);

        let error = totals.project(&envelope("cart.item_added", json!({"qty": 0})), &mut ()).await.unwrap_err();
        assert!(matches!(error, ProjectionError::Handler { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "projection `cart_totals` failed on `cart.item_added` at stream `cart-7` version 3 (global position 12): \
             quantity must be positive"
        );

        let error = totals.project(&envelope("cart.item_added", json!({"quantity": 1})), &mut ()).await.unwrap_err();
        assert!(matches!(error, ProjectionError::Decode { .. }), "{error:?}");
        assert!(error.to_string().starts_with("projection `cart_totals`: stream `cart-7` version 3"), "{error}");
        assert_eq!(totals.items, 5, "failed events change nothing");
    });
}
