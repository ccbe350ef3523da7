use worker_core::{task, TaskError};

#[task(queue = "a", message_ttl = "0s")]
async fn at_once(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", message_ttl = "ten minutes")]
async fn unreadable(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", message_ttl = "50d")]
async fn too_long(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
