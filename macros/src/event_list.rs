//! What `#[derive(Aggregate)]` and `#[derive(Projection)]` share about their `events(...)`
//! lists: names for messages and defaults, and the generated code that is the same for
//! both (the list of stored names, the match on a stored name, the duplicate-name check).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, TypePath};

/// `tokens` as a user would write them, for messages: `a::Added`, `Vec<u8>`.
pub(crate) fn display(tokens: &impl ToTokens) -> String {
    let mut out = tokens.to_token_stream().to_string();
    for (from, to) in [(" :: ", "::"), (":: ", "::"), (" <", "<"), ("< ", "<"), (" >", ">"), (" ,", ",")] {
        out = out.replace(from, to);
    }
    out
}

/// `ShoppingCart` → `shopping_cart`; `HTTPServer` → `http_server`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = match prev {
                Some(p) => p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next_lower),
                None => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

/// A span located at `tokens` in the attribute but resolved like the rest of the
/// generated code: trait errors about that type point there, while lints still see
/// macro-generated code.
pub(crate) fn at(tokens: &impl Spanned) -> Span {
    Span::call_site().located_at(tokens.span())
}

/// The `const` holding the [`EventMeta`] of the `index`-th listed event, made by [`metas`].
///
/// [`EventMeta`]: ../../annals/__private/struct.EventMeta.html
pub(crate) fn meta(index: usize) -> Ident {
    format_ident!("__ANNALS_EVENT_{}", index)
}

/// One `const __ANNALS_EVENT_<i>: EventMeta<T> = event_meta::<T>();` per listed event,
/// spanned on the type: the one place generated code requires `T: Event`, so a listed
/// type that is not an event (or an event missing a derive) is reported once, there.
/// Everything else about the event goes through the constant.
pub(crate) fn metas(events: &[&TypePath]) -> TokenStream {
    let consts = events.iter().enumerate().map(|(index, ty)| {
        let meta = meta(index);
        quote_spanned! {at(ty)=>
            const #meta: ::annals::__private::EventMeta<#ty> = ::annals::__private::event_meta::<#ty>();
        }
    });
    quote!(#(#consts)*)
}

/// A `&'static [&'static str]` expression: the stored names and aliases of the `count`
/// listed events, in order (`EventSet::NAMES`, `Projection::EVENT_TYPES`).
pub(crate) fn stored_names(count: usize) -> TokenStream {
    let parts = (0..count).map(|index| {
        let meta = meta(index);
        quote!(&[#meta.name], #meta.aliases,)
    });
    quote! {{
        const __PARTS: &[&[&'static str]] = &[#(#parts)*];
        const __LEN: usize = ::annals::__private::total_len(__PARTS);
        const __NAMES: [&'static str; __LEN] = ::annals::__private::concat(__PARTS);
        &__NAMES
    }}
}

/// Whether the stored name `event_type` (a `&str` expression) is the `index`-th listed
/// event's name or alias.
pub(crate) fn is_stored_as(index: usize, event_type: &TokenStream) -> TokenStream {
    let meta = meta(index);
    quote!((#event_type == #meta.name || #meta.aliases.contains(&#event_type)))
}

/// One compile-time assertion per pair of `events` that they share no stored name (name
/// or alias), spanned on the later event of the pair. `owner` names the list in the
/// message: "events of `Cart`".
pub(crate) fn unique_names(events: &[&TypePath], owner: &str) -> TokenStream {
    let mut checks = Vec::new();
    for (i, later) in events.iter().enumerate() {
        for (j, earlier) in events[..i].iter().enumerate() {
            let message = format!(
                "`{}` and `{}`, events of `{owner}`, have the same stored name; give each a unique `#[event(name = \"...\")]` (and aliases)",
                display(earlier),
                display(later),
            );
            let (a, b) = (meta(j), meta(i));
            checks.push(quote_spanned! {at(later)=>
                const _: () = ::core::assert!(
                    !::annals::__private::share_a_name(#a.name, #a.aliases, #b.name, #b.aliases),
                    #message
                );
            });
        }
    }
    quote!(#(#checks)*)
}

#[cfg(test)]
mod tests {
    use super::{display, snake_case};

    #[test]
    fn snake_case_splits_words() {
        assert_eq!(snake_case("Cart"), "cart");
        assert_eq!(snake_case("ShoppingCart"), "shopping_cart");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("OrderV2"), "order_v2");
        assert_eq!(snake_case("V2Order"), "v2_order");
        assert_eq!(snake_case("Already_Snake"), "already_snake");
        assert_eq!(snake_case("cart"), "cart");
    }

    #[test]
    fn display_reads_like_source() {
        let ty: syn::TypePath = syn::parse_quote!(crate::cart::Added<u8>);
        assert_eq!(display(&ty), "crate::cart::Added<u8>");
    }
}
