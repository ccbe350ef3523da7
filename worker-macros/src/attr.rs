//! Parsing and checking of the options inside `#[task(...)]`.
//!
//! Parsing happens in two steps. [`parse`] reads `key = value` pairs into
//! [`Entry`] values, keeping every token's span and recovering after a bad
//! pair so that one mistake does not hide the next. [`check`] then turns the
//! entries into [`TaskArgs`]: it rejects duplicates, validates each value
//! (durations, ranges, names) and finally checks the options against each
//! other (for example `routing_keys` without `exchange`). Every error points
//! at the token to fix and says how to fix it.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{braced, bracketed, token, Ident, LitBool, LitInt, LitStr, Token};

use crate::duration::parse_duration;

/// The option names, as custom keywords so that `lookahead1` can list them.
mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(queue);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(max_attempts);
    syn::custom_keyword!(in_process);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(tiers);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(prefetch);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(queue_type);
    syn::custom_keyword!(unclassified);
    syn::custom_keyword!(max_body);
    syn::custom_keyword!(exchange);
    syn::custom_keyword!(exchange_type);
    syn::custom_keyword!(routing_keys);
    syn::custom_keyword!(match_headers);
    syn::custom_keyword!(match_all);
}

/// The longest name AMQP accepts for a queue, an exchange, a routing key or a header.
const SHORT_STRING_MAX: usize = 255;

/// The most a quorum queue's consumer may prefetch.
const QUORUM_PREFETCH_MAX: u16 = 2000;

/// What kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A string literal.
    Str,
    /// An integer literal.
    Int,
    /// `true` or `false`.
    Bool,
    /// `["a", "b"]`.
    List,
    /// `{ "a" = "b", ... }`.
    Map,
}

/// Declares the option keys once: the enum, their spelling, their value
/// shape, an example for error messages, and the keyword peek.
macro_rules! keys {
    ($($kw:ident => $variant:ident, $shape:ident, $example:literal;)*) => {
        /// One option of `#[task(...)]`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Key {
            /// `crate = "path"`.
            Crate,
            $(
                #[doc = concat!("`", $example, "`.")]
                $variant,
            )*
        }

        impl Key {
            /// Every option, in the order the documentation lists them.
            pub(crate) const ALL: &'static [Key] = &[$(Key::$variant,)* Key::Crate];

            /// The option as written.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    Key::Crate => "crate",
                    $(Key::$variant => stringify!($kw),)*
                }
            }

            fn shape(self) -> Shape {
                match self {
                    Key::Crate => Shape::Str,
                    $(Key::$variant => Shape::$shape,)*
                }
            }

            /// A correct use of the option, quoted in error messages.
            fn example(self) -> &'static str {
                match self {
                    Key::Crate => "crate = \"my_app::worker_core\"",
                    $(Key::$variant => $example,)*
                }
            }
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

