//! The fleet: a fixed number of demo-worker processes, restarted after
//! each kill or stop, with their peak memory sampled from `/proc`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::faults::{DemoProcess, Run};

/// How long a stopped worker may take to exit (its grace period is shorter).
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// The worker processes of a soak.
#[derive(Debug)]
pub struct Fleet {
    /// Each worker with its number (its log is `worker-<n>.log`).
    workers: Vec<(usize, DemoProcess)>,
    peak_rss_kib: u64,
    /// Workers that exited without being told to, restarted.
    pub unexpected_exits: usize,
    /// SIGTERMs that reached a worker before it installed its handlers
    /// (before it logged `worker starting`, so before it consumed
    /// anything): the signal's default action ended it.
    pub stopped_before_start: usize,
}

impl Fleet {
    /// Starts `n` workers.
    pub fn start(run: &mut Run, n: usize) -> Result<Fleet, String> {
        let mut fleet = Fleet {
            workers: Vec::with_capacity(n),
            peak_rss_kib: 0,
            unexpected_exits: 0,
            stopped_before_start: 0,
        };
        for _ in 0..n {
            let worker = spawn(run)?;
            fleet.workers.push(worker);
        }
        Ok(fleet)
    }

    /// SIGKILLs worker `i` and starts another in its place.
    pub async fn kill(&mut self, run: &mut Run, i: usize) -> Result<(), String> {
        let i = i % self.workers.len();
        self.workers[i].1.kill().await;
        self.workers[i] = spawn(run)?;
        Ok(())
    }

    /// SIGTERMs worker `i`, waits for its clean exit, and starts another.
    pub async fn term(&mut self, run: &mut Run, i: usize) -> Result<(), String> {
        let i = i % self.workers.len();
        let status = self.workers[i].1.terminate(STOP_LIMIT).await;
        let log = run
            .config
            .log_dir
            .join(format!("worker-{}.log", self.workers[i].0));
        self.workers[i] = spawn(run)?;
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) if s.signal() == Some(SIGTERM) && !started(&log) => {
                self.stopped_before_start += 1;
                Ok(())
            }
            Some(s) => Err(format!("a worker stopped with SIGTERM exited with {s}")),
            None => Err(format!(
                "a worker did not exit within {STOP_LIMIT:?} of SIGTERM"
            )),
        }
    }

    /// Samples the workers' resident memory, and restarts any worker that
    /// exited by itself (counted in [`unexpected_exits`](Fleet::unexpected_exits)).
    pub fn check(&mut self, run: &mut Run) -> Result<(), String> {
        for (n, worker) in &mut self.workers {
            if worker.exited().is_some() {
                self.unexpected_exits += 1;
                (*n, *worker) = spawn(run)?;
            } else if let Some(rss) = worker.pid().and_then(rss_kib) {
                self.peak_rss_kib = self.peak_rss_kib.max(rss);
            }
        }
        Ok(())
    }

    /// The highest resident set size seen in any worker, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.peak_rss_kib
    }

    /// Stops every worker with SIGTERM.
    pub async fn stop(mut self) {
        for (_, worker) in &mut self.workers {
            worker.terminate(STOP_LIMIT).await;
        }
    }
}

const SIGTERM: i32 = 15;

fn spawn(run: &mut Run) -> Result<(usize, DemoProcess), String> {
    let worker = run.spawn()?;
    Ok((run.spawned(), worker))
}

/// Whether the worker whose log is `log` got as far as starting (its
/// stop-signal handlers are in by then).
fn started(log: &std::path::Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains("worker starting"))
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_rss() {
        let rss = super::rss_kib(std::process::id()).expect("VmRSS of this process");
        assert!(rss > 0);
    }
}
