//! Given/when/then tests for domain logic, without a store.
//!
//! ```
//! # use annals::prelude::*;
//! # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! # pub struct Opened;
//! # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! # pub struct Closed;
//! # pub struct Close;
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # pub enum DoorError { #[error("the door is already closed")] AlreadyClosed }
//! # #[derive(Aggregate, Default)]
//! # #[aggregate(events(Opened, Closed), commands(Close), error = DoorError)]
//! # pub struct Door { open: bool }
//! # impl Apply<Opened> for Door { fn apply(&mut self, _: Opened) { self.open = true } }
//! # impl Apply<Closed> for Door { fn apply(&mut self, _: Closed) { self.open = false } }
//! # impl Handle<Close> for Door {
//! #     fn handle(&self, _: &Close) -> Decision<Self> {
//! #         if !self.open { return Err(DoorError::AlreadyClosed) }
//! #         Ok(vec![Closed.into()])
//! #     }
//! # }
//! use annals::test_kit::given;
//!
//! given::<Door>([Opened.into()]).when(Close).then([Closed.into()]);
//! given::<Door>([]).when(Close).then_error(DoorError::AlreadyClosed);
//! given::<Door>([Opened.into(), Closed.into()]).when(Close).then_error(DoorError::AlreadyClosed);
//! ```

use std::fmt::Debug;

use crate::aggregate::{Aggregate, Decision, Handle};
use crate::envelope::Envelope;
use crate::event::EventSet;

/// Starts a test from the aggregate's history: `events` are applied to a fresh state.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::initial();
    for event in events {
        state.apply_event(event);
    }
    Given { state }
}

/// An aggregate state built from past events, waiting for a command.
#[derive(Debug)]
pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` against the given state.
    pub fn when<C>(self, command: C) -> Then<A>
    where
        A: Handle<C>,
    {
        let decision = self.state.handle(&command);
        Then { state: self.state, decision }
    }

    /// The state the given events produced.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// The decision of a command, ready for assertions.
pub struct Then<A: Aggregate> {
    state: A,
    decision: Decision<A>,
}

impl<A: Aggregate> Then<A>
where
    A::Error: Debug,
{
    /// Asserts the command produced exactly `expected`, in order, and that each produced
    /// event survives a round trip through its stored JSON form.
    ///
    /// Returns the state after applying the produced events, for further checks.
    #[allow(clippy::panic, reason = "a test assertion reports failure by panicking")]
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        let produced = match self.decision {
            Ok(events) => events,
            Err(error) => panic!("expected the command to produce {expected:#?}\nbut it was rejected with: {error:?}"),
        };
        assert_eq!(
            produced, expected,
            "the command produced other events than expected (left: produced, right: expected)"
        );
        for event in &produced {
            assert_round_trip(event);
        }
        let mut state = self.state;
        for event in produced {
            state.apply_event(event);
        }
        state
    }

    /// Asserts the command changed nothing (decided no events).
    #[track_caller]
    pub fn then_nothing(self) -> A {
        self.then([])
    }

    /// Asserts the command was rejected with `expected`.
    #[allow(clippy::panic, reason = "a test assertion reports failure by panicking")]
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.decision {
            Ok(events) => panic!("expected the command to be rejected with {expected:?}\nbut it produced {events:#?}"),
            Err(error) => assert_eq!(error, expected, "the command was rejected with another error than expected"),
        }
    }

    /// The raw decision, for assertions the helpers above do not cover.
    pub fn decision(&self) -> &Decision<A> {
        &self.decision
    }
}

/// Asserts that `event` serializes and decodes back to itself under its stored name and
/// version, as the store would do.
#[allow(clippy::panic, reason = "a test assertion reports failure by panicking")]
#[track_caller]
pub fn assert_round_trip<E: EventSet>(event: &E) {
    // As a store that keeps JSON text returns it.
    let payload = match event.to_payload().and_then(|value| serde_json::to_string(&value)) {
        Ok(text) => crate::Payload::from_json_text(text),
        Err(e) => panic!("event {event:?} does not serialize: {e}"),
    };
    let envelope = Envelope {
        event_id: uuid::Uuid::nil(),
        stream_id: "test_kit-round_trip".to_owned(),
        stream_version: 1,
        global_position: 1,
        recorded_at: chrono::DateTime::UNIX_EPOCH,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        payload,
        metadata: Default::default(),
    };
    match E::decode(&envelope) {
        Ok(decoded) => assert_eq!(&decoded, event, "event changed on its way through JSON: check its serde attributes"),
        Err(e) => panic!("event {event:?} does not decode from its own JSON: {e}"),
    }
}