keys! {
    name => Name, Str, "name = \"emails.send\"";
    queue => Queue, Str, "queue = \"emails\"";
    retries => Retries, Int, "retries = 5";
    max_attempts => MaxAttempts, Int, "max_attempts = 6";
    in_process => InProcess, Int, "in_process = 3";
    backoff => Backoff, Str, "backoff = \"1s..10m\"";
    tiers => Tiers, List, "tiers = [\"10s\", \"1m\", \"10m\"]";
    timeout => Timeout, Str, "timeout = \"30s\"";
    prefetch => Prefetch, Int, "prefetch = 50";
    concurrency => Concurrency, Int, "concurrency = 8";
    queue_type => QueueType, Str, "queue_type = \"classic\"";
    unclassified => Unclassified, Str, "unclassified = \"permanent\"";
    max_body => MaxBody, Int, "max_body = 1048576";
    exchange => Exchange, Str, "exchange = \"orders\"";
    exchange_type => ExchangeType, Str, "exchange_type = \"topic\"";
    routing_keys => RoutingKeys, List, "routing_keys = [\"order.created\"]";
    match_headers => MatchHeaders, Map, "match_headers = { \"format\" = \"pdf\" }";
    match_all => MatchAll, Bool, "match_all = false";
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value as written in the attribute.
#[derive(Clone)]
pub(crate) enum Value {
    /// A string literal.
    Str(LitStr),
    /// An integer literal.
    Int(LitInt),
    /// A boolean literal.
    Bool(LitBool),
    /// A bracketed list of strings; the span covers the brackets.
    List(Span, Vec<LitStr>),
    /// A braced list of `"key" = "value"` pairs; the span covers the braces.
    Map(Span, Vec<(LitStr, LitStr)>),
}

/// One `key = value` pair.
#[derive(Clone)]
pub(crate) struct Entry {
    /// Which option.
    pub(crate) key: Key,
    /// Where its name is.
    pub(crate) key_span: Span,
    /// Its value.
    pub(crate) value: Value,
}

/// The pairs of the attribute, in order: each one parsed, or its syntax error.
#[derive(Default)]
pub(crate) struct Parsed {
    /// One item per pair; parsing went on after each error.
    pub(crate) items: Vec<syn::Result<Entry>>,
}

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

fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

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

/// A checked value and the span of the tokens it came from.
#[derive(Clone, Copy)]
pub(crate) struct Spanned<T> {
    /// The value.
    pub(crate) value: T,
    /// Where it was written.
    pub(crate) span: Span,
}

impl<T> Spanned<T> {
    fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// `queue_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    /// `"quorum"`.
    Quorum,
    /// `"classic"`.
    Classic,
}

/// `unclassified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unclassified {
    /// `"transient"`.
    Transient,
    /// `"permanent"`.
    Permanent,
}

/// `exchange_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeKind {
    /// `"direct"`.
    Direct,
    /// `"topic"`.
    Topic,
    /// `"fanout"`.
    Fanout,
    /// `"headers"`.
    Headers,
}

/// Which routing keys a binding uses.
#[derive(Clone)]
pub(crate) enum RoutingKeys {
    /// The keys given with `routing_keys`.
    Given(Vec<LitStr>),
    /// A direct exchange without `routing_keys`: the queue's name.
    QueueName,
    /// Fanout and headers exchanges: none (one binding with the empty key).
    None,
}

/// `exchange` and the options that go with it.
#[derive(Clone)]
pub(crate) struct Binding {
    /// The exchange name.
    pub(crate) exchange: LitStr,
    /// Its type.
    pub(crate) kind: Spanned<ExchangeKind>,
    /// The routing keys to bind with.
    pub(crate) routing_keys: RoutingKeys,
    /// Headers to match, for a headers exchange.
    pub(crate) match_headers: Vec<(LitStr, LitStr)>,
    /// `x-match: all` (true) or `any` (false).
    pub(crate) match_all: bool,
}

/// The checked options. `None` everywhere means "keep the default".
#[derive(Clone, Default)]
pub(crate) struct TaskArgs {
    /// `crate`: the path to `worker_core`.
    pub(crate) krate: Option<syn::Path>,
    /// `name`.
    pub(crate) name: Option<LitStr>,
    /// `queue`.
    pub(crate) queue: Option<LitStr>,
    /// `max_attempts`, or `retries + 1`.
    pub(crate) max_attempts: Option<Spanned<u32>>,
    /// `in_process`.
    pub(crate) in_process: Option<Spanned<u32>>,
    /// `backoff`: minimum and maximum.
    pub(crate) backoff: Option<Spanned<(Duration, Duration)>>,
    /// `tiers`.
    pub(crate) tiers: Option<Spanned<Vec<Duration>>>,
    /// `timeout`.
    pub(crate) timeout: Option<Spanned<Duration>>,
    /// `prefetch`.
    pub(crate) prefetch: Option<Spanned<u16>>,
    /// `concurrency`.
    pub(crate) concurrency: Option<Spanned<u64>>,
    /// `queue_type`.
    pub(crate) queue_type: Option<Spanned<QueueKind>>,
    /// `unclassified`.
    pub(crate) unclassified: Option<Spanned<Unclassified>>,
    /// `max_body`.
    pub(crate) max_body: Option<Spanned<u64>>,
    /// `exchange` with its type, keys and headers.
    pub(crate) binding: Option<Binding>,
}

