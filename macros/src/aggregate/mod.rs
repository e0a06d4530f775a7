//! `#[derive(Aggregate)]`: attribute parsing ([`attr`]) → checks that build the model
//! ([`check`]) → code generation ([`expand`]).
//!
//! After an attribute error the model is repaired (duplicates dropped, defaults used) and
//! still expanded, so the user's `Apply`/`Handle` impls and uses of the event enum do not
//! cascade into secondary errors.

mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident, Type, TypePath, Visibility};

use crate::errors::Errors;

/// A checked aggregate, ready to expand.
pub(crate) struct Model<'a> {
    /// The aggregate type, e.g. `Cart`.
    ident: &'a Ident,
    /// Its visibility, shared by the generated enums.
    vis: &'a Visibility,
    /// The stored aggregate name, e.g. `cart`.
    name: String,
    /// The event types, at least one unless an error was reported.
    events: Vec<Member>,
    /// Where `events(...)` is written: a conversion of an unlisted event points there.
    events_span: Option<proc_macro2::Span>,
    /// The command types, when `commands(...)` is given.
    commands: Option<Vec<Member>>,
    /// Where `commands(...)` is written: a conversion of an unlisted command points there.
    commands_span: Option<proc_macro2::Span>,
    /// The domain error type, when given; default `Infallible`.
    error: Option<Type>,
    /// The generated event enum, e.g. `CartEvent`.
    event_enum: Ident,
    /// The generated command enum, e.g. `CartCommand`.
    command_enum: Ident,
}

/// One type listed in `events(...)` or `commands(...)`: a variant of the generated enum.
struct Member {
    /// The type as the user wrote it, with its spans.
    ty: TypePath,
    /// The variant name: the last segment of the type's path.
    variant: Ident,
}

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = attr::parse(input, &mut errors);
    let krate = attrs.krate.value().cloned();
    crate::meta::reject_inner(input, crate::symbol::AGGREGATE, &mut errors);
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
