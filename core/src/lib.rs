//! # annals — event-sourced domain models with derive macros
//!
//! Write plain domain structs, annotate them, and annals generates the ceremony:
//! the aggregate's event enum, the apply and command dispatch, and the storage plumbing.
//!
//! ```
//! use annals::prelude::*;
//! use annals_memory::MemoryStore;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "account.deposited")]
//! pub struct Deposited { pub cents: u64 }
//!
//! pub struct Deposit { pub cents: u64 }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! pub enum AccountError {
//!     #[error("deposits must be positive")]
//!     NotPositive,
//! }
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "account", events(Deposited), commands(Deposit), error = AccountError)]
//! pub struct Account { balance: u64 }
//!
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, e: Deposited) { self.balance += e.cents; }
//! }
//!
//! impl Handle<Deposit> for Account {
//!     fn handle(&self, c: &Deposit) -> Decision<Self> {
//!         if c.cents == 0 { return Err(AccountError::NotPositive); }
//!         Ok(vec![Deposited { cents: c.cents }.into()])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let accounts = Repository::<Account, _>::new(MemoryStore::new());
//! accounts.execute("7", Deposit { cents: 500 }).await?;
//! let account = accounts.load("7").await?;
//! assert_eq!((account.state.balance, account.version), (500, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Where to start
//! - [`Event`], [`Aggregate`], [`Apply`], [`Handle`]: the domain model and its derives.
//! - [`Repository`]: load an aggregate, execute commands with optimistic concurrency.
//! - [`EventStore`]: the store contract; `annals-memory` and `annals-postgres` implement it.
//! - [`test_kit`]: given events, when a command, then events or an error.
//! - `conformance` (feature `testing`): the suite every store adapter passes.
#![warn(missing_docs)]

// Lets the derives' `::annals::...` paths resolve inside this crate's own tests.
extern crate self as annals;

pub mod aggregate;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod envelope;
pub mod event;
pub mod projection;
pub mod repository;
pub mod store;
pub mod subscription;
pub mod test_kit;

pub use aggregate::{Aggregate, Apply, Decision, Handle};
pub use envelope::{Envelope, Metadata, NewEvent};
pub use event::{DecodeError, Event, EventSet};
pub use projection::{BoxError, On, Projection, ProjectionError};
pub use repository::{Committed, ExecuteError, LoadError, Loaded, Repository, RetryPolicy};
pub use store::{EventStore, ExpectedVersion, StoreError, VersionRange};

/// Derives [`Event`](trait@Event) for a struct or enum.
///
/// `#[event(name = "cart.item_added", version = 1)]`: `name` is the stable stored name
/// (default: the type's name), `version` the payload schema version (default: 1).
pub use annals_macros::Event;

/// Derives [`Aggregate`](trait@Aggregate) and generates the aggregate's event and command enums.
///
/// ```text
/// #[aggregate(
///     name = "cart",                             // stream prefix; default: the type name in snake_case
///     events(ItemAdded, ItemRemoved),            // required: every event the aggregate applies
///     commands(AddItem, RemoveItem),             // optional: the commands it handles
///     error = CartError,                         // optional: the domain error; default Infallible
///     event_enum = CartEvent,                    // optional: name of the generated event enum
///     command_enum = CartCommand,                // optional: name of the generated command enum
/// )]
/// ```
///
/// Generated: `enum CartEvent` with one variant per event and `From<E>` for each (so a
/// handler returns `Ok(vec![event.into()])`), [`EventSet`] for it,
/// [`Aggregate`](trait@Aggregate) for the type, `enum CartCommand` with `From<C>` and
/// `Handle<CartCommand>` dispatching to each `Handle<C>`. Missing `Apply`/`Handle`
/// impls and duplicate event names are compile errors.
pub use annals_macros::Aggregate;

/// Everything a domain model needs: `use annals::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Apply, Decision, Envelope, Event, EventSet, EventStore, ExpectedVersion, Handle, Metadata,
        Repository,
    };
}

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::decode_event;
    pub use serde_json;
    pub use std::vec::Vec;

    /// What `#[aggregate(error = T)]` requires of `T`. The derive checks it with
    /// [`assert_aggregate_error`], spanned on `T`, to explain how to fix a `T` that is not
    /// an error type.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be an aggregate's error: it does not implement `std::error::Error + Send + Sync + 'static`",
        label = "not an error type",
        note = "derive it with `#[derive(Debug, thiserror::Error)]` and an `#[error(\"...\")]` message, or implement `Display` and `std::error::Error` for `{Self}`"
    )]
    pub trait AggregateError: std::error::Error + Send + Sync + 'static {}

    impl<T: std::error::Error + Send + Sync + 'static> AggregateError for T {}

    /// Compiles only if `T` can be an aggregate's error.
    pub const fn assert_aggregate_error<T: AggregateError>() {}

    /// `a == b` for strings in a `const` context (used to reject duplicate event names at
    /// compile time).
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}
