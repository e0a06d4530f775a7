//! `#[event(crate = "...")]`, `#[aggregate(crate = "...")]`, `#[projection(crate = "...")]`:
//! where the generated code finds annals when the dependency is renamed or re-exported,
//! as `#[serde(crate = "...")]` does for serde.
//!
//! Generated code names annals as `::annals` everywhere; with `crate = "path"`, the
//! expansion's path roots `::annals` are replaced by `path`, in one pass over the tokens,
//! so no code generator needs to know about it.

use proc_macro2::{Group, TokenStream, TokenTree};

/// Keywords that may stand right before an absolute path such as `::annals::Event`.
const BEFORE_A_PATH: &[&str] =
    &["as", "impl", "for", "dyn", "where", "in", "return", "let", "const", "static", "type", "use", "mut"];

/// `tokens` with every absolute path root `::annals` replaced by `path`.
pub(crate) fn rename(tokens: TokenStream, path: &TokenStream) -> TokenStream {
    rename_in(tokens, path)
}

fn rename_in(tokens: TokenStream, replacement: &TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = TokenStream::new();
    let mut i = 0;
    while i < tokens.len() {
        if let [TokenTree::Punct(first), TokenTree::Punct(second), TokenTree::Ident(name), ..] = &tokens[i..] {
            let starts_a_path = match i.checked_sub(1).map(|before| &tokens[before]) {
                Some(TokenTree::Ident(before)) => BEFORE_A_PATH.contains(&before.to_string().as_str()),
                _ => true,
            };
            if first.as_char() == ':' && second.as_char() == ':' && name == "annals" && starts_a_path {
                out.extend(replacement.clone());
                i += 3;
                continue;
            }
        }
        match &tokens[i] {
            TokenTree::Group(group) => {
                let mut renamed = Group::new(group.delimiter(), rename_in(group.stream(), replacement));
                renamed.set_span(group.span());
                out.extend([TokenTree::Group(renamed)]);
            }
            other => out.extend([other.clone()]),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn absolute_annals_roots_are_renamed_and_nothing_else() {
        let path = quote!(my::reexported::annals);
        let tokens = quote! {
            impl ::annals::Event for X {
                fn f() -> <Self as ::annals::Aggregate>::Error { ::annals::__private::g(other::annals::h, ::core::x) }
            }
        };
        let renamed = rename(tokens, &path).to_string();
        assert_eq!(
            renamed,
            quote! {
                impl my::reexported::annals::Event for X {
                    fn f() -> <Self as my::reexported::annals::Aggregate>::Error {
                        my::reexported::annals::__private::g(other::annals::h, ::core::x)
                    }
                }
            }
            .to_string()
        );
    }
}
