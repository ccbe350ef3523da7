use worker_core::{task, TaskError};

#[task(queue = "emails", retries = 5, queue = "mail")]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {}
