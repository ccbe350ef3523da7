//! Request/reply in its simplest form: a caller gets back what it sent.

use worker_core::{task, TaskError};

/// Replies with the JSON payload it received: a call of `demo.echo`
/// (from [`Echo::call`], or from any AMQP client that sets `reply_to` and
/// `correlation_id`) returns its own payload.
#[task(name = "demo.echo", queue = "demo.echo")]
pub async fn echo(payload: serde_json::Value) -> Result<serde_json::Value, TaskError> {
    Ok(payload)
}
