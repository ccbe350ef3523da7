use worker_core::{task, TaskError};

#[task(queue = "a", every = "soon")]
async fn unreadable(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", every = "500ms")]
async fn too_often(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", every = "1500ms")]
async fn between_seconds(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
