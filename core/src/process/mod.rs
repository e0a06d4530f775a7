//! Process managers (workflows): business processes that span aggregates. A process reacts
//! to events, sends commands, sets deadlines and compensates rejected commands; each of
//! its instances is itself event-sourced.
//!
//! Write one with `#[derive(ProcessManager)]` over a plain struct (its state) and one
//! [`React<E>`] impl per input:
//!
//! ```
//! use annals::prelude::*;
//! use annals::process::{Effects, ProcessRunner, React, Rejected};
//! use annals::NewEvent;
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "order.checked_out")]
//! pub struct CheckedOut { pub order_id: String, pub cents: u64 }
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "payment.taken")]
//! pub struct PaymentTaken { pub order_id: String }
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct TakePayment { pub order_id: String, pub cents: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("card declined")]
//! pub struct Declined;
//!
//! #[derive(Aggregate, Default)]
//! #[aggregate(events(PaymentTaken), commands(TakePayment), error = Declined)]
//! pub struct Payment;
//! impl Apply<PaymentTaken> for Payment { fn apply(&mut self, _: PaymentTaken) {} }
//! impl Handle<TakePayment> for Payment {
//!     fn handle(&self, c: &TakePayment) -> Decision<Self> {
//!         Ok(vec![PaymentTaken { order_id: c.order_id.clone() }.into()])
//!     }
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct PaymentTimedOut;
//!
//! #[derive(ProcessManager, Default, Serialize, Deserialize)]
//! #[process(
//!     name = "checkout",
//!     correlate_by = order_id,                  // a field of every listed event
//!     events(CheckedOut, PaymentTaken),
//!     commands(TakePayment => Payment),         // each command and the aggregate that handles it
//!     deadlines(PaymentTimedOut),
//!     rejected(TakePayment),                    // rejections it handles: `React<Rejected<TakePayment>>`
//! )]
//! pub struct Checkout { paid: bool, failed: bool }
//!
//! impl React<CheckedOut> for Checkout {
//!     fn react(&mut self, e: &CheckedOut, effects: &mut Effects<Self>) {
//!         effects.send(&e.order_id, TakePayment { order_id: e.order_id.clone(), cents: e.cents });
//!         effects.deadline(Duration::from_secs(900), PaymentTimedOut);
//!     }
//! }
//! impl React<PaymentTaken> for Checkout {
//!     fn react(&mut self, _: &PaymentTaken, effects: &mut Effects<Self>) {
//!         self.paid = true;
//!         effects.complete(); // also cancels the pending deadline
//!     }
//! }
//! impl React<PaymentTimedOut> for Checkout {
//!     fn react(&mut self, _: &PaymentTimedOut, effects: &mut Effects<Self>) {
//!         self.failed = true;
//!         effects.complete();
//!     }
//! }
//! impl React<Rejected<TakePayment>> for Checkout {
//!     fn react(&mut self, _: &Rejected<TakePayment>, effects: &mut Effects<Self>) {
//!         self.failed = true;
//!         effects.complete();
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = annals_memory::MemoryStore::new();
//! let checked_out = CheckedOut { order_id: "o-1".into(), cents: 900 };
//! let event = NewEvent::new(CheckedOut::NAME, CheckedOut::VERSION, serde_json::to_value(&checked_out)?);
//! store.append("order-o-1", ExpectedVersion::Exact(0), vec![event]).await?;
//!
//! let mut runner = ProcessRunner::<Checkout, _>::new(store.clone());
//! runner.catch_up().await?; // reacts to the checkout: the payment is taken
//! runner.catch_up().await?; // reacts to the payment: done
//! let instance = runner.instance("o-1").await?;
//! assert!(instance.state.paid && instance.completed && instance.pending.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! With feature `testing`, `ProcessTest` tests a process without a store: given inputs,
//! when one more (an event, a deadline, a rejection), then the commands, deadlines and
//! state it asks for.
//!
//! A [`ProcessRunner`] runs a process against a store: it follows the store's feed, finds
//! the instance an event belongs to (`correlate_by`), lets it react, and carries out the
//! reaction.
//!
//! # Guarantees
//! - **Durable state.** Every reaction is recorded, before anything it asks for happens,
//!   as one event in the instance's stream (`<name>.process-<instance>`): what triggered
//!   it, the state after it, the commands it sent (with their ids), the deadlines it set
//!   and cancelled. Instances survive restarts and can be inspected like any stream
//!   (`annals stream show`) and replayed against new code with [`replay`].
//! - **Commands take effect once.** A command's id is derived from the instance and the
//!   trigger, and it runs as an idempotent command
//!   ([`Metadata::idempotency_key`](crate::Metadata::idempotency_key)): a runner that
//!   crashes after recording a reaction carries it out again on restart, and a command that
//!   already ran returns its stored events instead of running twice.
//! - **Deadlines** are stored in the store's deadline table (a due-time index on
//!   PostgreSQL and SQLite) after the reaction that set them is recorded, fire after
//!   restarts, are cancelled by [`Effects::cancel`] or [`Effects::complete`], and reach
//!   the process as an input like an event.
//! - **Rejections** of commands listed in `rejected(...)` come back as
//!   [`Rejected<C>`] inputs (record, react, compensate). A rejection the process does
//!   not handle, an input that does not decode, or a state that does not serialize is a
//!   permanent [`ProcessError`]: the event is parked or the runner stops, as its
//!   [`PoisonPolicy`](crate::subscription::PoisonPolicy) says. Transient store failures are
//!   waited out.
//! - **Inputs are handled in effect once**: an input whose reaction is recorded is not
//!   reacted to again (its reaction is carried out again, idempotently). A completed
//!   instance ignores further events and deadlines, but not the rejection of a command it
//!   sent (a compensation that fails is handled or parked, never dropped).
//!
//! # Across services
//! A command reaches an aggregate of *another* service as an event: the process sends a
//! local command whose aggregate records the request (say `ShipmentRequested`), the
//! other service consumes it from the broker (`annals-nats`) and answers with its own
//! events, which come back the same way and reach this process as inputs. Requests over
//! the wire would need their own retries and deduplication; events give both.

