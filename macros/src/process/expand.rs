//! Code generation: the `Process` impl, its dispatch to the `React` impls and to the
//! aggregates that handle its commands, and the marker impls that check the wiring.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::{type_name, Correlation, Model};
use crate::event_list::{self, at};

pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model { ident, name, correlation, events, commands, deadlines, rejected } = model;
    let event_refs: Vec<_> = events.iter().collect();
    let metas = event_list::metas(&event_refs);
    let event_types = event_list::stored_names(events.len());
    let p = quote!(::annals::__private::process);

    // Which instance an event belongs to: its `correlate_by` field, read spanned on the
    // event type, so an event without the field is reported at the event.
    let correlate = events.iter().enumerate().map(|(index, ty)| {
        let stored_as = event_list::is_stored_as(index, &quote!(__event_type));
        let read = match correlation {
            Some(Correlation::Function(function)) => quote_spanned! {at(function)=>
                ::annals::__private::correlate_with(__envelope, #function)
            },
            Some(Correlation::Field(field)) => {
                let field = syn::Ident::new(&field.to_string(), at(ty));
                quote_spanned! {at(ty)=>
                    ::annals::__private::correlate_by::<#ty, _>(__envelope, |__event: &#ty| &__event.#field)
                }
            }
            None => quote!(::core::result::Result::Ok(::core::option::Option::None)),
        };
        quote! { if #stored_as { return #read; } }
    });
    let react_events = events.iter().enumerate().map(|(index, ty)| {
        let stored_as = event_list::is_stored_as(index, &quote!(__event_type));
        let react = quote_spanned! {at(ty)=>
            ::annals::__private::react_to_event::<Self, #ty>(self, __trigger, __effects)
        };
        quote! { if #stored_as { return #react; } }
    });
    let react_deadlines = deadlines.iter().map(|ty| {
        let name = type_name(ty);
        let react = quote_spanned! {at(ty)=>
            ::annals::__private::react_to_deadline::<Self, #ty>(self, __trigger, __effects)
        };
        quote! { if __deadline_type == #name { return #react; } }
    });
    let react_rejections = rejected.iter().map(|ty| {
        let name = type_name(ty);
        let react = quote_spanned! {at(ty)=>
            ::annals::__private::react_to_rejection::<Self, #ty>(self, __trigger, __effects)
        };
        quote! { if __command_type == #name { return #react; } }
    });
    // Spanned on the aggregate: an aggregate that does not handle the command is
    // reported there.
    let dispatch = commands.iter().filter_map(|route| Some((&route.command, route.aggregate.as_ref()?))).map(
        |(command, aggregate)| {
            let name = type_name(command);
            let call = quote_spanned! {at(aggregate)=>
                ::annals::__private::dispatch_command::<Self, #aggregate, #command, __S>(__store, __command, __metadata)
            };
            quote! { if __command.command_type == #name { return #call; } }
        },
    );
    let sends = commands.iter().map(|route| {
        let command = &route.command;
        let name = type_name(command);
        quote_spanned! {at(command)=>
            #[automatically_derived]
            impl #p::CommandOf<#ident> for #command {
                const COMMAND_TYPE: &'static str = #name;
            }
        }
    });
    let schedules = deadlines.iter().map(|ty| {
        let name = type_name(ty);
        quote_spanned! {at(ty)=>
            #[automatically_derived]
            impl #p::DeadlineOf<#ident> for #ty {
                const DEADLINE_TYPE: &'static str = #name;
            }
        }
    });
    // `React<E>` requires it: a reaction to an input not listed does not compile. With no
    // valid event list (its error is reported), every input counts as listed, so that
    // the user's `React` impls do not add an error each.
    let listed: Vec<TokenStream> = if events.is_empty() {
        vec![quote! {
            #[automatically_derived]
            impl<__E> ::annals::__private::ListsInput<__E> for #ident {}
        }]
    } else {
        let inputs = events.iter().chain(deadlines).map(|ty| (at(ty), quote!(#ty)));
        let rejections = rejected.iter().map(|ty| (at(ty), quote!(#p::Rejected<#ty>)));
        inputs
            .chain(rejections)
            .map(|(span, ty)| {
                quote_spanned! {span=>
                    #[automatically_derived]
                    impl ::annals::__private::ListsInput<#ty> for #ident {}
                }
            })
            .collect()
    };
    let unique_names = event_list::unique_names(&event_refs, &ident.to_string());
    quote! {
        const _: () = {
            #metas

            #[automatically_derived]
            impl #p::Process for #ident {
                const NAME: &'static str = #name;
                const EVENT_TYPES: &'static [&'static str] = #event_types;

                fn correlate(
                    __envelope: &::annals::Envelope,
                ) -> ::core::result::Result<::core::option::Option<::std::string::String>, ::annals::DecodeError> {
                    let __event_type = __envelope.event_type.as_str();
                    #(#correlate)*
                    ::core::result::Result::Ok(::core::option::Option::None)
                }

                fn react_to(
                    &mut self,
                    __trigger: &#p::Trigger,
                    __effects: &mut #p::Effects<Self>,
                ) -> ::core::result::Result<(), #p::ProcessError> {
                    match __trigger {
                        #p::Trigger::Event { event_type, .. } => {
                            let __event_type = event_type.as_str();
                            #(#react_events)*
                        }
                        #p::Trigger::Deadline { deadline_type, .. } => {
                            let __deadline_type = deadline_type.as_str();
                            #(#react_deadlines)*
                        }
                        #p::Trigger::Rejected { command_type, .. } => {
                            let __command_type = command_type.as_str();
                            #(#react_rejections)*
                        }
                    }
                    ::core::result::Result::Err(::annals::__private::unhandled::<Self>(__trigger))
                }

                fn dispatch<'__a, __S: ::annals::EventStore>(
                    __store: &'__a __S,
                    __command: &'__a #p::SentCommand,
                    __metadata: ::annals::Metadata,
                ) -> ::annals::__private::BoxFuture<
                    '__a,
                    ::core::result::Result<::core::result::Result<(), ::std::string::String>, #p::ProcessError>,
                > {
                    #(#dispatch)*
                    ::annals::__private::unknown_command::<Self>(__command)
                }
            }

            #(#sends)*
            #(#schedules)*
            #(#listed)*
            #unique_names
        };
    }
}
