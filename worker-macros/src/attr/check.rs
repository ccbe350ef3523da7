//! The checks of `#[task(...)]`'s options, done together after parsing.
//!
//! [`check`] goes through the parsed pairs in the order written: syntax
//! errors are passed on, duplicates are rejected, and each value is checked
//! alone (durations, ranges, names). Then the options are checked against
//! each other: `retries` with `max_attempts`, `prefetch` against the queue
//! type, and the exchange binding (in `binding.rs`). All errors are
//! collected, each spanned to the token to fix; options with errors are
//! left out of [`TaskArgs`], the valid ones are kept.

mod binding;
mod queue;

use std::time::Duration;

use proc_macro2::Span;
use syn::LitStr;

use super::{Entry, Key, Parsed, QueueKind, Spanned, TaskArgs, Unclassified, Value};
use crate::breaker_rule::parse_breaker;
use crate::duration::{parse_duration, parse_rate};

/// The longest name AMQP accepts for a queue, an exchange, a routing key or a header.
const SHORT_STRING_MAX: usize = 255;

/// The most a quorum queue's consumer may prefetch.
const QUORUM_PREFETCH_MAX: u16 = 2000;

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

/// The string of an option the parser only accepts as a string.
fn str_value(entry: &Entry) -> &LitStr {
    match &entry.value {
        Value::Str(lit) => lit,
        _ => unreachable!("the parser only accepts a string for `{}`", entry.key),
    }
}

/// An integer option within `min..=max`, or an error that gives the range.
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

/// A duration option, or an error that names the option.
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

/// `type_name`: an identifier to name the generated type with.
fn type_name(lit: &LitStr, errors: &mut Errors) -> Option<syn::Ident> {
    let value = lit.value();
    match syn::parse_str::<syn::Ident>(&value) {
        Ok(mut ident) if ident != "Self" => {
            ident.set_span(lit.span());
            Some(ident)
        }
        _ => {
            errors.push(
                lit.span(),
                format_args!(
                    "`type_name` takes the name of the generated task type, one identifier such as \"ChargeTask\", found {value:?}: write `{}`",
                    Key::TypeName.example()
                ),
            );
            None
        }
    }
}

/// Checks one option alone and stores it in `args` when valid.
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
        Key::TypeName => {
            let lit = str_value(entry);
            args.type_name = type_name(lit, errors);
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
        Key::Rate => {
            let lit = str_value(entry);
            match parse_rate(&lit.value()) {
                Ok(rate) => args.rate = Some(Spanned::new(rate, lit.span())),
                Err(msg) => errors.push(lit.span(), format_args!("`rate`: {msg}")),
            }
        }
        Key::Breaker => {
            let lit = str_value(entry);
            match parse_breaker(&lit.value()) {
                Ok(rule) => args.breaker = Some(Spanned::new(rule, lit.span())),
                Err(msg) => errors.push(lit.span(), format_args!("`breaker`: {msg}")),
            }
        }
        Key::BreakerCooldown => {
            let lit = str_value(entry);
            match duration_value(lit, entry.key, errors) {
                Some(d) if d.is_zero() => errors.push(
                    lit.span(),
                    "`breaker_cooldown` must be longer than zero, or the breaker would probe at once after opening: write `breaker_cooldown = \"30s\"`",
                ),
                Some(d) => args.breaker_cooldown = Some(Spanned::new(d, lit.span())),
                None => {}
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
        Key::Every => {
            let lit = str_value(entry);
            if let Some(d) = duration_value(lit, entry.key, errors) {
                if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                    errors.push(
                        lit.span(),
                        format_args!(
                            "`every` must be whole seconds, at least one (ticks are named by their second): write e.g. `{}`",
                            Key::Every.example()
                        ),
                    );
                } else {
                    args.every = Some(Spanned::new(d, lit.span()));
                }
            }
        }
        Key::Missed => {
            let lit = str_value(entry);
            args.missed_skip = match lit.value().as_str() {
                "fire" => Some(false),
                "skip" => Some(true),
                other => {
                    errors.push(
                        lit.span(),
                        format_args!(
                            "unknown missed policy {other:?}: write \"fire\" (the default: enqueue missed ticks late) or \"skip\" (carry on with the next tick)"
                        ),
                    );
                    None
                }
            }
            .map(|k| Spanned::new(k, lit.span()));
        }
        Key::Cron => {
            let lit = str_value(entry);
            match lit.value().parse::<croner::Cron>() {
                Ok(_) => args.cron = Some(lit.clone()),
                Err(e) => errors.push(
                    lit.span(),
                    format_args!(
                        "`cron`: {e}: write 5 fields (minute hour day month weekday) or 6 with seconds first, e.g. `{}`",
                        Key::Cron.example()
                    ),
                ),
            }
        }
        Key::Tz => {
            let lit = str_value(entry);
            match jiff::tz::TimeZone::get(&lit.value()) {
                Ok(_) => args.tz = Some(lit.clone()),
                Err(_) => errors.push(
                    lit.span(),
                    format_args!(
                        "`tz`: unknown time zone {:?}: write an IANA name such as `{}` (or leave it out for UTC)",
                        lit.value(),
                        Key::Tz.example()
                    ),
                ),
            }
        }
        // Checked together in `check_queue_options`.
        Key::Priority | Key::MaxLength | Key::MaxLengthBytes | Key::Overflow | Key::MessageTtl => {}
        // Checked together with `exchange` in `check_binding`.
        Key::Exchange
        | Key::ExchangeType
        | Key::RoutingKeys
        | Key::MatchHeaders
        | Key::MatchAll => {}
    }
}

