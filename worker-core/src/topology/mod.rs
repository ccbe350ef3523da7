//! Queues, exchanges and bindings a task needs, declared idempotently.
//!
//! For a task queue `q`:
//! - `q`: durable, quorum by default, dead-lettering to `q.parking`; quorum
//!   queues add `x-delivery-limit` (a crash-loop backstop) and at-least-once
//!   dead-lettering (`x-dead-letter-strategy`, which needs
//!   `x-overflow: reject-publish`);
//! - `q.quarantine`: like `q`; deliveries that came back unsettled run
//!   there alone (prefetch 1), so a crashing message cannot take its
//!   neighbours down with it;
//! - `q.retry.<delay>`: one wait queue per delay tier, with a fixed
//!   `x-message-ttl`, dead-lettering back to `q`;
//! - `q.parking`: durable, no TTL, and never a delivery limit: listing
//!   parked messages returns them with a requeue, which quorum queues count.
//!   How to say "no limit" depends on the broker's version
//!   ([`Capabilities::unlimited_delivery_limit_argument`]); a parking queue
//!   declared by an older version of the framework on RabbitMQ 4.x has the
//!   broker's default limit, and is accepted with a warning (see
//!   [`declare`]);
//! - optionally a durable exchange with `q` bound to it.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};

use crate::broker::{Capabilities, DeliveryLimit};
use crate::error::{reply_code, reply_text, Error, PRECONDITION_FAILED};
use crate::headers::{HeaderValue, Headers};
use crate::task::{ExchangeKind, Overflow, QueueLimits, QueueType};

pub mod ladder;
mod spec;

pub use spec::{parking_queue, tier_queue, TaskSpec};

/// What a queue of a task is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// The work queue the producers publish to.
    Work,
    /// Where deliveries that came back unsettled run alone.
    Quarantine,
    /// A wait queue of one delay tier.
    Tier,
    /// Where failed messages are kept for a person.
    Parking,
}

impl QueueRole {
    /// The role as a metric label value: `work`, `quarantine`, `tier` or
    /// `parking`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueRole::Work => "work",
            QueueRole::Quarantine => "quarantine",
            QueueRole::Tier => "tier",
            QueueRole::Parking => "parking",
        }
    }
}

/// One queue as the code wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePlan {
    /// Queue name.
    pub name: String,
    /// What it is for.
    pub role: QueueRole,
    /// Declared arguments.
    pub arguments: Headers,
}

/// The delivery limit name, as declared.
pub const DELIVERY_LIMIT: &str = "x-delivery-limit";

/// The highest priority of a classic priority queue, as declared.
pub const MAX_PRIORITY: &str = "x-max-priority";

/// Every queue a task needs on a broker with these capabilities, work
/// queue first.
pub fn plan(spec: &TaskSpec, caps: Capabilities) -> Vec<QueuePlan> {
    let options = &spec.options;
    let quorum = options.queue_type == QueueType::Quorum;
    let base = |dead_letter_to: Option<&str>| {
        let mut args = Headers::new();
        args.insert("x-queue-type", options.queue_type.as_str());
        if let Some(target) = dead_letter_to {
            args.insert("x-dead-letter-exchange", "")
                .insert("x-dead-letter-routing-key", target);
            if quorum {
                args.insert("x-dead-letter-strategy", "at-least-once")
                    .insert("x-overflow", "reject-publish");
            }
        }
        args
    };
    let mut quarantine = base(Some(&spec.parking));
    if quorum {
        quarantine.insert(DELIVERY_LIMIT, i64::from(options.retry.max_attempts));
    }
    if let (Some(max), QueueType::Classic) = (options.priority, options.queue_type) {
        quarantine.insert(MAX_PRIORITY, i64::from(max));
    }
    let mut work = quarantine.clone();
    add_limits(&mut work, &options.limits);
    let mut plans = vec![
        QueuePlan {
            name: spec.queue.to_string(),
            role: QueueRole::Work,
            arguments: work,
        },
        QueuePlan {
            name: spec.quarantine.clone(),
            role: QueueRole::Quarantine,
            arguments: quarantine,
        },
    ];
    for (delay, name) in &spec.tiers {
        let mut args = base(Some(&spec.queue));
        args.insert(
            "x-message-ttl",
            i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
        );
        plans.push(QueuePlan {
            name: name.clone(),
            role: QueueRole::Tier,
            arguments: args,
        });
    }
    plans.push(parking_plan(&spec.parking, options.queue_type, caps));
    plans
}

