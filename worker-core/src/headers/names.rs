//! Header names the framework reads and writes.
//!
//! Our own headers start with `rw-`, never `x-`: the broker owns `x-`
//! headers, and RabbitMQ 4 no longer honours an `x-death` that a client
//! republishes.

/// The broker's dead-letter history.
pub const X_DEATH: &str = "x-death";
/// The quorum queue's count of earlier unsettled deliveries.
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";
/// Attempts made before this copy was published (our retry counter).
pub const ATTEMPTS: &str = "rw-attempts";
/// Trips through the delay tiers so far.
pub const REDELIVERIES: &str = "rw-redeliveries";
/// Seconds since the epoch before which the message must not run: set when
/// a handler asked to retry after longer than the longest delay tier, so the
/// message waits in that tier as many times as it takes.
pub const NOT_BEFORE: &str = "rw-not-before";
/// Seconds since the epoch at which a delayed enqueue is due (by the
/// producer's clock; for people and tools: the delay ladder, not this
/// header, holds the message back).
pub const DUE_AT: &str = "rw-due-at";
/// Seconds since the epoch a periodic tick was scheduled for (also its
/// `timestamp` property and the end of its message id).
pub const SCHEDULED_AT: &str = "rw-scheduled-at";
/// On a periodic entry's last-tick record: the host and process id of the
/// scheduler that enqueued it (`host:pid`).
pub const SCHEDULER: &str = "rw-scheduler";
/// Times a parked message was replayed.
pub const REPLAYS: &str = "rw-replays";
/// Task name of a parked message.
pub const PARK_TASK: &str = "rw-park-task";
/// Why it was parked: `permanent`, `exhausted`, `delivery-limit`, `undecodable`, `too-large` or `unknown-task` (see [`Failure::park_reason`](crate::Failure::park_reason)).
pub const PARK_REASON: &str = "rw-park-reason";
/// What failed last: `handler`, `panic`, `timeout`, `undecodable`, `too-large`, `unknown-task` or `delivery-limit`.
pub const ERROR_KIND: &str = "rw-error-kind";
/// The last error's message (cut to a bounded size).
pub const ERROR_MESSAGE: &str = "rw-error-message";
/// Seconds since the epoch of the first failure.
pub const FIRST_FAILURE: &str = "rw-first-failure";
/// Seconds since the epoch of the last failure.
pub const LAST_FAILURE: &str = "rw-last-failure";
/// The exchange the original was published to.
pub const ORIGINAL_EXCHANGE: &str = "rw-original-exchange";
/// The routing key the original was published with.
pub const ORIGINAL_ROUTING_KEY: &str = "rw-original-routing-key";
/// The queue the message was parked from.
pub const ORIGINAL_QUEUE: &str = "rw-original-queue";
/// The host of the worker that parked it.
pub const PARK_HOST: &str = "rw-park-host";
/// The `expiration` property of the original (copies never carry one, so
/// that they cannot expire where they wait).
pub const ORIGINAL_EXPIRATION: &str = "rw-original-expiration";
/// The `user_id` property of the original: RabbitMQ refuses a message whose
/// `user_id` is not the publishing login, so copies never carry one.
pub const ORIGINAL_USER_ID: &str = "rw-original-user-id";
/// The original's `CC` header (more routing keys), which copies never
/// carry: they go only where the framework sends them.
pub const ORIGINAL_CC: &str = "rw-original-cc";
/// The original's `BCC` header, kept like [`ORIGINAL_CC`].
pub const ORIGINAL_BCC: &str = "rw-original-bcc";
/// On a reply to a call: `ok`, `failed` (the handler failed permanently
/// or discarded the request) or `parked` (the request was parked for
/// another reason: retries used up, undecodable, unknown task, ...).
pub const REPLY_STATUS: &str = "rw-reply-status";
/// On a failure reply: why, as a park reason (`permanent`, `exhausted`,
/// ...) or `discarded`.
pub const REPLY_REASON: &str = "rw-reply-reason";
/// Whether the broker owns a header (`x-death`, `x-delivery-count`, ...):
/// copies the framework publishes drop those, and ours never start with
/// the prefix.
pub fn is_broker_owned(name: &str) -> bool {
    name.starts_with("x-")
}

/// Routing headers the broker acts on when a message is published, with
/// the header of ours that keeps each on a copy.
pub const ROUTING_HEADERS: [(&str, &str); 2] = [("CC", ORIGINAL_CC), ("BCC", ORIGINAL_BCC)];
