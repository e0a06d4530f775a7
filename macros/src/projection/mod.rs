//! `#[derive(Projection)]`: attribute parsing ([`attr`]) → checks that build the model
//! ([`check`]) → code generation ([`expand`]).
//!
//! After an attribute error the model is repaired (duplicates dropped, defaults used) and
//! still expanded, so the user's `On` impls (whose supertrait is `Projection`) do not
//! cascade into secondary errors.

mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Generics, Ident, Type, TypePath};

use crate::errors::Errors;

/// A checked projection, ready to expand.
pub(crate) struct Model<'a> {
    /// The projection type, e.g. `CartSummaries`.
    ident: &'a Ident,
    /// Its type and const parameters, e.g. `<S: EventStore>` (no lifetimes).
    generics: &'a Generics,
    /// The projection name (its checkpoint key), e.g. `cart_summaries`.
    name: String,
    /// The handled event types as the user wrote them, at least one unless an error was
    /// reported.
    events: Vec<TypePath>,
    /// The handlers' context, when given; default `()`.
    context: Option<Type>,
}

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = attr::parse(input, &mut errors);
    let krate = attrs.krate.value().cloned();
    crate::meta::reject_inner(input, crate::symbol::PROJECTION, &mut errors);
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
