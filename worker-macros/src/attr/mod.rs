//! The options inside `#[task(...)]`: what they are, and how they are read.
//!
//! Reading happens in two steps, each in its own module:
//!
//! 1. [`parse()`] (in `parse.rs`) reads `key = value` pairs into [`Entry`]
//!    values, keeping every token's span and recovering after a bad pair so
//!    that one mistake does not hide the next. It knows the syntax only.
//! 2. [`check()`] (in `check.rs`) turns the entries into [`TaskArgs`]: it
//!    rejects duplicates, validates each value (durations, ranges, names)
//!    and finally checks the options against each other (for example
//!    `routing_keys` without `exchange`, in `check/binding.rs`).
//!
//! Every error points at the token to fix and says how to fix it. This
//! module holds the model both steps share: the option [`Key`]s, the values
//! as written ([`Value`], [`Entry`]) and the checked options ([`TaskArgs`]).

use std::time::Duration;

use proc_macro2::Span;
use syn::{LitBool, LitInt, LitStr};

pub(crate) use check::check;
pub(crate) use parse::parse;

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

/// The table of options, written once: each option's keyword, its [`Key`]
/// variant, its value shape and an example for error messages.
///
/// `crate` is not in the table: it is a Rust keyword, not a custom one, so
/// the macros that read the table add it by hand. The table is passed to
/// `$then`, which is [`declare_keys`] here and `declare_key_parser` in
/// `parse.rs`.
macro_rules! with_keys {
    ($then:ident) => {
        $then! {
            name => Name, Str, "name = \"emails.send\"";
            queue => Queue, Str, "queue = \"emails\"";
            type_name => TypeName, Str, "type_name = \"ChargeTask\"";
            retries => Retries, Int, "retries = 5";
            max_attempts => MaxAttempts, Int, "max_attempts = 6";
            in_process => InProcess, Int, "in_process = 3";
            backoff => Backoff, Str, "backoff = \"1s..10m\"";
            tiers => Tiers, List, "tiers = [\"10s\", \"1m\", \"10m\"]";
            timeout => Timeout, Str, "timeout = \"30s\"";
            rate => Rate, Str, "rate = \"100/s\"";
            breaker => Breaker, Str, "breaker = \"50%/20\"";
            breaker_cooldown => BreakerCooldown, Str, "breaker_cooldown = \"30s\"";
            prefetch => Prefetch, Int, "prefetch = 50";
            concurrency => Concurrency, Int, "concurrency = 8";
            queue_type => QueueType, Str, "queue_type = \"classic\"";
            unclassified => Unclassified, Str, "unclassified = \"permanent\"";
            max_body => MaxBody, Int, "max_body = 1048576";
            priority => Priority, Int, "priority = 10";
            max_length => MaxLength, Int, "max_length = 10000";
            max_length_bytes => MaxLengthBytes, Int, "max_length_bytes = 104857600";
            overflow => Overflow, Str, "overflow = \"reject-publish\"";
            message_ttl => MessageTtl, Str, "message_ttl = \"10m\"";
            exchange => Exchange, Str, "exchange = \"orders\"";
            exchange_type => ExchangeType, Str, "exchange_type = \"topic\"";
            routing_keys => RoutingKeys, List, "routing_keys = [\"order.created\"]";
            match_headers => MatchHeaders, Map, "match_headers = { \"format\" = \"pdf\" }";
            match_all => MatchAll, Bool, "match_all = false";
            every => Every, Str, "every = \"5m\"";
            missed => Missed, Str, "missed = \"skip\"";
            cron => Cron, Str, "cron = \"0 */5 * * * *\"";
            tz => Tz, Str, "tz = \"Europe/Paris\"";
        }
    };
}

/// Declares [`Key`] from the table in [`with_keys`]: the enum, each key's
/// spelling, value shape and example.
macro_rules! declare_keys {
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

            /// The kind of value the option takes.
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
    };
}

with_keys!(declare_keys);

// After the macros above: textual scope lets both modules use `with_keys!`.
mod check;
mod parse;

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

/// `overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverflowKind {
    /// `"reject-publish"`.
    RejectPublish,
    /// `"drop-head"`.
    DropHead,
}

