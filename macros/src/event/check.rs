//! Rules across the attributes and the item; builds the [`Model`].

use std::collections::{BTreeMap, HashSet};

use syn::ext::IdentExt;
use syn::{Data, DeriveInput, LitStr};

use super::attr::{Attrs, Upcast};
use super::{Evolution, Model};
use crate::errors::Errors;

/// A raw upcaster's signature, for messages.
const UPCASTER: &str = "`fn(serde_json::Value) -> Result<serde_json::Value, annals::BoxError>`";

/// Checks everything, recording each problem. Returns the model to expand, repaired
/// where needed, or `None` when the item cannot implement `Event` at all (a union, a
/// generic type).
pub(super) fn check<'a>(input: &'a DeriveInput, mut attrs: Attrs, errors: &mut Errors) -> Option<Model<'a>> {
    let ident = &input.ident;
    let expandable = check_item(input, errors);
    let name = attrs.name.take().unwrap_or_else(|| LitStr::new(&ident.unraw().to_string(), ident.span()));
    let version = attrs.version.value().map_or(1, |(_, version)| *version);
    let aliases = match attrs.aliases.take() {
        Some(list) => aliases(&list.tokens, list.items, &name, errors),
        None => Vec::new(),
    };

    // With an invalid `version` or `oldest` (already reported) the version rules cannot
    // be checked.
    let version_known = !attrs.version.invalid() && !attrs.oldest.invalid();
    let oldest = attrs.oldest.value().map_or(1, |(_, oldest)| *oldest);
    let upcasts_written = attrs.upcasts.written();
    let upcasts = attrs.upcasts.take();
    let mut evolution = Evolution::None;
    if let Some((lit, _)) = attrs.oldest.value().filter(|_| version_known && oldest > version) {
        errors.spanned(
            lit,
            format!("`oldest = {oldest}` is newer than `{ident}`'s version {version}; `oldest` is the oldest version ever stored, from 1 to {version}"),
        );
    } else if version_known && version == 1 {
        let first = attrs.previous.tokens().or(attrs.upcasts.first_tokens());
        if let Some(first) = first {
            errors.spanned(
                first,
                format!("`{ident}` is at version 1, so there is no older version to upcast from; when its shape changes, write `version = 2` and declare how version 1 becomes version 2"),
            );
        }
    } else if !version_known {
        // Without a valid version no upcasting is generated: it would only add errors.
    } else if let (Some(tokens), Some(previous)) = (attrs.previous.tokens(), attrs.previous.value()) {
        let previous = previous.clone();
        if let Some((lit, _)) = attrs.oldest.value() {
            errors.spanned(
                lit,
                format!(
                    "`oldest` and `previous` cannot be combined: with `previous`, versions before {version} decode through `{}`, which says which versions it reads; remove `oldest`",
                    crate::event_list::display(&previous),
                ),
            );
        }
        if !upcasts.is_empty() {
            errors.spanned(
                tokens,
                format!(
                    "`previous` and `upcast(...)` cannot be combined: with `previous`, versions before {version} decode through `{}`; move the `upcast(...)` to that type's `#[event(...)]`, or remove `previous`",
                    crate::event_list::display(&previous),
                ),
            );
        }
        evolution = Evolution::Previous(previous);
    } else if !upcasts.is_empty() {
        let lits = Lits { version: attrs.version.value(), oldest: attrs.oldest.value() };
        evolution = Evolution::Upcast(check_upcasts(ident, upcasts, version, oldest, lits, errors));
    } else if oldest < version && !upcasts_written && !attrs.previous.written() {
        // Neither `previous` nor `upcast(...)`: older stored versions could not be read.
        let older = (oldest..version).map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        let message = format!(
            "`{ident}` is at version {version}, but nothing says how a stored {older} reads; add `upcast(from = {oldest}, with = v{oldest}_to_v{next})` (each a {UPCASTER}) or `previous = {ident}V{prev}` (the type of version {prev}, with `From<{ident}V{prev}> for {ident}`); if no version before {version} was ever stored (the event is new at version {version}), write `oldest = {version}`",
            next = oldest + 1,
            prev = version - 1,
        );
        match (attrs.oldest.value(), attrs.version.value()) {
            (Some((lit, _)), _) | (None, Some((lit, _))) => errors.spanned(lit, message),
            (None, None) => errors.spanned(ident, message),
        }
    }

    expandable.then_some(Model { ident, name, version, aliases, evolution })
}

/// Whether the item can implement `Event` at all.
fn check_item(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Data::Union(data) = &input.data {
        errors.at(
            data.union_token.span,
            "`#[derive(Event)]` does not support unions: events are stored as JSON through serde; use a struct or an enum",
        );
        ok = false;
    }
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "events cannot be generic: the stored name must identify one concrete type; remove the generic parameters, or derive `Event` on a concrete type per event",
        );
        ok = false;
    }
    ok
}

