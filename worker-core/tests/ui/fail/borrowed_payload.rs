use worker_core::{task, TaskContext, TaskError};

#[task(queue = "emails")]
async fn send_email(ctx: &TaskContext, to: &str) -> Result<(), TaskError> {
    let _ = (ctx, to);
    Ok(())
}

fn main() {}
