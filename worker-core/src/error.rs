//! The framework's own errors (connecting, declaring, publishing).

use std::time::Duration;

/// An error from the framework, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not reach or log in to the broker.
    #[error("cannot connect to RabbitMQ at {url}: {message}. Is the broker running and is AMQP_URL right?")]
    Connect {
        /// The URL, with any password redacted.
        url: String,
        /// What lapin reported.
        message: String,
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
    #[error("queue {queue:?} already exists with different arguments ({message}); delete it or make the task's options match it (`topology check` lists the differences)")]
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
    #[error("{field} is {len} bytes; AMQP allows at most 255")]
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
}

impl Error {
    pub(crate) fn broker(operation: impl Into<String>, source: lapin::Error) -> Self {
        Error::Broker {
            operation: operation.into(),
            source,
        }
    }
}

/// Redacts the password in an AMQP URL for logs and errors.
///
/// ```
/// assert_eq!(
///     worker_core::redact_url("amqp://app:s3cret@mq:5672/%2f"),
///     "amqp://app:***@mq:5672/%2f"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact_url("amqp://localhost"), "amqp://localhost");
        assert_eq!(redact_url("amqps://u@h/v"), "amqps://u@h/v");
        assert_eq!(
            redact_url("amqp://u:p@ss@h:1/v?x=@"),
            "amqp://u:***@h:1/v?x=@"
        );
    }
}
