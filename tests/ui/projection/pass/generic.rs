//! A projection generic over what it writes to: the derive forwards the parameters and
//! requires `Send + 'static` of each, as `Projection` does.
use annals::{Envelope, Event, On, Projection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added")]
pub struct ItemAdded;

pub trait Sink {
    fn write(&mut self, row: &str);
}

impl Sink for Vec<String> {
    fn write(&mut self, row: &str) {
        self.push(row.to_owned());
    }
}

#[derive(Projection)]
#[projection(events(ItemAdded))]
pub struct CartSummaries<T: Sink, const N: usize> {
    rows: T,
}

impl<T: Sink + Send + 'static, const N: usize> On<ItemAdded> for CartSummaries<T, N> {
    async fn on(&mut self, _: ItemAdded, envelope: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
        self.rows.write(&envelope.stream_id);
        Ok(())
    }
}

fn main() {
    assert_eq!(<CartSummaries<Vec<String>, 3> as Projection>::NAME, "cart_summaries");
}
