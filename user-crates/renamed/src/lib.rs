//! `#[task]` with worker-core renamed to `rw` in the manifest.

use rw::{task, TaskContext, TaskError};

/// Answers with the next number.
#[cfg(not(feature = "without-crate-option"))]
#[task(crate = "rw", queue = "renamed.ping")]
pub async fn ping(_ctx: TaskContext, n: u32) -> Result<u32, TaskError> {
    Ok(n + 1)
}

/// The same task without the option: `::worker_core` does not resolve.
#[cfg(feature = "without-crate-option")]
#[task(queue = "renamed.ping")]
pub async fn ping(_ctx: TaskContext, n: u32) -> Result<u32, TaskError> {
    Ok(n + 1)
}

#[cfg(test)]
mod tests {
    use rw::Task;

    #[test]
    fn the_task_is_registered_under_its_queue() {
        assert_eq!(super::Ping::QUEUE, "renamed.ping");
    }
}
