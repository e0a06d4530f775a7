use annals::prelude::*;
use annals::process::{Effects, React};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.checked_out")]
pub struct CheckedOut {
    pub order_id: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "payment.taken")]
pub struct PaymentTaken {
    pub order_id: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "clock.ticked")]
pub struct Ticked;

#[derive(Serialize, Deserialize)]
pub struct TakePayment {
    pub order_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct Refund {
    pub order_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct TimedOut;

#[derive(Debug, thiserror::Error)]
#[error("declined")]
pub struct Declined;

#[derive(Aggregate, Default)]
#[aggregate(events(PaymentTaken), commands(TakePayment), error = Declined)]
pub struct Payment;

impl Apply<PaymentTaken> for Payment {
    fn apply(&mut self, _: PaymentTaken) {}
}

impl Handle<TakePayment> for Payment {
    fn handle(&self, c: &TakePayment) -> Decision<Self> {
        Ok(vec![PaymentTaken { order_id: c.order_id.clone() }.into()])
    }
}

#[derive(ProcessManager, Default, Serialize, Deserialize)]
#[process(correlate_by = "order_id", events(CheckedOut, PaymentTaken), commands(TakePayment => Payment))]
pub struct Checkout {
    paid: bool,
}

impl React<CheckedOut> for Checkout {
    fn react(&mut self, e: &CheckedOut, effects: &mut Effects<Self>) {
        effects.send(&e.order_id, TakePayment { order_id: e.order_id.clone() });
    }
}

impl React<PaymentTaken> for Checkout {
    fn react(&mut self, _: &PaymentTaken, effects: &mut Effects<Self>) {
        effects.complete();
    }
}

fn main() {}
