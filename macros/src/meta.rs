//! Parsing of `#[attr(key = value, key(A, B))]`, shared by the derives.
//!
//! A mistake in one key is recorded in [`Errors`] and parsing goes on with the next key,
//! so every mistake of an attribute is reported at once.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Data, DeriveInput, Field, Meta, Token};

use crate::errors::Errors;
use crate::symbol::{self, Symbol};

/// Calls `on_key` for each `key ...` of every `#[<attr>(...)]` on an item.
///
/// `#[attr]` and `#[attr = ...]` are errors that suggest `usage`. An error returned by
/// `on_key` (malformed syntax syn cannot recover from) ends that attribute only.
pub(crate) fn parse_attrs(
    attrs: &[Attribute],
    attr: Symbol,
    usage: &str,
    errors: &mut Errors,
    mut on_key: impl FnMut(&ParseNestedMeta<'_>, &mut Errors) -> syn::Result<()>,
) {
    for attribute in attrs.iter().filter(|a| a.path().is_ident(attr.as_str())) {
        match &attribute.meta {
            Meta::List(list) => {
                if let Err(error) = list.parse_nested_meta(|meta| on_key(&meta, errors)) {
                    errors.push(error);
                }
            }
            Meta::Path(_) => {
                errors.spanned(attribute, format!("`#[{attr}]` needs arguments in parentheses; write {usage}"))
            }
            Meta::NameValue(_) => {
                errors.spanned(attribute, format!("`#[{attr} = ...]` is not supported; write {usage}"))
            }
        }
    }
}

/// Records an error for each `#[<attr>(...)]` on a field or variant: it applies to the type.
pub(crate) fn reject_inner(input: &DeriveInput, attr: Symbol, errors: &mut Errors) {
    let fields: Vec<&Field> = match &input.data {
        Data::Struct(data) => data.fields.iter().collect(),
        Data::Enum(data) => {
            for variant in &data.variants {
                reject(&variant.attrs, attr, "variant", errors);
            }
            data.variants.iter().flat_map(|v| &v.fields).collect()
        }
        Data::Union(data) => data.fields.named.iter().collect(),
    };
    for field in fields {
        reject(&field.attrs, attr, "field", errors);
    }
}

fn reject(attrs: &[Attribute], attr: Symbol, place: &str, errors: &mut Errors) {
    for attribute in attrs.iter().filter(|a| a.path().is_ident(attr.as_str())) {
        errors.spanned(
            attribute,
            format!("`#[{attr}(...)]` applies to the whole type, not to a {place}; move it above the type"),
        );
    }
}

/// A key that may be given at most once across all attributes of an item.
pub(crate) struct Slot<T> {
    attr: Symbol,
    key: Symbol,
    seen: bool,
    value: Option<T>,
}

impl<T> Slot<T> {
    pub(crate) fn new(attr: Symbol, key: Symbol) -> Self {
        Slot { attr, key, seen: false, value: None }
    }

    /// Records the key written at `path`; `value` is `None` when it did not parse (that
    /// error is already recorded). A second occurrence is an error on its `path`.
    pub(crate) fn set(&mut self, errors: &mut Errors, path: &syn::Path, value: Option<T>) {
        if self.seen {
            errors.spanned(path, format!("duplicate {} attribute `{}`; give each key once", self.attr, self.key));
            return;
        }
        self.seen = true;
        self.value = value;
    }

    /// Whether the key was written, valid or not.
    pub(crate) fn written(&self) -> bool {
        self.seen
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value
    }
}

/// Records ``unknown {attr} attribute `key`; expected one of ...`` and skips its value.
pub(crate) fn unknown_key(
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
    keys: &[Symbol],
    errors: &mut Errors,
) -> syn::Result<()> {
    rest(meta.input)?;
    let path = &meta.path;
    let written = path.to_token_stream().to_string().replace(' ', "");
    let hint = match symbol::closest(&written, keys) {
        Some(key) => format!("did you mean `{key}`? "),
        None => String::new(),
    };
    errors.spanned(path, format!("unknown {attr} attribute `{written}`; {hint}expected one of {}", symbol::list(keys)));
    errors.saw_unknown_key();
    Ok(())
}

/// `key = <T>`. When the value is missing or is not a `T`, records `expected` on it and
/// returns `None`.
pub(crate) fn assign<T: Parse>(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    expected: impl Display,
) -> syn::Result<Option<T>> {
    if !meta.input.peek(Token![=]) {
        let rest = rest(meta.input)?;
        let path = &meta.path;
        errors.spanned(quote!(#path #rest), expected);
        return Ok(None);
    }
    let input = meta.value()?;
    let fork = input.fork();
    if let Ok(value) = fork.parse::<T>() {
        if at_key_end(&fork) {
            input.advance_to(&fork);
            return Ok(Some(value));
        }
    }
    let span = input.span();
    let rest = rest(input)?;
    spanned_or(errors, rest, span, expected);
    Ok(None)
}

/// `key(A, B, ...)` with every item a `T`, kept with the tokens `key(...)` for errors.
pub(crate) struct List<T> {
    pub(crate) tokens: TokenStream,
    pub(crate) items: Vec<T>,
}

/// `key(A, B, ...)`. Items that are not a `T` are recorded with `expected_item`; when the
/// value is not a parenthesized list, records `expected` and returns `None`.
pub(crate) fn list<T: Parse>(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    expected: impl Display,
    expected_item: impl Display,
) -> syn::Result<Option<List<T>>> {
    let path = &meta.path;
    let value = rest(meta.input)?;
    let mut trees = value.clone().into_iter();
    let group = match (trees.next(), trees.next()) {
        (Some(TokenTree::Group(group)), None) if group.delimiter() == proc_macro2::Delimiter::Parenthesis => group,
        _ => {
            errors.spanned(quote!(#path #value), expected);
            return Ok(None);
        }
    };
    let parse_items = |input: ParseStream<'_>| -> syn::Result<Vec<T>> {
        let mut items = Vec::new();
        while !input.is_empty() {
            let fork = input.fork();
            match fork.parse::<T>() {
                Ok(item) if at_key_end(&fork) => {
                    input.advance_to(&fork);
                    items.push(item);
                }
                _ => {
                    let span = input.span();
                    let bad = rest(input)?;
                    spanned_or(errors, bad, span, &expected_item);
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(items)
    };
    let items = parse_items.parse2(group.stream())?;
    Ok(Some(List { tokens: quote!(#path #group), items }))
}

/// `key(inner = ..., ...)`: calls `on_key` for each inner key, like [`parse_attrs`] does
/// for the attribute's own keys. Returns the tokens `key(...)`, for errors about the whole
/// entry; when the value is not a parenthesized list, records `expected` and returns
/// `None`.
pub(crate) fn nested(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    expected: impl Display,
    mut on_key: impl FnMut(&ParseNestedMeta<'_>, &mut Errors) -> syn::Result<()>,
) -> syn::Result<Option<TokenStream>> {
    let path = &meta.path;
    if !meta.input.peek(syn::token::Paren) {
        let value = rest(meta.input)?;
        errors.spanned(quote!(#path #value), expected);
        return Ok(None);
    }
    let group: TokenTree = meta.input.fork().parse()?;
    let tokens = quote!(#path #group);
    // The group is consumed before its content is parsed: a syntax error inside ends this
    // entry only.
    if let Err(error) = meta.parse_nested_meta(|inner| on_key(&inner, errors)) {
        errors.push(error);
    }
    Ok(Some(tokens))
}

/// Whether `input` is at the end of a key's value: its end, or the comma before the next.
fn at_key_end(input: ParseStream<'_>) -> bool {
    input.is_empty() || input.peek(Token![,])
}

/// Consumes and returns the tokens up to the next top-level comma (or the end).
fn rest(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut tokens = TokenStream::new();
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            tokens.extend([tree]);
            rest = next;
        }
        Ok((tokens, rest))
    })
}

/// Records `message` on `tokens`, or at `span` when there are none.
fn spanned_or(errors: &mut Errors, tokens: TokenStream, span: Span, message: impl Display) {
    if tokens.is_empty() {
        errors.at(span, message);
    } else {
        errors.spanned(tokens, message);
    }
}

/// `crate = "path"`: the path annals is found at. Records an error on a value that is not
/// a string holding a path.
pub(crate) fn crate_path(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<TokenStream>> {
    let lit = assign::<syn::LitStr>(
        meta,
        errors,
        "expected the path of annals as a string, such as `crate = \"my_annals\"`",
    )?;
    Ok(lit.and_then(|lit| match lit.parse::<syn::Path>() {
        Ok(path) => Some(path.to_token_stream()),
        Err(_) => {
            errors.spanned(
                &lit,
                "expected a path such as `crate = \"my_annals\"` or `crate = \"crate::reexports::annals\"`",
            );
            None
        }
    }))
}
