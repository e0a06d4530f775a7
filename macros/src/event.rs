//! `#[derive(Event)]` with `#[event(name = "cart.item_added", version = 2)]`.
//!
//! Small enough for one file: attribute parsing, checks, then expansion.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, LitInt, LitStr};

use crate::errors::Errors;
use crate::meta::{self, Slot};
use crate::symbol::{EVENT, EVENT_KEYS, NAME, VERSION};

/// What the error messages suggest writing.
const USAGE: &str = "`#[event(name = \"cart.item_added\", version = 2)]`";

/// The checked attributes; `None` means "use the default".
struct Attrs {
    /// The stored name; default: the type's name.
    name: Option<LitStr>,
    /// The schema version; default: 1.
    version: Option<u32>,
}

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = parse_attrs(input, &mut errors);
    meta::reject_inner(input, EVENT, &mut errors);
    // A union or a generic type gets no impl: it could not compile anyway, and the
    // error on the item says why.
    let expanded = if check_item(input, &mut errors) { expand(input, attrs) } else { TokenStream::new() };
    let errors = errors.into_compile_errors();
    quote! {
        #errors
        #expanded
    }
}

fn parse_attrs(input: &DeriveInput, errors: &mut Errors) -> Attrs {
    let mut name = Slot::new(EVENT, NAME);
    let mut version = Slot::new(EVENT, VERSION);
    meta::parse_attrs(&input.attrs, EVENT, USAGE, errors, |meta, errors| {
        if meta.path == NAME {
            // #[event(name = "cart.item_added")]
            let lit = meta::assign::<LitStr>(meta, errors, "expected a string such as `name = \"cart.item_added\"`")?;
            let lit = lit.filter(|lit| check_name(lit, errors));
            name.set(errors, &meta.path, lit);
        } else if meta.path == VERSION {
            // #[event(version = 2)]
            let lit = meta::assign::<LitInt>(meta, errors, "expected an integer such as `version = 2`")?;
            let value = lit.and_then(|lit| check_version(&lit, errors));
            version.set(errors, &meta.path, value);
        } else {
            meta::unknown_key(meta, EVENT, EVENT_KEYS, errors)?;
        }
        Ok(())
    });
    Attrs { name: name.get(), version: version.get() }
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

/// Whether the item can implement `Event` at all.
fn check_item(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Data::Union(data) = &input.data {
        errors.spanned(
            data.union_token,
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

fn expand(input: &DeriveInput, attrs: Attrs) -> TokenStream {
    let ident = &input.ident;
    let name = attrs.name.unwrap_or_else(|| LitStr::new(&ident.unraw().to_string(), ident.span()));
    let version = attrs.version.unwrap_or(1);
    // Spanned on the type's name, so that a missing supertrait (`Serialize`, `Clone`, ...)
    // is reported there.
    let span = Span::call_site().located_at(ident.span());
    quote_spanned! {span=>
        const _: () = {
            #[automatically_derived]
            impl ::annals::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
            }
        };
    }
}
