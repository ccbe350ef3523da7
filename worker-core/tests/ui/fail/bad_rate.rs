use worker_core::{task, TaskError};

#[task(queue = "a", rate = "0/s")]
async fn never(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", rate = "abc")]
async fn unreadable(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", rate = "10/h")]
async fn hourly(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
