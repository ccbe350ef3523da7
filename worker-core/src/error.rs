//! The framework's own errors (connecting, declaring, publishing).

use std::time::Duration;

/// An error from the framework, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not reach or log in to the broker.
    #[error("cannot connect to RabbitMQ at {url}: {message}. {hint}")]
    Connect {
        /// The URL, with any password redacted.
        url: String,
        /// What lapin reported.
        message: String,
        /// What to check.
        hint: &'static str,
    },
    /// The broker refused the login or the vhost: retrying will not help.
    #[error("RabbitMQ at {url} refused access: {message}. {hint}")]
    AccessRefused {
        /// The URL, with any password redacted.
        url: String,
        /// The broker's reply.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A broker operation failed.
    #[error("RabbitMQ {operation} failed: {source}")]
    Broker {
        /// What was being done.
        operation: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// A queue exists with arguments other than the ones this worker declares.
    #[error("queue {queue:?} already exists with different arguments ({message}); RabbitMQ cannot change the arguments of a queue (priority, max_length, overflow, message_ttl, queue_type, ...): make the task's options match it, or stop its producers, let the workers drain it, delete it and start the worker, which declares it anew")]
    TopologyMismatch {
        /// The queue.
        queue: String,
        /// The broker's reply.
        message: String,
    },
    /// The broker returned the message as unroutable.
    #[error("message to exchange {exchange:?} with routing key {routing_key:?} was unroutable ({reply}); declare the queue or binding first (run the worker once, or `topology declare`)")]
    Unroutable {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The broker refused the message (a nack).
    #[error("broker refused message to {routing_key:?} (publisher nack); the queue may be full (x-overflow reject-publish) or unavailable")]
    Nacked {
        /// Routing key used.
        routing_key: String,
    },
    /// No confirm came back in time.
    #[error("no publisher confirm within {0:?}; the broker may be overloaded or blocked by a resource alarm")]
    ConfirmTimeout(Duration),
    /// A string is too long for an AMQP short string.
    #[error("{field} is {len} bytes; AMQP allows at most 255: use a shorter one")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A payload could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::codec::EncodeError),
    /// Configuration that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Consuming stopped without a connection error: the broker cancelled a
    /// consumer (its queue was deleted, or a quorum queue moved), or a
    /// consumer task ended. The worker reconnects and consumes again.
    #[error("consuming stopped: {0}")]
    ConsumerStopped(String),
    /// The worker's own task ended abnormally (a bug in the framework:
    /// please report it with the log).
    #[error("the worker task ended abnormally: {0}")]
    WorkerFailed(String),
    /// A delayed enqueue asked for longer than the delay ladder holds.
    #[error("a delay of {asked:?} is longer than the delay ladder holds ({max:?}); enqueue it later, or keep the due time in your own data")]
    DelayTooLong {
        /// The delay asked for.
        asked: Duration,
        /// The longest delay ([`MAX_LADDER_DELAY`](crate::topology::ladder::MAX_LADDER_DELAY)).
        max: Duration,
    },
    /// Another operation (in this process or another) kept a parking
    /// queue for longer than an operation waits for it.
    #[error("parking queue {queue} is being read or changed by another operation (waited {waited:?}); try again in a moment")]
    Busy {
        /// The parking queue.
        queue: String,
        /// How long this operation waited.
        waited: Duration,
    },
    /// A replayed message's copy reached the work queue but its parked
    /// original could not be removed: it is now in both places.
    #[error("message {message_id} was replayed, but its parked original could not be removed from {queue} ({source}); it is in both queues: purge or ignore the parked one")]
    ReplayLeftOriginal {
        /// The message's id (`<no id>` when it has none).
        message_id: String,
        /// The parking queue still holding it.
        queue: String,
        /// Why the ack failed.
        #[source]
        source: Box<Error>,
    },
}

/// AMQP reply code 403: the broker refused the login (or an operation).
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub const ACCESS_REFUSED: u16 = 403;
/// AMQP reply code 404: no such queue (or exchange).
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub const NOT_FOUND: u16 = 404;
/// AMQP reply code 406: a declaration differs from what exists, or a
/// message was refused.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub const PRECONDITION_FAILED: u16 = 406;
/// AMQP reply code 530: the user may not use the vhost.
pub(crate) const NOT_ALLOWED: u16 = 530;

/// The broker's reply code of a protocol error (`404`, `406`, ...).
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The broker's reply text of a protocol error, or lapin's message.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub fn reply_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => e.to_string(),
    }
}

/// What to check when the broker refuses the login.
const LOGIN_HINT: &str =
    "check the user name and password (AMQP_URL, AMQP_USER, AMQP_PASSWORD or AMQP_PASSWORD_FILE)";

/// What to do when the user may not use the vhost.
const VHOST_HINT: &str = "grant the user access to the vhost: rabbitmqctl set_permissions -p <vhost> <user> \".*\" \".*\" \".*\"";

/// What to check when the broker cannot be reached.
const UNREACHABLE_HINT: &str = "Is the broker running and is AMQP_URL right?";

/// What to check when the broker's TLS certificate is not accepted.
// For worker-operator, through `crate::__operator`.
#[doc(hidden)]
pub const CERTIFICATE_HINT: &str = "The broker's TLS certificate was not accepted: give the CA that signed it (TlsConfig, or AMQP_TLS_CA_FILE) and connect by a host name the certificate names";

