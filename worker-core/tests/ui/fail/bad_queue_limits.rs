use worker_core::{task, TaskError};

#[task(queue = "a", max_length = 0)]
async fn empty(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", max_length_bytes = 0)]
async fn no_bytes(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", max_length = -5)]
async fn negative(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
