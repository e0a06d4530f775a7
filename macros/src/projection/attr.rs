//! Parsing of `#[projection(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[projection(...)]` attributes; they are merged,
//! and each key may be given once in total.

use proc_macro2::TokenStream;
use syn::{DeriveInput, LitStr, Type, TypePath};

use crate::errors::Errors;
use crate::meta::{self, attributes, List};
use crate::symbol::{CONTEXT, CRATE, EVENTS, NAME, PROJECTION};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[projection(events(ItemAdded, ItemRemoved))]`";

attributes! {
    /// `#[projection(...)]` as written.
    pub(super) struct Attrs in PROJECTION {
        /// `name = "cart_summaries"`: the checkpoint name.
        name: Slot<LitStr> = NAME => |meta, errors| meta::assign(meta, errors, "expected a string such as `name = \"cart_summaries\"`"),
        /// `events(ItemAdded, ItemRemoved)`.
        events: Slot<List<TypePath>> = EVENTS => meta::event_types,
        /// `context = annals_postgres::PgConnection`.
        context: Slot<Type> = CONTEXT => |meta, errors| meta::assign(
            meta,
            errors,
            "expected a type such as `context = annals_postgres::PgConnection` (without quotes)",
        ),
        /// `crate = "my_annals"`: where annals is, when renamed or re-exported.
        krate: Slot<TokenStream> = CRATE => meta::crate_path,
    }
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    Attrs::parse(&input.attrs, USAGE, errors)
}
