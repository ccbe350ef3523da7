//! The fleet: a fixed number of demo-worker processes, restarted after
//! each kill or stop, with their peak memory sampled from `/proc`.

use std::time::Duration;

use crate::faults::{DemoProcess, Run};

/// How long a stopped worker may take to exit (its grace period is shorter).
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// The worker processes of a soak.
#[derive(Debug)]
pub struct Fleet {
    workers: Vec<DemoProcess>,
    peak_rss_kib: u64,
    /// Workers that exited without being told to, restarted.
    pub unexpected_exits: usize,
}

impl Fleet {
    /// Starts `n` workers.
    pub fn start(run: &mut Run, n: usize) -> Result<Fleet, String> {
        let workers = (0..n).map(|_| run.spawn()).collect::<Result<_, _>>()?;
        Ok(Fleet {
            workers,
            peak_rss_kib: 0,
            unexpected_exits: 0,
        })
    }

    /// SIGKILLs worker `i` and starts another in its place.
    pub async fn kill(&mut self, run: &mut Run, i: usize) -> Result<(), String> {
        let i = i % self.workers.len();
        self.workers[i].kill().await;
        self.workers[i] = run.spawn()?;
        Ok(())
    }

    /// SIGTERMs worker `i`, waits for its clean exit, and starts another.
    pub async fn term(&mut self, run: &mut Run, i: usize) -> Result<(), String> {
        let i = i % self.workers.len();
        let status = self.workers[i].terminate(STOP_LIMIT).await;
        self.workers[i] = run.spawn()?;
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("a worker stopped with SIGTERM exited with {s}")),
            None => Err(format!("a worker did not exit within {STOP_LIMIT:?} of SIGTERM")),
        }
    }

    /// Samples the workers' resident memory, and restarts any worker that
    /// exited by itself (counted in [`unexpected_exits`](Fleet::unexpected_exits)).
    pub fn check(&mut self, run: &mut Run) -> Result<(), String> {
        for worker in &mut self.workers {
            if worker.exited().is_some() {
                self.unexpected_exits += 1;
                *worker = run.spawn()?;
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
        for worker in &mut self.workers {
            worker.terminate(STOP_LIMIT).await;
        }
    }
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
