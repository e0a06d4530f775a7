//! Parsing of `#[aggregate(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[aggregate(...)]` attributes; they are merged,
//! and each key may be given once in total.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, Ident, LitStr, Type, TypePath};

use crate::errors::Errors;
use crate::meta::{self, List, Slot};
use crate::symbol::{AGGREGATE, AGGREGATE_KEYS, COMMANDS, COMMAND_ENUM, CRATE, ERROR, EVENTS, EVENT_ENUM, NAME};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[aggregate(events(ItemAdded, ItemRemoved), commands(AddItem))]`";

/// The attributes as written; `None` when absent or invalid (the error is recorded).
pub(super) struct Attrs {
    /// `crate = "..."`: where annals is, when renamed or re-exported.
    pub(super) krate: Option<TokenStream>,
    pub(super) name: Option<LitStr>,
    pub(super) events: Option<List<TypePath>>,
    /// Whether `events` was written at all (an invalid value is already reported).
    pub(super) events_written: bool,
    pub(super) commands: Option<List<TypePath>>,
    pub(super) error: Option<Type>,
    pub(super) event_enum: Option<Ident>,
    /// With the tokens `command_enum = ...`, to point at it if there are no commands.
    pub(super) command_enum: Option<(TokenStream, Ident)>,
    /// The first `#[aggregate(...)]`, to point at when a required key is missing.
    pub(super) first: Option<TokenStream>,
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    let mut name = Slot::new(AGGREGATE, NAME);
    let mut krate = Slot::new(AGGREGATE, CRATE);
    let mut events = Slot::new(AGGREGATE, EVENTS);
    let mut commands = Slot::new(AGGREGATE, COMMANDS);
    let mut error = Slot::new(AGGREGATE, ERROR);
    let mut event_enum = Slot::new(AGGREGATE, EVENT_ENUM);
    let mut command_enum = Slot::new(AGGREGATE, COMMAND_ENUM);

    meta::parse_attrs(&input.attrs, AGGREGATE, USAGE, errors, |meta, errors| {
        let path = &meta.path;
        if *path == NAME {
            // #[aggregate(name = "cart")]
            let value = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"cart\"`")?;
            name.set(errors, path, value);
        } else if *path == EVENTS {
            // #[aggregate(events(ItemAdded, ItemRemoved))]
            let value = meta::list::<TypePath>(
                meta,
                errors,
                "expected a list of event types such as `events(ItemAdded, ItemRemoved)`",
                "expected an event type such as `ItemAdded` or `crate::cart::ItemAdded`",
            )?;
            events.set(errors, path, value);
        } else if *path == COMMANDS {
            // #[aggregate(commands(AddItem, RemoveItem))]
            let value = meta::list::<TypePath>(
                meta,
                errors,
                "expected a list of command types such as `commands(AddItem, RemoveItem)`",
                "expected a command type such as `AddItem` or `crate::cart::AddItem`",
            )?;
            commands.set(errors, path, value);
        } else if *path == ERROR {
            // #[aggregate(error = CartError)]
            let value = meta::assign::<Type>(meta, errors, "expected a type such as `error = CartError`")?;
            error.set(errors, path, value);
        } else if *path == EVENT_ENUM {
            // #[aggregate(event_enum = CartEvent)]
            let value = meta::assign::<Ident>(meta, errors, "expected a name such as `event_enum = CartEvent`")?;
            event_enum.set(errors, path, value);
        } else if *path == COMMAND_ENUM {
            // #[aggregate(command_enum = CartCommand)]
            let value = meta::assign::<Ident>(meta, errors, "expected a name such as `command_enum = CartCommand`")?;
            let value = value.map(|ident| {
                let mut tokens = path.to_token_stream();
                tokens.extend([quote::quote!(=), ident.to_token_stream()]);
                (tokens, ident)
            });
            command_enum.set(errors, path, value);
        } else if *path == CRATE {
            // #[aggregate(crate = "my_annals")]
            let value = meta::crate_path(meta, errors)?;
            krate.set(errors, path, value);
        } else {
            meta::unknown_key(meta, AGGREGATE, AGGREGATE_KEYS, errors)?;
        }
        Ok(())
    });

    Attrs {
        krate: krate.get(),
        name: name.get(),
        events_written: events.written(),
        events: events.get(),
        commands: commands.get(),
        error: error.get(),
        event_enum: event_enum.get(),
        command_enum: command_enum.get(),
        first: input.attrs.iter().find(|a| a.path().is_ident(AGGREGATE.as_str())).map(ToTokens::to_token_stream),
    }
}
