use worker_core::{task, TaskError};

struct NotAnError;

#[task(queue = "emails")]
async fn send_email(to: String) -> Result<(), NotAnError> {
    let _ = to;
    Ok(())
}

fn main() {
    let _: Result<(), TaskError> = Ok(());
}
