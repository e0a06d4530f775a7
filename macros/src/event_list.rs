//! What `#[derive(Aggregate)]` and `#[derive(Projection)]` share about their `events(...)`
//! lists: names for messages and defaults, and the generated code that is the same for
//! both (the list of stored names, the match on a stored name, the duplicate-name check).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::TypePath;

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

/// `<ItemAdded as ::annals::Event>::NAME`, spanned on `ItemAdded`.
pub(crate) fn event_const(ty: &TypePath, constant: &str) -> TokenStream {
    let constant = syn::Ident::new(constant, at(ty));
    quote_spanned! {at(ty)=> <#ty as ::annals::Event>::#constant }
}

/// A `&'static [&'static str]` expression: the stored names and aliases of `events`, in
/// order (`EventSet::NAMES`, `Projection::EVENT_TYPES`).
pub(crate) fn stored_names<'a>(events: impl IntoIterator<Item = &'a TypePath>) -> TokenStream {
    let parts = events.into_iter().map(|ty| {
        let name = event_const(ty, "NAME");
        let aliases = event_const(ty, "ALIASES");
        quote!(&[#name], #aliases,)
    });
    quote! {{
        const __PARTS: &[&[&'static str]] = &[#(#parts)*];
        const __LEN: usize = ::annals::__private::total_len(__PARTS);
        const __NAMES: [&'static str; __LEN] = ::annals::__private::concat::<__LEN>(__PARTS);
        &__NAMES
    }}
}

/// Whether the stored name `event_type` (a `&str` expression) is `ty`'s name or alias.
pub(crate) fn is_stored_as(ty: &TypePath, event_type: &TokenStream) -> TokenStream {
    let (name, aliases) = (event_const(ty, "NAME"), event_const(ty, "ALIASES"));
    quote!((#event_type == #name || #aliases.contains(&#event_type)))
}

/// One compile-time assertion per pair of `events` that they share no stored name (name
/// or alias), spanned on the later event of the pair. `owner` names the list in the
/// message: "events of `Cart`".
pub(crate) fn unique_names(events: &[&TypePath], owner: &str) -> TokenStream {
    let mut checks = Vec::new();
    for (i, later) in events.iter().enumerate() {
        for earlier in &events[..i] {
            let message = format!(
                "`{}` and `{}`, events of `{owner}`, have the same stored name; give each a unique `#[event(name = \"...\")]` (and aliases)",
                display(earlier),
                display(later),
            );
            let (a, a_aliases) = (event_const(earlier, "NAME"), event_const(earlier, "ALIASES"));
            let (b, b_aliases) = (event_const(later, "NAME"), event_const(later, "ALIASES"));
            checks.push(quote_spanned! {at(later)=>
                const _: () = ::core::assert!(
                    !::annals::__private::share_a_name(#a, #a_aliases, #b, #b_aliases),
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
