// The generated code is clean under strict lints in a public API.
#![deny(warnings, missing_docs, unreachable_pub, unused, rust_2018_idioms)]
//! A crate with public tasks.

/// Tasks.
pub mod tasks {
    use worker_core::{task, State, TaskContext, TaskError};

    /// Shared state.
    pub struct Db;

    /// Sends an email.
    #[task(queue = "emails", retries = 2, exchange = "mail", exchange_type = "topic", routing_keys = ["mail.#"])]
    pub async fn send_email(ctx: TaskContext, to: String, db: State<Db>) -> Result<(), TaskError> {
        let _ = (ctx, to, db);
        Ok(())
    }

    /// A private task.
    #[task(queue = "private")]
    async fn private_task() -> Result<(), TaskError> {
        Ok(())
    }

    /// Uses the private task.
    pub fn private_queue() -> &'static str {
        <PrivateTask as worker_core::Task>::QUEUE
    }
}

fn main() {
    use worker_core::Task;
    assert_eq!(tasks::SendEmail::QUEUE, "emails");
    assert_eq!(tasks::private_queue(), "private");
    let _ = tasks::SendEmail::enqueue;
}
