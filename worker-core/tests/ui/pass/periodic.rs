use std::time::Duration;

use worker_core::schedule::Missed;
use worker_core::{task, Task, TaskError};

#[task(queue = "reports", every = "5m", missed = "skip")]
async fn cleanup(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "pings", every = "1s")]
async fn ping(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "once")]
async fn not_periodic(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

fn main() {
    let entry = Cleanup.periodic().expect("a periodic entry");
    assert_eq!(entry.period(), Duration::from_secs(300));
    assert_eq!(entry.missed_policy(), Missed::Skip);
    assert_eq!(entry.entry_id(), <Cleanup as Task>::NAME);
    assert_eq!(Ping.periodic().unwrap().missed_policy(), Missed::Fire);
    assert!(NotPeriodic.periodic().is_none());
}
