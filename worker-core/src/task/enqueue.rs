//! Enqueueing tasks by type: the typed face of [`Publisher`].
//!
//! These methods live with the task model so that the publisher, a layer
//! below it, never needs to know what a task is.

use crate::error::Error;
use crate::publisher::{EnqueueOptions, Publisher};
use crate::task::Task;

impl Publisher {
    /// Enqueues one task and waits for the broker's confirm; returns the message id.
    pub async fn enqueue<T: Task>(&self, payload: &T::Payload) -> Result<String, Error> {
        self.enqueue_with::<T>(payload, EnqueueOptions::default())
            .await
    }

    /// Enqueues one task with explicit ids and headers.
    pub async fn enqueue_with<T: Task>(
        &self,
        payload: &T::Payload,
        options: EnqueueOptions,
    ) -> Result<String, Error> {
        let (id, message) = self.task_message(T::NAME, T::QUEUE, payload, options)?;
        self.publish(message).await?;
        Ok(id)
    }

    /// Enqueues many tasks, pipelining the confirms; returns their ids in order.
    ///
    /// Fails if any message was not confirmed; the others may have been taken.
    pub async fn enqueue_batch<'a, T: Task>(
        &self,
        payloads: impl IntoIterator<Item = &'a T::Payload>,
    ) -> Result<Vec<String>, Error>
    where
        T::Payload: 'a,
    {
        let mut ids = Vec::new();
        let mut messages = Vec::new();
        for payload in payloads {
            let (id, message) =
                self.task_message(T::NAME, T::QUEUE, payload, EnqueueOptions::default())?;
            ids.push(id);
            messages.push(message);
        }
        self.publish_batch(messages).await?;
        Ok(ids)
    }
}