mod effects;
mod error;
mod record;
mod replay;
mod runner;
#[doc(hidden)]
pub mod support;
#[cfg(feature = "testing")]
mod testing;

pub use effects::Effects;
pub use error::ProcessError;
pub use record::{Reaction, SentCommand, Trigger, REACTED};
pub use replay::{replay, ReplayDifference};
pub use runner::{InstanceView, ProcessRunner, RunnerError};
#[cfg(feature = "testing")]
pub use testing::{ProcessTest, Reacted};

use crate::envelope::{Envelope, Metadata};
use crate::event::DecodeError;
use crate::store::EventStore;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A process manager: implemented by `#[derive(ProcessManager)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an annals process manager",
    note = "add `#[derive(annals::ProcessManager)]` and `#[process(correlate_by = ..., events(...))]` to `{Self}`"
)]
pub trait Process: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The process name: the category of its instance streams, the key of its runner's
    /// checkpoint and of its deadlines.
    const NAME: &'static str;

    /// The stored names (and aliases) of the events it reacts to.
    const EVENT_TYPES: &'static [&'static str];

    /// The instance `envelope` belongs to (`correlate_by`); `None` for an event it does
    /// not react to.
    fn correlate(envelope: &Envelope) -> Result<Option<String>, DecodeError>;

    /// Decodes `trigger` and runs the matching [`React`] impl.
    fn react_to(&mut self, trigger: &Trigger, effects: &mut Effects<Self>) -> Result<(), ProcessError>;

    /// Runs `command` on the aggregate `#[process(commands(...))]` routes it to:
    /// `Ok(Ok(()))` when it committed (or had committed before), `Ok(Err(reason))` when the
    /// aggregate rejected it.
    fn dispatch<'a, S: EventStore>(
        store: &'a S,
        command: &'a SentCommand,
        metadata: Metadata,
    ) -> BoxFuture<'a, Result<Result<(), String>, ProcessError>>;
}

/// How a process reacts to one input: an event in `events(...)`, a deadline in
/// `deadlines(...)`, or [`Rejected<C>`] for a command in `rejected(...)`.
#[diagnostic::on_unimplemented(
    message = "process `{Self}` does not react to `{E}`",
    label = "`{E}` is listed in `#[process(...)]` but has no `React` impl",
    note = "add `impl annals::process::React<{E}> for {Self} {{ fn react(&mut self, input: &{E}, effects: &mut annals::process::Effects<Self>) {{ ... }} }}`"
)]
pub trait React<E>: crate::__private::ListsInput<E> + Sized {
    /// Changes the state and asks for effects. It must decide from `self` and `input` only
    /// (no clock, no I/O): [`replay`] checks that new code decides as the recorded one did.
    fn react(&mut self, input: &E, effects: &mut Effects<Self>);
}

/// What `#[process(commands(C => Aggregate))]` implements for `C`: a command process
/// `P` may send. (Implemented on the command, so that a command the process does not list
/// is reported by its own name.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command of process `{P}`: it is not in its `#[process(commands(...))]`",
    label = "`{P}` does not send `{Self}`",
    note = "add `{Self} => TheAggregate` to `#[process(commands(...))]` on `{P}`, naming the aggregate that handles it"
)]
pub trait CommandOf<P>: Serialize {
    /// The command's name in reaction records.
    const COMMAND_TYPE: &'static str;
}

/// What `#[process(deadlines(D))]` implements for `D`: a deadline type of process `P`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a deadline of process `{P}`: it is not in its `#[process(deadlines(...))]`",
    label = "`{P}` has no deadline `{Self}`",
    note = "add `{Self}` to `#[process(deadlines(...))]` on `{P}` and implement `React<{Self}>`"
)]
pub trait DeadlineOf<P>: Serialize {
    /// The deadline's name in reaction records and the deadline table.
    const DEADLINE_TYPE: &'static str;
}

/// The input a process gets when an aggregate rejected a command it sent (list the
/// command in `#[process(rejected(...))]` and implement `React<Rejected<C>>`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected<C> {
    /// The command as sent.
    pub command: C,
    /// The aggregate id it was sent to.
    pub target: String,
    /// The aggregate's error, as text.
    pub reason: String,
}

/// The stream of a process instance: `<name>.process-<instance>`.
pub fn instance_stream<P: Process>(instance: &str) -> String {
    format!("{}.process-{instance}", P::NAME)
}
