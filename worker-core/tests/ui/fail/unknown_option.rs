use worker_core::{task, TaskError};

#[task(queue = "emails", retires = 5)]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {}
