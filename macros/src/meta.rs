//! Parsing of `#[attr(key = value, key(A, B))]`, shared by the derives.
//!
//! A mistake in one key is recorded in [`Errors`] and parsing goes on with the next key,
//! so every mistake of an attribute is reported at once.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::buffer::Cursor;
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

/// Declares the keys of one attribute (or of a nested `key(...)`) in one table: the
/// struct holding what the user wrote, one [`Slot`] (a key given at most once) or
/// [`Many`] (a key given any number of times) per key, and its parser.
///
/// ```text
/// attributes! {
///     /// `#[projection(...)]` as written.
///     pub(super) struct Attrs in PROJECTION {
///         /// `name = "cart_summaries"`
///         name: Slot<LitStr> = NAME => |meta, errors| meta::assign(meta, errors, "expected a string ..."),
///     }
/// }
/// ```
///
/// Adding a key is one row here (plus its [`Symbol`](crate::symbol::Symbol) when the name
/// is new) and its use in `check`/`expand`: the key list of "expected one of ..."
/// messages, the duplicate check, the tokens to point at and whether the key was written
/// but invalid all follow from the row. Each parser is a
/// `fn(&ParseNestedMeta, &mut Errors) -> syn::Result<Option<T>>` that records its own
/// errors and returns `None` for an invalid value.
macro_rules! attributes {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $attr:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $kind:ident<$ty:ty> = $key:expr => $parse:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$field_meta])* $vis $field: $crate::meta::$kind<$ty>, )*
            /// Whether a key that is none of these was written (and reported): it may be a
            /// misspelled required key, whose absence is then not reported too.
            $vis unknown_key: bool,
            /// The first attribute of this name, to point at when a required key is missing.
            $vis first: ::core::option::Option<::proc_macro2::TokenStream>,
        }

        impl $name {
            /// The keys, in the order the error messages list them.
            #[allow(dead_code)]
            $vis const KEYS: &'static [$crate::symbol::Symbol] = &[$($key),*];

            /// Nothing written yet.
            $vis fn new() -> Self {
                $name {
                    $( $field: $crate::meta::$kind::new($attr, $key), )*
                    unknown_key: false,
                    first: ::core::option::Option::None,
                }
            }

            /// Every `#[<attr>(...)]` of an item, merged; `usage` is suggested for a bare
            /// `#[attr]` or `#[attr = ...]`.
            #[allow(dead_code)]
            $vis fn parse(
                attrs: &[::syn::Attribute],
                usage: &str,
                errors: &mut $crate::errors::Errors,
            ) -> Self {
                let mut this = Self::new();
                this.first = $crate::meta::first(attrs, $attr);
                $crate::meta::parse_attrs(attrs, $attr, usage, errors, |meta, errors| this.parse_key(meta, errors));
                this
            }

            /// One `key ...`: parsed into its slot, or reported as unknown.
            $vis fn parse_key(
                &mut self,
                meta: &::syn::meta::ParseNestedMeta<'_>,
                errors: &mut $crate::errors::Errors,
            ) -> ::syn::Result<()> {
                $(
                    if meta.path == $key {
                        let parse: fn(
                            &::syn::meta::ParseNestedMeta<'_>,
                            &mut $crate::errors::Errors,
                        ) -> ::syn::Result<::core::option::Option<$ty>> = $parse;
                        let start = meta.input.cursor();
                        let value = parse(meta, errors)?;
                        let tokens = $crate::meta::consumed(&meta.path, start, meta.input.cursor());
                        self.$field.set(errors, &meta.path, tokens, value);
                        return ::core::result::Result::Ok(());
                    }
                )*
                self.unknown_key = true;
                $crate::meta::unknown_key(meta, $attr, Self::KEYS, errors)
            }
        }
    };
}
pub(crate) use attributes;

