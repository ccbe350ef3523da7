use worker_core::{task, TaskError};

#[task(queue = "emails", backoff = "10m..1s")]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {}
