use worker_core::{task, TaskError};

#[task(queue = "events", queue_type = "stream")]
async fn on_event(id: u64) -> Result<(), TaskError> {
    let _ = id;
    Ok(())
}

fn main() {}
