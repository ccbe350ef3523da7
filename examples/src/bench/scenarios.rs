//! The parent side of each scenario: prepare the queue, start a consuming
//! child (or publish in process), verify the counts, collect the figures.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;
use worker_core::topology::TaskSpec;
use worker_core::{ConnectionConfig, Connector, Publisher};

use super::broker::{check_queues, expect_ack, Admin};
use super::child::{ChildSpec, FwTask};
use super::payload::{raw_publish, BenchJob, ChildResult, Mode};
use super::report::{Figure, RunRecord};
use super::{procfs, BenchError, Config, Side};

/// A consuming (or publishing) child process.
pub(crate) struct Child {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    what: String,
}

impl Child {
    pub(crate) fn spawn(exe: &Path, spec: &ChildSpec) -> Result<Child, BenchError> {
        let mut child = tokio::process::Command::new(exe)
            .arg("__child")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        let what = format!("{:?} child ({:?})", spec.side, spec.mode);
        // For profiles: which process is which side.
        eprintln!("  {what}: pid {}", child.id().unwrap_or(0));
        Ok(Child {
            child,
            lines: BufReader::new(stdout).lines(),
            what,
        })
    }

    async fn next_line(&mut self, prefix: &str) -> Result<String, BenchError> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
        let status = self.child.wait().await?;
        Err(format!("{} exited ({status}) before printing {prefix}", self.what).into())
    }

    async fn ready(&mut self) -> Result<(), BenchError> {
        tokio::time::timeout(Duration::from_secs(60), self.next_line("READY"))
            .await
            .map_err(|_| format!("{} did not get ready in 60 s", self.what))??;
        Ok(())
    }

    pub(crate) async fn finish(mut self, limit: Duration) -> Result<ChildResult, BenchError> {
        let line = tokio::time::timeout(limit, self.next_line("RESULT"))
            .await
            .map_err(|_| format!("{} did not finish in {limit:?}", self.what))??;
        let status = self.child.wait().await?;
        if !status.success() {
            return Err(format!("{} failed: {status}", self.what).into());
        }
        Ok(serde_json::from_str(&line)?)
    }
}

/// What a consuming run's messages and handler look like.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// About how long each body is (0: the usual ~100 bytes).
    pub(crate) body_bytes: usize,
    /// Simulated I/O per handler run, in milliseconds.
    pub(crate) work_ms: u64,
    /// The prefetch (and framework concurrency), if not the configured one.
    pub(crate) prefetch: Option<u16>,
    /// The framework keeps its default prefetch for that concurrency.
    pub(crate) default_prefetch: bool,
}

/// One run of the benchmark against one broker.
pub(crate) struct Bench<'a> {
    pub(crate) cfg: &'a Config,
    /// The broker of this run.
    pub(crate) url: String,
    pub(crate) admin: Admin,
    pub(crate) slot: usize,
    pub(crate) fw: Arc<TaskSpec>,
    pub(crate) base: Arc<TaskSpec>,
    pub(crate) exe: PathBuf,
    pub(crate) figures: Vec<Figure>,
    pub(crate) runs: Vec<RunRecord>,
}

