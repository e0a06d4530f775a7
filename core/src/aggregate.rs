//! Aggregates: state rebuilt from events ([`Apply`]) that decides commands ([`Handle`]).

use crate::event::EventSet;

/// An event-sourced entity: its state is the fold of its events, and it decides which
/// new events a command produces.
///
/// Implement it with `#[derive(Aggregate)]`, which also generates the event enum
/// (`CartEvent`), the command enum (`CartCommand`) and the dispatch to your
/// [`Apply`] and [`Handle`] impls:
///
/// ```
/// use annals::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// #[event(name = "counter.incremented")]
/// pub struct Incremented { pub by: u32 }
///
/// pub struct Increment { pub by: u32 }
///
/// #[derive(Debug, thiserror::Error, PartialEq)]
/// pub enum CounterError {
///     #[error("increment by zero")]
///     Zero,
/// }
///
/// #[derive(Aggregate, Default, Debug)]
/// #[aggregate(name = "counter", events(Incremented), commands(Increment), error = CounterError)]
/// pub struct Counter { value: u64 }
///
/// impl Apply<Incremented> for Counter {
///     fn apply(&mut self, event: Incremented) { self.value += u64::from(event.by); }
/// }
///
/// impl Handle<Increment> for Counter {
///     fn handle(&self, command: &Increment) -> Decision<Self> {
///         if command.by == 0 { return Err(CounterError::Zero); }
///         Ok(vec![Incremented { by: command.by }.into()])
///     }
/// }
///
/// assert_eq!(Counter::NAME, "counter");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an annals aggregate",
    note = "add `#[derive(annals::Aggregate)]` and `#[aggregate(events(...))]` to `{Self}`"
)]
pub trait Aggregate: Send + Sync + Sized + 'static {
    /// The aggregate's name; its streams are named `{NAME}-{id}`.
    const NAME: &'static str;

    /// The event enum (`CartEvent` for `Cart`).
    type Event: EventSet;

    /// The domain error its command handlers return.
    ///
    /// It must implement `std::error::Error + Send + Sync + 'static` (e.g. derive
    /// `thiserror::Error`); `#[derive(Aggregate)]` checks it once, at `error = ...`, with
    /// a message that says how. (It is not a bound here, which would report a second,
    /// plainer error at the same place.)
    type Error: Send + Sync + 'static;

    /// The state before the first event: what a new aggregate decides its first command
    /// against. `#[derive(Aggregate)]` implements it as `Default::default()`, so the
    /// aggregate derives or implements `Default`. (Not a supertrait: a missing `Default`
    /// is then one error, at the aggregate, instead of one at every impl of it.)
    fn initial() -> Self;

    /// Applies one event to the state, dispatching to the matching [`Apply`] impl.
    fn apply_event(&mut self, event: Self::Event);

    /// The stream id of the aggregate with this id: `{NAME}-{id}`.
    fn stream_id(id: &str) -> String {
        let mut s = String::with_capacity(Self::NAME.len() + 1 + id.len());
        s.push_str(Self::NAME);
        s.push('-');
        s.push_str(id);
        s
    }
}

/// Evolves the state with one event. Applying never fails: the event already happened.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply `{E}`",
    label = "`{E}` is listed in `events(...)` but has no `Apply` impl",
    note = "add `impl annals::Apply<{E}> for {Self} {{ fn apply(&mut self, event: {E}) {{ ... }} }}`"
)]
pub trait Apply<E> {
    /// Mutates the state to reflect `event`.
    fn apply(&mut self, event: E);
}

/// Decides a command against the current state: returns the new events, or the domain
/// error that rejects it. Deciding must not have side effects: on a concurrency conflict
/// the [`Repository`](crate::Repository) reloads the state and decides again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{C}`",
    label = "`{Self}` has no `impl annals::Handle<{C}>`",
    note = "add `impl annals::Handle<{C}> for {Self} {{ fn handle(&self, command: &{C}) -> annals::Decision<Self> {{ ... }} }}`, and list `{C}` in `#[aggregate(commands(...))]` if the command enum should carry it"
)]
pub trait Handle<C>: Aggregate {
    /// The events `command` produces, or why it is rejected.
    fn handle(&self, command: &C) -> Decision<Self>;
}

/// What a command handler returns: the new events, or the aggregate's domain error.
///
/// Each event converts into the event enum with `.into()`: `Ok(vec![a.into(), b.into()])`;
/// no events (an idempotent no-op) is `Ok(vec![])`.
pub type Decision<A> = Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>;
