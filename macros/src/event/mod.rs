//! `#[derive(Event)]`: attribute parsing ([`attr`]) → checks that build the model
//! ([`check`]) → code generation ([`expand`]).
//!
//! After an attribute error the model is repaired (invalid keys dropped, defaults used)
//! and still expanded, so uses of the event elsewhere do not cascade into secondary
//! errors. A union or a generic type gets no impl: it could not compile anyway, and the
//! error on the item says why.

mod attr;
mod check;
mod expand;

use std::collections::BTreeMap;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident, LitStr, Path, TypePath};

use crate::errors::Errors;

/// A checked event, ready to expand.
pub(crate) struct Model<'a> {
    /// The event type.
    ident: &'a Ident,
    /// The stored name; default: the type's name.
    name: LitStr,
    /// The schema version; default: 1.
    version: u32,
    /// Other stored names, when `aliases(...)` is given.
    aliases: Vec<LitStr>,
    /// How older stored versions become this one.
    evolution: Evolution,
}

/// How older stored versions of an event become the current one.
enum Evolution {
    /// They do not: only the current version decodes.
    None,
    /// `previous = T`: through the previous version's type and `From<T>`.
    Previous(TypePath),
    /// `upcast(from = k, with = f)`: JSON functions from version k to k + 1, by `k`.
    Upcast(BTreeMap<u32, Path>),
}

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = attr::parse(input, &mut errors);
    let krate = attrs.krate.value().cloned();
    crate::meta::reject_inner(input, crate::symbol::EVENT, &mut errors);
    let expanded = check::check(input, attrs, &mut errors).map(|model| expand::expand(&model)).unwrap_or_default();
    let expanded = match &krate {
        Some(path) => crate::krate::rename(expanded, path),
        None => expanded,
    };
    let errors = errors.into_compile_errors();
    quote! {
        #errors
        #expanded
    }
}
