//! How many times a message has been tried.
//!
//! Three sources, because none is complete on its own:
//! - our own `rw-attempts` header, written on every copy we republish to a
//!   delay tier (RabbitMQ 4 starts a fresh `x-death` for a republished copy,
//!   so only a header of our own survives that trip);
//! - `x-death` entries for the work queue itself: broker-driven cycles where
//!   something rejected the message out of the queue and a dead-letter route
//!   brought it back (entries of other queues, such as our delay tiers,
//!   are not failures and are not counted);
//! - the quorum queue's `x-delivery-count`: deliveries of this very copy that
//!   were returned unsettled (a crashed or killed worker).
//!
//! The copies we republish drop every `x-` header, so the sources never
//! count the same attempt twice.

use super::{DeathReason, Headers, ATTEMPTS, REDELIVERIES};

/// The parts of an attempt count, kept apart for logs and park headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptSources {
    /// From our `rw-attempts` header.
    pub recorded: u64,
    /// From `x-death` entries of the work queue (reason `rejected`).
    pub dead_lettered: u64,
    /// From `x-delivery-count`.
    pub returned: u64,
}

/// The attempt a delivery represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// The sources of earlier attempts.
    pub sources: AttemptSources,
    /// Trips through the delay tiers so far.
    pub redeliveries: u32,
}

impl Attempts {
    /// Reads the counts for a delivery from `queue`.
    ///
    /// ```
    /// use worker_core::{Attempts, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("rw-attempts", 2u8).insert("x-delivery-count", 1i64);
    /// let attempts = Attempts::read(&headers, "emails");
    /// assert_eq!(attempts.previous(), 3);
    /// assert_eq!(attempts.current(), 4);
    /// ```
    pub fn read(headers: &Headers, queue: &str) -> Attempts {
        let dead_lettered = headers
            .x_death()
            .iter()
            .filter(|d| d.queue == queue && d.reason == DeathReason::Rejected)
            .map(|d| d.count)
            .fold(0u64, u64::saturating_add);
        Attempts {
            sources: AttemptSources {
                recorded: headers.get_count(ATTEMPTS).unwrap_or(0),
                dead_lettered,
                returned: headers.delivery_count(),
            },
            redeliveries: headers
                .get_count(REDELIVERIES)
                .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        }
    }

    /// Handler runs known for sure: our header plus broker rejections,
    /// without the unsettled returns (which may not have run at all).
    pub fn runs(&self) -> u32 {
        let s = self.sources;
        u32::try_from(s.recorded.saturating_add(s.dead_lettered)).unwrap_or(u32::MAX)
    }

    /// Attempts made before this delivery, counting each unsettled return as one.
    pub fn previous(&self) -> u32 {
        let s = self.sources;
        let total = s
            .recorded
            .saturating_add(s.dead_lettered)
            .saturating_add(s.returned);
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The 1-based number of the attempt this delivery starts with.
    pub fn current(&self) -> u32 {
        self.previous().saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{HeaderValue, XDeath, X_DEATH, X_DELIVERY_COUNT};

    fn death(queue: &str, reason: DeathReason, count: u64) -> XDeath {
        XDeath {
            queue: queue.into(),
            reason,
            count,
            exchange: String::new(),
            routing_keys: vec![],
            time: None,
        }
    }

    #[test]
    fn first_delivery_is_attempt_one() {
        let a = Attempts::read(&Headers::new(), "q");
        assert_eq!((a.previous(), a.current(), a.redeliveries), (0, 1, 0));
    }

    #[test]
    fn counts_only_rejections_from_the_work_queue() {
        let mut h = Headers::new();
        h.insert(
            X_DEATH,
            XDeath::to_header_value(&[
                death("q.retry.1s", DeathReason::Expired, 4),
                death("q", DeathReason::Rejected, 2),
                death("other", DeathReason::Rejected, 9),
                death("q", DeathReason::Expired, 1),
            ]),
        );
        let a = Attempts::read(&h, "q");
        assert_eq!(a.sources.dead_lettered, 2);
        assert_eq!(a.current(), 3);
    }

    #[test]
    fn sums_all_three_sources_with_any_integer_width() {
        let mut h = Headers::new();
        h.insert(ATTEMPTS, HeaderValue::Int(3))
            .insert(X_DELIVERY_COUNT, 2u16)
            .insert(REDELIVERIES, 1u8)
            .insert(
                X_DEATH,
                XDeath::to_header_value(&[death("q", DeathReason::Rejected, 1)]),
            );
        let a = Attempts::read(&h, "q");
        assert_eq!(
            a.sources,
            AttemptSources {
                recorded: 3,
                dead_lettered: 1,
                returned: 2
            }
        );
        assert_eq!(a.current(), 7);
        assert_eq!(a.redeliveries, 1);
    }

    #[test]
    fn malformed_counts_are_ignored_and_huge_ones_saturate() {
        let mut h = Headers::new();
        h.insert(ATTEMPTS, "lots")
            .insert(X_DELIVERY_COUNT, -1i32)
            .insert(REDELIVERIES, u64::MAX);
        let a = Attempts::read(&h, "q");
        assert_eq!(a.current(), 1);
        assert_eq!(a.redeliveries, u32::MAX);

        let mut h = Headers::new();
        h.insert(ATTEMPTS, u64::MAX)
            .insert(X_DELIVERY_COUNT, u64::MAX);
        assert_eq!(Attempts::read(&h, "q").current(), u32::MAX);
    }
}
