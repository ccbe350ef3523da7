use worker_core::{task, TaskError};

#[task(queue = "counts")]
async fn count(id: u64) -> Result<u64, TaskError> {
    Ok(id)
}

#[task(queue = "nothing")]
async fn nothing(id: u64) {
    let _ = id;
}

fn main() {}
