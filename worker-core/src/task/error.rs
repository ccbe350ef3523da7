//! The typed failure a handler returns, and how the runtime classifies it.

use std::fmt;
use std::time::Duration;

/// How the runtime treats a failed attempt.
///
/// Handlers do not throw exception lists at the runtime; they return a
/// [`TaskError`] whose kind says what should happen next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Something that may work next time (a timeout, a 503): retry with backoff.
    Transient,
    /// Something that will never work (bad data, a 404): park now, no retries.
    Permanent,
    /// The message is not worth doing any more: ack it and count it.
    Discard,
}

impl FailureKind {
    /// A short stable name, used in headers, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::Discard => "discard",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a task handler returns.
///
/// Any `std::error::Error` converts into a `TaskError` with `?`; such an
/// error is *unclassified* and the task's
/// [`unclassified`](crate::TaskOptions::unclassified) option decides its kind
/// (transient unless the task says otherwise). Use the constructors to say
/// what you mean:
///
/// ```
/// use std::time::Duration;
/// use worker_core::{FailureKind, TaskError};
///
/// fn charge(card_ok: bool, gateway_up: bool) -> Result<(), TaskError> {
///     if !card_ok {
///         return Err(TaskError::permanent("card declined"));
///     }
///     if !gateway_up {
///         return Err(TaskError::retry_after(Duration::from_secs(30), "gateway down"));
///     }
///     Ok(())
/// }
///
/// let err = charge(false, true).unwrap_err();
/// assert_eq!(err.kind(), Some(FailureKind::Permanent));
/// ```
///
/// `TaskError` deliberately does not implement `std::error::Error`, so that
/// the blanket conversion from every error type can exist (the same trade
/// `anyhow::Error` makes).
pub struct TaskError {
    kind: Option<FailureKind>,
    retry_after: Option<Duration>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl TaskError {
    fn new(kind: Option<FailureKind>, message: impl fmt::Display) -> Self {
        TaskError {
            kind,
            retry_after: None,
            message: message.to_string(),
            source: None,
        }
    }

    /// A failure worth retrying with the task's backoff.
    pub fn transient(message: impl fmt::Display) -> Self {
        Self::new(Some(FailureKind::Transient), message)
    }

    /// A failure that will never succeed: the message is parked at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::new(Some(FailureKind::Permanent), message)
    }

    /// A transient failure that asks for a specific wait before the next try.
    ///
    /// Short waits are slept in process; long ones go to the broker through
    /// the delay tier that is at least as long as `delay`. A wait longer than
    /// every tier is spent in the longest one, as many times as it takes
    /// (the message carries its due time in `rw-not-before` and is not
    /// charged an attempt for the extra trips). Without tiers the message
    /// is parked once its in-process attempts are used up.
    pub fn retry_after(delay: Duration, message: impl fmt::Display) -> Self {
        let mut err = Self::new(Some(FailureKind::Transient), message);
        err.retry_after = Some(delay);
        err
    }

    /// The message is no longer worth processing: ack it and count it as discarded.
    pub fn discard(message: impl fmt::Display) -> Self {
        Self::new(Some(FailureKind::Discard), message)
    }

    /// An error whose kind the task's `unclassified` option decides.
    pub fn unclassified(message: impl fmt::Display) -> Self {
        Self::new(None, message)
    }

    /// The kind the handler chose, or `None` when it left it to the task's options.
    pub fn kind(&self) -> Option<FailureKind> {
        self.kind
    }

    /// The kind after applying the task's default for unclassified errors.
    pub fn kind_or(&self, unclassified: FailureKind) -> FailureKind {
        self.kind.unwrap_or(unclassified)
    }

    /// The wait the handler asked for, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, when this was converted from one.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind)
            .field("retry_after", &self.retry_after)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E> From<E> for TaskError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        TaskError {
            kind: None,
            retry_after: None,
            message,
            source: Some(Box::new(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_conversion_is_unclassified_and_keeps_the_chain() {
        fn parse(s: &str) -> Result<u32, TaskError> {
            Ok(s.parse::<u32>()?)
        }
        let err = parse("x").unwrap_err();
        assert_eq!(err.kind(), None);
        assert_eq!(err.kind_or(FailureKind::Transient), FailureKind::Transient);
        assert!(err.message().contains("invalid digit"));
        assert!(err.source().is_some());
    }

    #[test]
    fn retry_after_is_transient_with_a_delay() {
        let err = TaskError::retry_after(Duration::from_secs(3), "busy");
        assert_eq!(err.kind(), Some(FailureKind::Transient));
        assert_eq!(err.retry_delay(), Some(Duration::from_secs(3)));
    }
}
