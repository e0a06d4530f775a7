//! Code generation: the `Event` impl, its `decode_version` when older versions upcast,
//! and the compile-time check of `previous`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};

use super::{Evolution, Model};
use crate::event_list::{at, display};

pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model { ident, name, version, aliases, evolution } = model;
    let aliases = if aliases.is_empty() {
        TokenStream::new()
    } else {
        quote!(const ALIASES: &'static [&'static str] = &[#(#aliases),*];)
    };
    let (decode_version, previous_check) = match evolution {
        Evolution::None => (TokenStream::new(), TokenStream::new()),
        Evolution::Previous(previous) => (decode_previous(model, previous), previous_check(model, previous)),
        Evolution::Upcast(upcasts) => (decode_upcast(*version, upcasts), TokenStream::new()),
    };
    // Spanned on the type's name, so that a missing supertrait (`Serialize`, `Clone`, ...)
    // is reported there.
    let span = Span::call_site().located_at(ident.span());
    let event_impl = quote_spanned! {span=>
        #[automatically_derived]
        impl ::annals::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            #aliases
            #decode_version
        }
    };
    quote! {
        const _: () = {
            #event_impl
            #previous_check
        };
    }
}

/// `fn decode_version(...) { <body> }` with the current version decoded first.
fn decode_version(version: u32, older: TokenStream) -> TokenStream {
    quote! {
        fn decode_version(
            __version: u32,
            __payload: &::annals::__private::serde_json::Value,
        ) -> ::core::result::Result<Self, ::annals::UpcastError> {
            if __version == #version {
                return ::annals::__private::deserialize_payload::<Self>(__payload);
            }
            #older
        }
    }
}

/// `previous = T`: older versions decode as `T`, then convert with `From<T>`.
fn decode_previous(model: &Model<'_>, previous: &syn::TypePath) -> TokenStream {
    let version = model.version;
    // Spanned on `T`: a `T` that is not an event, or a missing `From<T>`, is reported there.
    let decode = quote_spanned! {at(previous)=>
        <#previous as ::annals::Event>::decode_version(__version, __payload)
            .map(<Self as ::annals::__private::UpcastFrom<#previous>>::upcast_from)
    };
    decode_version(
        version,
        quote! {
            if __version < #version {
                return #decode;
            }
            ::core::result::Result::Err(::annals::UpcastError::NoUpcaster { from: __version })
        },
    )
}

/// `previous = T` requires `T` at the version just before: a compile-time assertion,
/// spanned on `T`.
fn previous_check(model: &Model<'_>, previous: &syn::TypePath) -> TokenStream {
    let Model { ident, version, .. } = model;
    let expected = version - 1;
    let message = format!(
        "`{previous}`, the previous version of `{ident}` (version {version}), must be at version {expected}; write `#[event(version = {expected})]` on `{previous}`, or name the version-{expected} type in `previous = ...`",
        previous = display(previous),
    );
    let previous_version = quote_spanned!(at(previous)=> <#previous as ::annals::Event>::VERSION);
    quote_spanned! {at(previous)=>
        const _: () = ::core::assert!(#previous_version == #expected, #message);
    }
}

/// `upcast(from = k, with = f)`: the stored JSON goes through every upcaster from its
/// version up, then decodes as the current version.
fn decode_upcast(version: u32, upcasts: &std::collections::BTreeMap<u32, syn::Path>) -> TokenStream {
    let steps = (1..version).map(|from| {
        let step = match upcasts.get(&from) {
            // A function of another signature is a type error spanned on its path.
            Some(with) => {
                let upcaster = quote_spanned!(at(with)=> let __upcast: ::annals::__private::Upcaster = #with;);
                quote! {
                    #upcaster
                    __value = __upcast(__value).map_err(|__source| ::annals::UpcastError::Failed {
                        from: #from,
                        source: __source,
                    })?;
                }
            }
            // Only after an error was reported.
            None => quote!(return ::core::result::Result::Err(::annals::UpcastError::NoUpcaster { from: #from });),
        };
        quote! {
            if __version <= #from {
                #step
            }
        }
    });
    decode_version(
        version,
        quote! {
            if __version == 0 || __version > #version {
                return ::core::result::Result::Err(::annals::UpcastError::NoUpcaster { from: __version });
            }
            let mut __value = ::core::clone::Clone::clone(__payload);
            #(#steps)*
            ::annals::__private::deserialize_payload::<Self>(&__value)
        },
    )
}
