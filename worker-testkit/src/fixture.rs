//! A scripted job: a payload that tells its handler how to behave, for
//! tests of retries, parking, panics, timeouts and crashes.
//!
//! The `demo.record` task of the examples and the framework's own
//! integration tests both act on it, so every test speaks the same script.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::TaskError;

/// What the handler should do with this message.
///
/// In order: sleep `sleep_ms`, abort the process if `abort`, panic if
/// `panic`, fail permanently if `permanent`, fail transiently while the
/// attempt number is at most `fail`, and otherwise succeed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScriptedJob {
    /// Identifies the message.
    pub id: String,
    /// Attempts that fail transiently before one succeeds.
    #[serde(default)]
    pub fail: u32,
    /// Fail permanently.
    #[serde(default)]
    pub permanent: bool,
    /// Panic.
    #[serde(default)]
    pub panic: bool,
    /// Sleep before anything else.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Abort the whole process (for crash-loop tests).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
}

impl ScriptedJob {
    /// A job that succeeds at once.
    pub fn ok(id: impl Into<String>) -> ScriptedJob {
        ScriptedJob {
            id: id.into(),
            ..ScriptedJob::default()
        }
    }

    /// Plays the script for `attempt` (1-based): `Ok` means the handler
    /// should finish its work and succeed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use worker_testkit::fixture::ScriptedJob;
    ///
    /// let job = ScriptedJob { fail: 1, ..ScriptedJob::ok("a") };
    /// assert!(job.act(1).await.is_err());
    /// assert!(job.act(2).await.is_ok());
    /// # }
    /// ```
    pub async fn act(&self, attempt: u32) -> Result<(), TaskError> {
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        if self.abort {
            tracing::error!(id = %self.id, "scripted abort of the process");
            std::process::abort();
        }
        if self.panic {
            panic!("scripted panic for {}", self.id);
        }
        if self.permanent {
            return Err(TaskError::permanent(format!(
                "scripted permanent failure for {}",
                self.id
            )));
        }
        if attempt <= self.fail {
            return Err(TaskError::transient(format!(
                "scripted failure {attempt} of {}",
                self.fail
            )));
        }
        Ok(())
    }
}
