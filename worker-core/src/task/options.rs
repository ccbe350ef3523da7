//! Per-task settings: retries, timeout, concurrency, queue type and bindings.

use std::borrow::Cow;
use std::time::Duration;

use super::queue_options::QueueLimits;
use super::FailureKind;
use crate::backoff::Backoff;

/// The broker's consumer acknowledgement timeout default (30 minutes).
///
/// A delivery unacked for longer makes the broker close the channel and
/// requeue everything on it; task timeouts beyond it are warned about.
pub const BROKER_ACK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long the worker holds one delivery before it settles it itself,
/// under a broker whose consumer timeout is `consumer_timeout`: four
/// fifths of it, leaving the rest for the settlement (a confirmed copy to
/// a delay tier or to parking, then the ack) and for a wait in the
/// prefetch window before the delivery started.
///
/// The broker never has to time the worker out, which would cost more
/// than the one delivery: before RabbitMQ 4.3 it closes the channel and
/// requeues everything on it, and from 4.3 it cancels the consumer and
/// requeues the delivery without charging it (a handler that always hangs
/// would run forever). Instead, an attempt still running at the end of
/// the budget is cut short as timed out, like an attempt past the task's
/// `timeout`, and charged by the framework's own count; no in-process retry
/// starts that the budget cannot hold.
///
/// ```
/// use std::time::Duration;
/// use worker_core::task::hold_budget;
///
/// assert_eq!(hold_budget(Duration::from_secs(30 * 60)), Duration::from_secs(24 * 60));
/// ```
pub fn hold_budget(consumer_timeout: Duration) -> Duration {
    consumer_timeout - consumer_timeout / 5
}

/// Which kind of RabbitMQ queue holds a task's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, durable, with a delivery counter (the default).
    #[default]
    Quorum,
    /// A classic durable queue: no delivery counter, only the redelivered flag.
    Classic,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// The kind of a named exchange a task queue is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes on exact routing key match.
    Direct,
    /// Routes on dotted patterns with `*` (one word) and `#` (zero or more words).
    Topic,
    /// Routes to every bound queue.
    Fanout,
    /// Routes on header values.
    Headers,
}

impl ExchangeKind {
    /// The AMQP exchange type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// A binding of the task's queue to a named exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeBinding {
    /// The exchange name; declared durable with `kind`.
    pub exchange: Cow<'static, str>,
    /// The exchange type.
    pub kind: ExchangeKind,
    /// Routing keys or patterns; one binding each (fanout and headers use one empty key).
    pub routing_keys: Vec<Cow<'static, str>>,
    /// For headers exchanges: the header values to match, as strings.
    pub match_headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// For headers exchanges: `true` for `x-match: all`, `false` for `any`.
    pub match_all: bool,
}

/// How a task retries transient failures.
///
/// Attempts are counted across the whole life of a message: every run of the
/// handler is one attempt, whether it was retried in process or came back
/// from a delay tier.
///
/// ```
/// use std::time::Duration;
/// use worker_core::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .in_process(3)
///     .tiers([Duration::from_secs(10), Duration::from_secs(600)])
///     .max_attempts(8);
/// assert_eq!(policy.max_attempts, 8);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts made in process per delivery, the first included (1 = no in-process retry).
    pub in_process_attempts: u32,
    /// The wait between in-process attempts.
    pub backoff: Backoff,
    /// Delays of the broker-side wait queues, shortest first; one queue each.
    pub tiers: Vec<Duration>,
    /// Handler runs allowed over the message's whole life before it is parked.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            in_process_attempts: 3,
            backoff: Backoff::default(),
            tiers: default_tiers(),
            max_attempts: 10,
        }
    }
}

/// The default delay tiers: 1 s, 10 s, 1 min, 10 min, 1 h.
pub fn default_tiers() -> Vec<Duration> {
    [1, 10, 60, 600, 3600]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

impl RetryPolicy {
    /// No retries at all: the first transient failure parks the message.
    pub fn none() -> Self {
        RetryPolicy {
            in_process_attempts: 1,
            backoff: Backoff::default(),
            tiers: Vec::new(),
            max_attempts: 1,
        }
    }

    /// Sets the in-process attempts per delivery (at least 1).
    pub fn in_process(mut self, attempts: u32) -> Self {
        self.in_process_attempts = attempts.max(1);
        self
    }

    /// Sets the in-process backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the delay tiers (sorted, duplicates removed).
    pub fn tiers(mut self, tiers: impl IntoIterator<Item = Duration>) -> Self {
        let mut tiers: Vec<Duration> = tiers.into_iter().collect();
        tiers.sort();
        tiers.dedup();
        self.tiers = tiers;
        self
    }

    /// Sets the maximum total attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The tier to wait in after `redeliveries` earlier trips through the tiers.
    ///
    /// The last tier repeats once the list is used up; `None` when there are no tiers.
    pub fn tier_for(&self, redeliveries: u32) -> Option<Duration> {
        let last = self.tiers.len().checked_sub(1)?;
        Some(self.tiers[(redeliveries as usize).min(last)])
    }

    /// The smallest tier at least `delay` long (or the longest tier).
    pub fn tier_at_least(&self, delay: Duration) -> Option<Duration> {
        self.tiers
            .iter()
            .copied()
            .find(|t| *t >= delay)
            .or_else(|| self.tiers.last().copied())
    }
}

/// How fast one worker process may start a task's handler: `count` starts
/// per `per`, evenly spaced (one every `per / count`, no burst).
///
/// The limit is **per process**: N worker processes consuming the queue
/// start up to N times `count` per `per` together. To cap the whole fleet
/// at R per second, give each process R / N (rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per period (at least 1).
    pub count: u32,
    /// The period: one second or one minute when parsed from text.
    pub per: Duration,
}

