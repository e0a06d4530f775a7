//! Parsing of `#[process(...)]`: what each key accepts.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, ExprPath, Ident, LitStr, TypePath};

use super::Route;
use crate::errors::Errors;
use crate::meta::{self, List, Slot};
use crate::symbol::{
    COMMANDS, CORRELATE_BY, CORRELATE_WITH, CRATE, DEADLINES, EVENTS, NAME, PROCESS, PROCESS_KEYS, REJECTED,
};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[process(correlate_by = order_id, events(CheckedOut, PaymentFailed))]`";

/// The attributes as written; `None` when absent or invalid (the error is recorded).
pub(super) struct Attrs {
    pub(super) krate: Option<TokenStream>,
    pub(super) name: Option<LitStr>,
    pub(super) correlate_by: Option<Ident>,
    pub(super) correlate_by_written: bool,
    /// `correlate_with = order_of`: a function of the envelope instead of a field.
    pub(super) correlate_with: Option<ExprPath>,
    pub(super) correlate_with_written: bool,
    pub(super) events: Option<List<TypePath>>,
    pub(super) events_written: bool,
    pub(super) commands: Option<List<Route>>,
    pub(super) deadlines: Option<List<TypePath>>,
    pub(super) rejected: Option<List<TypePath>>,
    /// The first `#[process(...)]`, to point at when a required key is missing.
    pub(super) first: Option<TokenStream>,
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    let mut name = Slot::new(PROCESS, NAME);
    let mut krate = Slot::new(PROCESS, CRATE);
    let mut correlate_by = Slot::new(PROCESS, CORRELATE_BY);
    let mut correlate_with = Slot::new(PROCESS, CORRELATE_WITH);
    let mut events = Slot::new(PROCESS, EVENTS);
    let mut commands = Slot::new(PROCESS, COMMANDS);
    let mut deadlines = Slot::new(PROCESS, DEADLINES);
    let mut rejected = Slot::new(PROCESS, REJECTED);

    meta::parse_attrs(&input.attrs, PROCESS, USAGE, errors, |meta, errors| {
        let path = &meta.path;
        if *path == NAME {
            // #[process(name = "fulfillment")]
            let value = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"fulfillment\"`")?;
            name.set(errors, path, value);
        } else if *path == CORRELATE_BY {
            // #[process(correlate_by = order_id)]
            let value = meta::assign::<Ident>(
                meta,
                errors,
                "expected the name of a field every listed event has, such as `correlate_by = order_id` (without quotes)",
            )?;
            correlate_by.set(errors, path, value);
        } else if *path == CORRELATE_WITH {
            // #[process(correlate_with = order_of)]
            let value = meta::assign::<ExprPath>(
                meta,
                errors,
                "expected a function such as `correlate_with = order_of`, a `fn(&annals::Envelope) -> Option<String>` (without quotes)",
            )?;
            correlate_with.set(errors, path, value);
        } else if *path == EVENTS {
            // #[process(events(CheckedOut, PaymentFailed))]
            let value = meta::list::<TypePath>(
                meta,
                errors,
                "expected a list of event types such as `events(CheckedOut, PaymentFailed)`",
                "expected an event type such as `CheckedOut` or `crate::orders::CheckedOut`",
            )?;
            events.set(errors, path, value);
        } else if *path == COMMANDS {
            // #[process(commands(ReserveStock => Inventory))]
            let value = meta::list::<Route>(
                meta,
                errors,
                "expected a list of commands with the aggregate handling each, such as `commands(ReserveStock => Inventory, TakePayment => Payment)`",
                "expected `Command => Aggregate`, such as `ReserveStock => Inventory`: the command and the aggregate that handles it",
            )?;
            commands.set(errors, path, value);
        } else if *path == DEADLINES {
            // #[process(deadlines(PaymentTimedOut))]
            let value = types(meta, errors, "deadlines(PaymentTimedOut)")?;
            deadlines.set(errors, path, value);
        } else if *path == REJECTED {
            // #[process(rejected(TakePayment))]
            let value = types(meta, errors, "rejected(TakePayment)")?;
            rejected.set(errors, path, value);
        } else if *path == CRATE {
            let value = meta::crate_path(meta, errors)?;
            krate.set(errors, path, value);
        } else {
            meta::unknown_key(meta, PROCESS, PROCESS_KEYS, errors)?;
        }
        Ok(())
    });

    Attrs {
        krate: krate.get(),
        name: name.get(),
        correlate_by_written: correlate_by.written(),
        correlate_by: correlate_by.get(),
        correlate_with_written: correlate_with.written(),
        correlate_with: correlate_with.get(),
        events_written: events.written(),
        events: events.get(),
        commands: commands.get(),
        deadlines: deadlines.get(),
        rejected: rejected.get(),
        first: input.attrs.iter().find(|a| a.path().is_ident(PROCESS.as_str())).map(ToTokens::to_token_stream),
    }
}

/// `key(A, B)` for `deadlines` and `rejected`.
fn types(
    meta: &syn::meta::ParseNestedMeta<'_>,
    errors: &mut Errors,
    example: &str,
) -> syn::Result<Option<List<TypePath>>> {
    meta::list::<TypePath>(
        meta,
        errors,
        format!("expected a list of types such as `{example}`"),
        "expected a type such as `PaymentTimedOut` or `crate::orders::PaymentTimedOut`",
    )
}
