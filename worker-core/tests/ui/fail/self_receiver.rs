use worker_core::{task, TaskError};

struct Mailer;

impl Mailer {
    #[task(queue = "emails")]
    async fn send(&self, to: String) -> Result<(), TaskError> {
        let _ = to;
        Ok(())
    }
}

fn main() {}
