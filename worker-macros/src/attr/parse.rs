//! The syntax of `#[task(...)]`: `key = value` pairs, separated by commas.
//!
//! Option names are `syn::custom_keyword!`s (in [`kw`]) read by one
//! `lookahead1` loop, so that a literal where a name belongs gets syn's
//! "expected one of: `name`, `queue`, ..." and an unknown name gets a
//! suggestion. After a bad pair, parsing skips to the next comma and goes on.
//! Values are only read here, with their spans; what they mean is checked
//! in `check.rs`.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{braced, bracketed, token, Ident, LitBool, LitInt, LitStr, Token};

use super::{Entry, Key, Parsed, Shape, Value};

/// Declares the [`kw`] module and [`parse_key`] from the table in
/// `with_keys!` (in `mod.rs`), so that the option names are listed once.
macro_rules! declare_key_parser {
    ($($kw:ident => $variant:ident, $shape:ident, $example:literal;)*) => {
        /// The option names, as custom keywords so that `lookahead1` can list them.
        mod kw {
            $(syn::custom_keyword!($kw);)*
        }

        /// Reads an option name, or fails listing what was expected.
        fn parse_key(input: ParseStream<'_>) -> syn::Result<(Key, Span)> {
            let lookahead = input.lookahead1();
            $(
                if lookahead.peek(kw::$kw) {
                    let token: kw::$kw = input.parse()?;
                    return Ok((Key::$variant, token.span));
                }
            )*
            if lookahead.peek(Token![crate]) {
                let token: Token![crate] = input.parse()?;
                return Ok((Key::Crate, token.span));
            }
            if input.peek(Ident::peek_any) {
                let ident = input.call(Ident::parse_any)?;
                return Err(unknown_option(&ident));
            }
            Err(lookahead.error())
        }
    };
}

with_keys!(declare_key_parser);

/// Parses the attribute's tokens, recovering at the next comma after an error.
pub(crate) fn parse(tokens: TokenStream) -> Parsed {
    let parser = |input: ParseStream<'_>| -> syn::Result<Parsed> {
        let mut parsed = Parsed::default();
        while !input.is_empty() {
            let item = parse_entry(input);
            if item.is_err() {
                // Skip the rest of this pair: brackets and braces are one
                // token tree each, so a comma inside a list does not stop it.
                skip_to_comma(input)?;
            }
            parsed.items.push(item);
            if input.is_empty() {
                break;
            }
            if let Err(err) = input.parse::<Token![,]>() {
                let msg = "expected `,` between options, as in `#[task(queue = \"emails\", retries = 5)]`";
                parsed.items.push(Err(syn::Error::new(err.span(), msg)));
                skip_to_comma(input)?;
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
            }
        }
        Ok(parsed)
    };
    parser.parse2(tokens).unwrap_or_else(|err| Parsed {
        items: vec![Err(err)],
    })
}

/// Skips tokens up to the next comma at this level, or to the end.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// `key = value`.
fn parse_entry(input: ParseStream<'_>) -> syn::Result<Entry> {
    let (key, key_span) = parse_key(input)?;
    if !input.peek(Token![=]) {
        let msg = format!("expected `=` after `{key}`: write `{}`", key.example());
        return Err(syn::Error::new(after(input, key_span), msg));
    }
    input.parse::<Token![=]>()?;
    let value = parse_value(input, key)?;
    Ok(Entry {
        key,
        key_span,
        value,
    })
}

/// The span of the next token, or of `fallback` at the end of the input.
fn after(input: ParseStream<'_>, fallback: Span) -> Span {
    if input.is_empty() {
        fallback
    } else {
        input.span()
    }
}

/// The value after `key =`, of the shape the key takes.
fn parse_value(input: ParseStream<'_>, key: Key) -> syn::Result<Value> {
    let wrong = |what: &str| {
        let msg = format!("`{key}` takes {what}: write `{}`", key.example());
        syn::Error::new(input.span(), msg)
    };
    if input.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("`{key}` needs a value: write `{}`", key.example()),
        ));
    }
    match key.shape() {
        Shape::Str if input.peek(LitStr) => Ok(Value::Str(input.parse()?)),
        Shape::Str => Err(wrong("a string")),
        Shape::Int if input.peek(LitInt) => Ok(Value::Int(input.parse()?)),
        Shape::Int => Err(wrong("a whole number")),
        Shape::Bool if input.peek(LitBool) => Ok(Value::Bool(input.parse()?)),
        Shape::Bool => Err(wrong("`true` or `false`")),
        Shape::List if input.peek(token::Bracket) => {
            let content;
            let brackets = bracketed!(content in input);
            let items = drained(&content, parse_list(&content, key))?;
            Ok(Value::List(brackets.span.join(), items))
        }
        Shape::List => Err(wrong("a list in brackets")),
        Shape::Map if input.peek(token::Brace) => {
            let content;
            let braces = braced!(content in input);
            let pairs = drained(&content, parse_map(&content, key))?;
            Ok(Value::Map(braces.span.join(), pairs))
        }
        Shape::Map => Err(wrong("a map in braces")),
    }
}

