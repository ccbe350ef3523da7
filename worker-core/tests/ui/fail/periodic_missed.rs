use worker_core::{task, TaskError};

#[task(queue = "a", every = "1m", missed = "later")]
async fn unknown_policy(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", missed = "skip")]
async fn not_periodic(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
