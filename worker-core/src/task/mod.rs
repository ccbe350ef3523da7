//! The task model: a named handler with a payload type and options.

mod context;
mod delay;
mod enqueue;
mod error;
mod options;
mod queue_options;
mod reply;

pub use context::{State, StateMap, TaskContext};
pub use error::{FailureKind, TaskError};
pub use options::{
    default_tiers, hold_budget, ExchangeBinding, ExchangeKind, QueueType, Rate, RetryPolicy,
    TaskOptions, BROKER_ACK_TIMEOUT,
};
pub use queue_options::{Overflow, QueueLimits};
pub use reply::{Callable, ReplySlot};

use std::any::TypeId;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A unit of background work: a name, a queue, a payload type and a handler.
///
/// The `#[task]` macro writes this for a plain `async fn`; writing it by hand
/// is just as valid:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use worker_core::{Task, TaskContext, TaskError, TaskOptions};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize { image: String, width: u32 }
///
/// struct ResizeImage;
///
/// impl Task for ResizeImage {
///     type Payload = Resize;
///     const NAME: &'static str = "images.resize";
///     const QUEUE: &'static str = "images";
///
///     fn options(&self) -> TaskOptions {
///         TaskOptions { concurrency: 4, ..TaskOptions::default() }
///     }
///
///     async fn run(&self, ctx: TaskContext, job: Resize) -> Result<(), TaskError> {
///         if job.width == 0 {
///             return Err(TaskError::permanent("width must be positive"));
///         }
///         let _ = (ctx.attempt(), job.image);
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    note = "mark an async fn with `#[worker_core::task(queue = \"...\")]`, or implement `Task` by hand"
)]
pub trait Task: Send + Sync + 'static {
    /// The message body's type, (de)serialized with serde.
    type Payload: Serialize + DeserializeOwned + Send + 'static;

    /// The task's name, stored in each message's `type` property.
    const NAME: &'static str;

    /// The work queue.
    const QUEUE: &'static str;

    /// Retry, timeout, concurrency and topology options.
    fn options(&self) -> TaskOptions {
        TaskOptions::default()
    }

    /// The task's own periodic entry (`#[task(every = "5m")]`): a worker
    /// that registers the task takes part in scheduling it (see
    /// [`crate::schedule`]). `None` by default.
    fn periodic(&self) -> Option<crate::schedule::Periodic> {
        None
    }

    /// Types of shared state the handler needs; the worker refuses to start without them.
    fn required_state(&self) -> Vec<(TypeId, &'static str)> {
        Vec::new()
    }

    /// Handles one message.
    fn run(
        &self,
        ctx: TaskContext,
        payload: Self::Payload,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}
