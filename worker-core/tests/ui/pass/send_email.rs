// The example from the documentation: options, defaults, and the original
// function still callable.
use serde::{Deserialize, Serialize};
use std::time::Duration;
use worker_core::{task, Task, TaskContext, TaskError, TaskOptions};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
}

#[task(queue = "emails", retries = 5, backoff = "1s..10m", timeout = "30s")]
async fn send_email(ctx: TaskContext, email: Email) -> Result<(), TaskError> {
    let _ = (ctx.attempt(), email.to);
    Ok(())
}

#[task]
async fn ping() -> Result<(), TaskError> {
    Ok(())
}

fn main() {
    assert_eq!(SendEmail::NAME, concat!(module_path!(), "::send_email"));
    assert!(SendEmail::NAME.ends_with("::send_email"));
    assert_eq!(SendEmail::QUEUE, "emails");

    let options = SendEmail.options();
    assert_eq!(options.retry.max_attempts, 6);
    assert_eq!(options.retry.backoff.min, Duration::from_secs(1));
    assert_eq!(options.retry.backoff.max, Duration::from_secs(600));
    assert_eq!(options.timeout, Some(Duration::from_secs(30)));
    assert!(SendEmail.required_state().is_empty());

    // No options: name from the module path, queue = name, default options.
    assert_eq!(Ping::NAME, concat!(module_path!(), "::ping"));
    assert_eq!(Ping::QUEUE, Ping::NAME);
    let defaults = TaskOptions::default();
    assert_eq!(Ping.options().retry, defaults.retry);
    let _: <Ping as Task>::Payload = ();

    // The function is left as written.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(ping()).unwrap();
    let _future = send_email;
}
