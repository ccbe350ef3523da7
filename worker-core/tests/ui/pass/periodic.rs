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

#[task(queue = "digests", cron = "0 30 9 * * Mon-Fri", tz = "Europe/Paris")]
async fn digest(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[task(queue = "utc", cron = "*/10 * * * *", missed = "skip")]
async fn in_utc(n: u32) -> Result<(), TaskError> {
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
    assert_eq!(entry.schedule().to_string(), "every=5m");
    assert_eq!(entry.missed_policy(), Missed::Skip);
    assert_eq!(entry.entry_id(), <Cleanup as Task>::NAME);
    assert_eq!(Ping.periodic().unwrap().missed_policy(), Missed::Fire);
    let digest = Digest.periodic().expect("a cron entry");
    assert_eq!(
        digest.schedule().to_string(),
        "cron=\"0 30 9 * * Mon-Fri\" tz=Europe/Paris"
    );
    assert_eq!(InUtc.periodic().unwrap().schedule().to_string(), "cron=\"*/10 * * * *\" tz=UTC");
    assert!(NotPeriodic.periodic().is_none());
}
