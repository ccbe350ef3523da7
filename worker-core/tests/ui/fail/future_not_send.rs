use std::rc::Rc;
use worker_core::{task, TaskError};

async fn tick() {}

#[task(queue = "emails")]
async fn send_email(to: String) -> Result<(), TaskError> {
    let shared = Rc::new(to);
    tick().await;
    let _ = shared;
    Ok(())
}

fn main() {}
