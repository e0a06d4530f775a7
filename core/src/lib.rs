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
//! - [`guide`]: concepts, the derives and their attributes, stores, subscriptions,
//!   schema evolution, snapshots and testing, with examples.
//! - [`Event`], [`Aggregate`], [`Apply`], [`Handle`]: the domain model and its derives.
//! - [`Repository`]: load an aggregate, execute commands with optimistic concurrency.
//! - [`store`]: the store contracts ([`EventStore`], [`EventFeed`], snapshots,
//!   checkpoints) and the kit adapters build them with; `annals-memory`, `annals-sqlite`
//!   and `annals-postgres` implement them.
//! - [`subscription`]: projections and other consumers fed from the feed.
//! - [`process`]: process managers (workflows) across aggregates, with durable state,
//!   deadlines and compensation, from `#[derive(ProcessManager)]`.
//! - `test_kit`, `schema_guard` and `conformance` (feature `testing`, which you turn on in
//!   `[dev-dependencies]`: `annals = { version = "...", features = ["testing"] }`): given
//!   events, when a command, then events or an error; the record of every event's shape;
//!   the suites every store adapter passes.
#![warn(missing_docs)]

// Lets the derives' `::annals::...` paths resolve inside this crate's own tests.
extern crate self as annals;

pub mod aggregate;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod envelope;
pub mod event;
pub mod payload;
#[doc = include_str!("guide.md")]
pub mod guide {}
pub mod process;
pub mod projection;
pub mod repository;
pub mod retry;
#[cfg(feature = "testing")]
pub mod schema_guard;
pub mod snapshot;
pub mod store;
pub mod subscription;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod test_kit;
mod trace_context;

pub use aggregate::{Aggregate, Apply, Decision, Handle};
pub use envelope::{Envelope, Metadata, NewEvent};
pub use event::{DecodeError, Event, EventSet, UpcastError};
pub use payload::Payload;
pub use projection::{BoxError, Handler, On, Permanent, Projection, ProjectionError};
pub use repository::{Committed, ExecuteError, LoadError, Loaded, Repository};
pub use retry::RetryPolicy;
pub use store::{EventFeed, EventStore, ExpectedVersion, StoreError, VersionRange};

/// Derives [`Event`](trait@Event) for a struct or enum.
///
/// ```text
/// #[event(
///     name = "cart.item_added",                  // stable stored name; default: the type's name
///     version = 3,                               // payload schema version; default: 1
///     oldest = 1,                                // the oldest version ever stored; default: 1
///     previous = ItemAddedV2,                    // optional: the v2 type, with `impl From<ItemAddedV2> for ItemAdded`
///     upcast(from = 1, with = v1_to_v2),         // optional, repeatable: JSON of v1 → JSON of v2
///     aliases("ItemAdded", "cart.added"),        // optional: older stored names of this event
/// )]
/// ```
///
/// `previous` and `upcast` describe how older stored versions become the current one
/// (see [`Event`](trait@Event#schema-evolution)); they need `version` of 2 or more and
/// cannot be combined on one type. An event at version 2 or more needs one of them, or
/// `oldest`: with `upcast`, every stored older version needs one (`from = oldest` up to
/// `from = version - 1`); `with` names a
/// `fn(serde_json::Value) -> Result<serde_json::Value, annals::BoxError>`. With
/// `previous = T`, `T` must be at `version - 1`. `oldest = n` says no version before `n`
/// was ever stored: an event new at version 2 writes `version = 2, oldest = 2` and needs
/// no upcaster (a stored older version then fails to decode with
/// [`DecodeError::NoUpcaster`]). All of this is checked at compile time.
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
/// Generated: `enum CartEvent` (`Clone`, `Debug`, `PartialEq`) with one variant per event
/// and `From<E>` for each (so a handler returns `Ok(vec![event.into()])`), [`EventSet`]
/// for it, [`Aggregate`](trait@Aggregate) for the type, `enum CartCommand` with `From<C>`
/// and `Handle<CartCommand>` dispatching to each `Handle<C>`. Missing `Apply`/`Handle`
/// impls, duplicate event names, and converting an event or command the lists do not
/// name are compile errors.
pub use annals_macros::Aggregate;

