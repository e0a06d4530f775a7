//! Code generation: the `Projection` impl and its dispatch to the `On` handlers.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::Model;
use crate::event_list::{self, at};

pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model { ident, name, events, context } = model;
    let event_types = event_list::stored_names(events);
    let context = match context {
        Some(context) => quote!(#context),
        None => quote!(()),
    };
    let arms = events.iter().map(|ty| {
        let stored_as = event_list::is_stored_as(ty, &quote!(__event_type));
        // Spanned on the event type: a missing `On` impl or a type that is not an event is
        // reported there.
        let dispatch = quote_spanned! {at(ty)=>
            ::annals::__private::dispatch_projection::<Self, #ty>(self, __envelope, __context).await
        };
        quote! {
            if #stored_as {
                return #dispatch;
            }
        }
    });
    let unique_names = event_list::unique_names(&events.iter().collect::<Vec<_>>(), &ident.to_string());
    // `On<E>` requires it: a handler of an event not listed here does not compile. With
    // no valid list (its error is reported), every event counts as listed, so that the
    // user's `On` impls do not add an error each.
    let listed: Vec<TokenStream> = if events.is_empty() {
        vec![quote! {
            #[automatically_derived]
            impl<__E> ::annals::__private::ListsEvent<__E> for #ident {}
        }]
    } else {
        events
            .iter()
            .map(|ty| {
                quote_spanned! {at(ty)=>
                    #[automatically_derived]
                    impl ::annals::__private::ListsEvent<#ty> for #ident {}
                }
            })
            .collect()
    };
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::annals::Projection for #ident {
                const NAME: &'static str = #name;
                const EVENT_TYPES: &'static [&'static str] = #event_types;
                type Context = #context;

                fn project<'__a>(
                    &'__a mut self,
                    __envelope: &'__a ::annals::Envelope,
                    __context: &'__a mut <Self as ::annals::Projection>::Context,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<(), ::annals::ProjectionError>,
                > + ::core::marker::Send + '__a {
                    async move {
                        let __event_type = __envelope.event_type.as_str();
                        #(#arms)*
                        ::core::result::Result::Ok(())
                    }
                }
            }

            #unique_names
            #(#listed)*
        };
    }
}
