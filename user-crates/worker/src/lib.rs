//! Two tasks of a user's worker.
//!
//! `user.greet` appends a line to the file named by `USER_WORKER_LOG`; a
//! greeting with `fail_first` fails its first attempt (retried in
//! process), one without a name fails permanently (parked) until the file
//! named by `USER_WORKER_FIXED` exists, so a replay after the fix succeeds.
//! `user.add` returns a sum to a caller.

use std::io::Write;

use serde::{Deserialize, Serialize};
use worker_core::{task, TaskContext, TaskError};

/// Whom to greet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greeting {
    /// Empty: a permanent failure until the fix is in.
    pub name: String,
    /// Fail the first attempt with a transient error.
    #[serde(default)]
    pub fail_first: bool,
}

/// Greets, by appending `greet<TAB>name<TAB>attempt` to the log file.
#[task(name = "user.greet", queue = "user.greet", in_process = 3, backoff = "10ms..50ms",
       tiers = ["1s"], max_attempts = 3)]
pub async fn greet(ctx: TaskContext, greeting: Greeting) -> Result<(), TaskError> {
    if greeting.fail_first && ctx.attempt() == 1 {
        return Err(TaskError::transient("the first attempt fails"));
    }
    if greeting.name.is_empty() && !fixed() {
        return Err(TaskError::permanent("no name to greet"));
    }
    record(&format!("greet\t{}\t{}", greeting.name, ctx.attempt()))
        .map_err(|e| TaskError::transient(format!("cannot write the log: {e}")))
}

/// Two numbers to add.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sum {
    /// The first.
    pub a: i64,
    /// The second.
    pub b: i64,
}

/// Adds, or fails permanently on overflow.
#[task(name = "user.add", queue = "user.add")]
pub async fn add(_ctx: TaskContext, sum: Sum) -> Result<i64, TaskError> {
    sum.a
        .checked_add(sum.b)
        .ok_or_else(|| TaskError::permanent("the sum overflows"))
}

fn fixed() -> bool {
    std::env::var_os("USER_WORKER_FIXED").is_some_and(|path| std::path::Path::new(&path).exists())
}

fn record(line: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("USER_WORKER_LOG") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}
