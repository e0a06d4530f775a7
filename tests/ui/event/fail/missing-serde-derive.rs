use annals::Event;
use serde::Serialize;

// `Deserialize` is missing: stored events are read back from JSON.
// (Only one serde derive is left out: rustc lists the types that implement a missing trait,
// and the list of `Serialize` types grows with every serializable type annals adds.)
#[derive(Event, Serialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded {
    pub sku: String,
}

fn main() {}
