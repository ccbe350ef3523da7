use worker_core::{task, TaskError};

#[task(queue = "a", cron = "61 * * * *")]
async fn bad_minute(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", cron = "every day")]
async fn not_cron(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "c", every = "1m", cron = "* * * * *")]
async fn both(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
