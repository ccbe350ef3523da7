//! The checks of the work queue's own options: `priority`, `max_length`,
//! `max_length_bytes`, `overflow` and `message_ttl`.
//!
//! Two combinations are refused because a message could leave without
//! reaching parking: `drop-head` on a quorum queue (RabbitMQ's
//! at-least-once dead-lettering needs `reject-publish`), and a classic
//! queue with a limit, `reject-publish` and delay tiers (a retry coming
//! back from a tier is dead-lettered into the work queue at most once, and
//! a full queue refuses it: RabbitMQ drops it). `topology::check_options`
//! refuses the same for options written by hand.

use super::{duration_value, int_value, str_value, Errors, Given};
use crate::attr::{Key, OverflowKind, QueueKind, QueueOptions, Spanned, TaskArgs};

/// The largest value RabbitMQ takes for a length limit (a signed 64-bit
/// queue argument).
const LIMIT_MAX: u64 = i64::MAX as u64;

/// The longest `x-message-ttl` RabbitMQ accepts, in milliseconds (2^32 - 1).
const TTL_MAX_MILLIS: u128 = u32::MAX as u128;

/// Checks each option alone, then `overflow` against the limits and the
/// queue type.
pub(super) fn check_queue_options(
    given: &Given<'_>,
    args: &TaskArgs,
    errors: &mut Errors,
) -> QueueOptions {
    let mut out = QueueOptions::default();
    if let Some(entry) = given.get(Key::Priority) {
        out.priority = int_value::<u8>(entry, errors, 1, u8::MAX);
    }
    if let Some(entry) = given.get(Key::MaxLength) {
        out.max_length = int_value::<u64>(entry, errors, 1, LIMIT_MAX);
    }
    if let Some(entry) = given.get(Key::MaxLengthBytes) {
        out.max_length_bytes = int_value::<u64>(entry, errors, 1, LIMIT_MAX);
    }
    if let Some(entry) = given.get(Key::MessageTtl) {
        let lit = str_value(entry);
        if let Some(d) = duration_value(lit, entry.key, errors) {
            if d.is_zero() {
                errors.push(
                    lit.span(),
                    "`message_ttl` must be longer than zero, or every message would expire at once; leave it out for no expiry",
                );
            } else if d.as_millis() > TTL_MAX_MILLIS {
                errors.push(
                    lit.span(),
                    "`message_ttl` may be at most 49d (RabbitMQ takes up to 2^32 - 1 milliseconds)",
                );
            } else {
                out.message_ttl = Some(Spanned::new(d, lit.span()));
            }
        }
    }
    let limited = out.max_length.is_some() || out.max_length_bytes.is_some();
    let classic = args
        .queue_type
        .as_ref()
        .is_some_and(|q| q.value == QueueKind::Classic);
    let drop_head = given
        .get(Key::Overflow)
        .is_some_and(|e| str_value(e).value() == "drop-head");
    // No `tiers` means the default tiers, which are not empty.
    let tiers = args.tiers.as_ref().is_none_or(|t| !t.value.is_empty());
    if limited && classic && !drop_head && tiers {
        let entry = given
            .get(Key::MaxLength)
            .or_else(|| given.get(Key::MaxLengthBytes))
            .expect("a limit was given");
        errors.push(
            entry.key_span,
            "a full classic queue with overflow \"reject-publish\" would lose the retries coming back from the delay tiers (classic queues dead-letter at most once, and RabbitMQ drops what the full queue refuses): set `overflow = \"drop-head\"`, `tiers = []`, or use a quorum queue",
        );
    }
    if let Some(entry) = given.get(Key::Overflow) {
        let lit = str_value(entry);
        let kind = match lit.value().as_str() {
            "reject-publish" => Some(OverflowKind::RejectPublish),
            "drop-head" => Some(OverflowKind::DropHead),
            other => {
                errors.push(
                    lit.span(),
                    format_args!(
                        "unknown overflow {other:?}: write \"reject-publish\" (the default: a publish to a full queue fails) or \"drop-head\" (the oldest message is parked to make room; classic queues only)"
                    ),
                );
                None
            }
        };
        let bounded =
            given.get(Key::MaxLength).is_some() || given.get(Key::MaxLengthBytes).is_some();
        let quorum = args
            .queue_type
            .as_ref()
            .is_none_or(|q| q.value == QueueKind::Quorum);
        if !bounded {
            errors.push(
                entry.key_span,
                "`overflow` needs `max_length` or `max_length_bytes`: without a limit the queue is never full",
            );
        } else if kind == Some(OverflowKind::DropHead) && quorum {
            errors.push(
                lit.span(),
                "`overflow = \"drop-head\"` on a quorum queue would make RabbitMQ dead-letter at most once, so a dropped message could be lost before it reaches parking: keep the default \"reject-publish\", or set `queue_type = \"classic\"`",
            );
        } else {
            out.overflow = kind.map(|k| Spanned::new(k, lit.span()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quote::quote;

    use crate::attr::test_support::{assert_errors, run};
    use crate::attr::OverflowKind;

    #[test]
    fn every_queue_option_is_kept() {
        let (args, errors) = run(quote!(
            queue_type = "classic",
            priority = 10,
            max_length = 1000,
            max_length_bytes = 1048576,
            overflow = "drop-head",
            message_ttl = "10m",
        ));
        assert_eq!(errors, Vec::<String>::new());
        assert!(args.changes_options());
        let q = args.queue_options;
        assert_eq!(q.priority.unwrap().value, 10);
        assert_eq!(q.max_length.unwrap().value, 1000);
        assert_eq!(q.max_length_bytes.unwrap().value, 1_048_576);
        assert_eq!(q.overflow.unwrap().value, OverflowKind::DropHead);
        assert_eq!(q.message_ttl.unwrap().value, Duration::from_secs(600));
    }

    #[test]
    fn quorum_queues_take_priority_and_reject_publish() {
        let (args, errors) = run(quote!(
            priority = 5,
            max_length = 10,
            overflow = "reject-publish"
        ));
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            args.queue_options.overflow.unwrap().value,
            OverflowKind::RejectPublish
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        assert_errors([
            (
                quote!(priority = 0),
                "`priority` must be a whole number from 1 to 255",
            ),
            (
                quote!(priority = 256),
                "`priority` must be a whole number from 1 to 255",
            ),
            (
                quote!(max_length = 0),
                "`max_length` must be a whole number from 1",
            ),
            (
                quote!(max_length_bytes = 0),
                "`max_length_bytes` must be a whole number from 1",
            ),
            (quote!(message_ttl = "0s"), "longer than zero"),
            (
                quote!(message_ttl = "ten minutes"),
                "`message_ttl`: invalid duration",
            ),
            (quote!(message_ttl = "50d"), "at most 49d"),
            (
                quote!(
                    max_length = 5,
                    queue_type = "classic",
                    overflow = "reject-publish-dlx"
                ),
                "unknown overflow \"reject-publish-dlx\"",
            ),
            (
                quote!(overflow = "drop-head", queue_type = "classic"),
                "needs `max_length`",
            ),
            (
                quote!(max_length = 5, overflow = "drop-head"),
                "at most once",
            ),
            (
                quote!(max_length = 5, queue_type = "classic"),
                "would lose the retries",
            ),
            (
                quote!(max_length_bytes = 5, queue_type = "classic", tiers = ["1s"]),
                "would lose the retries",
            ),
        ]);
    }
}
