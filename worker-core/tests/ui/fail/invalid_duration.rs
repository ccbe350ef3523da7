use worker_core::{task, TaskError};

#[task(queue = "emails", timeout = "5 minutes")]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

#[task(queue = "reports", tiers = ["10s", "1 hour"])]
async fn report() -> Result<(), TaskError> {
    Ok(())
}

fn main() {}
