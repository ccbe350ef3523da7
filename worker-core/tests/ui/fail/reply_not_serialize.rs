use worker_core::{task, TaskError};

pub struct Secret {
    pub pin: u32,
}

#[task(queue = "secrets")]
async fn reveal(id: u64) -> Result<Secret, TaskError> {
    Ok(Secret { pin: id as u32 })
}

fn main() {}
