//! The innermost service: decode the body and run the task's handler.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tower::Service;

use super::{Failure, FailureCause, Handled, Job, Outcome};
use crate::codec;
use crate::task::{FailureKind, Task, TaskContext};

/// Decodes the payload and calls [`Task::run`].
///
/// Bad input never panics: headers nesting deeper than
/// [`MAX_HEADER_DEPTH`](crate::MAX_HEADER_DEPTH), a body over
/// `max_body_bytes`, an undecodable body or a task name this queue does not
/// serve each become a permanent [`Outcome::Failed`] with its own
/// [`FailureCause`].
#[derive(Debug)]
pub struct HandlerService<T> {
    task: Arc<T>,
}

impl<T> Clone for HandlerService<T> {
    fn clone(&self) -> Self {
        HandlerService {
            task: self.task.clone(),
        }
    }
}

impl<T: Task> HandlerService<T> {
    /// A service running `task`.
    pub fn new(task: Arc<T>) -> Self {
        HandlerService { task }
    }
}

impl<T: Task> Service<Job> for HandlerService<T> {
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Handled>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: Job) -> Self::Future {
        let task = self.task.clone();
        Box::pin(async move {
            let attempt = job.attempt();
            let permanent = |cause, message: String| {
                Ok(Outcome::Failed(Failure::new(
                    FailureKind::Permanent,
                    cause,
                    message,
                    attempt,
                )))
            };
            if let Some(name) = job.delivery().properties.headers().too_deep() {
                return permanent(
                    FailureCause::Decode,
                    format!(
                        "undecodable headers: {name:?} nests tables or arrays deeper than {} levels",
                        crate::MAX_HEADER_DEPTH
                    ),
                );
            }
            if let Some(name) = job.unknown_task() {
                return permanent(
                    FailureCause::UnknownTask,
                    format!(
                        "no task named {name:?} is registered for queue {:?}",
                        &*job.spec().queue
                    ),
                );
            }
            let delivery = job.delivery();
            let limit = job.spec().options.max_body_bytes;
            if delivery.body.len() > limit {
                return permanent(
                    FailureCause::TooLarge,
                    format!(
                        "body of {} bytes exceeds the task's limit of {limit} bytes",
                        delivery.body.len()
                    ),
                );
            }
            let payload = match codec::decode::<T::Payload>(
                delivery.properties.content_type(),
                &delivery.body,
            ) {
                Ok(p) => p,
                Err(e) => return permanent(FailureCause::Decode, e.to_string()),
            };
            let runtime = job.runtime();
            let ctx = TaskContext::new(
                T::NAME,
                job.spec().queue.clone(),
                delivery.clone(),
                attempt,
                runtime.publisher.clone(),
                runtime.state.clone(),
            )
            .with_reply_slot(job.reply_slot().clone());
            job.reply_slot().clear();
            match task.run(ctx, payload).await {
                Ok(()) => Ok(Outcome::Succeeded),
                Err(err) => {
                    let failure =
                        Failure::from_task_error(&err, job.spec().options.unclassified, attempt);
                    if failure.kind == FailureKind::Discard {
                        return Ok(Outcome::Discarded(failure.message));
                    }
                    Ok(Outcome::Failed(failure))
                }
            }
        })
    }
}
