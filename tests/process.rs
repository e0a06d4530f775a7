//! The process test kit (`annals::process::ProcessTest`) and `replay`, on the fulfillment
//! workflow of the process conformance suite: each reaction's commands, deadlines and
//! state, without a store; and a replay that finds where changed code decides otherwise.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failed unwrap is a failed test")]

use annals::conformance::process::{
    CheckedOut, Fulfillment, PaymentTaken, PaymentTimedOut, ReleaseStock, ReserveStock, Shipped, Step, StockReserved,
    TakePayment,
};
use annals::process::{ProcessError, ProcessTest};

fn checked_out(card: &str) -> CheckedOut {
    CheckedOut { order_id: "o-1".into(), sku: "sku-9".into(), qty: 2, card: card.into() }
}

#[test]
fn each_reaction_asks_for_what_the_workflow_says() {
    let mut test = ProcessTest::<Fulfillment>::new();
    let reserved = test.when(checked_out("visa"));
    let sent = reserved.sent::<ReserveStock>();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.as_str(), sent[0].1.qty), ("sku-9", 2));
    assert!(reserved.sent::<TakePayment>().is_empty());

    let paying = test.when(StockReserved { order_id: "o-1".into(), qty: 2 });
    assert_eq!(paying.sent::<TakePayment>()[0].1.card, "visa");
    assert_eq!(paying.scheduled::<PaymentTimedOut>().len(), 1);
    assert_eq!(test.pending().len(), 1);

    let shipping = test.when(PaymentTaken { order_id: "o-1".into() });
    assert_eq!(shipping.cancelled(), 1, "the payment deadline is cancelled");
    assert!(test.pending().is_empty());

    let done = test.when(Shipped { order_id: "o-1".into() });
    assert!(done.completed());
    assert_eq!(test.state().step, Step::Shipped);
    // A completed instance ignores what comes later.
    assert!(test.when(PaymentTaken { order_id: "o-1".into() }).ignored());
}

#[test]
fn a_rejection_and_a_deadline_are_inputs_too() {
    let mut test = ProcessTest::<Fulfillment>::new().given([checked_out("declined")]);
    test.when(StockReserved { order_id: "o-1".into(), qty: 2 });
    let compensated =
        test.when_rejected("o-1", TakePayment { order_id: "o-1".into(), card: "declined".into() }, "card declined");
    assert_eq!(compensated.sent::<ReleaseStock>()[0].1.qty, 2);
    assert!(compensated.completed());
    assert_eq!(test.state().step, Step::Failed("payment: card declined".into()));

    let mut slow = ProcessTest::<Fulfillment>::new().given([checked_out("slow")]);
    slow.when(StockReserved { order_id: "o-1".into(), qty: 2 });
    let timed_out = slow.when_deadline(PaymentTimedOut);
    assert_eq!(timed_out.sent::<ReleaseStock>().len(), 1);
    assert!(timed_out.completed() && slow.pending().is_empty());
}

#[test]
fn an_unlisted_event_is_a_typed_error_naming_the_fix() {
    // `PaymentPending` is not in `events(...)`: the kit says to list it.
    let mut test = ProcessTest::<Fulfillment>::new();
    let error = test.try_when(annals::conformance::process::PaymentPending { order_id: "o-1".into() });
    match error {
        Err(ProcessError::Unhandled { trigger, .. }) => {
            assert!(trigger.contains("list `conformance.payment.pending`"), "{trigger}")
        }
        other => panic!("expected Unhandled, got {:?}", other.map(|_| ())),
    }
}

/// `replay` reacts to each recorded input again and reports where the code decides
/// differently from the recording: here a recording whose state and commands were not
/// what the current code decides.
#[test]
fn replay_reports_where_the_code_decides_otherwise() {
    use annals::process::{instance_stream, replay, Reaction, Trigger, REACTED};
    use annals::{Event, EventStore, ExpectedVersion, NewEvent};
    annals::conformance::run(async {
        let store = annals_memory::MemoryStore::new();
        let event = checked_out("visa");
        let stored = store
            .append(
                "order-o-1",
                ExpectedVersion::Exact(0),
                vec![NewEvent::new(CheckedOut::NAME, 1, serde_json::to_value(&event).unwrap())],
            )
            .await
            .unwrap();
        let recorded = Reaction {
            trigger: Trigger::event(&stored[0]),
            state: serde_json::json!({ "step": "Shipped", "sku": "sku-9", "qty": 2, "card": "visa" }),
            commands: Vec::new(),
            deadlines: Vec::new(),
            cancelled: Vec::new(),
            completed: false,
        };
        let reaction = NewEvent::new(REACTED, 1, serde_json::to_value(&recorded).unwrap());
        store.append(&instance_stream::<Fulfillment>("o-1"), ExpectedVersion::Exact(0), vec![reaction]).await.unwrap();
        let differences = replay::<Fulfillment, _>(&store, "o-1").await.unwrap();
        let fields: Vec<&str> = differences.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["state", "commands"], "{differences:#?}");
        assert_eq!(differences[0].version, 1);
        assert_eq!(differences[0].replayed["step"], "Reserving");
    });
}
