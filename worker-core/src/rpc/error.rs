//! What can go wrong with a call.

use std::time::Duration;

/// Why a call returned no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply came within the call's timeout. The request may still run
    /// (it stays in its queue until a worker takes it); its reply will be
    /// dropped.
    #[error("no reply within {0:?}: is a worker consuming the task's queue?")]
    Timeout(Duration),
    /// The handler failed permanently (or discarded the request). A failure
    /// with reason `permanent` is in the task's parking queue.
    #[error("the task failed permanently ({reason}): {message}")]
    Failed {
        /// `permanent` or `discarded`.
        reason: String,
        /// The handler's error message.
        message: String,
    },
    /// The request was parked for another reason than the handler's
    /// permanent failure: retries used up, an undecodable payload, a task
    /// name the queue does not serve, the delivery limit.
    #[error("the request was parked ({reason}): {message}; `parked list` shows it")]
    Parked {
        /// The park reason (`exhausted`, `undecodable`, `unknown-task`, ...).
        reason: String,
        /// The last error's message.
        message: String,
    },
    /// The request could not be sent: no connection, the queue does not
    /// exist (unroutable), the broker refused it or did not confirm it.
    #[error("could not send the request")]
    Broker(#[source] crate::Error),
    /// The connection (or the caller's channel) was lost while the call
    /// waited: the request may or may not have run, and its reply can no
    /// longer arrive. Call again if the task is safe to repeat.
    #[error("the connection to RabbitMQ was lost before the reply came; the request may or may not have run")]
    ConnectionLost,
    /// The reply arrived but is not the expected type.
    #[error("the reply could not be decoded: {0}")]
    Decode(String),
}
