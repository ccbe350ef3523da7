// All mistakes are reported at once, and the function is still emitted.
use worker_core::{task, TaskError};

#[task(
    queue = "emails",
    retries = "5",
    timeout = "30 s",
    prefetch = 5000,
    colour = "red"
)]
async fn send_email(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

fn main() {
    // Still callable: no "cannot find function" error.
    let _ = send_email(String::new());
}
