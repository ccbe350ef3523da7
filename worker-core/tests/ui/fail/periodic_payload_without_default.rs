use serde::{Deserialize, Serialize};
use worker_core::{task, TaskError};

#[derive(Serialize, Deserialize)]
struct Report {
    region: String,
}

#[task(queue = "reports", every = "1h")]
async fn hourly(report: Report) -> Result<(), TaskError> {
    let _ = report.region;
    Ok(())
}

fn main() {}
