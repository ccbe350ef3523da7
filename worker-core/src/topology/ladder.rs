//! The delay ladder: where a delayed message waits, on the broker alone.
//!
//! Why a ladder, and why this one? RabbitMQ expires messages only at the
//! head of a queue, so a queue can hold one delay only (its
//! `x-message-ttl`); per-message TTLs in one queue block each other. And a
//! worker must not hold a delayed message (Celery's ETA, Dramatiq's delay),
//! nor should one have to forward it, or delays would stop while no worker
//! runs. So the delay is spelt in binary in the routing key, and the
//! broker's own routing walks it down a ladder of [`LEVELS`] rungs:
//!
//! - rung `n` is a topic exchange and a queue, both named
//!   `rabbit-worker.delay.<n>`; the queue holds messages for `2^n` seconds
//!   (`x-message-ttl`) and then dead-letters them, routing key unchanged,
//!   to rung `n - 1`'s exchange (rung 0's to `rabbit-worker.delay.deliver`);
//! - a routing key is the delay's bits, highest rung first, one word each,
//!   then the destination queue: 5 s to `jobs` is `0.….0.1.0.1.jobs`;
//! - rung `n`'s exchange sends a key whose bit `n` is `1` into its queue,
//!   and one whose bit is `0` straight on to the next rung's exchange;
//! - `rabbit-worker.delay.deliver` binds each destination queue with
//!   `*.….*.<queue>` (one `*` per rung), so it takes exactly its own keys.
//!
//! A message enters at the top rung and waits in exactly the rungs of its
//! delay's one bits: `popcount(seconds)` queues, at most [`LEVELS`]. The
//! ladder is shared by every task of the vhost; the queues are quorum
//! queues with at-least-once dead-lettering, so a broker restart or a
//! crash mid-hop neither loses nor skips a rung, and nothing waits in a
//! worker. The delay is whole seconds, rounded up: a message never arrives
//! early, and is late by the dead-letter latency of its hops (measured in
//! BENCHMARKS.md).

use std::time::Duration;

use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::Channel;

use super::{declare_named, short};
use crate::error::Error;
use crate::headers::Headers;

/// Rungs of the ladder: delays up to `2^LEVELS - 1` seconds (about 12 days).
pub const LEVELS: u32 = 20;

/// The longest delay the ladder holds: `2^LEVELS - 1` seconds.
pub const MAX_LADDER_DELAY: Duration = Duration::from_secs((1 << LEVELS) - 1);

/// Every name of the ladder starts with this.
pub const PREFIX: &str = "rabbit-worker.delay";

/// The exchange that hands a message, its delay over, to its queue.
pub const DELIVER_EXCHANGE: &str = "rabbit-worker.delay.deliver";

/// The exchange and the queue of rung `level` (the queue waits `2^level` s).
pub fn rung(level: u32) -> String {
    format!("{PREFIX}.{level}")
}

/// Where a delayed message is published: the top rung's exchange.
pub fn entry_exchange() -> String {
    rung(LEVELS - 1)
}

/// How a delayed message travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The routing key to publish with, at [`entry_exchange`].
    pub routing_key: String,
    /// The delay it will wait: the one asked for, rounded up to a second.
    pub delay: Duration,
    /// Rung queues it waits in (the one bits of the delay in seconds).
    pub hops: u32,
}

