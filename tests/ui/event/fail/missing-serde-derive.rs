use annals::Event;

#[derive(Event, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded {
    pub sku: String,
}

fn main() {}