/// The work queue's limits as arguments. A quorum work queue already has
/// `x-overflow: reject-publish` (at-least-once dead-lettering needs it);
/// [`check_options`] refuses any other overflow there.
fn add_limits(args: &mut Headers, limits: &QueueLimits) {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(n) = limits.max_length {
        args.insert("x-max-length", int(n));
    }
    if let Some(n) = limits.max_length_bytes {
        args.insert("x-max-length-bytes", int(n));
    }
    if limits.is_bounded() {
        args.insert("x-overflow", limits.overflow.as_str());
    }
    if let Some(ttl) = limits.message_ttl {
        args.insert(
            "x-message-ttl",
            i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        );
    }
}

/// Refuses task options this broker cannot honour, before anything is
/// declared, with what to change. `#[task]` refuses the same at compile
/// time where it can; this catches hand-written [`TaskOptions`](crate::TaskOptions)
/// and what depends on the broker's version.
///
/// - `priority` on a quorum queue needs quorum priorities
///   ([`Capabilities::quorum_priorities`]; RabbitMQ 4.0+): on 3.x the
///   broker would silently ignore every message's priority.
/// - `overflow = drop-head` on a quorum queue would make the broker
///   dead-letter at most once (RabbitMQ's at-least-once dead-lettering
///   needs `reject-publish`), so a message could leave the work queue
///   without reaching parking.
/// - A limit with `reject-publish` on a classic queue with delay tiers: the
///   tiers dead-letter retries back into the work queue at most once, and
///   RabbitMQ drops what the full queue refuses.
pub fn check_options(spec: &TaskSpec, caps: Capabilities) -> Result<(), Error> {
    let options = &spec.options;
    let limits = &options.limits;
    if options.queue_type != QueueType::Quorum {
        if limits.is_bounded()
            && limits.overflow == Overflow::RejectPublish
            && !options.retry.tiers.is_empty()
        {
            return Err(Error::Config(format!(
                "task {} limits classic queue {:?} with overflow reject-publish and has delay tiers: a retry coming back from a tier into the full queue would be dropped by RabbitMQ (classic queues dead-letter at most once); use overflow drop-head, no tiers, or a quorum queue",
                spec.name, spec.queue
            )));
        }
        return Ok(());
    }
    if options.priority.is_some() && !caps.quorum_priorities() {
        return Err(Error::Config(format!(
            "task {} asks for priorities on quorum queue {:?}, but {caps} has no quorum-queue priorities (they start with RabbitMQ 4.0): set `queue_type = \"classic\"` for this task, or upgrade the broker",
            spec.name, spec.queue
        )));
    }
    if options.limits.is_bounded() && options.limits.overflow == Overflow::DropHead {
        return Err(Error::Config(format!(
            "task {} sets overflow drop-head on quorum queue {:?}: RabbitMQ then dead-letters at most once, so a dropped message could be lost; use overflow reject-publish, or `queue_type = \"classic\"`",
            spec.name, spec.queue
        )));
    }
    Ok(())
}

/// A parking queue: durable, no TTL, no dead-letter target, and no
/// delivery limit, said the way the broker's version understands.
pub fn parking_plan(name: &str, queue_type: QueueType, caps: Capabilities) -> QueuePlan {
    let mut arguments = Headers::new();
    arguments.insert("x-queue-type", queue_type.as_str());
    if queue_type == QueueType::Quorum {
        if let Some(unlimited) = caps.unlimited_delivery_limit_argument() {
            arguments.insert(DELIVERY_LIMIT, unlimited);
        }
    }
    QueuePlan {
        name: name.to_owned(),
        role: QueueRole::Parking,
        arguments,
    }
}

impl QueuePlan {
    /// The delivery limit the broker applies to this queue once declared
    /// as planned; `None` for a classic queue, which has none.
    pub fn delivery_limit(&self, caps: Capabilities) -> Option<DeliveryLimit> {
        if self.arguments.get_str("x-queue-type").as_deref() != Some(QueueType::Quorum.as_str()) {
            return None;
        }
        Some(match self.arguments.get(DELIVERY_LIMIT) {
            Some(HeaderValue::Int(n)) => match u32::try_from(n) {
                Ok(n) => DeliveryLimit::Returns(n),
                Err(_) if n < 0 => DeliveryLimit::Unlimited,
                Err(_) => DeliveryLimit::Returns(u32::MAX),
            },
            _ => caps.default_delivery_limit(),
        })
    }

