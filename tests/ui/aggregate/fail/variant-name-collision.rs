use annals::{Aggregate, Apply};

mod a {
    use annals::Event;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.item_added")]
    pub struct Added;
}

mod b {
    use annals::Event;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.coupon_added")]
    pub struct Added;
}

#[derive(Aggregate, Default)]
#[aggregate(events(a::Added, b::Added))]
pub struct Cart;

impl Apply<a::Added> for Cart {
    fn apply(&mut self, _: a::Added) {}
}

impl Apply<b::Added> for Cart {
    fn apply(&mut self, _: b::Added) {}
}

fn main() {}