/// Derives [`Projection`](trait@Projection) for a struct or enum; write one
/// [`On<E>`](On) impl per listed event.
///
/// ```text
/// #[projection(
///     name = "cart_summaries",                   // checkpoint key; default: the type name in snake_case
///     events(ItemAdded, ItemRemoved, CheckedOut), // required: every event it handles
///     context = annals_postgres::PgConnection,   // optional: what handlers receive; default `()`
/// )]
/// ```
///
/// Generated: [`Projection`](trait@Projection) with `EVENT_TYPES` (the listed events'
/// stored names and aliases) and `project`, which decodes an envelope of a listed type
/// and runs its `On` handler, and ignores other types. A missing `On` impl, a listed type
/// that is not an [`Event`](trait@Event) and two events with the same stored name are
/// compile errors. A projection may be generic over types and constants (a read model
/// generic over its store, say): each type parameter must be `Send + 'static`, and the
/// bounds its `On` impls need go on the struct (`struct Totals<S: EventStore>`).
///
/// ```
/// use annals::prelude::*;
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # #[event(name = "cart.item_added")]
/// # pub struct ItemAdded { pub qty: u32 }
///
/// #[derive(Projection, Default)]
/// #[projection(events(ItemAdded))]
/// struct ItemsAdded { total: u64 }
///
/// impl On<ItemAdded> for ItemsAdded {
///     async fn on(&mut self, e: ItemAdded, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> {
///         self.total += u64::from(e.qty);
///         Ok(())
///     }
/// }
///
/// assert_eq!(<ItemsAdded as Projection>::NAME, "items_added");
/// assert_eq!(<ItemsAdded as Projection>::EVENT_TYPES, ["cart.item_added"]);
/// ```
pub use annals_macros::Projection;

/// Derives [`Process`](process::Process) for a struct: a process manager (workflow)
/// reacting to events, deadlines and rejected commands; see [`process`].
///
/// ```text
/// #[process(
///     name = "fulfillment",                      // instance stream category; default: the type name in snake_case
///     correlate_by = order_id,                   // the field of every listed event naming the instance, or:
///     correlate_with = order_of,                 // a `fn(&Envelope) -> Option<String>` (None: not for this process)
///     events(CheckedOut, PaymentFailed),         // required: the events it reacts to (`React<E>` each)
///     commands(ReserveStock => Inventory),       // the commands it sends, each with the aggregate that handles it
///     deadlines(PaymentTimedOut),                // its deadline types (`React<D>` each; serde types)
///     rejected(TakePayment),                     // commands whose rejection it handles (`React<Rejected<C>>` each)
/// )]
/// ```
///
/// The struct is the instance state: it needs `Default`, `Serialize` and `Deserialize`;
/// commands and deadlines need `Serialize` and `Deserialize`. A missing `React` impl, a
/// command whose aggregate does not handle it, an event without the `correlate_by`
/// field, and a `React` impl for an input not listed are compile errors.
pub use annals_macros::ProcessManager;

