//! Code generation: the `Projection` impl and its dispatch to the `On` handlers.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::Model;
use crate::event_list::{self, at};

pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model { ident, generics, name, events, context } = model;
    // Each type parameter must be `Send + 'static`, as `Projection` is.
    let mut generics = (*generics).clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::core::marker::Send));
        param.bounds.push(syn::parse_quote!('static));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let event_refs: Vec<_> = events.iter().collect();
    let metas = event_list::metas(&event_refs);
    let event_types = event_list::stored_names(events.len());
    let context = match context {
        Some(context) => quote!(#context),
        None => quote!(()),
    };
    let arms = events.iter().enumerate().map(|(index, ty)| {
        let stored_as = event_list::is_stored_as(index, &quote!(__event_type));
        let meta = event_list::meta(index);
        // Spanned on the event type: a missing `On` impl is reported there.
        let dispatch = quote_spanned! {at(ty)=>
            ::annals::__private::dispatch_projection::<Self, #ty>(self, __envelope, __context, &#meta).await
        };
        quote! {
            if #stored_as {
                return #dispatch;
            }
        }
    });
    let unique_names = event_list::unique_names(&event_refs, &ident.to_string());
    // `On<E>` requires it: a handler of an event not listed here does not compile. With
    // no valid list (its error is reported), every event counts as listed, so that the
    // user's `On` impls do not add an error each.
    let listed: Vec<TokenStream> = if events.is_empty() {
        let mut with_e = generics.clone();
        with_e.params.push(syn::parse_quote!(__E));
        let (impl_with_e, _, _) = with_e.split_for_impl();
        vec![quote! {
            #[automatically_derived]
            impl #impl_with_e ::annals::__private::ListsEvent<__E> for #ident #ty_generics #where_clause {}
        }]
    } else {
        events
            .iter()
            .map(|ty| {
                quote_spanned! {at(ty)=>
                    #[automatically_derived]
                    impl #impl_generics ::annals::__private::ListsEvent<#ty> for #ident #ty_generics #where_clause {}
                }
            })
            .collect()
    };
    quote! {
        const _: () = {
            #metas

            #[automatically_derived]
            impl #impl_generics ::annals::Projection for #ident #ty_generics #where_clause {
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