impl Rate {
    /// `count` starts per second (`count` at least 1).
    pub fn per_second(count: u32) -> Rate {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(1),
        }
    }

    /// `count` starts per minute (`count` at least 1).
    pub fn per_minute(count: u32) -> Rate {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(60),
        }
    }

    /// The time between two starts.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `"100/s"` or `"30/m"` (see [`parse_rate`](crate::parse_rate)).
    fn from_str(text: &str) -> Result<Rate, String> {
        crate::duration::parse_rate(text).map(|(count, per)| Rate { count, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.count),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/m", self.count),
            _ => write!(f, "{}/{}", self.count, crate::format_duration(self.per)),
        }
    }
}

/// The highest prefetch RabbitMQ allows on a quorum queue's consumer.
pub(crate) const QUORUM_PREFETCH_MAX: u16 = 2000;

/// Everything about a task that is not its handler.
///
/// Built once at registration; the runtime shares it between deliveries.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Retry settings.
    pub retry: RetryPolicy,
    /// Longest a single attempt may run; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Broker prefetch for the task's consumer (1..=2000 for quorum
    /// queues); `None` for [`TaskOptions::default_prefetch`] of the
    /// concurrency.
    pub prefetch: Option<u16>,
    /// Handlers of this task running at once.
    pub concurrency: usize,
    /// The queue type of the work queue.
    pub queue_type: QueueType,
    /// How errors converted with `?` are classified.
    pub unclassified: FailureKind,
    /// An optional binding to a named exchange.
    pub binding: Option<ExchangeBinding>,
    /// Largest body accepted; bigger ones are parked undecoded.
    pub max_body_bytes: usize,
    /// How fast this process may start the handler; `None` for no limit.
    /// Per process: see [`Rate`].
    pub rate: Option<Rate>,
    /// The circuit breaker that pauses consuming while too many deliveries
    /// fail transiently; `None` for none. See [`crate::breaker`].
    pub breaker: Option<crate::breaker::BreakerPolicy>,
    /// The highest message priority the work queue honours; `None` for a
    /// queue without priorities. Classic queues get `x-max-priority`;
    /// quorum queues need a broker with quorum priorities (RabbitMQ 4.0+:
    /// two levels, see [`Capabilities::quorum_priorities`](crate::broker::Capabilities::quorum_priorities)).
    pub priority: Option<u8>,
    /// Length limits, overflow behaviour and message TTL of the work queue.
    pub limits: QueueLimits,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            retry: RetryPolicy::default(),
            timeout: None,
            prefetch: None,
            concurrency: 100,
            queue_type: QueueType::Quorum,
            unclassified: FailureKind::Transient,
            binding: None,
            max_body_bytes: 16 * 1024 * 1024,
            rate: None,
            breaker: None,
            priority: None,
            limits: QueueLimits::default(),
        }
    }
}

impl TaskOptions {
    /// The prefetch a task gets when it sets none: twice its concurrency,
    /// so that a handler that finishes finds its next delivery already in
    /// the process instead of waiting a round trip to the broker for it
    /// (at most 65535, the protocol's limit; the worker caps quorum queues
    /// at 2000). Deliveries prefetched but not started when the worker
    /// stops go back to the broker, so a task with long handlers may
    /// prefer `prefetch = concurrency`.
    ///
    /// ```
    /// assert_eq!(worker_core::TaskOptions::default_prefetch(100), 200);
    /// assert_eq!(worker_core::TaskOptions::default_prefetch(0), 2);
    /// ```
    pub fn default_prefetch(concurrency: usize) -> u16 {
        let doubled = concurrency.max(1).saturating_mul(2);
        u16::try_from(doubled).unwrap_or(u16::MAX)
    }

    /// The prefetch a worker consumes this task's queue with: `chosen`
    /// (the worker's override, else the task's own `prefetch`), else
    /// [`default_prefetch`](TaskOptions::default_prefetch) of
    /// `concurrency`; at least 1, and at most 2000 on a quorum queue
    /// (RabbitMQ's limit there).
    pub fn resolved_prefetch(&self, chosen: Option<u16>, concurrency: usize) -> u16 {
        let prefetch = chosen
            .or(self.prefetch)
            .unwrap_or_else(|| TaskOptions::default_prefetch(concurrency))
            .max(1);
        match self.queue_type {
            QueueType::Quorum => prefetch.min(QUORUM_PREFETCH_MAX),
            QueueType::Classic => prefetch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_is_the_chosen_one_else_twice_the_concurrency_capped_on_quorum_queues() {
        let quorum = TaskOptions::default();
        assert_eq!(quorum.resolved_prefetch(None, 100), 200);
        assert_eq!(quorum.resolved_prefetch(None, 4), 8);
        assert_eq!(
            quorum.resolved_prefetch(Some(7), 100),
            7,
            "an override wins"
        );
        assert_eq!(quorum.resolved_prefetch(None, 5000), 2000, "quorum cap");
        assert_eq!(quorum.resolved_prefetch(Some(0), 10), 1);
        let own = TaskOptions {
            prefetch: Some(30),
            ..TaskOptions::default()
        };
        assert_eq!(own.resolved_prefetch(None, 100), 30, "the task's own");
        assert_eq!(own.resolved_prefetch(Some(9), 100), 9, "the override first");
        let classic = TaskOptions {
            queue_type: QueueType::Classic,
            ..TaskOptions::default()
        };
        assert_eq!(classic.resolved_prefetch(None, 5000), 10_000);
        assert_eq!(classic.resolved_prefetch(None, 40_000), u16::MAX);
    }
}