impl TaskArgs {
    /// Whether any option changes `TaskOptions` (as opposed to names and paths).
    pub(crate) fn changes_options(&self) -> bool {
        self.max_attempts.is_some()
            || self.in_process.is_some()
            || self.backoff.is_some()
            || self.tiers.is_some()
            || self.timeout.is_some()
            || self.prefetch.is_some()
            || self.concurrency.is_some()
            || self.queue_type.is_some()
            || self.unclassified.is_some()
            || self.max_body.is_some()
            || self.binding.is_some()
    }
}

/// Collects errors while checking.
#[derive(Default)]
struct Errors(Vec<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, msg));
    }
}

/// The entries by option, first occurrence only.
struct Given<'a> {
    entries: Vec<&'a Entry>,
}

impl<'a> Given<'a> {
    fn get(&self, key: Key) -> Option<&'a Entry> {
        self.entries.iter().copied().find(|e| e.key == key)
    }
}

/// Validates the parsed entries, alone and together.
///
/// Returns the options that are valid even when others are not, so that the
/// expansion can go on and the user sees only the errors they made.
pub(crate) fn check(parsed: &Parsed) -> (TaskArgs, Vec<syn::Error>) {
    let mut errors = Errors::default();
    let mut given = Given {
        entries: Vec::new(),
    };
    let mut args = TaskArgs::default();
    // Syntax errors, duplicates and bad values come in the order written;
    // conflicts between options come after them.
    for item in &parsed.items {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                errors.0.push(err.clone());
                continue;
            }
        };
        if given.get(entry.key).is_some() {
            errors.push(
                entry.key_span,
                format_args!(
                    "duplicate option `{}`: it is already given earlier in this attribute; keep one",
                    entry.key
                ),
            );
        } else {
            given.entries.push(entry);
            check_one(entry, &mut args, &mut errors);
        }
    }
    check_together(&given, &mut args, &mut errors);
    (args, errors.0)
}

fn str_value(entry: &Entry) -> &LitStr {
    match &entry.value {
        Value::Str(lit) => lit,
        _ => unreachable!("the parser only accepts a string for `{}`", entry.key),
    }
}

fn int_value<T>(entry: &Entry, errors: &mut Errors, min: T, max: T) -> Option<Spanned<T>>
where
    T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let Value::Int(lit) = &entry.value else {
        unreachable!("the parser only accepts an integer for `{}`", entry.key)
    };
    let in_range = lit
        .base10_parse::<T>()
        .ok()
        .filter(|v| *v >= min && *v <= max);
    if in_range.is_none() {
        errors.push(
            lit.span(),
            format_args!(
                "`{}` must be a whole number from {min} to {max}: write `{}`",
                entry.key,
                entry.key.example()
            ),
        );
    }
    in_range.map(|v| Spanned::new(v, lit.span()))
}

fn duration_value(lit: &LitStr, key: Key, errors: &mut Errors) -> Option<Duration> {
    match parse_duration(&lit.value()) {
        Ok(d) => Some(d),
        Err(msg) => {
            errors.push(lit.span(), format_args!("`{key}`: {msg}"));
            None
        }
    }
}

/// Checks a name that goes on the wire as an AMQP short string.
fn short_name(lit: &LitStr, what: &str, errors: &mut Errors) -> bool {
    let value = lit.value();
    if value.is_empty() {
        errors.push(lit.span(), format_args!("the {what} must not be empty"));
        return false;
    }
    if value.len() > SHORT_STRING_MAX {
        errors.push(
            lit.span(),
            format_args!(
                "the {what} is {} bytes long; AMQP allows at most {SHORT_STRING_MAX}",
                value.len()
            ),
        );
        return false;
    }
    true
}

