//! What a handler can know about the delivery it is handling.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Error;
use crate::headers::Headers;
use crate::message::Delivery;
use crate::publisher::{EnqueueOptions, Publisher};
use crate::task::{ReplySlot, Task};

/// Shared application state the worker hands to handlers (a database pool, an HTTP client).
///
/// Keyed by type; add values with `Worker::state`.
#[derive(Clone, Default)]
pub struct StateMap {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for StateMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMap")
            .field("len", &self.values.len())
            .finish()
    }
}

impl StateMap {
    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }

    /// Whether a value with this type id was added.
    pub fn contains(&self, id: TypeId) -> bool {
        self.values.contains_key(&id)
    }
}

/// A handler argument that receives shared state of type `T`.
///
/// ```
/// use worker_core::State;
///
/// struct Db { url: String }
/// let state = State(std::sync::Arc::new(Db { url: "postgres://".into() }));
/// assert_eq!(state.url, "postgres://");
/// ```
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The handler's view of the delivery: ids, attempt, headers, and a
/// publisher for follow-up tasks that carries the correlation id along.
#[derive(Clone, Debug)]
pub struct TaskContext {
    task: &'static str,
    queue: Arc<str>,
    delivery: Arc<Delivery>,
    attempt: u32,
    publisher: Publisher,
    state: Arc<StateMap>,
    reply: ReplySlot,
}

impl TaskContext {
    /// Builds a context (the runtime and the testkit do this).
    pub fn new(
        task: &'static str,
        queue: Arc<str>,
        delivery: Arc<Delivery>,
        attempt: u32,
        publisher: Publisher,
        state: Arc<StateMap>,
    ) -> Self {
        TaskContext {
            task,
            queue,
            delivery,
            attempt,
            publisher,
            state,
            reply: ReplySlot::default(),
        }
    }

    /// The context with the slot where the reply to a call is kept (the
    /// runtime shares one slot between a job's attempts).
    pub fn with_reply_slot(mut self, slot: ReplySlot) -> Self {
        self.reply = slot;
        self
    }

    /// Sets the value a caller of this task receives (see
    /// [`rpc`](crate::rpc)); the `#[task]` macro does it with the
    /// handler's `Ok` value. Sent only if the run succeeds; a successful run
    /// that sets nothing replies `null`. Messages without `reply_to` ignore it.
    ///
    /// # Errors
    ///
    /// A permanent [`TaskError`](crate::TaskError) when `value` cannot be
    /// encoded as JSON.
    pub fn reply<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), crate::TaskError> {
        self.reply.set(value)
    }

    /// The slot [`reply`](TaskContext::reply) fills.
    pub fn reply_slot(&self) -> &ReplySlot {
        &self.reply
    }

    /// The task's name.
    pub fn task_name(&self) -> &'static str {
        self.task
    }

    /// The queue the message came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The message id, if the publisher set one.
    pub fn message_id(&self) -> Option<&str> {
        self.delivery.properties.message_id()
    }

    /// The correlation id, if the publisher set one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.delivery.properties.correlation_id()
    }

    /// This attempt's number, 1 for the first run of the handler on this message.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the broker delivered this message before (to any consumer).
    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }

    /// The message headers.
    pub fn headers(&self) -> &Headers {
        self.delivery.properties.headers()
    }

    /// The raw delivery.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// A publisher that stamps this message's correlation id (or, failing
    /// that, its message id) on what it sends.
    ///
    /// Built when asked for, so handlers that publish nothing pay nothing.
    pub fn publisher(&self) -> Publisher {
        let props = &self.delivery.properties;
        let correlation = props.correlation_id().or(props.message_id()).map(Arc::from);
        self.publisher.with_correlation_id(correlation)
    }

    /// Enqueues a follow-up task, correlated with this one.
    pub async fn enqueue<T: Task>(&self, payload: &T::Payload) -> Result<String, Error> {
        self.publisher()
            .enqueue_with::<T>(payload, EnqueueOptions::default())
            .await
    }

    /// Shared state of type `T`, if the worker was given one.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        self.state.get::<T>().map(State)
    }
}
