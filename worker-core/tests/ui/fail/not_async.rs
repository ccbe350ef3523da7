use worker_core::{task, TaskError};

#[task(queue = "emails")]
fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {}
