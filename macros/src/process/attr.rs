//! Parsing of `#[process(...)]`: what each key accepts.

use proc_macro2::TokenStream;
use syn::{DeriveInput, ExprPath, Ident, LitStr, TypePath};

use super::Route;
use crate::errors::Errors;
use crate::meta::{self, attributes, List};
use crate::symbol::{COMMANDS, CORRELATE_BY, CORRELATE_WITH, CRATE, DEADLINES, EVENTS, NAME, PROCESS, REJECTED};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[process(correlate_by = order_id, events(CheckedOut, PaymentFailed))]`";

attributes! {
    /// `#[process(...)]` as written.
    pub(super) struct Attrs in PROCESS {
        /// `name = "fulfillment"`: the instance stream category.
        name: Slot<LitStr> = NAME => |meta, errors| meta::assign(meta, errors, "expected a string such as `name = \"fulfillment\"`"),
        /// `correlate_by = order_id`: the field naming the instance.
        correlate_by: Slot<Ident> = CORRELATE_BY => |meta, errors| meta::assign(
            meta,
            errors,
            "expected the name of a field every listed event has, such as `correlate_by = order_id` (without quotes)",
        ),
        /// `correlate_with = order_of`: a function of the envelope instead of a field.
        correlate_with: Slot<ExprPath> = CORRELATE_WITH => |meta, errors| meta::assign(
            meta,
            errors,
            "expected a function such as `correlate_with = order_of`, a `fn(&annals::Envelope) -> Option<String>` (without quotes)",
        ),
        /// `events(CheckedOut, PaymentFailed)`.
        events: Slot<List<TypePath>> = EVENTS => |meta, errors| meta::list(
            meta,
            errors,
            "expected a list of event types such as `events(CheckedOut, PaymentFailed)`",
            "expected an event type such as `CheckedOut` or `crate::orders::CheckedOut`",
        ),
        /// `commands(ReserveStock => Inventory)`.
        commands: Slot<List<Route>> = COMMANDS => |meta, errors| meta::list(
            meta,
            errors,
            "expected a list of commands with the aggregate handling each, such as `commands(ReserveStock => Inventory, TakePayment => Payment)`",
            "expected `Command => Aggregate`, such as `ReserveStock => Inventory`: the command and the aggregate that handles it",
        ),
        /// `deadlines(PaymentTimedOut)`.
        deadlines: Slot<List<TypePath>> = DEADLINES => |meta, errors| types(meta, errors, "deadlines(PaymentTimedOut)"),
        /// `rejected(TakePayment)`.
        rejected: Slot<List<TypePath>> = REJECTED => |meta, errors| types(meta, errors, "rejected(TakePayment)"),
        /// `crate = "my_annals"`: where annals is, when renamed or re-exported.
        krate: Slot<TokenStream> = CRATE => meta::crate_path,
    }
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    Attrs::parse(&input.attrs, USAGE, errors)
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
