//! Parsing of `#[projection(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[projection(...)]` attributes; they are merged,
//! and each key may be given once in total.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, LitStr, Type, TypePath};

use crate::errors::Errors;
use crate::meta::{self, List, Slot};
use crate::symbol::{CONTEXT, CRATE, EVENTS, NAME, PROJECTION, PROJECTION_KEYS};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[projection(events(ItemAdded, ItemRemoved))]`";

/// The attributes as written; `None` when absent or invalid (the error is recorded).
pub(super) struct Attrs {
    /// `crate = "..."`: where annals is, when renamed or re-exported.
    pub(super) krate: Option<TokenStream>,
    pub(super) name: Option<LitStr>,
    pub(super) events: Option<List<TypePath>>,
    /// Whether `events` was written at all (an invalid value is already reported).
    pub(super) events_written: bool,
    pub(super) context: Option<Type>,
    /// The first `#[projection(...)]`, to point at when a required key is missing.
    pub(super) first: Option<TokenStream>,
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    let mut name = Slot::new(PROJECTION, NAME);
    let mut krate = Slot::new(PROJECTION, CRATE);
    let mut events = Slot::new(PROJECTION, EVENTS);
    let mut context = Slot::new(PROJECTION, CONTEXT);

    meta::parse_attrs(&input.attrs, PROJECTION, USAGE, errors, |meta, errors| {
        let path = &meta.path;
        if *path == NAME {
            // #[projection(name = "cart_summaries")]
            let value = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"cart_summaries\"`")?;
            name.set(errors, path, value);
        } else if *path == EVENTS {
            // #[projection(events(ItemAdded, ItemRemoved))]
            let value = meta::list::<TypePath>(
                meta,
                errors,
                "expected a list of event types such as `events(ItemAdded, ItemRemoved)`",
                "expected an event type such as `ItemAdded` or `crate::cart::ItemAdded`",
            )?;
            events.set(errors, path, value);
        } else if *path == CONTEXT {
            // #[projection(context = annals_postgres::PgConnection)]
            let value = meta::assign::<Type>(
                meta,
                errors,
                "expected a type such as `context = annals_postgres::PgConnection` (without quotes)",
            )?;
            context.set(errors, path, value);
        } else if *path == CRATE {
            // #[projection(crate = "my_annals")]
            let value = meta::crate_path(meta, errors)?;
            krate.set(errors, path, value);
        } else {
            meta::unknown_key(meta, PROJECTION, PROJECTION_KEYS, errors)?;
        }
        Ok(())
    });

    Attrs {
        krate: krate.get(),
        name: name.get(),
        events_written: events.written(),
        events: events.get(),
        context: context.get(),
        first: input.attrs.iter().find(|a| a.path().is_ident(PROJECTION.as_str())).map(ToTokens::to_token_stream),
    }
}