impl Error {
    /// Classifies a failed connection attempt by the broker's reply code: a
    /// refused login (403) or vhost (530) becomes [`Error::AccessRefused`],
    /// anything else [`Error::Connect`].
    pub(crate) fn connect(url: &str, e: &lapin::Error) -> Self {
        let message = e.to_string();
        match reply_code(e) {
            Some(ACCESS_REFUSED) => Error::access_refused(url, message, LOGIN_HINT),
            Some(NOT_ALLOWED) => Error::access_refused(url, message, VHOST_HINT),
            _ => Error::connect_text(url, message),
        }
    }

    fn access_refused(url: &str, message: String, hint: &'static str) -> Self {
        Error::AccessRefused {
            url: redact_url(url),
            message,
            hint,
        }
    }

    /// Classifies a failed connection attempt that carries no reply code.
    /// A rejected TLS certificate reaches us only as an I/O error whose
    /// text names the certificate (rustls's error type does not come
    /// through lapin), so for that one case the text is all there is.
    fn connect_text(url: &str, message: String) -> Self {
        let url = redact_url(url);
        if message.contains("certificate") {
            Error::Connect {
                url,
                message,
                hint: CERTIFICATE_HINT,
            }
        } else {
            Error::Connect {
                url,
                message,
                hint: UNREACHABLE_HINT,
            }
        }
    }

    /// A connection attempt that did not finish within `limit`.
    pub(crate) fn connect_timeout(url: &str, limit: Duration) -> Self {
        Error::Connect {
            url: redact_url(url),
            message: format!("timed out after {limit:?}"),
            hint: UNREACHABLE_HINT,
        }
    }

    /// Whether retrying cannot help (refused access, mismatched topology, bad configuration).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::AccessRefused { .. } | Error::TopologyMismatch { .. } | Error::Config(_)
        )
    }

    /// A failed broker operation: [`Error::Broker`] with what was being
    /// done (`"channel.open"`, `"queue.purge emails.parking"`, ...) and
    /// lapin's error.
    pub fn broker(operation: impl Into<String>, source: lapin::Error) -> Self {
        Error::Broker {
            operation: operation.into(),
            source,
        }
    }
}

/// Redacts the password in an AMQP URL for logs and errors.
///
/// Works on URLs that do not parse too: a password holding `/`, `?`, `#`,
/// `@` or `,` unencoded is still hidden (the user info runs to the last `@`
/// that is followed by a host), and without `://` everything before the
/// last `@` is hidden.
///
/// ```
/// assert_eq!(
///     worker_core::redact_url("amqp://app:s3cret@mq:5672/%2f"),
///     "amqp://app:***@mq:5672/%2f"
/// );
/// assert_eq!(
///     worker_core::redact_url("amqp://app:Ab3/xY,z@mq:5672/%2f"),
///     "amqp://app:***@mq:5672/%2f"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((start, end)) = userinfo_span(url) else {
        return match url.rfind('@') {
            Some(at) if !url.contains("://") => format!("***{}", &url[at..]),
            _ => url.to_owned(),
        };
    };
    match url[start..end].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// The byte range of an AMQP URL's user info (`user:password`): from
/// `://` to the last `@` followed by a host, so that reserved characters
/// left unencoded in a password cannot end it early.
pub(crate) fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    rest.rmatch_indices('@')
        .map(|(at, _)| at)
        .find(|&at| {
            let after = &rest[at + 1..];
            after.find(['/', '?', '#']).unwrap_or(after.len()) > 0
        })
        .map(|at| (start, start + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(id: u16, text: &str) -> lapin::Error {
        let amqp =
            lapin::protocol::AMQPError::from_id(id, text.into()).expect("a known reply code");
        lapin::ErrorKind::ProtocolError(amqp).into()
    }

    #[test]
    fn refused_logins_and_vhosts_are_fatal_with_a_hint() {
        let login = Error::connect(
            "amqp://u:pw@h/v",
            &refused(
                403,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
            ),
        );
        assert!(login.is_fatal());
        assert!(
            login
                .to_string()
                .contains("check the user name and password"),
            "{login}"
        );
        assert!(!login.to_string().contains("pw@"), "{login}");
        let vhost = Error::connect(
            "amqp://u:pw@h/v",
            &refused(
                530,
                "NOT_ALLOWED - access to vhost 'v' refused for user 'u'",
            ),
        );
        assert!(vhost.to_string().contains("set_permissions"), "{vhost}");
        let down = Error::connect_text("amqp://h", "Connection refused (os error 111)".into());
        assert!(!down.is_fatal());
        assert!(down.to_string().contains("Is the broker running"), "{down}");
        let tls = Error::connect_text(
            "amqps://h",
            "IO error: invalid peer certificate: UnknownIssuer".into(),
        );
        assert!(tls.to_string().contains("AMQP_TLS_CA_FILE"), "{tls}");
        assert!(!tls.to_string().contains("Is the broker running"), "{tls}");
    }

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact_url("amqp://localhost"), "amqp://localhost");
        assert_eq!(redact_url("amqps://u@h/v"), "amqps://u@h/v");
        assert_eq!(
            redact_url("amqp://u:p@ss@h:1/v?x=@"),
            "amqp://u:***@h:1/v?x=@"
        );
    }

    #[test]
    fn passwords_with_reserved_characters_never_show() {
        for password in [
            "Ab3/xY+zq9",
            "a,b",
            "a?b",
            "a#b",
            "a@b",
            "p/a,s?s#w@d",
            "a:b",
        ] {
            for url in [
                format!("amqp://app:{password}@127.0.0.1:1/%2f"),
                format!("amqps://app:{password}@mq.example.com"),
                format!("amqp://app:{password}@h/v?heartbeat=5"),
                format!("app:{password}@h:5672"),
            ] {
                let shown = redact_url(&url);
                assert!(!shown.contains(password), "{url} -> {shown}");
                assert!(shown.contains("***"), "{url} -> {shown}");
            }
        }
    }
}