/// The route of a message to `queue` after `delay`.
///
/// Errors: a delay past [`MAX_LADDER_DELAY`]; a queue name with a `*` or
/// `#` word (a topic binding would read it as a wildcard); a key over 255
/// bytes.
pub fn route(queue: &str, delay: Duration) -> Result<Route, Error> {
    let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    if whole > MAX_LADDER_DELAY.as_secs() {
        return Err(Error::DelayTooLong {
            asked: delay,
            max: MAX_LADDER_DELAY,
        });
    }
    check_destination(queue)?;
    let mut key = String::with_capacity(2 * LEVELS as usize + queue.len());
    for level in (0..LEVELS).rev() {
        key.push(if whole >> level & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(queue);
    short("routing key", &key)?;
    Ok(Route {
        routing_key: key,
        delay: Duration::from_secs(whole),
        hops: whole.count_ones(),
    })
}

/// Reads a routing key that [`route`] wrote: the delay and the
/// destination queue; `None` for any other key.
///
/// ```
/// use std::time::Duration;
/// use worker_core::topology::ladder;
/// let r = ladder::route("emails", Duration::from_secs(90)).unwrap();
/// assert_eq!(ladder::read_route(&r.routing_key), Some((Duration::from_secs(90), "emails")));
/// assert_eq!(ladder::read_route("emails"), None);
/// ```
pub fn read_route(routing_key: &str) -> Option<(Duration, &str)> {
    let mut rest = routing_key;
    let mut secs = 0_u64;
    for _ in 0..LEVELS {
        let (bit, after) = rest.split_once('.')?;
        secs = secs * 2
            + match bit {
                "0" => 0,
                "1" => 1,
                _ => return None,
            };
        rest = after;
    }
    (!rest.is_empty()).then_some((Duration::from_secs(secs), rest))
}

fn check_destination(queue: &str) -> Result<(), Error> {
    if queue.is_empty() || queue.split('.').any(|w| w == "*" || w == "#") {
        return Err(Error::Config(format!(
            "queue {queue:?} cannot take delayed messages: its name must be non-empty and have no `*` or `#` word"
        )));
    }
    Ok(())
}

/// `*.` once per rung, the words a routing key's bits take.
fn any_bits(words: u32) -> String {
    "*.".repeat(words as usize)
}

/// Where one binding of the ladder leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A rung's queue.
    Queue(String),
    /// The next rung's exchange (or the deliver exchange).
    Exchange(String),
}

/// One binding of the ladder: from `exchange`, keys matching `pattern`, to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The source exchange.
    pub exchange: String,
    /// The topic pattern.
    pub pattern: String,
    /// Where matching messages go.
    pub target: Target,
}

/// The exchange after rung `level`: rung `level - 1`, or the deliver exchange.
fn below(level: u32) -> String {
    match level {
        0 => DELIVER_EXCHANGE.to_owned(),
        n => rung(n - 1),
    }
}

/// The arguments of rung `level`'s queue: quorum, `2^level` s TTL,
/// at-least-once dead-lettering (which needs `reject-publish`) to the
/// exchange below, keeping the routing key.
pub fn rung_arguments(level: u32) -> Headers {
    let mut args = Headers::new();
    args.insert("x-queue-type", "quorum")
        .insert("x-message-ttl", (1_i64 << level) * 1000)
        .insert("x-dead-letter-exchange", below(level))
        .insert("x-dead-letter-strategy", "at-least-once")
        .insert("x-overflow", "reject-publish");
    args
}

/// Every binding between the ladder's exchanges and queues, top rung first.
pub fn bindings() -> Vec<Binding> {
    let mut all = Vec::with_capacity(2 * LEVELS as usize);
    for level in (0..LEVELS).rev() {
        let before = any_bits(LEVELS - 1 - level);
        all.push(Binding {
            exchange: rung(level),
            pattern: format!("{before}1.#"),
            target: Target::Queue(rung(level)),
        });
        all.push(Binding {
            exchange: rung(level),
            pattern: format!("{before}0.#"),
            target: Target::Exchange(below(level)),
        });
    }
    all
}

/// The binding of a destination queue to the deliver exchange.
pub fn destination_pattern(queue: &str) -> String {
    format!("{}{queue}", any_bits(LEVELS))
}

