use worker_core::{task, TaskContext, TaskError};

#[task(queue = "emails")]
async fn send_email(ctx: TaskContext, to: String, subject: String) -> Result<(), TaskError> {
    let _ = (ctx, to, subject);
    Ok(())
}

fn main() {}
