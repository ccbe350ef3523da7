//! What the connected RabbitMQ does, by version: every broker behaviour the
//! framework depends on, in one place.
//!
//! RabbitMQ changed quorum-queue semantics between the versions our users
//! run. The framework reads the broker's version from the `connection.start`
//! server properties ([`probe_version`]) and asks [`Capabilities`] what is right for
//! it, instead of scattering version checks. Each fact below names its
//! source: "seen" facts were observed on RabbitMQ 3.10.8, 4.0.5 and 4.3.6
//! by the broker tests (`worker-core/tests/broker_versions.rs` pins them on
//! all three); the few facts about versions between them (4.1, 4.2) come
//! from RabbitMQ's release notes and say so.

mod probe;

pub use probe::probe_version;

use std::fmt;

/// A RabbitMQ version, as announced in `connection.start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch version.
    pub patch: u16,
}

impl Version {
    /// A version from its parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `3.10.8`, `4.0.5`, `4.1.0-rc.1` (suffixes are ignored);
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.trim().split(['-', '+', ' ']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u16>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The lowest message priority a quorum queue with two priority levels
/// (RabbitMQ 4.0 to 4.2) serves as high: 0 to 4 are normal, 5 and above
/// high. Source: RabbitMQ 4.0 release notes; seen on 4.0.5.
pub const QUORUM_HIGH_PRIORITY: u8 = 5;

/// The highest priority level of a quorum queue with strict priorities
/// (RabbitMQ 4.3+): 32 levels, 0 to 31; a message with a higher priority is
/// served as 31. Seen on 4.3.6.
pub const QUORUM_TOP_PRIORITY: u8 = 31;

/// The oldest version the framework supports.
pub const OLDEST_SUPPORTED: Version = Version::new(3, 10, 0);

/// What a quorum queue does when it is declared without
/// `x-delivery-limit`, or how to declare one that never drops a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryLimit {
    /// No limit: a message may be returned any number of times.
    Unlimited,
    /// At most this many returns; the next return dead-letters the message
    /// (or drops it when the queue has no dead-letter target).
    Returns(u32),
}

impl fmt::Display for DeliveryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryLimit::Unlimited => f.write_str("unlimited"),
            DeliveryLimit::Returns(n) => write!(f, "{n}"),
        }
    }
}

/// The broker behaviours the framework depends on, for one broker version.
///
/// Build it with [`Capabilities::of`]; [`Capabilities::unknown`] is what a
/// worker assumes when the version cannot be read (the newest rules known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    version: Option<Version>,
}

/// The newest version whose rules this module knows.
const NEWEST_KNOWN: Version = Version::new(4, 3, 0);

impl Capabilities {
    /// The behaviours of `version`.
    pub const fn of(version: Version) -> Capabilities {
        Capabilities {
            version: Some(version),
        }
    }

    /// The behaviours assumed when the version is unknown: the newest rules
    /// this module knows, since a broker that does not say is most likely
    /// a new one.
    pub const fn unknown() -> Capabilities {
        Capabilities { version: None }
    }