/// The first `#[<attr>(...)]` of `attrs`, as tokens.
pub(crate) fn first(attrs: &[Attribute], attr: Symbol) -> Option<TokenStream> {
    attrs.iter().find(|a| a.path().is_ident(attr.as_str())).map(ToTokens::to_token_stream)
}

/// The tokens of one `key ...` as written: `path` and what its parser consumed, from
/// `start` to `end`.
pub(crate) fn consumed(path: &syn::Path, start: Cursor<'_>, end: Cursor<'_>) -> TokenStream {
    let mut tokens = path.to_token_stream();
    let mut cursor = start;
    while cursor < end {
        match cursor.token_tree() {
            Some((tree, next)) => {
                tokens.extend([tree]);
                cursor = next;
            }
            None => break,
        }
    }
    tokens
}

/// A key that may be given at most once across all attributes of an item: absent,
/// written with an invalid value (its error is already recorded), or written and valid;
/// with the tokens as written, to point at.
pub(crate) struct Slot<T> {
    attr: Symbol,
    key: Symbol,
    written: Option<(TokenStream, Option<T>)>,
}

impl<T> Slot<T> {
    pub(crate) fn new(attr: Symbol, key: Symbol) -> Self {
        Slot { attr, key, written: None }
    }

    /// Records the key written at `path` as `tokens` (what `attributes!` calls); `value` is `None` when it did not
    /// parse (that error is already recorded). A second occurrence is an error on its
    /// `path`.
    pub(crate) fn set(&mut self, errors: &mut Errors, path: &syn::Path, tokens: TokenStream, value: Option<T>) {
        if self.written.is_some() {
            errors.spanned(path, format!("duplicate {} attribute `{}`; give each key once", self.attr, self.key));
            return;
        }
        self.written = Some((tokens, value));
    }

    /// Whether the key was written, valid or not.
    pub(crate) fn written(&self) -> bool {
        self.written.is_some()
    }

    /// Whether the key was written with a value that is not valid (already reported).
    pub(crate) fn invalid(&self) -> bool {
        matches!(self.written, Some((_, None)))
    }

    /// The valid value, if any.
    pub(crate) fn value(&self) -> Option<&T> {
        self.written.as_ref().and_then(|(_, value)| value.as_ref())
    }

    /// The valid value, if any, taken out.
    pub(crate) fn take(&mut self) -> Option<T> {
        self.written.as_mut().and_then(|(_, value)| value.take())
    }

    /// The tokens `key ...` as written, valid or not.
    pub(crate) fn tokens(&self) -> Option<&TokenStream> {
        self.written.as_ref().map(|(tokens, _)| tokens)
    }
}

/// A key that may be given any number of times (`upcast(...)`, once per version).
pub(crate) struct Many<T> {
    written: Vec<(TokenStream, Option<T>)>,
}

impl<T> Many<T> {
    pub(crate) fn new(_attr: Symbol, _key: Symbol) -> Self {
        Many { written: Vec::new() }
    }

    /// Records one occurrence (what `attributes!` calls).
    pub(crate) fn set(&mut self, _errors: &mut Errors, _path: &syn::Path, tokens: TokenStream, value: Option<T>) {
        self.written.push((tokens, value));
    }

    /// Whether the key was written at least once, valid or not.
    pub(crate) fn written(&self) -> bool {
        !self.written.is_empty()
    }

    /// The tokens of the first occurrence.
    pub(crate) fn first_tokens(&self) -> Option<&TokenStream> {
        self.written.first().map(|(tokens, _)| tokens)
    }

    /// The valid values, in order, taken out.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.written.iter_mut().filter_map(|(_, value)| value.take()).collect()
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

/// `events(ItemAdded, ItemRemoved)` of an aggregate or a projection.
pub(crate) fn event_types(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<List<syn::TypePath>>> {
    list(
        meta,
        errors,
        "expected a list of event types such as `events(ItemAdded, ItemRemoved)`",
        "expected an event type such as `ItemAdded` or `crate::cart::ItemAdded`",
    )
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