    /// The arguments as `queue.declare` sends them (strings as long
    /// strings, numbers as signed 64-bit), for clients that declare the
    /// queue themselves (the testkit's differential tests).
    pub fn wire_arguments(&self) -> FieldTable {
        wire_arguments(&self.arguments)
    }

    /// The same queue as versions of the framework before 0.2 declared it:
    /// a parking queue without `x-delivery-limit`. `None` when that is what
    /// this plan declares anyway, or for other queues.
    pub fn as_declared_before_limits(&self) -> Option<QueuePlan> {
        if self.role != QueueRole::Parking || !self.arguments.contains(DELIVERY_LIMIT) {
            return None;
        }
        let mut older = self.clone();
        older.arguments.remove(DELIVERY_LIMIT);
        Some(older)
    }
}

fn short(field: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::TooLong {
        field,
        len: value.len(),
    })
}

/// Declares a task's queues and bindings on `channel`; declaring again is
/// a no-op. Returns the channel to go on with: a declaration the broker
/// refuses closes its channel, and the one fallback below needs a new one.
///
/// A queue that exists with other arguments gives
/// [`Error::TopologyMismatch`]. One such difference is accepted: a parking
/// queue declared by an older version of the framework, without
/// `x-delivery-limit`, on RabbitMQ 4.x where that means the broker's
/// default limit. Parking writes never requeue, and the parked-message
/// tools refresh a message before that limit could drop it, so nothing is
/// lost; the worker warns and `topology check` reports it until the queue
/// is redeclared (see the README's upgrade notes).
pub async fn declare(
    conn: &Connection,
    mut channel: Channel,
    spec: &TaskSpec,
    caps: Capabilities,
) -> Result<Channel, Error> {
    check_options(spec, caps)?;
    for queue in plan(spec, caps) {
        let Err(e) = declare_queue(&channel, &queue).await else {
            continue;
        };
        let Some(older) = queue.as_declared_before_limits() else {
            return Err(e);
        };
        if !matches!(e, Error::TopologyMismatch { .. }) {
            return Err(e);
        }
        channel = open_channel(conn).await?;
        if declare_queue(&channel, &older).await.is_err() {
            return Err(e);
        }
        tracing::warn!(
            task = spec.name,
            queue = %queue.name,
            "parking queue {} was declared by an older version of the framework: on {caps} it has the broker's default delivery limit ({}). Parked-message tools refresh messages before that limit, so nothing is lost; to remove the limit, drain it (`parked replay`), delete it and start the worker again, or apply a policy with delivery-limit -1",
            queue.name,
            caps.default_delivery_limit()
        );
    }
    if let Some(binding) = &spec.options.binding {
        let exchange = short("exchange name", &binding.exchange)?;
        let kind = lapin_kind(binding.kind);
        channel
            .exchange_declare(
                exchange.clone(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::broker(format!("exchange.declare {}", binding.exchange), e))?;
        let mut args = FieldTable::default();
        if binding.kind == ExchangeKind::Headers {
            let mode = if binding.match_all { "all" } else { "any" };
            args.insert("x-match".into(), AMQPValue::LongString(mode.into()));
            for (k, v) in &binding.match_headers {
                args.insert(
                    short("header name", k)?,
                    AMQPValue::LongString(LongString::from(v.as_bytes())),
                );
            }
        }
        let keys: Vec<&str> = if binding.routing_keys.is_empty() {
            vec![""]
        } else {
            binding.routing_keys.iter().map(|k| k.as_ref()).collect()
        };
        for key in keys {
            channel
                .queue_bind(
                    short("queue name", &spec.queue)?,
                    exchange.clone(),
                    short("routing key", key)?,
                    QueueBindOptions::default(),
                    args.clone(),
                )
                .await
                .map_err(|e| {
                    Error::broker(
                        format!("queue.bind {} to {}", spec.queue, binding.exchange),
                        e,
                    )
                })?;
        }
    }
    Ok(channel)
}

/// Declares the topology of every spec, on one channel when the broker
/// refuses nothing.
pub async fn declare_all(
    conn: &Connection,
    specs: &[std::sync::Arc<TaskSpec>],
    caps: Capabilities,
) -> Result<(), Error> {
    let mut channel = open_channel(conn).await?;
    for spec in specs {
        channel = declare(conn, channel, spec, caps).await?;
    }
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// lapin's name for an exchange kind.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub fn lapin_kind(kind: ExchangeKind) -> lapin::ExchangeKind {
    match kind {
        ExchangeKind::Direct => lapin::ExchangeKind::Direct,
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
        ExchangeKind::Headers => lapin::ExchangeKind::Headers,
    }
}

/// Opens a channel for declarations.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub async fn open_channel(conn: &Connection) -> Result<Channel, Error> {
    conn.create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))
}