/// Declares the ladder: its exchanges, queues and bindings (idempotent).
pub async fn declare(channel: &Channel) -> Result<(), Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let names = (0..LEVELS)
        .map(rung)
        .chain(std::iter::once(DELIVER_EXCHANGE.to_owned()));
    for name in names {
        channel
            .exchange_declare(
                short("exchange name", &name)?,
                lapin::ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::broker(format!("exchange.declare {name}"), e))?;
    }
    for level in 0..LEVELS {
        declare_named(channel, &rung(level), &rung_arguments(level)).await?;
    }
    for b in bindings() {
        let source = short("exchange name", &b.exchange)?;
        let pattern = short("routing key", &b.pattern)?;
        let done = match &b.target {
            Target::Queue(q) => {
                channel
                    .queue_bind(
                        short("queue name", q)?,
                        source,
                        pattern,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            }
            Target::Exchange(x) => {
                channel
                    .exchange_bind(
                        short("exchange name", x)?,
                        source,
                        pattern,
                        ExchangeBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            }
        };
        done.map_err(|e| Error::broker(format!("binding {} to {:?}", b.exchange, b.target), e))?;
    }
    Ok(())
}

/// Binds `queue` to the deliver exchange, so delayed messages for it
/// arrive (idempotent; the queue must exist).
pub async fn bind_destination(channel: &Channel, queue: &str) -> Result<(), Error> {
    check_destination(queue)?;
    channel
        .queue_bind(
            short("queue name", queue)?,
            DELIVER_EXCHANGE.into(),
            short("routing key", &destination_pattern(queue))?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::broker(format!("queue.bind {queue} to {DELIVER_EXCHANGE}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the broker does with a key: the rungs it waits in, in order,
    /// and the queue it reaches, by following [`bindings`] as RabbitMQ's
    /// topic exchanges and dead-lettering would.
    fn walk(key: &str) -> (Vec<u32>, String) {
        let words: Vec<&str> = key.split('.').collect();
        let mut waited = Vec::new();
        for level in (0..LEVELS).rev() {
            let bit = words[(LEVELS - 1 - level) as usize];
            let hit: Vec<Binding> = bindings()
                .into_iter()
                .filter(|b| b.exchange == rung(level))
                .filter(|b| {
                    let p: Vec<&str> = b.pattern.split('.').collect();
                    p[(LEVELS - 1 - level) as usize] == bit
                })
                .collect();
            assert_eq!(hit.len(), 1, "rung {level} routes bit {bit} one way");
            if let Target::Queue(_) = hit[0].target {
                waited.push(level);
            }
        }
        let queue = words[LEVELS as usize..].join(".");
        assert!(destination_pattern(&queue).starts_with(&any_bits(LEVELS)));
        (waited, queue)
    }

    #[test]
    fn the_key_spells_the_delay_in_binary_highest_rung_first() {
        let r = route("jobs", Duration::from_secs(5)).unwrap();
        assert_eq!(r.routing_key, format!("{}1.0.1.jobs", "0.".repeat(17)));
        assert_eq!(r.hops, 2);
        assert_eq!(walk(&r.routing_key), (vec![2, 0], "jobs".to_owned()));
    }

    #[test]
    fn a_message_waits_exactly_its_delay_in_the_rungs_of_its_one_bits() {
        for secs in [
            0,
            1,
            2,
            3,
            59,
            60,
            3600,
            86_399,
            7 * 86_400,
            (1 << LEVELS) - 1,
        ] {
            let r = route("a.b", Duration::from_secs(secs)).unwrap();
            let (waited, queue) = walk(&r.routing_key);
            assert_eq!(queue, "a.b");
            let total: u64 = waited.iter().map(|l| 1_u64 << l).sum();
            assert_eq!(total, secs, "{secs}s");
            assert_eq!(waited.len() as u32, r.hops);
            assert_eq!(
                read_route(&r.routing_key),
                Some((Duration::from_secs(secs), "a.b"))
            );
        }
    }

    #[test]
    fn a_delay_is_rounded_up_to_whole_seconds_never_down() {
        let r = route("q", Duration::from_millis(1001)).unwrap();
        assert_eq!(r.delay, Duration::from_secs(2));
        let r = route("q", Duration::from_millis(1)).unwrap();
        assert_eq!(r.delay, Duration::from_secs(1));
        assert_eq!(route("q", Duration::ZERO).unwrap().hops, 0);
    }

    #[test]
    fn too_long_a_delay_or_a_wildcard_queue_is_refused() {
        assert!(matches!(
            route("q", MAX_LADDER_DELAY + Duration::from_millis(1)),
            Err(Error::DelayTooLong { .. })
        ));
        assert!(route("q", MAX_LADDER_DELAY).is_ok());
        assert!(matches!(
            route("a.*", Duration::ZERO),
            Err(Error::Config(_))
        ));
        assert!(matches!(route("#", Duration::ZERO), Err(Error::Config(_))));
        assert!(matches!(
            route(&"q".repeat(250), Duration::ZERO),
            Err(Error::TooLong { .. })
        ));
    }

    #[test]
    fn each_rung_waits_its_power_of_two_and_hands_down() {
        let args = rung_arguments(3);
        assert_eq!(args.get_u64("x-message-ttl"), Some(8000));
        assert_eq!(
            args.get_str("x-dead-letter-exchange").as_deref(),
            Some("rabbit-worker.delay.2")
        );
        assert!(!args.contains("x-dead-letter-routing-key"));
        assert_eq!(
            rung_arguments(0)
                .get_str("x-dead-letter-exchange")
                .as_deref(),
            Some(DELIVER_EXCHANGE)
        );
        assert!(MAX_LADDER_DELAY > Duration::from_secs(7 * 86_400));
    }
}
