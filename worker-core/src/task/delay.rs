//! Delayed enqueue: a task that runs after a delay, held by the broker.
//!
//! The message waits in the delay ladder ([`crate::topology::ladder`]):
//! quorum queues with fixed TTLs that hand it down, by its routing key,
//! until it reaches the task's work queue. No worker holds it or forwards
//! it, so the delay runs on while every worker is stopped, and survives a
//! broker restart. It carries its due time in `rw-due-at`, for people and
//! tools; the worker does not compare it with its own clock (the ladder
//! measures the delay itself, so clocks that disagree cannot hold a due
//! message back or let it run early).

use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::headers::DUE_AT;
use crate::publisher::{EnqueueOptions, Publisher};
use crate::task::Task;
use crate::topology::ladder;

impl Publisher {
    /// Enqueues one task to run after `delay` (rounded up to a whole
    /// second, at most [`MAX_LADDER_DELAY`](ladder::MAX_LADDER_DELAY),
    /// about 12 days); waits for the broker's confirm and returns the
    /// message id. The first delayed enqueue of a publisher declares the
    /// delay ladder; the task's queue must exist (a worker declared it).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use worker_core::{Publisher, Task, TaskContext, TaskError};
    /// # struct Remind;
    /// # impl Task for Remind {
    /// #     type Payload = String;
    /// #     const NAME: &'static str = "remind";
    /// #     const QUEUE: &'static str = "remind";
    /// #     async fn run(&self, _: TaskContext, _: String) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// # async fn demo(publisher: Publisher) -> Result<(), worker_core::Error> {
    /// publisher
    ///     .enqueue_in::<Remind>(&"call back".to_owned(), Duration::from_secs(600))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in<T: Task>(
        &self,
        payload: &T::Payload,
        delay: Duration,
    ) -> Result<String, Error> {
        self.enqueue_in_with::<T>(payload, delay, EnqueueOptions::default())
            .await
    }

    /// Enqueues one task to run at `at` (by this process's clock; a time
    /// past runs now), like [`enqueue_in`](Publisher::enqueue_in).
    pub async fn enqueue_at<T: Task>(
        &self,
        payload: &T::Payload,
        at: SystemTime,
    ) -> Result<String, Error> {
        let delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.enqueue_in::<T>(payload, delay).await
    }

    /// Enqueues one task after `delay` with explicit ids and headers.
    pub async fn enqueue_in_with<T: Task>(
        &self,
        payload: &T::Payload,
        delay: Duration,
        options: EnqueueOptions,
    ) -> Result<String, Error> {
        let route = ladder::route(T::QUEUE, delay)?;
        let (id, mut message) = self.task_message(T::NAME, T::QUEUE, payload, options)?;
        let due = message
            .properties
            .timestamp()
            .unwrap_or_default()
            .saturating_add(route.delay.as_secs());
        message.properties.headers_mut().insert(DUE_AT, due);
        message.exchange = ladder::entry_exchange();
        message.routing_key = route.routing_key;
        self.prepare_delayed(T::QUEUE).await?;
        self.publish(message).await?;
        tracing::debug!(
            task = T::NAME,
            id,
            ?delay,
            hops = route.hops,
            "enqueued with a delay"
        );
        Ok(id)
    }
}
