use worker_core::{task, TaskError};

#[task(queue = "a", breaker = "0%/20")]
async fn never_trips(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", breaker = "150%/20")]
async fn over_all(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", breaker = "50%/0")]
async fn empty_window(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "d", breaker = "often")]
async fn unreadable(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "e", breaker_cooldown = "10s")]
async fn cooldown_alone(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "f", breaker = "5 in a row", breaker_cooldown = "0s")]
async fn no_cooldown(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
