use worker_core::{task, TaskError};

#[task(queue = "a", queue_type = "classic", priority = 0)]
async fn none(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", queue_type = "classic", priority = 256)]
async fn too_many(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", priority = "high")]
async fn not_a_number(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
