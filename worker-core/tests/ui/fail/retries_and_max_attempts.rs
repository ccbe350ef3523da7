use worker_core::{task, TaskError};

#[task(queue = "emails", retries = 5, max_attempts = 6)]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {}
