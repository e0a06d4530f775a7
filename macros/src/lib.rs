//! The derive macros of [annals](https://docs.rs/annals): `#[derive(Event)]`,
//! `#[derive(Aggregate)]` and `#[derive(Projection)]`.
//!
//! Use them through the `annals` crate (`use annals::prelude::*;`), which documents their
//! attributes; the generated code refers to `::annals` and its hidden `__private` module.
//!
//! This file only routes. Each derive is one pipeline: the attributes are parsed with every
//! mistake collected (`errors::Errors`), then checked, then expanded:
//! - `event`: `#[derive(Event)]` with `#[event(name = "...", version = N, ...)]`
//!   (`attr` → `check` → `expand`);
//! - `aggregate`: `#[derive(Aggregate)]` with `#[aggregate(events(...), ...)]`
//!   (`attr` → `check` → `expand`);
//! - `projection`: `#[derive(Projection)]` with `#[projection(events(...), ...)]`
//!   (`attr` → `check` → `expand`).
//!
//! - `process`: `#[derive(ProcessManager)]` with `#[process(correlate_by = ..., events(...), ...)]`
//!   (`attr` → `check` → `expand`).
//!
//! Attribute names live in `symbol`, the shared parsing of `key = value` and `key(...)`
//! in `meta`, what aggregates and projections share about `events(...)` in `event_list`.

mod aggregate;
mod errors;
mod event;
mod event_list;
mod krate;
mod meta;
mod process;
mod projection;
mod symbol;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `annals::Event` for a struct or enum.
///
/// `#[event(name = "cart.item_added", version = 1)]`: `name` is the stable stored name
/// (default: the type's name), `version` the payload schema version (default: 1).
/// Schema evolution: `previous = ItemAddedV2`, `upcast(from = 1, with = v1_to_v2)` (once per
/// older version), `aliases("ItemAdded")`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Derives `annals::Aggregate` and generates the aggregate's event and command enums.
///
/// `#[aggregate(name = "cart", events(ItemAdded), commands(AddItem), error = CartError,
/// event_enum = CartEvent, command_enum = CartCommand)]`; only `events` is required.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::derive(&input).into()
}

/// Derives `annals::Projection` for a struct or enum, dispatching to its `On<E>` impls.
///
/// `#[projection(name = "cart_summaries", events(ItemAdded, CheckedOut), context = PgConnection)]`;
/// only `events` is required.
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    projection::derive(&input).into()
}

/// Derives `annals::process::Process`: a process manager reacting to events, deadlines
/// and rejected commands.
///
/// `#[process(name = "fulfillment", correlate_by = order_id, events(CheckedOut),
/// commands(ReserveStock => Inventory), deadlines(PaymentTimedOut), rejected(ReserveStock))]`;
/// `correlate_by` and `events` are required.
#[proc_macro_derive(ProcessManager, attributes(process))]
pub fn derive_process_manager(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    process::derive(&input).into()
}