/// The work queue's own options: `priority`, the length limits,
/// `overflow` and `message_ttl`.
#[derive(Clone, Default)]
pub(crate) struct QueueOptions {
    /// `priority`: the highest message priority.
    pub(crate) priority: Option<Spanned<u8>>,
    /// `max_length`.
    pub(crate) max_length: Option<Spanned<u64>>,
    /// `max_length_bytes`.
    pub(crate) max_length_bytes: Option<Spanned<u64>>,
    /// `overflow`.
    pub(crate) overflow: Option<Spanned<OverflowKind>>,
    /// `message_ttl`.
    pub(crate) message_ttl: Option<Spanned<Duration>>,
}

impl QueueOptions {
    /// Whether any of them is given.
    fn any(&self) -> bool {
        self.priority.is_some()
            || self.max_length.is_some()
            || self.max_length_bytes.is_some()
            || self.overflow.is_some()
            || self.message_ttl.is_some()
    }
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
    /// `type_name`: the generated type's name, spanned at the literal.
    pub(crate) type_name: Option<syn::Ident>,
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
    /// `rate`: starts per period.
    pub(crate) rate: Option<Spanned<(u32, Duration)>>,
    /// `breaker`: the share of failures in percent and the window.
    pub(crate) breaker: Option<Spanned<(u8, u32)>>,
    /// `breaker_cooldown` (only with `breaker`).
    pub(crate) breaker_cooldown: Option<Spanned<Duration>>,
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
    /// `every`: the period of a periodic task (whole seconds).
    pub(crate) every: Option<Spanned<Duration>>,
    /// `missed`: `true` for "skip", `false` for "fire".
    pub(crate) missed_skip: Option<Spanned<bool>>,
    /// `cron`: a pattern croner accepts.
    pub(crate) cron: Option<LitStr>,
    /// `tz`: an IANA zone name known to this machine.
    pub(crate) tz: Option<LitStr>,
    /// `priority`, `max_length`, `max_length_bytes`, `overflow`, `message_ttl`.
    pub(crate) queue_options: QueueOptions,
}

impl TaskArgs {
    /// Whether any option changes `TaskOptions` (as opposed to names and paths).
    pub(crate) fn changes_options(&self) -> bool {
        self.max_attempts.is_some()
            || self.in_process.is_some()
            || self.backoff.is_some()
            || self.tiers.is_some()
            || self.timeout.is_some()
            || self.rate.is_some()
            || self.breaker.is_some()
            || self.prefetch.is_some()
            || self.concurrency.is_some()
            || self.queue_type.is_some()
            || self.unclassified.is_some()
            || self.max_body.is_some()
            || self.binding.is_some()
            || self.queue_options.any()
    }
}

/// Helpers for the tests of both steps: they run the attribute through
/// [`parse()`] and [`check()`], as the macro does.
#[cfg(test)]
mod test_support {
    use proc_macro2::TokenStream;

    use super::{check, parse, TaskArgs};

    /// The checked options and every error message, in the order reported.
    pub(super) fn run(tokens: TokenStream) -> (TaskArgs, Vec<String>) {
        let (args, errors) = check(&parse(tokens));
        (args, errors.iter().map(|e| e.to_string()).collect())
    }

    /// Every error message, in the order reported.
    pub(super) fn errors_of(tokens: TokenStream) -> Vec<String> {
        run(tokens).1
    }

    /// Asserts that each case's attribute gives an error containing its text.
    pub(super) fn assert_errors<'a>(cases: impl IntoIterator<Item = (TokenStream, &'a str)>) {
        for (tokens, expected) in cases {
            let text = tokens.to_string();
            let errors = errors_of(tokens);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{text}: expected an error containing {expected:?}, got {errors:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::test_support::errors_of;
    use super::Key;

    #[test]
    fn the_documentation_has_a_row_for_every_option() {
        let doc = include_str!("../lib.rs");
        for key in Key::ALL {
            let row = format!("/// | `{key} = ");
            assert!(doc.contains(&row), "lib.rs documents no `{key}` option");
        }
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
}
