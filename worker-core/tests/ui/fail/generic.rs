use worker_core::{task, TaskError};

#[task(queue = "emails")]
async fn send<T: serde::de::DeserializeOwned>(payload: T) -> Result<(), TaskError> {
    let _ = payload;
    Ok(())
}

fn main() {}
