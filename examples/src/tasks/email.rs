//! Sending email through a flaky provider: transient failures are retried.

use serde::{Deserialize, Serialize};
use worker_core::{task, TaskContext, TaskError};

/// An email to send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// The provider fails this many first attempts (a stand-in for a flaky SMTP relay).
    #[serde(default)]
    pub provider_failures: u32,
}

/// Why the provider refused.
#[derive(Debug, thiserror::Error)]
#[error("SMTP relay unavailable (421), attempt {attempt}")]
pub struct RelayUnavailable {
    attempt: u32,
}

/// Sends one email. A missing `@` can never work and is parked at once; a
/// relay failure converts with `?` and is retried: three times in process,
/// then through the 1 s and 10 s delay tiers, six attempts at most.
#[task(
    name = "demo.send_email",
    queue = "demo.emails",
    in_process = 3,
    backoff = "100ms..2s",
    tiers = ["1s", "10s"],
    max_attempts = 6,
    timeout = "30s"
)]
pub async fn send_email(ctx: TaskContext, email: Email) -> Result<(), TaskError> {
    if !email.to.contains('@') {
        return Err(TaskError::permanent(format!(
            "invalid recipient {:?}",
            email.to
        )));
    }
    relay(ctx.attempt(), &email)?;
    tracing::info!(to = %email.to, attempt = ctx.attempt(), "email sent");
    Ok(())
}

fn relay(attempt: u32, email: &Email) -> Result<(), RelayUnavailable> {
    if attempt <= email.provider_failures {
        return Err(RelayUnavailable { attempt });
    }
    Ok(())
}