/// Declares one queue of a plan, with its arguments as the worker sends them.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub async fn declare_queue(channel: &Channel, queue: &QueuePlan) -> Result<(), Error> {
    declare_named(channel, &queue.name, &queue.arguments).await
}

/// Declares a durable queue `name` with `arguments`.
pub(crate) async fn declare_named(
    channel: &Channel,
    name: &str,
    arguments: &Headers,
) -> Result<(), Error> {
    channel
        .queue_declare(
            short("queue name", name)?,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            wire_arguments(arguments),
        )
        .await
        .map(|_| ())
        .map_err(|e| declare_error(name, e))
}

fn wire_arguments(args: &Headers) -> FieldTable {
    // Queue arguments must use the types RabbitMQ compares by value:
    // strings as long strings, numbers as signed 64-bit.
    let mut table = FieldTable::default();
    for (name, value) in args.iter() {
        let wire = match value {
            HeaderValue::Str(s) => AMQPValue::LongString(s.into()),
            HeaderValue::Int(i) => AMQPValue::LongLongInt(i),
            other => other.into_amqp(),
        };
        table.insert(name.into(), wire);
    }
    table
}

fn declare_error(queue: &str, e: lapin::Error) -> Error {
    if reply_code(&e) == Some(PRECONDITION_FAILED) {
        Error::TopologyMismatch {
            queue: queue.to_owned(),
            message: reply_text(&e),
        }
    } else {
        Error::broker(format!("queue.declare {queue}"), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Version;
    use crate::task::{RetryPolicy, TaskOptions};
    use std::time::Duration;

    const V3_10: Capabilities = Capabilities::of(Version::new(3, 10, 8));
    const V4_0: Capabilities = Capabilities::of(Version::new(4, 0, 5));

    #[test]
    fn parking_never_has_a_delivery_limit_on_any_version() {
        let spec = TaskSpec::new("t", "jobs", TaskOptions::default());
        let parking = |caps| plan(&spec, caps).pop().unwrap();
        // 3.10: no argument is unlimited (-1 would drop at the first requeue).
        let on_3 = parking(V3_10);
        assert_eq!(on_3.role, QueueRole::Parking);
        assert!(!on_3.arguments.contains(DELIVERY_LIMIT));
        assert_eq!(on_3.as_declared_before_limits(), None);
        // 4.x: no argument is 20; -1 is unlimited.
        let on_4 = parking(V4_0);
        assert_eq!(
            on_4.arguments.get(DELIVERY_LIMIT),
            Some(HeaderValue::Int(-1))
        );
        let older = on_4.as_declared_before_limits().unwrap();
        assert_eq!(older.arguments, on_3.arguments);
    }

    #[test]
    fn the_work_queue_budget_is_the_same_on_both_versions() {
        let spec = TaskSpec::new("t", "jobs", TaskOptions::default());
        let work = |caps| plan(&spec, caps)[0].clone();
        assert_eq!(work(V3_10), work(V4_0));
        assert_eq!(
            work(V4_0).arguments.get_u64(DELIVERY_LIMIT),
            Some(u64::from(spec.options.retry.max_attempts))
        );
    }

    #[test]
    fn quorum_plan_has_work_tiers_and_parking() {
        let options = TaskOptions {
            retry: RetryPolicy::default()
                .tiers([Duration::from_secs(1), Duration::from_secs(60)])
                .max_attempts(5),
            ..TaskOptions::default()
        };
        let spec = TaskSpec::new("t", "jobs", options);
        let plans = plan(&spec, V3_10);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "jobs",
                "jobs.quarantine",
                "jobs.retry.1s",
                "jobs.retry.1m",
                "jobs.parking"
            ]
        );
        let work = &plans[0].arguments;
        assert_eq!(
            work.get_str("x-dead-letter-routing-key").as_deref(),
            Some("jobs.parking")
        );
        assert_eq!(work.get_u64("x-delivery-limit"), Some(5));
        assert_eq!(
            work.get_str("x-overflow").as_deref(),
            Some("reject-publish")
        );
        assert_eq!(plans[1].arguments, plans[0].arguments);
        assert_eq!(plans[3].arguments.get_u64("x-message-ttl"), Some(60_000));
        assert_eq!(
            plans[3]
                .arguments
                .get_str("x-dead-letter-routing-key")
                .as_deref(),
            Some("jobs")
        );
        assert!(!plans[4].arguments.contains("x-dead-letter-exchange"));
    }

    #[test]
    fn classic_plan_has_no_quorum_arguments() {
        let options = TaskOptions {
            queue_type: QueueType::Classic,
            ..TaskOptions::default()
        };
        let plans = plan(&TaskSpec::new("t", "c", options), V4_0);
        assert!(plans.iter().all(|p| !p.arguments.contains(DELIVERY_LIMIT)));
        assert!(!plans[0].arguments.contains("x-overflow"));
        assert_eq!(
            plans[0].arguments.get_str("x-queue-type").as_deref(),
            Some("classic")
        );
    }

    #[test]
    fn priority_and_limits_go_on_the_work_queue_and_priority_on_quarantine() {
        let options = TaskOptions {
            queue_type: QueueType::Classic,
            priority: Some(10),
            limits: QueueLimits {
                max_length: Some(100),
                max_length_bytes: Some(4096),
                overflow: Overflow::DropHead,
                message_ttl: Some(Duration::from_secs(600)),
            },
            ..TaskOptions::default()
        };
        let plans = plan(&TaskSpec::new("t", "c", options), V4_0);
        let (work, quarantine) = (&plans[0].arguments, &plans[1].arguments);
        assert_eq!(work.get_u64(MAX_PRIORITY), Some(10));
        assert_eq!(work.get_u64("x-max-length"), Some(100));
        assert_eq!(work.get_u64("x-max-length-bytes"), Some(4096));
        assert_eq!(work.get_str("x-overflow").as_deref(), Some("drop-head"));
        assert_eq!(work.get_u64("x-message-ttl"), Some(600_000));
        // The framework's own copies are never refused, dropped or expired.
        assert_eq!(quarantine.get_u64(MAX_PRIORITY), Some(10));
        for arg in [
            "x-max-length",
            "x-max-length-bytes",
            "x-overflow",
            "x-message-ttl",
        ] {
            assert!(!quarantine.contains(arg), "{arg}");
        }
        assert!(plans[2..]
            .iter()
            .all(|p| !p.arguments.contains(MAX_PRIORITY)));
    }

    #[test]
    fn quorum_priorities_are_declared_without_an_argument_and_refused_before_4_0() {
        let options = TaskOptions {
            priority: Some(9),
            ..TaskOptions::default()
        };
        let spec = TaskSpec::new("t", "q", options);
        // x-max-priority is refused by quorum queues on every version.
        assert!(plan(&spec, V4_0)
            .iter()
            .all(|p| !p.arguments.contains(MAX_PRIORITY)));
        assert!(check_options(&spec, V4_0).is_ok());
        let err = check_options(&spec, V3_10).unwrap_err().to_string();
        assert!(err.contains("queue_type = \"classic\""), "{err}");
        assert!(err.contains("RabbitMQ 3.10.8"), "{err}");
    }

    #[test]
    fn quorum_drop_head_and_classic_retries_into_a_full_queue_are_refused() {
        let limits = |overflow| TaskOptions {
            limits: QueueLimits {
                max_length: Some(5),
                overflow,
                ..QueueLimits::default()
            },
            ..TaskOptions::default()
        };
        let spec = TaskSpec::new("t", "q", limits(Overflow::DropHead));
        let err = check_options(&spec, V4_0).unwrap_err().to_string();
        assert!(err.contains("at most once"), "{err}");
        let spec = TaskSpec::new("t", "q", limits(Overflow::RejectPublish));
        assert!(check_options(&spec, V3_10).is_ok());
        let work = &plan(&spec, V3_10)[0].arguments;
        assert_eq!(
            work.get_str("x-overflow").as_deref(),
            Some("reject-publish")
        );
        assert_eq!(
            work.get_str("x-dead-letter-strategy").as_deref(),
            Some("at-least-once")
        );
        let classic = |retry| TaskOptions {
            queue_type: QueueType::Classic,
            retry,
            ..limits(Overflow::RejectPublish)
        };
        let spec = TaskSpec::new("t", "c", classic(RetryPolicy::default()));
        let err = check_options(&spec, V4_0).unwrap_err().to_string();
        assert!(err.contains("would be dropped"), "{err}");
        let spec = TaskSpec::new("t", "c", classic(RetryPolicy::default().tiers([])));
        assert!(check_options(&spec, V4_0).is_ok());
    }
}
