//! The checks of `exchange` and the options that only make sense with it:
//! `exchange_type`, `routing_keys`, `match_headers` and `match_all`.

use super::{short_name, str_value, Errors, Given, SHORT_STRING_MAX};
use crate::attr::{Binding, ExchangeKind, Key, RoutingKeys, Spanned, Value};

/// Checks the binding options together; `None` without `exchange` or on error.
pub(super) fn check_binding(given: &Given<'_>, errors: &mut Errors) -> Option<Binding> {
    let exchange = given.get(Key::Exchange);
    let kind_entry = given.get(Key::ExchangeType);
    let keys_entry = given.get(Key::RoutingKeys);
    let headers_entry = given.get(Key::MatchHeaders);
    let all_entry = given.get(Key::MatchAll);

    let Some(exchange) = exchange else {
        for entry in [kind_entry, keys_entry, headers_entry, all_entry]
            .into_iter()
            .flatten()
        {
            errors.push(
                entry.key_span,
                format_args!(
                    "`{}` needs `exchange = \"...\"`: without an exchange the queue only gets messages sent to it by name",
                    entry.key
                ),
            );
        }
        return None;
    };
    let exchange = str_value(exchange);
    let mut ok = short_name(exchange, "exchange name", errors);
    if exchange.value().starts_with("amq.") {
        errors.push(
            exchange.span(),
            "exchange names starting with `amq.` are reserved by RabbitMQ: choose another name",
        );
        ok = false;
    }

    let kind = match kind_entry {
        None => Some(Spanned::new(ExchangeKind::Direct, exchange.span())),
        Some(entry) => {
            let lit = str_value(entry);
            let kind = match lit.value().as_str() {
                "direct" => Some(ExchangeKind::Direct),
                "topic" => Some(ExchangeKind::Topic),
                "fanout" => Some(ExchangeKind::Fanout),
                "headers" => Some(ExchangeKind::Headers),
                other => {
                    errors.push(
                        lit.span(),
                        format_args!(
                            "unknown exchange_type {other:?}: write \"direct\" (the default), \"topic\", \"fanout\" or \"headers\""
                        ),
                    );
                    None
                }
            };
            kind.map(|k| Spanned::new(k, lit.span()))
        }
    };
    let kind = kind?;

    let keys = keys_entry.map(|entry| {
        let Value::List(span, items) = &entry.value else {
            unreachable!("the parser only accepts a list for `routing_keys`")
        };
        (entry, *span, items)
    });
    let routing_keys = match (kind.value, keys) {
        (ExchangeKind::Headers, Some((entry, ..))) => {
            errors.push(
                entry.key_span,
                "a headers exchange routes on headers, not routing keys: remove `routing_keys` and use `match_headers = { \"name\" = \"value\" }`",
            );
            ok = false;
            RoutingKeys::None
        }
        (ExchangeKind::Fanout, Some((entry, ..))) => {
            errors.push(
                entry.key_span,
                "a fanout exchange ignores routing keys: remove `routing_keys`",
            );
            ok = false;
            RoutingKeys::None
        }
        (ExchangeKind::Headers | ExchangeKind::Fanout, None) => RoutingKeys::None,
        (ExchangeKind::Direct, None) => RoutingKeys::QueueName,
        (ExchangeKind::Topic, None) => {
            errors.push(
                kind.span,
                "a topic exchange routes by pattern: add `routing_keys = [\"order.*\"]`",
            );
            ok = false;
            RoutingKeys::None
        }
        (ExchangeKind::Direct | ExchangeKind::Topic, Some((_, span, items))) => {
            if items.is_empty() {
                errors.push(
                    span,
                    "`routing_keys` is empty: list at least one key, or leave the option out",
                );
                ok = false;
            }
            for lit in items {
                if lit.value().len() > SHORT_STRING_MAX {
                    short_name(lit, "routing key", errors);
                    ok = false;
                }
            }
            RoutingKeys::Given(items.clone())
        }
    };

    let mut match_headers = Vec::new();
    let headers = kind.value == ExchangeKind::Headers;
    for entry in [headers_entry, all_entry].into_iter().flatten() {
        if !headers {
            errors.push(
                entry.key_span,
                format_args!(
                    "`{}` is for headers exchanges: set `exchange_type = \"headers\"`, or remove it",
                    entry.key
                ),
            );
            ok = false;
        }
    }
    if let Some(entry) = headers_entry.filter(|_| headers) {
        let Value::Map(span, pairs) = &entry.value else {
            unreachable!("the parser only accepts a map for `match_headers`")
        };
        if pairs.is_empty() {
            errors.push(
                *span,
                "`match_headers` is empty: name at least one header, or use a fanout exchange",
            );
            ok = false;
        }
        for (i, (name, _)) in pairs.iter().enumerate() {
            let text = name.value();
            if !short_name(name, "header name", errors) {
                ok = false;
            } else if text.starts_with("x-") {
                errors.push(
                    name.span(),
                    "headers exchanges ignore headers whose names start with `x-`: choose another header",
                );
                ok = false;
            } else if pairs[..i].iter().any(|(n, _)| n.value() == text) {
                errors.push(
                    name.span(),
                    format_args!("header {text:?} is matched twice: keep one"),
                );
                ok = false;
            }
        }
        match_headers.clone_from(pairs);
    } else if headers {
        errors.push(
            kind.span,
            "a headers exchange needs `match_headers = { \"name\" = \"value\" }`; without it every message matches (use \"fanout\" for that)",
        );
        ok = false;
    }
    let match_all = match all_entry.map(|e| &e.value) {
        Some(Value::Bool(b)) => b.value,
        Some(_) => unreachable!("the parser only accepts a boolean for `match_all`"),
        None => true,
    };

    ok.then(|| Binding {
        exchange: exchange.clone(),
        kind,
        routing_keys,
        match_headers,
        match_all,
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::attr::test_support::{assert_errors, errors_of, run};

    #[test]
    fn headers_binding_reads_pairs_and_match_mode() {
        let (args, errors) = run(quote!(
            exchange = "docs", exchange_type = "headers",
            match_headers = { "format" = "pdf", "lang" = "en" }, match_all = false
        ));
        assert!(errors.is_empty(), "{errors:?}");
        let binding = args.binding.unwrap();
        assert_eq!(binding.kind.value, ExchangeKind::Headers);
        assert_eq!(binding.match_headers.len(), 2);
        assert!(!binding.match_all);
        assert!(matches!(binding.routing_keys, RoutingKeys::None));
    }

    #[test]
    fn direct_exchange_defaults_to_the_queue_name_as_key() {
        let (args, errors) = run(quote!(exchange = "jobs"));
        assert!(errors.is_empty());
        let binding = args.binding.unwrap();
        assert_eq!(binding.kind.value, ExchangeKind::Direct);
        assert!(matches!(binding.routing_keys, RoutingKeys::QueueName));
    }

    #[test]
    fn rejects_conflicting_binding_options() {
        assert!(errors_of(quote!(routing_keys = ["a"]))[0].contains("needs `exchange"));
        assert!(errors_of(quote!(
            exchange = "e",
            exchange_type = "headers",
            routing_keys = ["a"],
            match_headers = { "a" = "b" }
        ))[0]
            .starts_with("a headers exchange routes on headers"));
        assert!(errors_of(quote!(
            exchange = "e",
            exchange_type = "fanout",
            routing_keys = ["a"]
        ))[0]
            .starts_with("a fanout exchange ignores"));
        assert!(
            errors_of(quote!(exchange = "e", match_headers = { "a" = "b" }))[0]
                .contains("is for headers exchanges")
        );
        assert!(
            errors_of(quote!(exchange = "e", exchange_type = "topic"))[0]
                .starts_with("a topic exchange routes by pattern")
        );
    }

    #[test]
    fn rejects_bad_binding_values() {
        let cases = [
            (quote!(exchange_type = "topic"), "needs `exchange"),
            (
                quote!(
                    exchange = "e",
                    exchange_type = "headers",
                    match_headers = { "x-a" = "1" }
                ),
                "`x-`",
            ),
            (
                quote!(exchange = "e", exchange_type = "headers"),
                "needs `match_headers",
            ),
        ];
        assert_errors(cases);
    }
}
