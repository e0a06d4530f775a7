use annals::{BoxError, Event};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn v1_to_v2(v1: Value) -> Result<Value, BoxError> {
    Ok(v1)
}

fn v2_to_v3(v2: Value) -> Result<Value, BoxError> {
    Ok(v2)
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", upcast(from = 1, with = v1_to_v2))]
pub struct ItemAdded {
    pub sku: String,
}

fn main() {}
