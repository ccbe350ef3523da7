use worker_core::{task, TaskError};

#[task(queue = "a", cron = "0 9 * * *", tz = "Mars/Olympus")]
async fn unknown_zone(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "b", every = "1h", tz = "Europe/Paris")]
async fn zone_without_cron(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {}
