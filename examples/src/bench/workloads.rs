//! The workloads users run beyond a no-op drain: I/O-bound handlers, many
//! concurrent enqueuers, and big bodies (the `io`, `enqueue` and `bodies`
//! scenarios).

use std::time::Duration;

use super::child::ChildSpec;
use super::enqueue::EnqueueSpec;
use super::payload::Mode;
use super::report::{Figure, RunRecord};
use super::scenarios::{Bench, Child, Shape};
use super::{BenchError, Side};

/// Simulated I/O per task in the `io` scenario.
pub(crate) const IO_WORK_MS: u64 = 20;

/// Concurrency of both sides in the `io` scenario (and the baseline's prefetch).
pub(crate) const IO_CONCURRENCY: u16 = 200;

/// Formats a body size: `64 KiB`, `1 MiB`, or bytes.
pub(crate) fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

impl Bench<'_> {
    /// Handlers that each await 20 ms of simulated I/O, 200 at a time on
    /// both sides: throughput against the concurrency bound and lapin.
    pub(crate) async fn io(&mut self) -> Result<(), BenchError> {
        let n = self.cfg.io_messages;
        let bound = f64::from(IO_CONCURRENCY) * 1000.0 / IO_WORK_MS as f64;
        let label = format!("io: {n} tasks x {IO_WORK_MS} ms sleep, concurrency {IO_CONCURRENCY}");
        let mut tput = Figure::new(format!("{label}: throughput"), "msg/s", true);
        let mut share = Figure::new(
            format!("{label}: share of the bound {bound:.0} msg/s"),
            "x bound",
            true,
        );
        // tokio's timer rounds a sleep up to whole milliseconds and fires
        // when the runtime's driver next turns, so a 20 ms sleep takes
        // about 21: the bound at the handler time each run measured is
        // what the dispatch itself reaches.
        let mut measured = Figure::new(
            format!("{label}: share of the bound at the measured sleep"),
            "x bound",
            true,
        );
        let mut slept = Figure::new(format!("{label}: measured sleep"), "ms", false);
        let mut cpu = Figure::new(format!("{label}: CPU per message"), "us", false);
        // Concurrency 200 on both sides. The baseline, like a hand-written
        // consumer with a semaphore, prefetches 200; the framework takes
        // its default prefetch for that concurrency (twice as many).
        let shape = Shape {
            work_ms: IO_WORK_MS,
            prefetch: Some(IO_CONCURRENCY),
            default_prefetch: true,
            ..Shape::default()
        };
        for rep in 0..self.cfg.reps {
            for side in Side::in_turn(rep, false) {
                let r = self
                    .consume("io", side, Mode::Clean, n, None, shape)
                    .await?;
                let measured_bound = f64::from(IO_CONCURRENCY) * 1000.0 / r.io_ms.max(1e-9);
                eprintln!(
                    "  io rep {}/{} {side:?}: {:.0} msg/s ({:.2} of the bound; sleeps took {:.2} ms, {:.2} of that bound), {:.1} us CPU/msg",
                    rep + 1,
                    self.cfg.reps,
                    r.rate(),
                    r.rate() / bound,
                    r.io_ms,
                    r.rate() / measured_bound,
                    r.cpu_us_per_msg()
                );
                tput.push(side, r.rate());
                share.push(side, r.rate() / bound);
                measured.push(side, r.rate() / measured_bound);
                slept.push(side, r.io_ms);
                cpu.push(side, r.cpu_us_per_msg());
            }
        }
        self.figures.extend([tput, share, measured, slept, cpu]);
        Ok(())
    }

    /// Many tasks enqueueing through one shared publisher, each awaiting
    /// every confirm, against a pipelined raw lapin publisher; each side
    /// publishes in its own child process.
    pub(crate) async fn enqueue(&mut self) -> Result<(), BenchError> {
        let publishing = EnqueueSpec {
            callers: self.cfg.enqueue_callers,
            per_caller: self.cfg.enqueue_per_caller,
            window: self.cfg.batch,
        };
        let n = publishing.total();
        let label = format!(
            "enqueue {n} from {} tasks x {} (await each confirm)",
            publishing.callers, publishing.per_caller
        );
        let mut tput =
            Figure::new(format!("{label}: throughput"), "msg/s", true).against("lapin pipelined");
        let mut cpu = Figure::new(format!("{label}: publisher CPU per message"), "us", false)
            .against("lapin pipelined");
        for rep in 0..self.cfg.reps {
            for side in Side::in_turn(rep, false) {
                let spec = ChildSpec {
                    enqueue: Some(publishing.clone()),
                    ..self.child_spec(side, Mode::Clean, n, Shape::default())
                };
                let limit = Duration::from_secs(120) + Duration::from_millis(n);
                let r = Child::spawn(&self.exe, &spec)?.finish(limit).await?;
                let queue = spec.queue;
                self.admin
                    .expect_depth(&queue, n)
                    .await
                    .map_err(|e| format!("enqueue, {side:?}: {e}"))?;
                self.admin.purge(&queue).await?;
                self.runs.push(RunRecord {
                    scenario: "enqueue".to_owned(),
                    side,
                    expected: n,
                    resolved: n,
                    handler_runs: 0,
                    parked: 0,
                });
                let rate = n as f64 / r.elapsed_s.max(1e-9);
                let cpu_us = r.cpu_s * 1e6 / n.max(1) as f64;
                eprintln!(
                    "  enqueue rep {}/{} {side:?}: {rate:.0} msg/s, {cpu_us:.1} us CPU/msg",
                    rep + 1,
                    self.cfg.reps
                );
                tput.push(side, rate);
                cpu.push(side, cpu_us);
            }
        }
        self.figures.extend([tput, cpu]);
        Ok(())
    }

    /// Drains of big bodies: throughput and the consumer's peak RSS.
    pub(crate) async fn bodies(&mut self) -> Result<(), BenchError> {
        for (n, bytes) in self.cfg.bodies.clone() {
            let label = format!("drain {n} x {}", size_label(bytes));
            let mut tput = Figure::new(format!("{label}: throughput"), "msg/s", true);
            let mut mib_s = Figure::new(format!("{label}: bytes"), "MiB/s", true);
            let mut rss = Figure::new(format!("{label}: peak RSS"), "MiB", false);
            let mut cpu = Figure::new(format!("{label}: CPU per message"), "us", false);
            let shape = Shape {
                body_bytes: bytes,
                ..Shape::default()
            };
            for rep in 0..self.cfg.reps {
                for side in Side::in_turn(rep, false) {
                    let r = self
                        .consume("bodies", side, Mode::Clean, n, None, shape)
                        .await?;
                    let mib = r.rate() * bytes as f64 / f64::from(1 << 20);
                    let peak = r.peak_rss_kb as f64 / 1024.0;
                    eprintln!(
                        "  bodies {label} rep {}/{} {side:?}: {:.0} msg/s, {mib:.0} MiB/s, peak RSS {peak:.1} MiB, {:.0} us CPU/msg",
                        rep + 1,
                        self.cfg.reps,
                        r.rate(),
                        r.cpu_us_per_msg()
                    );
                    tput.push(side, r.rate());
                    mib_s.push(side, mib);
                    rss.push(side, peak);
                    cpu.push(side, r.cpu_us_per_msg());
                }
            }
            self.figures.extend([tput, mib_s, rss, cpu]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::size_label;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size_label(1 << 20), "1 MiB");
        assert_eq!(size_label(64 << 10), "64 KiB");
        assert_eq!(size_label(1000), "1000 B");
    }
}