fn check_one(entry: &Entry, args: &mut TaskArgs, errors: &mut Errors) {
    match entry.key {
        Key::Crate => {
            let lit = str_value(entry);
            match lit.parse::<syn::Path>() {
                Ok(path) => args.krate = Some(path),
                Err(_) => errors.push(
                    lit.span(),
                    format_args!(
                        "`crate` takes the path to worker_core as a string: write `{}`",
                        entry.key.example()
                    ),
                ),
            }
        }
        Key::Name => {
            let lit = str_value(entry);
            if short_name(lit, "task name", errors) {
                args.name = Some(lit.clone());
            }
        }
        Key::Queue => {
            let lit = str_value(entry);
            if short_name(lit, "queue name", errors) {
                if lit.value().starts_with("amq.") {
                    errors.push(
                        lit.span(),
                        "queue names starting with `amq.` are reserved by RabbitMQ: choose another name",
                    );
                } else {
                    args.queue = Some(lit.clone());
                }
            }
        }
        Key::Retries => {
            // max_attempts = retries + 1, so the largest u32 is out.
            if let Some(n) = int_value::<u32>(entry, errors, 0, u32::MAX - 1) {
                args.max_attempts = Some(Spanned::new(n.value + 1, n.span));
            }
        }
        Key::MaxAttempts => {
            args.max_attempts = int_value::<u32>(entry, errors, 1, u32::MAX);
        }
        Key::InProcess => {
            args.in_process = int_value::<u32>(entry, errors, 1, u32::MAX);
        }
        Key::Backoff => {
            let lit = str_value(entry);
            args.backoff = check_backoff(lit, errors).map(|b| Spanned::new(b, lit.span()));
        }
        Key::Tiers => {
            let Value::List(span, items) = &entry.value else {
                unreachable!("the parser only accepts a list for `tiers`")
            };
            args.tiers = check_tiers(items, errors).map(|t| Spanned::new(t, *span));
        }
        Key::Timeout => {
            let lit = str_value(entry);
            if let Some(d) = duration_value(lit, entry.key, errors) {
                if d.is_zero() {
                    errors.push(
                        lit.span(),
                        "`timeout` must be longer than zero; leave it out for no time limit",
                    );
                } else {
                    args.timeout = Some(Spanned::new(d, lit.span()));
                }
            }
        }
        Key::Prefetch => {
            // The quorum limit is checked later, once queue_type is known.
            args.prefetch = int_value::<u16>(entry, errors, 1, u16::MAX);
        }
        Key::Concurrency => {
            args.concurrency = int_value::<u64>(entry, errors, 1, u32::MAX.into());
        }
        Key::MaxBody => {
            args.max_body = int_value::<u64>(entry, errors, 1, u32::MAX.into());
        }
        Key::QueueType => {
            let lit = str_value(entry);
            args.queue_type = match lit.value().as_str() {
                "quorum" => Some(QueueKind::Quorum),
                "classic" => Some(QueueKind::Classic),
                other => {
                    errors.push(
                        lit.span(),
                        format_args!(
                            "unknown queue_type {other:?}: write \"quorum\" (the default) or \"classic\""
                        ),
                    );
                    None
                }
            }
            .map(|k| Spanned::new(k, lit.span()));
        }
        Key::Unclassified => {
            let lit = str_value(entry);
            args.unclassified = match lit.value().as_str() {
                "transient" => Some(Unclassified::Transient),
                "permanent" => Some(Unclassified::Permanent),
                other => {
                    errors.push(
                        lit.span(),
                        format_args!(
                            "unknown unclassified kind {other:?}: write \"transient\" (the default: retry) or \"permanent\" (park at once)"
                        ),
                    );
                    None
                }
            }
            .map(|k| Spanned::new(k, lit.span()));
        }
        // Checked together with `exchange` in `check_binding`.
        Key::Exchange
        | Key::ExchangeType
        | Key::RoutingKeys
        | Key::MatchHeaders
        | Key::MatchAll => {}
    }
}

