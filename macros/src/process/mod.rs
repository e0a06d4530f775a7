//! `#[derive(ProcessManager)]`: attribute parsing ([`attr`]) → checks that build the
//! model ([`check`]) → code generation ([`expand`]).
//!
//! After an attribute error the model is repaired (duplicates dropped) and still
//! expanded, so the user's `React` impls (whose supertrait is `Process`) do not cascade
//! into secondary errors.

mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, ExprPath, Ident, TypePath};

use crate::errors::Errors;

/// `ReserveStock => Inventory` in `commands(...)`: a command and the aggregate that
/// handles it.
/// `aggregate` is `None` when `=> Aggregate` is missing: an error, after which the command
/// still counts as listed (so that sending it adds no second error).
pub(crate) struct Route {
    command: TypePath,
    aggregate: Option<TypePath>,
}

impl syn::parse::Parse for Route {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let command = input.parse()?;
        if input.is_empty() || input.peek(syn::Token![,]) {
            return Ok(Route { command, aggregate: None });
        }
        input.parse::<syn::Token![=>]>()?;
        let aggregate = input.parse()?;
        Ok(Route { command, aggregate: Some(aggregate) })
    }
}

/// How an event names the instance it belongs to.
pub(crate) enum Correlation {
    /// `correlate_by = order_id`: a field every listed event has.
    Field(Ident),
    /// `correlate_with = order_of`: a `fn(&Envelope) -> Option<String>`.
    Function(ExprPath),
}

/// A checked process manager, ready to expand.
pub(crate) struct Model<'a> {
    /// The state type, e.g. `Fulfillment`.
    ident: &'a Ident,
    /// The process name, e.g. `fulfillment`.
    name: String,
    /// How an event names its instance; `None` after an error.
    correlation: Option<Correlation>,
    events: Vec<TypePath>,
    commands: Vec<Route>,
    deadlines: Vec<TypePath>,
    rejected: Vec<TypePath>,
}

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = attr::parse(input, &mut errors);
    let krate = attrs.krate.value().cloned();
    crate::meta::reject_inner(input, crate::symbol::PROCESS, &mut errors);
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

/// The name a command or deadline type is recorded under: its last path segment.
fn type_name(ty: &TypePath) -> String {
    ty.path.segments.last().map(|segment| segment.ident.to_string()).unwrap_or_default()
}
