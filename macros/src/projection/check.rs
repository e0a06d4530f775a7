//! Rules across the attributes and the item; builds the [`Model`].

use std::collections::HashSet;

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, LitStr};

use super::attr::{Attrs, USAGE};
use super::Model;
use crate::errors::Errors;
use crate::event_list::{display, snake_case};

/// Checks everything, recording each problem. Returns the model to expand, repaired
/// where needed, or `None` when the item cannot implement `Projection` at all (a union,
/// a type with lifetime parameters).
pub(super) fn check<'a>(input: &'a DeriveInput, mut attrs: Attrs, errors: &mut Errors) -> Option<Model<'a>> {
    let ident = &input.ident;
    let expandable = check_item(input, errors);
    let default_name = || snake_case(&ident.unraw().to_string());
    let name = match attrs.name.value() {
        Some(lit) => check_name(lit, errors).unwrap_or_else(default_name),
        None => default_name(),
    };

    let events = match attrs.events.take() {
        Some(list) if list.items.is_empty() => {
            errors.spanned(
                &list.tokens,
                format!(
                    "`events()` is empty; list the events `{ident}` handles, such as `events(ItemAdded, ItemRemoved)`"
                ),
            );
            Vec::new()
        }
        Some(list) => {
            // A type listed twice is an error on the later one, which is dropped.
            let mut seen = HashSet::new();
            let mut events = Vec::with_capacity(list.items.len());
            for ty in list.items {
                if seen.insert(ty.to_token_stream().to_string()) {
                    events.push(ty);
                } else {
                    errors
                        .spanned(&ty, format!("`{}` is listed twice in `events(...)`; remove this one", display(&ty)));
                }
            }
            events
        }
        None if attrs.events.written() || attrs.unknown_key => Vec::new(),
        None => {
            let message = format!("missing `events(...)`: list the events `{ident}` handles, such as {USAGE}");
            match &attrs.first {
                Some(first) => errors.spanned(first, message),
                None => errors.spanned(ident, message),
            }
            Vec::new()
        }
    };

    expandable.then_some(Model { ident, generics: &input.generics, name, events, context: attrs.context.take() })
}

/// Whether the item can implement `Projection` at all.
fn check_item(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Data::Union(data) = &input.data {
        errors.at(data.union_token.span, "`#[derive(Projection)]` does not support unions; use a struct or an enum");
        ok = false;
    }
    // Type and const parameters are fine (a projection generic over its store, say): the
    // impl requires `Send + 'static` of each type parameter. A projection lives as long as
    // its subscription, so it cannot borrow.
    if let Some(lifetime) = input.generics.lifetimes().next() {
        errors.spanned(
            lifetime,
            "projections cannot borrow: a projection lives as long as its subscription (`'static`); own the data (`String`, `Arc<...>`) and remove the lifetime parameter",
        );
        ok = false;
    }
    ok
}

/// The projection name, if valid.
fn check_name(lit: &LitStr, errors: &mut Errors) -> Option<String> {
    let name = lit.value();
    if name.is_empty() {
        errors.spanned(
            lit,
            "the projection name is empty; write the key of its checkpoint, such as `name = \"cart_summaries\"`, or remove `name` to use the type's name in snake_case",
        );
        return None;
    }
    Some(name)
}