fn check_backoff(lit: &LitStr, errors: &mut Errors) -> Option<(Duration, Duration)> {
    let text = lit.value();
    let Some((min, max)) = text.split_once("..") else {
        errors.push(
            lit.span(),
            format_args!(
                "`backoff` takes \"MIN..MAX\", found {text:?}: write `{}`",
                Key::Backoff.example()
            ),
        );
        return None;
    };
    let parse = |part: &str, errors: &mut Errors| match parse_duration(part) {
        Ok(d) => Some(d),
        Err(msg) => {
            errors.push(lit.span(), format_args!("`backoff`: {msg}"));
            None
        }
    };
    let (min, max) = (parse(min, errors)?, parse(max, errors)?);
    if min.is_zero() {
        errors.push(
            lit.span(),
            "the `backoff` minimum must be longer than zero, or every retry would come at once: write e.g. \"100ms..5s\"",
        );
        return None;
    }
    if min > max {
        errors.push(
            lit.span(),
            format_args!(
                "the `backoff` minimum is longer than its maximum in {text:?}: write \"MIN..MAX\" with MIN <= MAX"
            ),
        );
        return None;
    }
    Some((min, max))
}

fn check_tiers(items: &[LitStr], errors: &mut Errors) -> Option<Vec<Duration>> {
    let mut tiers = Vec::with_capacity(items.len());
    let mut ok = true;
    for lit in items {
        let Some(d) = duration_value(lit, Key::Tiers, errors) else {
            ok = false;
            continue;
        };
        if d.is_zero() {
            errors.push(lit.span(), "a delay tier must be longer than zero");
            ok = false;
        } else if tiers.last().is_some_and(|last| *last >= d) {
            errors.push(
                lit.span(),
                "`tiers` must be listed shortest first, each longer than the one before",
            );
            ok = false;
        }
        tiers.push(d);
    }
    ok.then_some(tiers)
}

fn check_together(given: &Given<'_>, args: &mut TaskArgs, errors: &mut Errors) {
    let has = |key: Key| given.entries.iter().any(|e| e.key == key);
    if has(Key::Retries) && has(Key::MaxAttempts) {
        // Point at whichever of the two comes second in the attribute.
        let later = given
            .entries
            .iter()
            .rev()
            .find(|e| matches!(e.key, Key::Retries | Key::MaxAttempts))
            .map_or_else(Span::call_site, |e| e.key_span);
        errors.push(
            later,
            "`retries` and `max_attempts` both set the attempt limit (max_attempts = retries + 1): keep one",
        );
        args.max_attempts = None;
    }

    if let Some(prefetch) = &args.prefetch {
        let quorum = args
            .queue_type
            .as_ref()
            .is_none_or(|q| q.value == QueueKind::Quorum);
        if quorum && prefetch.value > QUORUM_PREFETCH_MAX {
            errors.push(
                prefetch.span,
                format_args!(
                    "quorum queues cap `prefetch` at {QUORUM_PREFETCH_MAX}: lower it, or set `queue_type = \"classic\"`"
                ),
            );
            args.prefetch = None;
        }
    }

    args.binding = check_binding(given, errors);
}

