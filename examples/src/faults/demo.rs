//! Running the `demo-worker` binary as a child process.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// How to start a demo worker.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The `demo-worker` executable.
    pub bin: PathBuf,
    /// AMQP URL(s), comma-separated.
    pub url: String,
    /// `DEMO_RECORD_FILE`.
    pub record: PathBuf,
    /// `DEMO_RETRY_TIERS`.
    pub tiers: String,
    /// Extra arguments after `run`.
    pub args: Vec<String>,
    /// `DEMO_TICK_EVERY`: `off` (the fault scenarios count `demo.record`
    /// only) or a period for `demo.tick`.
    pub tick_every: String,
    /// Where the children's logs go.
    pub log_dir: PathBuf,
    /// More environment variables for the children (`DEMO_RECORD_TIMEOUT`, ...).
    pub env: Vec<(String, String)>,
}

/// A running demo worker.
#[derive(Debug)]
pub struct DemoProcess {
    child: Child,
}

impl DemoConfig {
    /// `DEMO_RUNS_FILE`: every handler run, beside the record file.
    pub fn runs_file(&self) -> PathBuf {
        self.record.with_extension("runs.tsv")
    }

    /// Starts `demo-worker run` with this configuration; output goes to `log_dir/worker-<n>.log`.
    pub fn spawn(&self, n: usize) -> std::io::Result<DemoProcess> {
        let log = std::fs::File::create(self.log_dir.join(format!("worker-{n}.log")))?;
        let child = Command::new(&self.bin)
            .arg("run")
            .args(&self.args)
            .env("AMQP_URL", &self.url)
            .env("DEMO_RECORD_FILE", &self.record)
            .env("DEMO_RUNS_FILE", self.runs_file())
            .env("DEMO_RETRY_TIERS", &self.tiers)
            .env("DEMO_TICK_EVERY", &self.tick_every)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("FAULTS_RUST_LOG").unwrap_or_else(|_| "warn,worker_core=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        Ok(DemoProcess { child })
    }
}

impl DemoProcess {
    /// SIGKILL: no cleanup at all.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then waits up to `limit` for a clean exit.
    pub async fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The `demo-worker` next to the running executable (tests get it from Cargo).
pub fn sibling_demo_worker() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    for candidate in [dir.join("demo-worker"), dir.join("../demo-worker")] {
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("demo-worker")
}
