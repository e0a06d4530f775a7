//! Rules across the attributes and the item; builds the [`Model`].

use std::collections::{HashMap, HashSet};

use quote::{format_ident, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput};

use super::attr::{Attrs, USAGE};
use super::{Member, Model};
use crate::errors::Errors;
use crate::event_list::{display, snake_case};
use crate::meta::List;
use crate::symbol::{COMMANDS, EVENTS};

/// Checks everything, recording each problem. Returns the model to expand, repaired
/// where needed, or `None` when the item cannot implement `Aggregate` at all (a union,
/// a generic type).
pub(super) fn check<'a>(input: &'a DeriveInput, mut attrs: Attrs, errors: &mut Errors) -> Option<Model<'a>> {
    let ident = &input.ident;
    let expandable = check_item(input, errors);

    let name = match attrs.name.value() {
        Some(lit) => check_name(lit, errors).unwrap_or_else(|| snake_case(&ident.unraw().to_string())),
        None => snake_case(&ident.unraw().to_string()),
    };

    let events_span = attrs.events.tokens().map(|tokens| tokens.span());
    let events = match attrs.events.take() {
        Some(list) if list.items.is_empty() => {
            errors.spanned(
                &list.tokens,
                format!(
                    "`events()` is empty; list the events `{ident}` applies, such as `events(ItemAdded, ItemRemoved)`"
                ),
            );
            Vec::new()
        }
        Some(list) => members(list, EVENTS.as_str(), errors),
        None if attrs.events.written() || attrs.unknown_key => Vec::new(),
        None => {
            let message = format!("missing `events(...)`: list the events `{ident}` applies, such as {USAGE}");
            match &attrs.first {
                Some(first) => errors.spanned(first, message),
                None => errors.spanned(ident, message),
            }
            Vec::new()
        }
    };

    let commands_span = attrs.commands.tokens().map(|tokens| tokens.span());
    let commands = match attrs.commands.take() {
        Some(list) if list.items.is_empty() => {
            errors.spanned(
                &list.tokens,
                format!("`commands()` is empty; list the commands `{ident}` handles, such as `commands(AddItem, RemoveItem)`, or remove it"),
            );
            None
        }
        Some(list) => Some(members(list, COMMANDS.as_str(), errors)),
        None => None,
    };

    let event_enum = attrs.event_enum.take().unwrap_or_else(|| format_ident!("{}Event", ident.unraw()));
    let command_enum = match (attrs.command_enum.take(), attrs.command_enum.tokens()) {
        (Some(command_enum), Some(tokens)) => {
            if commands.is_none() {
                errors.spanned(
                    tokens,
                    format!("`command_enum` names the command enum, but `{ident}` lists no commands; add `commands(...)` or remove `command_enum`"),
                );
            }
            command_enum
        }
        _ => format_ident!("{}Command", ident.unraw()),
    };
    if commands.is_some() && event_enum == command_enum {
        errors.spanned(
            &command_enum,
            format!("the event enum and the command enum are both named `{command_enum}`; give them different names with `event_enum = ...` and `command_enum = ...`"),
        );
    }

    expandable.then_some(Model {
        ident,
        vis: &input.vis,
        name,
        events,
        events_span,
        commands,
        commands_span,
        error: attrs.error.take(),
        event_enum,
        command_enum,
    })
}

/// Whether the item can implement `Aggregate` at all.
fn check_item(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Data::Union(data) = &input.data {
        errors.at(
            data.union_token.span,
            "`#[derive(Aggregate)]` does not support unions; use a struct, or an enum for a state machine",
        );
        ok = false;
    }
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "aggregates cannot be generic: the aggregate name and its event enum must identify one concrete type; remove the generic parameters",
        );
        ok = false;
    }
    ok
}

/// The stored aggregate name, if valid.
fn check_name(lit: &syn::LitStr, errors: &mut Errors) -> Option<String> {
    let name = lit.value();
    if name.is_empty() {
        errors.spanned(
            lit,
            "the aggregate name is empty; write the name its streams start with, such as `name = \"cart\"`, or remove `name` to use the type's name in snake_case",
        );
        return None;
    }
    if name.contains('-') {
        errors.spanned(
            lit,
            format!(
                "the aggregate name `{name}` contains `-`, which separates the name from the id in stream ids (`{name}-42`); use `_` or `.` instead, such as `name = \"{}\"`",
                name.replace('-', "_")
            ),
        );
        return None;
    }
    Some(name)
}

/// The listed types as enum variants. A type listed twice, or two types that would become
/// the same variant, are errors on the later one, which is dropped.
fn members(list: List<syn::TypePath>, key: &str, errors: &mut Errors) -> Vec<Member> {
    let mut members = Vec::with_capacity(list.items.len());
    let mut types = HashSet::new();
    // variant name → the type that takes it
    let mut variants = HashMap::new();
    for ty in list.items {
        if !types.insert(ty.to_token_stream().to_string()) {
            errors.spanned(&ty, format!("`{}` is listed twice in `{key}(...)`; remove this one", display(&ty)));
            continue;
        }
        let Some(last) = ty.path.segments.last() else {
            continue;
        };
        let variant = last.ident.clone();
        if let Some(first) = variants.get(&variant.unraw().to_string()) {
            errors.spanned(
                &ty,
                format!(
                    "`{first}` and `{}` would both be the variant `{variant}` of the generated enum; give the types distinct names",
                    display(&ty),
                ),
            );
            continue;
        }
        variants.insert(variant.unraw().to_string(), display(&ty));
        members.push(Member { ty, variant });
    }
    members
}
