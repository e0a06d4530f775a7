//! Parsing of `#[aggregate(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[aggregate(...)]` attributes; they are merged,
//! and each key may be given once in total.

use proc_macro2::TokenStream;
use syn::{DeriveInput, Ident, LitStr, Type, TypePath};

use crate::errors::Errors;
use crate::meta::{self, attributes, List};
use crate::symbol::{AGGREGATE, COMMANDS, COMMAND_ENUM, CRATE, ERROR, EVENTS, EVENT_ENUM, NAME};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[aggregate(events(ItemAdded, ItemRemoved), commands(AddItem))]`";

attributes! {
    /// `#[aggregate(...)]` as written.
    pub(super) struct Attrs in AGGREGATE {
        /// `name = "cart"`: the stored aggregate name.
        name: Slot<LitStr> = NAME => |meta, errors| meta::assign(meta, errors, "expected a string such as `name = \"cart\"`"),
        /// `events(ItemAdded, ItemRemoved)`.
        events: Slot<List<TypePath>> = EVENTS => meta::event_types,
        /// `commands(AddItem, RemoveItem)`.
        commands: Slot<List<TypePath>> = COMMANDS => |meta, errors| meta::list(
            meta,
            errors,
            "expected a list of command types such as `commands(AddItem, RemoveItem)`",
            "expected a command type such as `AddItem` or `crate::cart::AddItem`",
        ),
        /// `error = CartError`.
        error: Slot<Type> = ERROR => |meta, errors| meta::assign(meta, errors, "expected a type such as `error = CartError`"),
        /// `event_enum = CartEvent`.
        event_enum: Slot<Ident> = EVENT_ENUM => |meta, errors| meta::assign(meta, errors, "expected a name such as `event_enum = CartEvent`"),
        /// `command_enum = CartCommand`.
        command_enum: Slot<Ident> = COMMAND_ENUM => |meta, errors| meta::assign(meta, errors, "expected a name such as `command_enum = CartCommand`"),
        /// `crate = "my_annals"`: where annals is, when renamed or re-exported.
        krate: Slot<TokenStream> = CRATE => meta::crate_path,
    }
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    Attrs::parse(&input.attrs, USAGE, errors)
}