/// The valid aliases: not empty, not the name, each once.
fn aliases(tokens: &proc_macro2::TokenStream, items: Vec<LitStr>, name: &LitStr, errors: &mut Errors) -> Vec<LitStr> {
    if items.is_empty() {
        errors.spanned(
            tokens,
            "`aliases()` is empty; list the names this event was stored under before, such as `aliases(\"ItemAdded\")`, or remove it",
        );
    }
    let mut seen = HashSet::new();
    let mut valid = Vec::with_capacity(items.len());
    for alias in items {
        let value = alias.value();
        if value.is_empty() {
            errors.spanned(
                &alias,
                "an alias is empty; write a name this event was stored under, such as `\"ItemAdded\"`",
            );
        } else if value == name.value() {
            errors.spanned(
                &alias,
                format!("`{value}` is the event's name, not an alias; list only the other names it was stored under"),
            );
        } else if !seen.insert(value.clone()) {
            errors.spanned(&alias, format!("the alias `{value}` is listed twice; remove this one"));
        } else {
            valid.push(alias);
        }
    }
    valid
}

/// The literals of `version` and `oldest`, to point at.
struct Lits<'a> {
    version: Option<&'a (syn::LitInt, u32)>,
    oldest: Option<&'a (syn::LitInt, u32)>,
}

/// The raw upcasters by the version they start from. Every version from `oldest` to
/// `version - 1` needs exactly one.
fn check_upcasts(
    ident: &syn::Ident,
    upcasts: Vec<Upcast>,
    version: u32,
    oldest: u32,
    lits: Lits<'_>,
    errors: &mut Errors,
) -> BTreeMap<u32, syn::Path> {
    let range = if version.saturating_sub(oldest) <= 1 {
        format!("`from` can only be {oldest}")
    } else {
        format!("`from` ranges from {oldest} to {}", version - 1)
    };
    let mut by_version = BTreeMap::new();
    // Whether an upcaster's `from` is missing or invalid (already reported): the versions
    // without an upcaster are then not reported too.
    let mut bad_from = false;
    // Versions whose upcaster is written but broken: not reported as missing too.
    let mut written = HashSet::new();
    for upcast in upcasts {
        let Upcast { tokens, mut keys } = upcast;
        // After an unknown key (reported; it may be the misspelled one) a missing key is
        // not reported too.
        let from_written = keys.from.written() || keys.unknown_key;
        let with_written = keys.with.written() || keys.unknown_key;
        let (from, with) = (keys.from.take(), keys.with.take());
        if !from_written {
            bad_from = true;
            errors.spanned(
                &tokens,
                "`upcast(...)` is missing `from`: write the version it upcasts, such as `upcast(from = 1, with = ...)`",
            );
        }
        let from = from.and_then(|(lit, from)| {
            if from == 0 {
                errors.spanned(&lit, format!("event versions start at 1, so no version 0 is stored; {range}"));
                return None;
            }
            if from < oldest {
                let lit_oldest = lits.oldest.map_or(String::new(), |(lit, _)| format!(" (`oldest = {lit}`)"));
                errors.spanned(
                    &lit,
                    format!("`from = {from}` is older than the oldest stored version {oldest}{lit_oldest}: no such version is stored, so it needs no upcaster; remove this `upcast(...)`, or lower `oldest`"),
                );
                return None;
            }
            if from >= version {
                errors.spanned(
                    &lit,
                    format!("`from = {from}` is not older than `{ident}`'s version {version}; an upcaster turns version `from` into `from + 1`, so {range}"),
                );
                return None;
            }
            if !written.insert(from) {
                errors.spanned(&lit, format!("two upcasters start from version {from}; give one `upcast(from = {from}, ...)` per version"));
                return None;
            }
            Some(from)
        });
        bad_from |= from.is_none();
        if !with_written {
            let example = from.map_or_else(
                || "upcast(from = 1, with = v1_to_v2)".to_owned(),
                |from| format!("upcast(from = {from}, with = v{from}_to_v{})", from + 1),
            );
            errors.spanned(
                &tokens,
                format!("`upcast(...)` is missing `with`: name the function that turns the JSON of the older version into the next, such as `{example}`, a {UPCASTER}"),
            );
        }
        if let (Some(from), Some(with)) = (from, with) {
            by_version.insert(from, with);
        }
    }
    let missing: Vec<u32> = (oldest..version).filter(|v| !written.contains(v)).collect();
    if !bad_from && !missing.is_empty() {
        let list = missing.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        let fix = missing
            .iter()
            .map(|v| format!("`upcast(from = {v}, with = v{v}_to_v{})`", v + 1))
            .collect::<Vec<_>>()
            .join(", ");
        // The oldest versions only: perhaps never stored.
        let newest_missing = missing.last().copied().unwrap_or(oldest);
        let prefix = missing.iter().copied().eq(oldest..=newest_missing);
        let never_stored = if prefix {
            format!("; or, if no {list} was ever stored, write `oldest = {}`", newest_missing + 1)
        } else {
            String::new()
        };
        let message = format!(
            "`{ident}` is at version {version}, but no upcaster starts from {list}: every older stored version needs one; add {fix}, each a {UPCASTER}{never_stored}"
        );
        match (lits.oldest, lits.version) {
            (Some((lit, _)), _) | (None, Some((lit, _))) => errors.spanned(lit, message),
            (None, None) => errors.spanned(ident, message),
        }
    }
    by_version
}
