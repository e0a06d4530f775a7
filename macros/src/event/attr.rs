//! Parsing of `#[event(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[event(...)]` attributes; they are merged, and
//! each key may be given once in total, except `upcast(...)`, given once per version.

use proc_macro2::TokenStream;
use syn::{DeriveInput, LitInt, LitStr, Path, TypePath};

use crate::errors::Errors;
use crate::meta::{self, attributes, List};
use crate::symbol::{ALIASES, CRATE, EVENT, FROM, NAME, OLDEST, PREVIOUS, UPCAST, VERSION, WITH};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[event(name = \"cart.item_added\", version = 2)]`";

attributes! {
    /// `#[event(...)]` as written.
    pub(super) struct Attrs in EVENT {
        /// `name = "cart.item_added"`: the stable stored name.
        name: Slot<LitStr> = NAME => |meta, errors| {
            let lit = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"cart.item_added\"`")?;
            Ok(lit.filter(|lit| check_name(lit, errors)))
        },
        /// `version = 2`, with its literal.
        version: Slot<(LitInt, u32)> = VERSION => |meta, errors| version(meta, errors, "expected an integer such as `version = 2`"),
        /// `oldest = 2`: the oldest version ever stored, with its literal.
        oldest: Slot<(LitInt, u32)> = OLDEST => |meta, errors| version(meta, errors, "expected an integer such as `oldest = 2`"),
        /// `previous = ItemAddedV2`: the type of the previous version.
        previous: Slot<TypePath> = PREVIOUS => |meta, errors| meta::assign(
            meta,
            errors,
            "expected the type of the previous version such as `previous = ItemAddedV2`",
        ),
        /// `upcast(from = 1, with = v1_to_v2)`, once per older version.
        upcasts: Many<Upcast> = UPCAST => parse_upcast,
        /// `aliases("ItemAdded", "cart.added")`: names it was stored under before.
        aliases: Slot<List<LitStr>> = ALIASES => |meta, errors| meta::list(
            meta,
            errors,
            "expected a list of stored names such as `aliases(\"ItemAdded\", \"cart.added\")`",
            "expected a string such as `\"ItemAdded\"`: a name this event was stored under",
        ),
        /// `crate = "my_annals"`: where annals is, when renamed or re-exported.
        krate: Slot<TokenStream> = CRATE => meta::crate_path,
    }
}

attributes! {
    /// The keys of one `upcast(...)` as written.
    pub(super) struct UpcastKeys in UPCAST {
        /// `from = 1`: the version it upcasts, with its literal.
        from: Slot<(LitInt, u32)> = FROM => |meta, errors| {
            let lit = meta::assign::<LitInt>(meta, errors, "expected an integer such as `from = 1`")?;
            Ok(lit.and_then(|lit| match lit.base10_parse::<u32>() {
                Ok(version) => Some((lit, version)),
                Err(_) => {
                    errors.spanned(&lit, "expected an integer from 1 to 4294967295 such as `from = 1`");
                    None
                }
            }))
        },
        /// `with = v1_to_v2`: the function.
        with: Slot<Path> = WITH => |meta, errors| meta::assign(
            meta,
            errors,
            "expected the path of a function such as `with = item_added_v1_to_v2`",
        ),
    }
}

/// One `upcast(from = 1, with = v1_to_v2)`.
pub(super) struct Upcast {
    /// The tokens `upcast(...)`, to point at when a key is missing.
    pub(super) tokens: TokenStream,
    pub(super) keys: UpcastKeys,
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    Attrs::parse(&input.attrs, USAGE, errors)
}

/// `version = 2` or `oldest = 2`: an integer from 1.
fn version(
    meta: &syn::meta::ParseNestedMeta<'_>,
    errors: &mut Errors,
    expected: &str,
) -> syn::Result<Option<(LitInt, u32)>> {
    let lit = meta::assign::<LitInt>(meta, errors, expected)?;
    Ok(lit.and_then(|lit| check_version(&lit, errors).map(|version| (lit, version))))
}

/// `upcast(from = 1, with = item_added_v1_to_v2)`.
fn parse_upcast(meta: &syn::meta::ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<Upcast>> {
    let mut keys = UpcastKeys::new();
    let tokens = meta::nested(
        meta,
        errors,
        "expected `upcast(from = 1, with = v1_to_v2)`: the version it starts from and the function",
        |inner, errors| keys.parse_key(inner, errors),
    )?;
    Ok(tokens.map(|tokens| Upcast { tokens, keys }))
}

fn check_name(lit: &LitStr, errors: &mut Errors) -> bool {
    if lit.value().is_empty() {
        errors.spanned(
            lit,
            "the event name is empty; write the stable stored name, such as `name = \"cart.item_added\"`",
        );
        return false;
    }
    true
}

fn check_version(lit: &LitInt, errors: &mut Errors) -> Option<u32> {
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            errors.spanned(lit, "event versions start at 1; write `version = 1` (the default) or a later version");
            None
        }
        Ok(version) => Some(version),
        Err(_) => {
            errors.spanned(lit, "expected an integer from 1 to 4294967295 such as `version = 2`");
            None
        }
    }
}