fn check_binding(given: &Given<'_>, errors: &mut Errors) -> Option<Binding> {
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
    use super::*;
    use quote::quote;

    fn run(tokens: TokenStream) -> (TaskArgs, Vec<String>) {
        let (args, errors) = check(&parse(tokens));
        (args, errors.iter().map(|e| e.to_string()).collect())
    }

    fn errors_of(tokens: TokenStream) -> Vec<String> {
        run(tokens).1
    }

    #[test]
    fn empty_attribute_keeps_every_default() {
        let (args, errors) = run(quote!());
        assert!(errors.is_empty());
        assert!(!args.changes_options());
        assert!(args.name.is_none() && args.queue.is_none());
    }

    #[test]
    fn reads_every_option() {
        let (args, errors) = run(quote!(
            name = "emails.send",
            queue = "emails",
            retries = 5,
            in_process = 2,
            backoff = "1s..10m",
            tiers = ["10s", "1m"],
            timeout = "30s",
            prefetch = 20,
            concurrency = 4,
            queue_type = "classic",
            unclassified = "permanent",
            max_body = 1024,
            exchange = "mail",
            exchange_type = "topic",
            routing_keys = ["mail.*", "notice.#"],
            crate = "::worker_core",
        ));
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(args.name.unwrap().value(), "emails.send");
        assert_eq!(args.queue.unwrap().value(), "emails");
        assert_eq!(args.max_attempts.unwrap().value, 6);
        assert_eq!(args.in_process.unwrap().value, 2);
        assert_eq!(
            args.backoff.unwrap().value,
            (Duration::from_secs(1), Duration::from_secs(600))
        );
        assert_eq!(
            args.tiers.unwrap().value,
            vec![Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(args.timeout.unwrap().value, Duration::from_secs(30));
        assert_eq!(args.prefetch.unwrap().value, 20);
        assert_eq!(args.concurrency.unwrap().value, 4);
        assert_eq!(args.queue_type.unwrap().value, QueueKind::Classic);
        assert_eq!(args.unclassified.unwrap().value, Unclassified::Permanent);
        assert_eq!(args.max_body.unwrap().value, 1024);
        assert!(args.krate.is_some());
        let binding = args.binding.unwrap();
        assert_eq!(binding.exchange.value(), "mail");
        assert_eq!(binding.kind.value, ExchangeKind::Topic);
        match binding.routing_keys {
            RoutingKeys::Given(keys) => assert_eq!(keys.len(), 2),
            _ => panic!("expected the given routing keys"),
        }
    }

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
    fn recovers_after_a_bad_pair_and_reports_the_next() {
        let errors = errors_of(quote!(
            retires = 5,
            queue = 7,
            timeout = "5 minutes",
            prefetch = 9000,
            in_process = 0
        ));
        assert_eq!(errors.len(), 5, "{errors:?}");
        // In the order written, conflicts last.
        assert!(errors[0].starts_with("unknown option `retires`"));
        assert!(errors[1].contains("`queue` takes a string"));
        assert!(errors[2].contains("invalid duration"));
        assert!(errors[3].contains("`in_process` must be"));
        assert!(errors[4].contains("quorum queues cap"));
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
    fn rejects_duplicates_and_conflicts() {
        assert!(
            errors_of(quote!(queue = "a", queue = "b"))[0].starts_with("duplicate option `queue`")
        );
        assert!(errors_of(quote!(retries = 1, max_attempts = 3))[0]
            .starts_with("`retries` and `max_attempts`"));
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
        assert!(errors_of(quote!(prefetch = 5000))[0].starts_with("quorum queues cap"));
        assert!(errors_of(quote!(prefetch = 5000, queue_type = "classic")).is_empty());
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            (
                quote!(backoff = "10m..1s"),
                "minimum is longer than its maximum",
            ),
            (quote!(backoff = "1s"), "takes \"MIN..MAX\""),
            (quote!(backoff = "0s..1s"), "longer than zero"),
            (quote!(tiers = ["1m", "10s"]), "shortest first"),
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
            (quote!(timeout = "0s"), "longer than zero"),
            (quote!(retries = -1), "whole number"),
            (quote!(in_process = 0), "from 1 to"),
            (quote!(prefetch = 70000), "from 1 to 65535"),
            (quote!(queue_type = "stream"), "unknown queue_type"),
            (quote!(unclassified = "discard"), "unknown unclassified"),
            (quote!(exchange_type = "topic"), "needs `exchange"),
            (quote!(queue = ""), "must not be empty"),
            (quote!(queue = "amq.x"), "reserved"),
            (quote!(match_all), "expected `=` after `match_all`"),
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
            (quote!(crate = "not a path"), "path to worker_core"),
            (quote!(queue = "a" retries = 1), "expected `,`"),
        ];
        for (tokens, expected) in cases {
            let text = tokens.to_string();
            let errors = errors_of(tokens);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{text}: expected an error containing {expected:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn retries_zero_means_one_attempt() {
        let (args, _) = run(quote!(retries = 0));
        assert_eq!(args.max_attempts.unwrap().value, 1);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("retires", "retries"), 2);
        assert_eq!(edit_distance("queue", "queue"), 0);
        assert_eq!(edit_distance("queu", "queue"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
