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
//! - `q.parking`: durable, no TTL;
//! - optionally a durable exchange with `q` bound to it.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Channel;

use crate::error::Error;
use crate::headers::{HeaderValue, Headers};
use crate::runtime::TaskSpec;
use crate::task::{ExchangeKind, QueueType};

/// One queue as the code wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePlan {
    /// Queue name.
    pub name: String,
    /// Declared arguments.
    pub arguments: Headers,
}

/// Every queue a task needs, work queue first.
pub fn plan(spec: &TaskSpec) -> Vec<QueuePlan> {
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
    let mut work = base(Some(&spec.parking));
    if quorum {
        work.insert("x-delivery-limit", i64::from(options.retry.max_attempts));
    }
    let mut plans = vec![
        QueuePlan {
            name: spec.queue.to_string(),
            arguments: work.clone(),
        },
        QueuePlan {
            name: spec.quarantine.clone(),
            arguments: work,
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
            arguments: args,
        });
    }
    plans.push(QueuePlan {
        name: spec.parking.clone(),
        arguments: base(None),
    });
    plans
}

fn short(field: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::TooLong {
        field,
        len: value.len(),
    })
}

/// Declares a task's queues and bindings; declaring again is a no-op.
///
/// A queue that exists with other arguments gives
/// [`Error::TopologyMismatch`]; the broker closes the channel in that case,
/// so the caller must open a new one.
pub async fn declare(channel: &Channel, spec: &TaskSpec) -> Result<(), Error> {
    for queue in plan(spec) {
        let name = short("queue name", &queue.name)?;
        channel
            .queue_declare(
                name,
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                wire_arguments(&queue.arguments),
            )
            .await
            .map_err(|e| declare_error(&queue.name, e))?;
    }
    if let Some(binding) = &spec.options.binding {
        let exchange = short("exchange name", &binding.exchange)?;
        let kind = match binding.kind {
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Headers => lapin::ExchangeKind::Headers,
        };
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
    Ok(())
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
    let text = e.to_string();
    if text.contains("PRECONDITION_FAILED") || text.contains("inequivalent arg") {
        Error::TopologyMismatch {
            queue: queue.to_owned(),
            message: text,
        }
    } else {
        Error::broker(format!("queue.declare {queue}"), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{RetryPolicy, TaskOptions};
    use std::time::Duration;

    #[test]
    fn quorum_plan_has_work_tiers_and_parking() {
        let options = TaskOptions {
            retry: RetryPolicy::default()
                .tiers([Duration::from_secs(1), Duration::from_secs(60)])
                .max_attempts(5),
            ..TaskOptions::default()
        };
        let spec = TaskSpec::new("t", "jobs", options);
        let plans = plan(&spec);
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
        let plans = plan(&TaskSpec::new("t", "c", options));
        assert!(!plans[0].arguments.contains("x-delivery-limit"));
        assert!(!plans[0].arguments.contains("x-overflow"));
        assert_eq!(
            plans[0].arguments.get_str("x-queue-type").as_deref(),
            Some("classic")
        );
    }
}
