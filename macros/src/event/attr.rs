//! Parsing of `#[event(...)]`: what each key accepts.
//!
//! The keys may be split over several `#[event(...)]` attributes; they are merged, and
//! each key may be given once in total, except `upcast(...)`, given once per version.

use proc_macro2::TokenStream;
use syn::{DeriveInput, LitInt, LitStr, Path, TypePath};

use crate::errors::Errors;
use crate::meta::{self, List, Slot};
use crate::symbol::{
    ALIASES, CRATE, EVENT, EVENT_KEYS, FROM, NAME, OLDEST, PREVIOUS, UPCAST, UPCAST_KEYS, VERSION, WITH,
};

/// What the error messages suggest writing.
pub(super) const USAGE: &str = "`#[event(name = \"cart.item_added\", version = 2)]`";

/// The attributes as written; `None` when absent or invalid (the error is recorded).
pub(super) struct Attrs {
    /// `crate = "..."`: where annals is, when renamed or re-exported.
    pub(super) krate: Option<TokenStream>,
    pub(super) name: Option<LitStr>,
    /// The version with its literal, to point at.
    pub(super) version: Option<(LitInt, u32)>,
    /// Whether `version` was written at all (an invalid value is already reported).
    pub(super) version_written: bool,
    /// The oldest version ever stored, with its literal.
    pub(super) oldest: Option<(LitInt, u32)>,
    /// Whether `oldest` was written at all (an invalid value is already reported).
    pub(super) oldest_written: bool,
    /// The tokens `previous = T` and `T`.
    pub(super) previous: Option<(TokenStream, TypePath)>,
    pub(super) upcasts: Vec<Upcast>,
    /// Whether `previous` or an `upcast(...)` was written at all (an invalid one is
    /// already reported).
    pub(super) evolution_written: bool,
    pub(super) aliases: Option<List<LitStr>>,
}

/// One `upcast(from = 1, with = v1_to_v2)`.
pub(super) struct Upcast {
    /// The tokens `upcast(...)`, to point at when a key is missing.
    pub(super) tokens: TokenStream,
    /// The version it starts from, with its literal.
    pub(super) from: Option<(LitInt, u32)>,
    /// Whether `from` was written at all (an invalid value is already reported).
    pub(super) from_written: bool,
    /// The function.
    pub(super) with: Option<Path>,
    /// Whether `with` was written at all.
    pub(super) with_written: bool,
}

pub(super) fn parse(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    let mut name = Slot::new(EVENT, NAME);
    let mut krate = Slot::new(EVENT, CRATE);
    let mut version = Slot::new(EVENT, VERSION);
    let mut oldest = Slot::new(EVENT, OLDEST);
    let mut previous = Slot::new(EVENT, PREVIOUS);
    let mut aliases = Slot::new(EVENT, ALIASES);
    let mut upcasts = Vec::new();
    let mut upcast_written = false;
    meta::parse_attrs(&input.attrs, EVENT, USAGE, errors, |meta, errors| {
        let path = &meta.path;
        if *path == NAME {
            // #[event(name = "cart.item_added")]
            let lit = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"cart.item_added\"`")?;
            let lit = lit.filter(|lit| check_name(lit, errors));
            name.set(errors, path, lit);
        } else if *path == VERSION {
            // #[event(version = 2)]
            let lit = meta::assign::<LitInt>(meta, errors, "expected an integer such as `version = 2`")?;
            let value = lit.and_then(|lit| check_version(&lit, errors).map(|version| (lit, version)));
            version.set(errors, path, value);
        } else if *path == OLDEST {
            // #[event(version = 2, oldest = 2)]
            let lit = meta::assign::<LitInt>(meta, errors, "expected an integer such as `oldest = 2`")?;
            let value = lit.and_then(|lit| check_version(&lit, errors).map(|version| (lit, version)));
            oldest.set(errors, path, value);
        } else if *path == PREVIOUS {
            // #[event(previous = ItemAddedV2)]
            let ty = meta::assign::<TypePath>(
                meta,
                errors,
                "expected the type of the previous version such as `previous = ItemAddedV2`",
            )?;
            let value = ty.map(|ty| (quote::quote!(#path = #ty), ty));
            previous.set(errors, path, value);
        } else if *path == UPCAST {
            // #[event(upcast(from = 1, with = item_added_v1_to_v2))]
            upcast_written = true;
            if let Some(upcast) = parse_upcast(meta, errors)? {
                upcasts.push(upcast);
            }
        } else if *path == ALIASES {
            // #[event(aliases("ItemAdded", "cart.added"))]
            let value = meta::list::<LitStr>(
                meta,
                errors,
                "expected a list of stored names such as `aliases(\"ItemAdded\", \"cart.added\")`",
                "expected a string such as `\"ItemAdded\"`: a name this event was stored under",
            )?;
            aliases.set(errors, path, value);
        } else if *path == CRATE {
            // #[event(crate = "my_annals")]
            let value = meta::crate_path(meta, errors)?;
            krate.set(errors, path, value);
        } else {
            meta::unknown_key(meta, EVENT, EVENT_KEYS, errors)?;
        }
        Ok(())
    });
    Attrs {
        krate: krate.get(),
        name: name.get(),
        version_written: version.written(),
        version: version.get(),
        oldest_written: oldest.written(),
        oldest: oldest.get(),
        evolution_written: upcast_written || previous.written(),
        previous: previous.get(),
        upcasts,
        aliases: aliases.get(),
    }
}

/// `upcast(from = 1, with = item_added_v1_to_v2)`.
fn parse_upcast(meta: &syn::meta::ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<Upcast>> {
    let mut from = Slot::new(UPCAST, FROM);
    let mut with = Slot::new(UPCAST, WITH);
    let tokens = meta::nested(
        meta,
        errors,
        "expected `upcast(from = 1, with = v1_to_v2)`: the version it starts from and the function",
        |inner, errors| {
            let path = &inner.path;
            if *path == FROM {
                // upcast(from = 1)
                let lit = meta::assign::<LitInt>(inner, errors, "expected an integer such as `from = 1`")?;
                let value = lit.and_then(|lit| match lit.base10_parse::<u32>() {
                    Ok(version) => Some((lit, version)),
                    Err(_) => {
                        errors.spanned(&lit, "expected an integer from 1 to 4294967295 such as `from = 1`");
                        None
                    }
                });
                from.set(errors, path, value);
            } else if *path == WITH {
                // upcast(with = item_added_v1_to_v2)
                let value = meta::assign::<Path>(
                    inner,
                    errors,
                    "expected the path of a function such as `with = item_added_v1_to_v2`",
                )?;
                with.set(errors, path, value);
            } else {
                meta::unknown_key(inner, UPCAST, UPCAST_KEYS, errors)?;
            }
            Ok(())
        },
    )?;
    Ok(tokens.map(|tokens| Upcast {
        tokens,
        from_written: from.written(),
        from: from.get(),
        with_written: with.written(),
        with: with.get(),
    }))
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
