use worker_core::{task, TaskError};

#[task(queue = "a", queue_type = "classic", tiers = [], max_length = 10, overflow = "reject-publish-dlx")]
async fn unknown(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", queue_type = "classic", overflow = "drop-head")]
async fn unbounded(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", max_length = 10, overflow = "drop-head")]
async fn quorum_drop_head(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "d", queue_type = "classic", max_length = 10)]
async fn classic_retries_into_a_full_queue(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