impl Bench<'_> {
    pub(crate) fn spec(&self, side: Side) -> &TaskSpec {
        match side {
            Side::Framework => &self.fw,
            Side::Lapin | Side::LapinNaive => &self.base,
        }
    }

    /// The spec of a child for `side` handling `n` messages.
    pub(crate) fn child_spec(&self, side: Side, mode: Mode, n: u64, shape: Shape) -> ChildSpec {
        ChildSpec {
            side,
            mode,
            url: self.url.clone(),
            slot: self.slot,
            queue: self.spec(side).queue.to_string(),
            expected: n,
            prefetch: shape.prefetch.unwrap_or(self.cfg.prefetch),
            latency: false,
            threads: self.cfg.threads,
            metrics: self.cfg.metrics,
            work_ms: shape.work_ms,
            enqueue: None,
            default_prefetch: shape.default_prefetch,
        }
    }

    /// Pre-fills (or, for latency, publishes at a fixed rate) `n` messages
    /// of the `shape` (`Shape::default()`: ~100-byte bodies, a no-op
    /// handler, the configured prefetch), lets a child consume them, and checks that every message was
    /// resolved exactly once and that the queues hold what they should.
    pub(crate) async fn consume(
        &mut self,
        scenario: &str,
        side: Side,
        mode: Mode,
        n: u64,
        latency_rate: Option<f64>,
        shape: Shape,
    ) -> Result<ChildResult, BenchError> {
        let queue = self.spec(side).queue.to_string();
        if latency_rate.is_none() {
            self.admin.fill(&queue, n, shape.body_bytes).await?;
        }
        let child_spec = ChildSpec {
            latency: latency_rate.is_some(),
            ..self.child_spec(side, mode, n, shape)
        };
        let mut child = Child::spawn(&self.exe, &child_spec)?;
        if let Some(rate) = latency_rate {
            child.ready().await?;
            let achieved = self.publish_at_rate(&queue, n, rate).await?;
            if achieved < rate * 0.95 {
                eprintln!(
                    "  warning: published at {achieved:.0} msg/s, below the {rate:.0} asked for"
                );
            }
        }
        let limit = Duration::from_secs(120) + Duration::from_millis(n);
        let result = child.finish(limit).await?;
        result
            .check()
            .map_err(|e| format!("{scenario}, {side:?}: {e}"))?;
        check_queues(&self.admin, self.spec(side), mode, n)
            .await
            .map_err(|e| format!("{scenario}, {side:?}: {e}"))?;
        self.runs.push(RunRecord {
            scenario: scenario.to_owned(),
            side,
            expected: result.expected,
            resolved: result.resolved,
            handler_runs: result.runs,
            parked: mode.expected_parked(n),
        });
        Ok(result)
    }

    /// Publishes `n` messages at `rate` per second, stamping each with its
    /// publish time, then waits for every confirm. Returns the rate achieved.
    async fn publish_at_rate(&self, queue: &str, n: u64, rate: f64) -> Result<f64, BenchError> {
        let start = Instant::now();
        let mut confirms = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut sent = 0;
        while sent < n {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(n);
            while sent < due {
                confirms.push(self.admin.send(queue, sent, procfs::now_ns()).await?);
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let achieved = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
        for c in confirms {
            expect_ack(c.await?)?;
        }
        Ok(achieved)
    }

    /// Drain throughput and CPU per message, from the same runs.
    pub(crate) async fn drain(&mut self, rate: bool, cpu: bool) -> Result<(), BenchError> {
        let n = self.cfg.messages;
        let naive = self.cfg.naive;
        let mut tput = Figure::new(format!("drain {n} msgs: throughput"), "msg/s", true);
        let mut cpu_fig = Figure::new("worker CPU per message".to_owned(), "us", false);
        let mut tput_naive = Figure::naive(format!("drain {n} msgs vs naive loop"), "msg/s", true);
        let mut cpu_naive = Figure::naive("CPU per message vs naive loop".to_owned(), "us", false);
        for rep in 0..self.cfg.reps {
            for side in Side::in_turn(rep, naive) {
                let r = self
                    .consume("drain", side, Mode::Clean, n, None, Shape::default())
                    .await?;
                eprintln!(
                    "  drain rep {}/{} {side:?}: {:.0} msg/s, {:.1} us CPU/msg, peak RSS {} KiB",
                    rep + 1,
                    self.cfg.reps,
                    r.rate(),
                    r.cpu_us_per_msg(),
                    r.peak_rss_kb
                );
                match side {
                    Side::Framework => {
                        tput.framework.push(r.rate());
                        cpu_fig.framework.push(r.cpu_us_per_msg());
                        tput_naive.framework.push(r.rate());
                        cpu_naive.framework.push(r.cpu_us_per_msg());
                    }
                    Side::Lapin => {
                        tput.baseline.push(r.rate());
                        cpu_fig.baseline.push(r.cpu_us_per_msg());
                    }
                    Side::LapinNaive => {
                        tput_naive.baseline.push(r.rate());
                        cpu_naive.baseline.push(r.cpu_us_per_msg());
                    }
                }
            }
        }
        if rate {
            self.figures.push(tput);
        }
        if cpu {
            self.figures.push(cpu_fig);
        }
        if naive {
            if rate {
                self.figures.push(tput_naive);
            }
            if cpu {
                self.figures.push(cpu_naive);
            }
        }
        Ok(())
    }

    /// Publish-to-handler-start latency at a fixed rate.
    pub(crate) async fn latency(&mut self) -> Result<(), BenchError> {
        let rate = self.cfg.latency_rate;
        let n = ((rate * self.cfg.latency_secs).round() as u64).max(1);
        let label = format!("latency at {rate:.0} msg/s");
        let mut p50 = Figure::new(format!("{label}: p50"), "ms", false);
        let mut p99 = Figure::new(format!("{label}: p99"), "ms", false);
        let mut max = Figure::new(format!("{label}: max"), "ms", false);
        for rep in 0..self.cfg.reps {
            for side in Side::in_turn(rep, false) {
                let r = self
                    .consume(
                        "latency",
                        side,
                        Mode::Clean,
                        n,
                        Some(rate),
                        Shape::default(),
                    )
                    .await?;
                let l = r.latency.ok_or("latency child reported no latencies")?;
                eprintln!(
                    "  latency rep {}/{} {side:?}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
                    rep + 1,
                    self.cfg.reps,
                    l.p50_us / 1e3,
                    l.p99_us / 1e3,
                    l.max_us / 1e3,
                    l.samples
                );
                p50.push(side, l.p50_us / 1e3);
                p99.push(side, l.p99_us / 1e3);
                max.push(side, l.max_us / 1e3);
            }
        }
        self.figures.extend([p50, p99, max]);
        Ok(())
    }

    /// Peak RSS of the consuming process while it drains backlogs of each size.
    pub(crate) async fn memory(&mut self) -> Result<(), BenchError> {
        for size in self.cfg.memory_sizes.clone() {
            let mut fig = Figure::new(format!("peak RSS draining {size} backlog"), "MiB", false);
            for rep in 0..self.cfg.reps {
                for side in Side::in_turn(rep, false) {
                    let r = self
                        .consume("memory", side, Mode::Clean, size, None, Shape::default())
                        .await?;
                    let mib = r.peak_rss_kb as f64 / 1024.0;
                    eprintln!(
                        "  memory {size} rep {}/{} {side:?}: peak RSS {mib:.1} MiB ({:.0} msg/s)",
                        rep + 1,
                        self.cfg.reps,
                        r.rate()
                    );
                    fig.push(side, mib);
                }
            }
            self.figures.push(fig);
        }
        Ok(())
    }

    /// Throughput when 10% of messages take one delayed redelivery, and
    /// when 1% are parked.
    pub(crate) async fn failure(&mut self) -> Result<(), BenchError> {
        let n = self.cfg.messages;
        for (mode, label) in [
            (Mode::Redeliver, "10% redelivered once via 100ms tier"),
            (Mode::Park, "1% parked (permanent error)"),
        ] {
            let mut fig = Figure::new(format!("{n} msgs, {label}"), "msg/s", true);
            for rep in 0..self.cfg.reps {
                for side in Side::in_turn(rep, false) {
                    let r = self
                        .consume("failure", side, mode, n, None, Shape::default())
                        .await?;
                    eprintln!(
                        "  failure {mode:?} rep {}/{} {side:?}: {:.0} msg/s, {:.1} us CPU/msg",
                        rep + 1,
                        self.cfg.reps,
                        r.rate(),
                        r.cpu_us_per_msg()
                    );
                    fig.push(side, r.rate());
                }
            }
            self.figures.push(fig);
        }
        Ok(())
    }

    /// Publishing with confirms: sequential and batched, framework and raw lapin.
    pub(crate) async fn publish(&mut self) -> Result<(), BenchError> {
        with_slot!(self.slot, S => self.publish_in::<S>().await)
    }

    async fn publish_in<const S: usize>(&mut self) -> Result<(), BenchError> {
        let seq_n = self.cfg.publish_sequential;
        let batch_n = self.cfg.messages;
        let batch = self.cfg.batch.max(1);
        let fw_queue = self.fw.queue.to_string();
        let base_queue = self.base.queue.to_string();

        let publisher = Publisher::new(Connector::new(ConnectionConfig::new(self.url.clone())));
        let conn = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let raw = conn.create_channel().await?;
        raw.confirm_select(ConfirmSelectOptions::default()).await?;

        // Warm up both (opens the framework's confirm channel).
        publisher.enqueue::<FwTask<S>>(&BenchJob::new(0, 0)).await?;
        expect_ack(
            raw_send(&raw, &base_queue, &BenchJob::new(0, 0))
                .await?
                .await?,
        )?;
        self.admin.expect_depth(&fw_queue, 1).await?;
        self.admin.expect_depth(&base_queue, 1).await?;
        self.admin.purge(&fw_queue).await?;
        self.admin.purge(&base_queue).await?;

        let jobs = |n: u64| (0..n).map(|i| BenchJob::new(i, 0)).collect::<Vec<_>>();
        let mut seq_fig = Figure::new(
            format!("publish {seq_n}, one at a time (await each confirm)"),
            "msg/s",
            true,
        );
        let mut batch_fig = Figure::new(
            format!("publish {batch_n} in batches of {batch} (pipelined confirms)"),
            "msg/s",
            true,
        );
        // The comparison: even one-at-a-time enqueue against the
        // fastest raw lapin publisher (pipelined confirms).
        let mut seq_vs_pipelined = Figure::new(
            format!("publish one at a time vs lapin pipelined ({batch} per batch)"),
            "msg/s",
            true,
        )
        .against("lapin pipelined");
        let mut cpu_fig = Figure::new("publisher CPU per message, batched".to_owned(), "us", false);
        for rep in 0..self.cfg.reps {
            // Framework: enqueue, sequential awaits.
            let payloads = jobs(seq_n);
            let (fw_seq, _) = timed(seq_n, async {
                for p in &payloads {
                    publisher.enqueue::<FwTask<S>>(p).await?;
                }
                Ok(())
            })
            .await?;
            self.settle_published(&fw_queue, seq_n).await?;

            // Raw lapin: publish, await its confirm, next.
            let payloads = jobs(seq_n);
            let (base_seq, _) = timed(seq_n, async {
                for p in &payloads {
                    expect_ack(raw_send(&raw, &base_queue, p).await?.await?)?;
                }
                Ok(())
            })
            .await?;
            self.settle_published(&base_queue, seq_n).await?;

            // Framework: enqueue_batch.
            let payloads = jobs(batch_n);
            let (fw_batch, fw_cpu) = timed(batch_n, async {
                for chunk in payloads.chunks(batch) {
                    publisher.enqueue_batch::<FwTask<S>>(chunk).await?;
                }
                Ok(())
            })
            .await?;
            self.settle_published(&fw_queue, batch_n).await?;

            // Raw lapin: publish a batch back to back, then await its confirms.
            let payloads = jobs(batch_n);
            let (base_batch, base_cpu) = timed(batch_n, async {
                for chunk in payloads.chunks(batch) {
                    let mut confirms: Vec<PublisherConfirm> = Vec::with_capacity(chunk.len());
                    for p in chunk {
                        confirms.push(raw_send(&raw, &base_queue, p).await?);
                    }
                    for c in confirms {
                        expect_ack(c.await?)?;
                    }
                }
                Ok(())
            })
            .await?;
            self.settle_published(&base_queue, batch_n).await?;

            eprintln!(
                "  publish rep {}/{}: sequential fw {fw_seq:.0} / lapin {base_seq:.0} msg/s; batched fw {fw_batch:.0} / lapin {base_batch:.0} msg/s, CPU fw {fw_cpu:.1} / lapin {base_cpu:.1} us/msg",
                rep + 1,
                self.cfg.reps
            );
            seq_fig.push(Side::Framework, fw_seq);
            seq_fig.push(Side::Lapin, base_seq);
            batch_fig.push(Side::Framework, fw_batch);
            batch_fig.push(Side::Lapin, base_batch);
            seq_vs_pipelined.push(Side::Framework, fw_seq);
            seq_vs_pipelined.push(Side::Lapin, base_batch);
            cpu_fig.push(Side::Framework, fw_cpu);
            cpu_fig.push(Side::Lapin, base_cpu);
        }
        self.figures
            .extend([seq_fig, batch_fig, seq_vs_pipelined, cpu_fig]);
        if let Some(c) = publisher.connector() {
            c.close().await;
        }
        let _ = conn.close(200, "bench done".into()).await;
        Ok(())
    }

    /// Checks that every confirmed message is in the queue, then empties it.
    async fn settle_published(&mut self, queue: &str, n: u64) -> Result<(), BenchError> {
        self.admin.expect_depth(queue, n).await?;
        self.admin.purge(queue).await?;
        self.runs.push(RunRecord {
            scenario: "publish".to_owned(),
            side: if queue == &*self.fw.queue {
                Side::Framework
            } else {
                Side::Lapin
            },
            expected: n,
            resolved: n,
            handler_runs: 0,
            parked: 0,
        });
        Ok(())
    }
}

/// Runs `work` (which handles `n` messages) and returns messages per second
/// and this process's CPU microseconds per message over it (only the side
/// being measured publishes meanwhile; the resolution is 10 ms of CPU).
async fn timed(
    n: u64,
    work: impl std::future::Future<Output = Result<(), BenchError>>,
) -> Result<(f64, f64), BenchError> {
    let cpu = procfs::cpu_time();
    let t = Instant::now();
    work.await?;
    let elapsed = t.elapsed().as_secs_f64().max(1e-9);
    let cpu = procfs::cpu_time().saturating_sub(cpu).as_secs_f64();
    let n = n.max(1) as f64;
    Ok((n / elapsed, cpu * 1e6 / n))
}

/// Publishes one job the way the framework's publisher does (JSON via
/// serde, a UUID message id, the same properties), returning its confirm.
async fn raw_send(
    ch: &Channel,
    queue: &str,
    job: &BenchJob,
) -> Result<PublisherConfirm, BenchError> {
    raw_publish(ch, queue, &serde_json::to_vec(job)?).await
}
