//! Rules across the attributes and the item; builds the [`Model`].

use std::collections::HashMap;

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, LitStr, TypePath};

use super::attr::{Attrs, USAGE};
use super::{type_name, Correlation, Model, Route};
use crate::errors::Errors;
use crate::event_list::{display, snake_case};
use crate::meta::List;

/// Checks everything, recording each problem. Returns the model to expand, repaired
/// where needed, or `None` when the item cannot implement `Process` at all.
pub(super) fn check<'a>(input: &'a DeriveInput, mut attrs: Attrs, errors: &mut Errors) -> Option<Model<'a>> {
    let ident = &input.ident;
    let expandable = check_item(input, errors);
    let default_name = || snake_case(&ident.unraw().to_string());
    let name = match attrs.name.value() {
        Some(lit) => check_name(lit, errors).unwrap_or_else(default_name),
        None => default_name(),
    };
    let missing = |errors: &mut Errors, message: String| match &attrs.first {
        Some(first) => errors.spanned(first, message),
        None => errors.spanned(ident, message),
    };
    let correlation = match (attrs.correlate_by.take(), attrs.correlate_with.take()) {
        (Some(field), None) => Some(Correlation::Field(field)),
        (None, Some(function)) => Some(Correlation::Function(function)),
        (Some(_), Some(function)) => {
            errors.spanned(
                &function,
                "give either `correlate_by = <field>` or `correlate_with = <function>`, not both; remove one",
            );
            None
        }
        (None, None) => {
            if !attrs.correlate_by.written() && !attrs.correlate_with.written() && !attrs.unknown_key {
                missing(
                    errors,
                    format!("missing `correlate_by = <field>`: name the field of every listed event that says which `{ident}` instance it belongs to, as in {USAGE} (or `correlate_with = <function>` to compute it from the envelope)"),
                );
            }
            None
        }
    };
    let events = match attrs.events.take() {
        Some(list) if list.items.is_empty() => {
            errors.spanned(&list.tokens, format!("`events()` is empty; list the events `{ident}` reacts to, such as `events(CheckedOut, PaymentFailed)`"));
            Vec::new()
        }
        Some(list) => unique(list, "events", errors),
        None if attrs.events.written() || attrs.unknown_key => Vec::new(),
        None => {
            missing(errors, format!("missing `events(...)`: list the events `{ident}` reacts to, as in {USAGE}"));
            Vec::new()
        }
    };
    let commands = attrs.commands.take().map(|list| unique_routes(list, errors)).unwrap_or_default();
    let deadlines = attrs.deadlines.take().map(|list| unique(list, "deadlines", errors)).unwrap_or_default();
    let mut rejected = attrs.rejected.take().map(|list| unique(list, "rejected", errors)).unwrap_or_default();
    rejected.retain(|ty| {
        let listed = commands.iter().any(|route| route.command.to_token_stream().to_string() == ty.to_token_stream().to_string());
        if !listed {
            errors.spanned(
                ty,
                format!(
                    "`{}` is in `rejected(...)` but not in `commands(...)`: the process only learns of rejections of commands it sends; add `{} => TheAggregate` to `commands(...)`",
                    display(ty),
                    display(ty)
                ),
            );
        }
        listed
    });
    expandable.then_some(Model { ident, name, correlation, events, commands, deadlines, rejected })
}

/// The types of `list` in order, each listed once (a repeat is an error on it) and with a
/// name no other has (the last path segment is what reactions record).
fn unique(list: List<TypePath>, key: &str, errors: &mut Errors) -> Vec<TypePath> {
    let mut seen = HashMap::new();
    let mut types = Vec::with_capacity(list.items.len());
    for ty in list.items {
        let written = ty.to_token_stream().to_string();
        match seen.insert(type_name(&ty), written.clone()) {
            Some(earlier) if earlier == written => {
                errors.spanned(&ty, format!("`{}` is listed twice in `{key}(...)`; remove this one", display(&ty)))
            }
            Some(_) => errors.spanned(
                &ty,
                format!("another type named `{}` is already in `{key}(...)`; records name types by their last path segment, so rename one", type_name(&ty)),
            ),
            None => types.push(ty),
        }
    }
    types
}

/// [`unique`] for `commands(...)`.
fn unique_routes(list: List<Route>, errors: &mut Errors) -> Vec<Route> {
    let mut seen = HashMap::new();
    let mut routes = Vec::with_capacity(list.items.len());
    for route in list.items {
        if route.aggregate.is_none() {
            errors.spanned(
                &route.command,
                format!(
                    "`{}` needs the aggregate that handles it: write `{} => TheAggregate`, such as `ReserveStock => Inventory`",
                    display(&route.command),
                    display(&route.command)
                ),
            );
        }
        let written = route.command.to_token_stream().to_string();
        match seen.insert(type_name(&route.command), written.clone()) {
            Some(earlier) if earlier == written => errors.spanned(
                &route.command,
                format!("`{}` is listed twice in `commands(...)`; a command goes to one aggregate type, so remove this one", display(&route.command)),
            ),
            Some(_) => errors.spanned(
                &route.command,
                format!("another command named `{}` is already in `commands(...)`; records name commands by their last path segment, so rename one", type_name(&route.command)),
            ),
            None => routes.push(route),
        }
    }
    routes
}

/// Whether the item can implement `Process` at all.
fn check_item(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Data::Union(data) = &input.data {
        errors
            .at(data.union_token.span, "`#[derive(ProcessManager)]` does not support unions; use a struct or an enum");
        ok = false;
    }
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "process managers cannot be generic: the process name keys its instance streams, checkpoint and deadlines, so it must identify one concrete type; remove the generic parameters",
        );
        ok = false;
    }
    ok
}

/// The process name, if valid.
fn check_name(lit: &LitStr, errors: &mut Errors) -> Option<String> {
    let name = lit.value();
    if name.is_empty() || name.contains(char::is_whitespace) {
        errors.spanned(
            lit,
            "the process name must be non-empty without spaces, such as `name = \"fulfillment\"`; or remove `name` to use the type's name in snake_case",
        );
        return None;
    }
    Some(name)
}