/// Everything a domain model needs: `use annals::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Apply, Decision, Envelope, Event, EventSet, EventStore, ExpectedVersion, Handle, Metadata, On,
        ProcessManager, Projection, Repository,
    };
}

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    pub use crate::process;
    pub use crate::process::support::{
        correlate_by, correlate_with, dispatch_command, react_to_deadline, react_to_event, react_to_rejection,
        unhandled, unknown_command,
    };
    pub use futures::future::BoxFuture;

    /// Implemented by `#[derive(ProcessManager)]` for each input in its `events(...)`,
    /// `deadlines(...)` and `rejected(...)` (as `Rejected<C>`).
    /// [`React<E>`](crate::process::React) requires it: a reaction to an input the process
    /// does not list would never run, so it does not compile.
    #[diagnostic::on_unimplemented(
        message = "`{E}` is not listed in `#[process(...)]` of `{Self}`, so this `React<{E}>` would never run",
        label = "`{Self}` does not list `{E}`",
        note = "list an event in `events(...)`, a deadline in `deadlines(...)`, and for `Rejected<C>` the command in `rejected(...)`; or remove this impl"
    )]
    pub trait ListsInput<E> {}

    /// Implemented by `#[derive(Projection)]` for each event in its `events(...)`.
    /// [`On<E>`](crate::On) requires it: a handler for an event the projection does not
    /// list would never be called, so it does not compile.
    #[diagnostic::on_unimplemented(
        message = "`{E}` is not listed in `#[projection(events(...))]` of `{Self}`, so this `On<{E}>` would never be called",
        label = "`{Self}` does not list `{E}`",
        note = "add `{E}` to `#[projection(events(...))]` on `{Self}`, or remove this impl"
    )]
    pub trait ListsEvent<E> {}

    /// Decodes `envelope` as `E`: what the generated `EventSet::decode` calls for the
    /// variant whose stored name matched.
    pub fn decode_event<E: Event>(envelope: &crate::Envelope) -> Result<E, crate::DecodeError> {
        crate::event::decode_event(envelope)
    }

    /// Decodes `envelope` as `E` and runs `P`'s `On<E>` handler: what the generated
    /// `Projection::project` calls for the matching event type. `E` is decoded through
    /// its [`EventMeta`], so a listed type that is not an event is reported once, where
    /// its `EventMeta` is made.
    pub async fn dispatch_projection<P: crate::On<E>, E>(
        projection: &mut P,
        envelope: &crate::Envelope,
        context: &mut P::Context,
        meta: &EventMeta<E>,
    ) -> Result<(), crate::ProjectionError> {
        let event =
            (meta.decode)(envelope).map_err(|source| crate::ProjectionError::decode(P::NAME, envelope, source))?;
        projection.on(event, envelope, context).await.map_err(|e| crate::ProjectionError::handler(P::NAME, envelope, e))
    }

    /// What the derives need of one listed event type, made once per type in a `const`
    /// (`event_meta::<ItemAdded>()`, spanned on the type) and used everywhere else
    /// through it.
    ///
    /// Only [`event_meta`] requires `E: Event`. Rustc checks an event's supertraits
    /// again at every use of its associated items and reports each use, so a missing
    /// `Clone` on an event gave four errors; through this table, a listed type that is
    /// not an event, or an event missing a derive, is one error at the type (plus the
    /// `#[derive(Event)]`'s own at the struct).
    pub struct EventMeta<E> {
        /// [`Event::NAME`].
        pub name: &'static str,
        /// [`Event::VERSION`].
        pub version: u32,
        /// [`Event::ALIASES`].
        pub aliases: &'static [&'static str],
        /// Decodes a stored envelope as `E` (upcasting older versions).
        pub decode: fn(&crate::Envelope) -> Result<E, crate::DecodeError>,
        /// Serializes the event as its stored payload.
        pub to_payload: fn(&E) -> Result<serde_json::Value, serde_json::Error>,
        /// `Clone::clone`.
        pub clone: fn(&E) -> E,
        /// `PartialEq::eq`.
        pub eq: fn(&E, &E) -> bool,
        /// `Debug::fmt`.
        pub debug: fn(&E, &mut std::fmt::Formatter<'_>) -> std::fmt::Result,
    }

    impl<E> EventMeta<E> {
        /// Formats `event` as the tuple variant `variant(event)`, as `#[derive(Debug)]`
        /// on the event enum would.
        pub fn debug_variant(&self, variant: &str, event: &E, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            struct Shim<'a, E>(&'a E, fn(&E, &mut std::fmt::Formatter<'_>) -> std::fmt::Result);
            impl<E> std::fmt::Debug for Shim<'_, E> {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    (self.1)(self.0, f)
                }
            }
            f.debug_tuple(variant).field(&Shim(event, self.debug)).finish()
        }
    }

    /// Implemented by `#[derive(Aggregate)]` for each event in its `events(...)`: the
    /// event enum converts `From` any of them, so an unlisted event returned from a
    /// handler is reported as `EventOf<Aggregate>` not implemented for it.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not an event of `{A}`",
        label = "not listed in `#[aggregate(events(...))]` of `{A}`",
        note = "list `{Self}` in `#[aggregate(events(...))]` on `{A}`, with an `impl Apply<{Self}> for {A}`"
    )]
    pub trait EventOf<A: crate::Aggregate> {
        /// The event as its variant of the aggregate's event enum.
        fn into_event(self) -> A::Event;
    }

    /// Implemented by `#[derive(Aggregate)]` for each command in its `commands(...)`:
    /// the command enum converts `From` any of them, so an unlisted command is reported
    /// as `CommandOf<Aggregate>` not implemented for it.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a command of `{A}`",
        label = "not listed in `#[aggregate(commands(...))]` of `{A}`",
        note = "list `{Self}` in `#[aggregate(commands(...))]` on `{A}`, with an `impl Handle<{Self}> for {A}`"
    )]
    pub trait CommandOf<A> {
        /// The command enum, `CartCommand`.
        type Enum;
        /// The command as its variant of the aggregate's command enum.
        fn into_command(self) -> Self::Enum;
    }

    fn payload_of<E: Event>(event: &E) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(event)
    }

    /// The [`EventMeta`] of `E`.
    pub const fn event_meta<E: Event>() -> EventMeta<E> {
        EventMeta {
            name: E::NAME,
            version: E::VERSION,
            aliases: E::ALIASES,
            decode: crate::event::decode_event::<E>,
            to_payload: payload_of::<E>,
            clone: <E as Clone>::clone,
            eq: <E as PartialEq>::eq,
            debug: <E as std::fmt::Debug>::fmt,
        }
    }

    /// The error of a stored event whose type no variant of an aggregate's event enum has.
    pub fn unknown_event_type(envelope: &crate::Envelope, known: &[&str]) -> crate::DecodeError {
        crate::DecodeError::unknown_type(envelope, known)
    }

    use crate::event::{Event, UpcastError};

    /// Deserializes `payload` as the current version of `E` (what the generated
    /// `Event::decode_version` does for the current version).
    pub fn deserialize_payload<E: Event>(payload: &serde_json::Value) -> Result<E, UpcastError> {
        E::deserialize(payload).map_err(UpcastError::Payload)
    }

    /// The total length of `parts`: the `N` of [`concat`].
    pub const fn total_len(parts: &[&[&'static str]]) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < parts.len() {
            total += parts[i].len();
            i += 1;
        }
        total
    }

    /// `parts` one after the other, in a `const` context (`EventSet::NAMES`,
    /// `Projection::EVENT_TYPES`). `N` must be [`total_len`]`(parts)`.
    pub const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
        let mut out = [""; N];
        let mut n = 0;
        let mut i = 0;
        while i < parts.len() {
            let mut j = 0;
            while j < parts[i].len() {
                out[n] = parts[i][j];
                n += 1;
                j += 1;
            }
            i += 1;
        }
        assert!(n == N, "`N` must be the total length of the parts");
        out
    }

    /// Whether two events share a stored name: the name or an alias of one equals the
    /// name or an alias of the other (used to reject ambiguous event lists at compile
    /// time).
    pub const fn share_a_name(a: &str, a_aliases: &[&str], b: &str, b_aliases: &[&str]) -> bool {
        if str_eq(a, b) || contains(b_aliases, a) || contains(a_aliases, b) {
            return true;
        }
        let mut i = 0;
        while i < a_aliases.len() {
            if contains(b_aliases, a_aliases[i]) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Whether `names` holds `name`, in a `const` context.
    pub const fn contains(names: &[&str], name: &str) -> bool {
        let mut i = 0;
        while i < names.len() {
            if str_eq(names[i], name) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// What `#[event(previous = T)]` requires: the current event can be made from `T`.
    /// The derive converts through it, spanned on `T`, to explain a missing `From` impl.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` names `{T}` as its previous version, but there is no `impl From<{T}> for {Self}`",
        label = "no `From<{T}>` impl for `{Self}`",
        note = "add `impl From<{T}> for {Self} {{ fn from(previous: {T}) -> Self {{ ... }} }}`, which turns the previous version into the current one"
    )]
    pub trait UpcastFrom<T>: Sized {
        /// `Self::from(previous)`.
        fn upcast_from(previous: T) -> Self;
    }

    impl<T, U: From<T>> UpcastFrom<T> for U {
        fn upcast_from(previous: T) -> Self {
            U::from(previous)
        }
    }

    /// What a raw upcaster (`#[event(upcast(from = 1, with = f))]`) must be.
    pub type Upcaster = fn(serde_json::Value) -> Result<serde_json::Value, crate::projection::BoxError>;

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

    /// `a == b` for strings in a `const` context (what [`share_a_name`] and [`contains`]
    /// compare with).
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