/// `"MIN..MAX"`: two durations, the minimum above zero and not above the maximum.
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

/// Delay tiers: durations above zero, shortest first, each longer than the one before.
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

/// The checks of options against each other, after each was checked alone.
fn check_together(given: &Given<'_>, args: &mut TaskArgs, errors: &mut Errors) {
    let has = |key: Key| given.entries.iter().any(|e| e.key == key);
    if let (Some(cron), true) = (given.get(Key::Cron), has(Key::Every)) {
        errors.push(
            cron.key_span,
            "`every` and `cron` both give the task's schedule: keep one",
        );
        args.cron = None;
    }
    if let (Some(tz), false) = (given.get(Key::Tz), has(Key::Cron)) {
        errors.push(
            tz.key_span,
            format_args!(
                "`tz` is the zone a `cron` pattern is read in, and this task has no `cron`: add `{}` or remove `tz` (`every` ticks are zone-free)",
                Key::Cron.example()
            ),
        );
    }
    if let (Some(missed), false) = (given.get(Key::Missed), has(Key::Every) || has(Key::Cron)) {
        errors.push(
            missed.key_span,
            format_args!(
                "`missed` says what a periodic task does with missed ticks, but this task is not periodic: add `{}` (or `cron`) or remove `missed`",
                Key::Every.example()
            ),
        );
    }
    if let (Some(cooldown), false) = (given.get(Key::BreakerCooldown), has(Key::Breaker)) {
        errors.push(
            cooldown.key_span,
            format_args!(
                "`breaker_cooldown` is how long a circuit breaker stays open, and this task has no breaker: add `{}` or remove `breaker_cooldown`",
                Key::Breaker.example()
            ),
        );
        args.breaker_cooldown = None;
    }
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

    args.queue_options = queue::check_queue_options(given, args, errors);
    args.binding = binding::check_binding(given, errors);
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::attr::test_support::{assert_errors, errors_of, run};
    use crate::attr::{ExchangeKind, RoutingKeys};

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
            type_name = "SendTask",
            queue = "emails",
            retries = 5,
            in_process = 2,
            backoff = "1s..10m",
            tiers = ["10s", "1m"],
            timeout = "30s",
            rate = "30/m",
            breaker = "50%/20",
            breaker_cooldown = "2s",
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
        assert_eq!(args.type_name.unwrap(), "SendTask");
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
        assert_eq!(args.rate.unwrap().value, (30, Duration::from_secs(60)));
        assert_eq!(args.breaker.unwrap().value, (50, 20));
        assert_eq!(args.breaker_cooldown.unwrap().value, Duration::from_secs(2));
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
    fn rejects_duplicates_and_conflicts() {
        assert!(
            errors_of(quote!(queue = "a", queue = "b"))[0].starts_with("duplicate option `queue`")
        );
        assert!(errors_of(quote!(retries = 1, max_attempts = 3))[0]
            .starts_with("`retries` and `max_attempts`"));
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
            (quote!(timeout = "0s"), "longer than zero"),
            (quote!(in_process = 0), "from 1 to"),
            (quote!(prefetch = 70000), "from 1 to 65535"),
            (quote!(queue_type = "stream"), "unknown queue_type"),
            (quote!(unclassified = "discard"), "unknown unclassified"),
            (quote!(queue = ""), "must not be empty"),
            (quote!(queue = "amq.x"), "reserved"),
            (quote!(crate = "not a path"), "path to worker_core"),
            (quote!(type_name = "Charge Task"), "one identifier"),
            (quote!(type_name = "Self"), "one identifier"),
            (quote!(type_name = ""), "one identifier"),
            (quote!(rate = "0/s"), "would never start"),
            (quote!(rate = "abc"), "invalid rate"),
            (quote!(rate = "10/h"), "invalid rate unit"),
            (quote!(breaker = "0%/20"), "from 1% to 100%"),
            (quote!(breaker = "101%/20"), "from 1% to 100%"),
            (quote!(breaker = "50%/0"), "from 1 to 1000"),
            (quote!(breaker = "0 in a row"), "from 1 to 1000"),
            (quote!(breaker = "often"), "invalid breaker rule"),
            (
                quote!(breaker = "50%/20", breaker_cooldown = "0s"),
                "longer than zero",
            ),
            (quote!(breaker_cooldown = "10s"), "has no breaker"),
            (quote!(every = "soon"), "`every`: invalid duration"),
            (quote!(every = "500ms"), "whole seconds, at least one"),
            (
                quote!(every = "1m", missed = "later"),
                "unknown missed policy",
            ),
            (quote!(missed = "skip"), "this task is not periodic"),
            (quote!(cron = "61 * * * *"), "`cron`:"),
            (
                quote!(cron = "* * * * *", tz = "Mars/Olympus"),
                "unknown time zone",
            ),
            (quote!(tz = "Europe/Paris"), "has no `cron`"),
            (quote!(every = "1m", cron = "* * * * *"), "keep one"),
        ];
        assert_errors(cases);
    }

    #[test]
    fn retries_zero_means_one_attempt() {
        let (args, _) = run(quote!(retries = 0));
        assert_eq!(args.max_attempts.unwrap().value, 1);
    }
}
