//! Tasks whose handler returns a value: where the value waits for the
//! reply (see [`rpc`](crate::rpc) for the call and the reply).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::Serialize;

use super::{Task, TaskError};
use crate::codec;

/// A task whose handler returns a value that a caller can await.
///
/// The `#[task]` macro implements it for every task (with `Output = ()`
/// for a handler returning `Result<(), _>`, whose callers get `()`). A
/// hand-written [`Task`] implements it to be callable, and sets its value
/// with [`TaskContext::reply`](crate::TaskContext::reply).
pub trait Callable: Task {
    /// The handler's `Ok` value, sent to the caller as JSON.
    type Output: Serialize + Send + 'static;
}

/// Where a handler's return value waits for the reply, shared by a job's
/// attempts and the [`TaskContext`](crate::TaskContext) each attempt gets.
///
/// The `#[task]` macro fills it with the handler's `Ok` value; a
/// hand-written [`Task`](crate::Task) calls
/// [`TaskContext::reply`](crate::TaskContext::reply). A run that sets no
/// value replies `null`.
#[derive(Debug, Clone, Default)]
pub struct ReplySlot {
    inner: Arc<Mutex<Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    value: Option<Bytes>,
    failure: Option<String>,
}

impl ReplySlot {
    /// Encodes `value` as JSON and keeps it as the reply.
    ///
    /// # Errors
    ///
    /// A permanent [`TaskError`] when `value` cannot be encoded (a map
    /// with keys that are not strings, for example): the request is parked
    /// with that message, and the caller gets a failure reply.
    pub fn set<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), TaskError> {
        let body = codec::encode_json(value)
            .map_err(|e| TaskError::permanent(format!("cannot encode the reply: {e}")))?;
        self.lock().value = Some(Bytes::from(body));
        Ok(())
    }

    /// Keeps the handler's value of task `T` as the reply ([`set`](ReplySlot::set)
    /// typed by the task, so that an `Output` that is not `Serialize` is
    /// reported once, at the task's return type).
    ///
    /// # Errors
    ///
    /// As [`set`](ReplySlot::set).
    pub fn set_output<T: Callable>(&self, value: &T::Output) -> Result<(), TaskError> {
        self.set(value)
    }

    /// Forgets the value of an earlier attempt.
    pub(crate) fn clear(&self) {
        self.lock().value = None;
    }

    /// The encoded value, if a run set one.
    pub fn value(&self) -> Option<Bytes> {
        self.lock().value.clone()
    }

    /// Keeps the message of the failure that parked the request.
    pub(crate) fn note_failure(&self, message: &str) {
        self.lock().failure = Some(message.to_owned());
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // The slot holds plain data: a panic elsewhere cannot leave it half written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
