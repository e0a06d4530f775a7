//! The error accumulator: every mistake of a derive is reported at once.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// Collects errors while a derive runs (like serde's `Ctxt` or darling's `Accumulator`),
/// so a user with three typos sees three errors in one build.
///
/// Consumed by [`Errors::into_compile_errors`], which turns them into `compile_error!`
/// invocations spanned on the offending tokens.
#[derive(Default)]
#[must_use = "collected errors must be emitted with `into_compile_errors`"]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Records an error spanned on `tokens` (from their first to their last token).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// One `compile_error!` per recorded error; empty when there are none.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.combined.map(syn::Error::into_compile_error).unwrap_or_default()
    }
}