    /// The broker's version, when it said.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    fn at_least(&self, major: u16, minor: u16) -> bool {
        self.version.unwrap_or(NEWEST_KNOWN) >= Version::new(major, minor, 0)
    }

    /// The delivery limit of a quorum queue declared without
    /// `x-delivery-limit` (and without a policy setting one).
    ///
    /// Seen: none on 3.10.8 (30 returns kept the message); 20 on 4.0.5 and
    /// 4.3.6 (the 21st delivery never came). Source: RabbitMQ 4.0 release
    /// notes, "quorum queues now have a default delivery limit of 20". On
    /// 4.3 only counted returns reach it (see
    /// [`Capabilities::nack_requeue_counts`]).
    pub fn default_delivery_limit(&self) -> DeliveryLimit {
        if self.at_least(4, 0) {
            DeliveryLimit::Returns(20)
        } else {
            DeliveryLimit::Unlimited
        }
    }

    /// The `x-delivery-limit` argument that makes a quorum queue keep a
    /// message however often it is returned; `None` when the argument must
    /// be left out.
    ///
    /// Seen: `-1` is unlimited on 4.0.5 (30 returns kept the message) but on
    /// 3.10.8 it dropped the message at its first return, where leaving the
    /// argument out is unlimited.
    pub fn unlimited_delivery_limit_argument(&self) -> Option<i64> {
        self.at_least(4, 0).then_some(-1)
    }

    /// The deliveries a quorum queue with `x-delivery-limit = limit` allows
    /// before it dead-letters a message with reason `delivery_limit`.
    ///
    /// Seen: `limit + 1` on 3.10.8, 4.0.5 and 4.3.6 (a limit of 2 delivered
    /// a message three times), for every return that counts (see
    /// [`Capabilities::nack_requeue_counts`]): reject, a closed channel or
    /// connection, and before 4.3 nack.
    pub fn deliveries_allowed(&self, limit: u32) -> u32 {
        limit.saturating_add(1)
    }

    /// Whether the broker merges an `x-death` header that a client set on a
    /// message it publishes into the history it writes when it
    /// dead-letters that message.
    ///
    /// Source: RabbitMQ 4.0 release notes (`x-death` is owned by the broker
    /// and a client-set one is no longer interpreted); seen on 4.0.5. 3.10
    /// merges it.
    pub fn interprets_client_x_death(&self) -> bool {
        !self.at_least(4, 0)
    }

    /// Whether a quorum queue's `basic.get` shows `x-delivery-count: 0` on a
    /// message never delivered before (seen on 3.10.8); 4.0.5 leaves the
    /// header out, as both versions do on `basic.consume`. Either way an
    /// absent count means zero.
    pub fn delivery_count_on_first_get(&self) -> bool {
        !self.at_least(4, 0)
    }

    /// Whether `basic.nack(requeue = true)` raises a quorum message's
    /// `x-delivery-count` (and so counts toward its delivery limit).
    ///
    /// Seen: it does on 3.10.8 and 4.0.5; on 4.3.6 it does not (the message
    /// came back eight times through a limit of 2, `x-delivery-count`
    /// absent, `x-acquired-count` 1 to 7). Source: RabbitMQ 4.3 release
    /// notes ("quorum queues now allow unlimited explicit message returns").
    pub fn nack_requeue_counts(&self) -> bool {
        !self.at_least(4, 3)
    }

    /// Whether `basic.reject(requeue = true)` counts toward the delivery
    /// limit: on every supported version (seen on 3.10.8, 4.0.5 and 4.3.6).
    pub fn reject_requeue_counts(&self) -> bool {
        true
    }

    /// Whether a delivery returned because its channel or connection closed
    /// (a crashed worker) counts toward the delivery limit: on every
    /// supported version (seen on 3.10.8, 4.0.5 and 4.3.6, for `basic.get`
    /// and `basic.consume` alike). So a message that kills its worker is
    /// stopped by the work queue's `x-delivery-limit` everywhere.
    pub fn connection_loss_counts(&self) -> bool {
        true
    }

    /// Whether quorum deliveries carry `x-acquired-count`, the number of
    /// times the message was returned for any reason (nack included),
    /// beside `x-delivery-count`, which from 4.3 counts only failed
    /// deliveries (reject, connection loss). Seen on 4.3.6; absent on
    /// 3.10.8 and 4.0.5. Like `x-delivery-count` it is absent on a first
    /// delivery.
    pub fn acquired_count_header(&self) -> bool {
        self.at_least(4, 3)
    }

    /// Whether the broker's consumer timeout closes the consumer's channel
    /// (`PRECONDITION_FAILED`, every unacked delivery on it returned and,
    /// on a quorum queue, counted) rather than cancelling the consumer with
    /// `basic.cancel` and returning only the timed-out deliveries, with
    /// `x-acquired-count` raised and `x-delivery-count` not (so the delivery
    /// limit never stops a delivery that always times out). Closes before
    /// 4.3, cancels from 4.3 (seen on 3.10.8, 4.0.5 and 4.3.6 on quorum
    /// queues: `broker_consumer_timeout`). The worker settles every
    /// delivery within its hold budget so that neither happens
    /// ([`hold_budget`](crate::task::hold_budget)).
    pub fn consumer_timeout_closes_channel(&self) -> bool {
        !self.at_least(4, 3)
    }

    /// Whether the consumer timeout applies to deliveries from classic
    /// queues: before 4.3 it does (it is the channel's); from 4.3 only
    /// quorum queues evaluate it (seen on 4.3.6: a classic delivery held
    /// unacked for three timeouts stays with its consumer). On classic
    /// queues the worker's own task timeout and hold budget are then the
    /// only bound.
    pub fn consumer_timeout_on_classic_queues(&self) -> bool {
        !self.at_least(4, 3)
    }

    /// Whether `basic.qos` with `global = true` is honoured as a limit
    /// shared by the channel's consumers. Seen: it is on 3.10.8 and 4.0.5;
    /// on 4.3.6 it is accepted (`qos-ok`) but applied per consumer, as if
    /// `global` were false (the deprecated feature `global_qos` is denied
    /// by default from 4.3). The framework only uses per-consumer prefetch.
    pub fn global_qos(&self) -> bool {
        !self.at_least(4, 3)
    }

    /// Whether transient (non-durable) non-exclusive queues may be
    /// declared. Seen: yes on 3.10.8, 4.0.5 and 4.3.6 (4.3.6 ships the
    /// deprecated feature `transient_nonexcl_queues` as permitted by
    /// default, although 4.3.0's release notes announced it denied). The
    /// framework declares every queue durable either way.
    pub fn transient_shared_queues(&self) -> bool {
        true
    }

    /// Whether a `mandatory` publish to a direct reply-to address comes
    /// back with `basic.return` (`NO_ROUTE`). Seen: always on 3.10.8 and
    /// 4.0.5, even when the reply was delivered to a waiting caller; never
    /// on 4.3.6, neither when delivered nor when the caller is gone (source:
    /// RabbitMQ 4.2 release notes: such a publish counts as routed). So
    /// replies are published without `mandatory`, and `basic.return`
    /// cannot tell a replier that its caller is gone on any version.
    pub fn mandatory_direct_reply_returned(&self) -> bool {
        !self.at_least(4, 2)
    }

    /// Whether dead-lettering sets `x-last-death-reason`, `-queue` and
    /// `-exchange` (the newest death) beside the `x-first-death-*` headers:
    /// seen on 4.0.5, not on 3.10.8.
    pub fn last_death_headers(&self) -> bool {
        self.at_least(4, 0)
    }

    /// Whether a quorum queue counts a `basic.reject(requeue = false)` as a
    /// delivery, and the count travels with the message it dead-letters:
    /// seen on 4.0.5 (a message rejected out of a quorum queue and brought
    /// back by a dead-letter cycle arrives redelivered with
    /// `x-delivery-count` raised by one per rejection). 3.10.8 starts the
    /// copy at zero.
    pub fn delivery_count_survives_dead_lettering(&self) -> bool {
        self.at_least(4, 0)
    }

    /// Whether a message dead-lettered after a `basic.reject(requeue =
    /// false)` carries the rejection as a delivery into a classic queue
    /// too, which then delivers it with the `redelivered` flag set (no
    /// `x-delivery-count`: classic queues have none). Seen on 4.3.6 (a
    /// reject, wait-queue TTL, back cycle on classic queues arrives
    /// redelivered each time; pinned by worker-testkit's differential
    /// cycle scenario); 3.10.8 and 4.0.5 deliver it as new.
    pub fn rejected_copies_arrive_redelivered(&self) -> bool {
        self.at_least(4, 3)
    }

    /// Whether a quorum queue puts a message returned from `basic.get` at
    /// its tail (seen on 3.10.8) rather than with consumer returns, which
    /// are served before everything else in the order they came back (seen
    /// on 4.0.5 for both). Either way a listing that returns every message
    /// it took keeps the queue's order.
    pub fn get_returns_go_to_the_tail(&self) -> bool {
        !self.at_least(4, 0)
    }

    /// Whether quorum queues honour message priorities (see
    /// [`Capabilities::quorum_priority_levels`]). A task with `priority` on
    /// a quorum queue is refused at declaration on a broker without them
    /// (see `topology::check_options`).
    pub fn quorum_priorities(&self) -> bool {
        self.quorum_priority_levels() > 1
    }

    /// How many priority levels a quorum queue has (no argument needed; on
    /// every version declaring a quorum queue with `x-max-priority` is
    /// refused, 406 "invalid arg").
    ///
    /// - 1 on 3.10.8: the priority property is ignored (first in, first out).
    /// - 2 on 4.0.5 (RabbitMQ 4.0 release notes): priority
    ///   [`QUORUM_HIGH_PRIORITY`] or more is high, served before normal
    ///   messages but not strictly (two high ones, then one normal one,
    ///   while both wait).
    /// - 32 on 4.3.6 (RabbitMQ 4.3 release notes): strict priorities 0 to
    ///   [`QUORUM_TOP_PRIORITY`], highest first, first in, first out within
    ///   a level; a higher priority is served as 31.
    pub fn quorum_priority_levels(&self) -> u8 {
        if self.at_least(4, 3) {
            QUORUM_TOP_PRIORITY + 1
        } else if self.at_least(4, 0) {
            2
        } else {
            1
        }
    }

    /// The level a message with `priority` is served at in a quorum queue
    /// (0 is the lowest; see [`Capabilities::quorum_priority_levels`]).
    pub fn quorum_priority_level(&self, priority: u8) -> u8 {
        match self.quorum_priority_levels() {
            1 => 0,
            2 => u8::from(priority >= QUORUM_HIGH_PRIORITY),
            _ => priority.min(QUORUM_TOP_PRIORITY),
        }
    }

    /// Whether a quorum queue serves a higher priority level strictly
    /// before a lower one (4.3+); 4.0 to 4.2 let one normal message through
    /// after two high ones.
    pub fn quorum_priorities_strict(&self) -> bool {
        self.at_least(4, 3)
    }

    /// Whether quorum queues dead-letter at least once
    /// (`x-dead-letter-strategy: at-least-once` with
    /// `x-overflow: reject-publish`): on every supported version (seen on
    /// 3.10.8 and 4.0.5).
    pub fn at_least_once_dead_lettering(&self) -> bool {
        true
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "RabbitMQ {v}"),
            None => f.write_str("RabbitMQ (version unknown)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(Version::parse("3.10.8"), Some(Version::new(3, 10, 8)));
        assert_eq!(Version::parse("4.0.5"), Some(Version::new(4, 0, 5)));
        assert_eq!(Version::parse("4.1.0-rc.1"), Some(Version::new(4, 1, 0)));
        assert_eq!(Version::parse("4.2"), Some(Version::new(4, 2, 0)));
        assert_eq!(Version::parse("banana"), None);
        assert_eq!(Version::parse(""), None);
        assert!(Version::new(3, 10, 8) < Version::new(4, 0, 0));
    }

    /// One row per version: the facts the framework acts on.
    #[test]
    fn the_capability_table() {
        type Row = (&'static str, DeliveryLimit, Option<i64>, bool, bool, bool);
        let rows: [Row; 5] = [
            // version, default limit, unlimited arg, merges x-death, nack counts, priorities
            ("3.10.8", DeliveryLimit::Unlimited, None, true, true, false),
            ("3.13.7", DeliveryLimit::Unlimited, None, true, true, false),
            (
                "4.0.5",
                DeliveryLimit::Returns(20),
                Some(-1),
                false,
                true,
                true,
            ),
            (
                "4.2.1",
                DeliveryLimit::Returns(20),
                Some(-1),
                false,
                true,
                true,
            ),
            (
                "4.3.0",
                DeliveryLimit::Returns(20),
                Some(-1),
                false,
                false,
                true,
            ),
        ];
        for (v, limit, arg, merges, nack, prio) in rows {
            let caps = Capabilities::of(Version::parse(v).unwrap());
            assert_eq!(caps.default_delivery_limit(), limit, "{v}");
            assert_eq!(caps.unlimited_delivery_limit_argument(), arg, "{v}");
            assert_eq!(caps.interprets_client_x_death(), merges, "{v}");
            assert_eq!(caps.nack_requeue_counts(), nack, "{v}");
            assert!(caps.reject_requeue_counts(), "{v}");
            assert_eq!(caps.quorum_priorities(), prio, "{v}");
            assert_eq!(caps.deliveries_allowed(2), 3, "{v}");
        }
    }

    #[test]
    fn priority_levels_and_reply_returns_by_version() {
        let caps = |v: &str| Capabilities::of(Version::parse(v).unwrap());
        let levels = |c: Capabilities| [0, 4, 5, 31, 255].map(|p| c.quorum_priority_level(p));
        assert_eq!(levels(caps("3.10.8")), [0, 0, 0, 0, 0]);
        assert_eq!(levels(caps("4.0.5")), [0, 0, 1, 1, 1]);
        assert_eq!(levels(caps("4.3.6")), [0, 4, 5, 31, 31]);
        assert!(!caps("4.0.5").quorum_priorities_strict());
        assert!(caps("4.3.6").quorum_priorities_strict());
        assert!(caps("4.1.4").mandatory_direct_reply_returned());
        assert!(!caps("4.2.0").mandatory_direct_reply_returned());
        assert!(!caps("4.0.5").acquired_count_header());
        assert!(caps("4.3.6").acquired_count_header());
        assert!(caps("4.3.6").global_qos() != caps("4.0.5").global_qos());
        for (v, before_4_3) in [("3.10.8", true), ("4.0.5", true), ("4.3.6", false)] {
            assert_eq!(caps(v).consumer_timeout_closes_channel(), before_4_3, "{v}");
            assert_eq!(
                caps(v).consumer_timeout_on_classic_queues(),
                before_4_3,
                "{v}"
            );
        }
    }

    #[test]
    fn an_unknown_version_follows_the_newest_rules() {
        let caps = Capabilities::unknown();
        assert_eq!(caps, Capabilities::unknown());
        assert!(!caps.nack_requeue_counts());
        assert!(!caps.global_qos());
        assert_eq!(caps.quorum_priority_levels(), 32);
        assert_eq!(caps.unlimited_delivery_limit_argument(), Some(-1));
        assert_eq!(caps.to_string(), "RabbitMQ (version unknown)");
    }
}