/// Consumes what is left inside brackets or braces after an error, so that
/// the error reported is ours and not syn's "unexpected token".
fn drained<T>(content: ParseStream<'_>, result: syn::Result<T>) -> syn::Result<T> {
    if result.is_err() {
        content.parse::<TokenStream>()?;
    }
    result
}

/// `"a", "b"` inside brackets.
fn parse_list(content: ParseStream<'_>, key: Key) -> syn::Result<Vec<LitStr>> {
    let mut items = Vec::new();
    while !content.is_empty() {
        if !content.peek(LitStr) {
            let msg = format!("`{key}` lists strings: write `{}`", key.example());
            return Err(syn::Error::new(content.span(), msg));
        }
        items.push(content.parse()?);
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(items)
}

/// `"a" = "b", "c" = "d"` inside braces.
fn parse_map(content: ParseStream<'_>, key: Key) -> syn::Result<Vec<(LitStr, LitStr)>> {
    let hint = || {
        format!(
            "`{key}` pairs header names with values, both strings: write `{}`",
            key.example()
        )
    };
    let mut pairs = Vec::new();
    while !content.is_empty() {
        if !content.peek(LitStr) {
            return Err(syn::Error::new(content.span(), hint()));
        }
        let name: LitStr = content.parse()?;
        if !content.peek(Token![=]) || !content.peek2(LitStr) {
            return Err(syn::Error::new(after(content, name.span()), hint()));
        }
        content.parse::<Token![=]>()?;
        pairs.push((name, content.parse()?));
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(pairs)
}

/// The error for an option name that does not exist, with a suggestion when one is close.
fn unknown_option(ident: &Ident) -> syn::Error {
    let written = ident.unraw().to_string();
    let names: Vec<&str> = Key::ALL.iter().map(|k| k.as_str()).collect();
    let suggestion = names
        .iter()
        .map(|name| (edit_distance(&written, name), *name))
        .filter(|(distance, name)| *distance <= 2.max(name.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    let msg = format!(
        "unknown option `{written}`{suggestion}; expected one of: {}",
        names.join(", ")
    );
    syn::Error::new(ident.span(), msg)
}

/// Levenshtein distance between two short ASCII-ish strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::attr::test_support::{assert_errors, errors_of};

    #[test]
    fn unknown_option_suggests_the_closest() {
        let errors = errors_of(quote!(retires = 5));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with(
            "unknown option `retires` (did you mean `retries`?); expected one of: name, queue,"
        ));
        let errors = errors_of(quote!(colour = "red"));
        assert!(!errors[0].contains("did you mean"), "{errors:?}");
    }

    #[test]
    fn a_literal_without_a_key_lists_the_keys() {
        let errors = errors_of(quote!("emails"));
        assert!(
            errors[0].starts_with("expected one of: `name`, `queue`"),
            "{errors:?}"
        );
    }

    #[test]
    fn rejects_bad_syntax() {
        let cases = [
            (quote!(tiers = [1]), "lists strings"),
            (quote!(tiers = ["1s" "2s"]), "expected `,`"),
            (quote!(tiers = "1s"), "a list in brackets"),
            (
                quote!(exchange = "e", exchange_type = "headers", match_headers = { "a" => "b" }),
                "pairs header names",
            ),
            (
                quote!(
                    exchange = "e",
                    exchange_type = "headers",
                    match_headers = { a = "b" }
                ),
                "pairs header names",
            ),
            (quote!(match_all = 1), "`true` or `false`"),
            (quote!(retries = -1), "whole number"),
            (quote!(match_all), "expected `=` after `match_all`"),
            (quote!(queue = "a" retries = 1), "expected `,`"),
        ];
        assert_errors(cases);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("retires", "retries"), 2);
        assert_eq!(edit_distance("queue", "queue"), 0);
        assert_eq!(edit_distance("queu", "queue"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
