use worker_core::{task, TaskError};

#[task(queue = "counts")]
async fn count(id: u64) -> Option<u64> {
    Some(id)
}

#[task(queue = "nothing")]
async fn nothing(id: u64) {
    let _ = id;
}

#[task(queue = "bare")]
async fn bare(id: u64) -> u64 {
    id
}

fn main() {
    let _: Result<(), TaskError> = Ok(());
}
