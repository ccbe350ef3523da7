//! The scenarios themselves.

use std::path::PathBuf;
use std::time::Duration;

use worker_core::{ConnectionConfig, Connector};
use worker_operator::ops::{self, parked::ParkedMessage};

use super::account::{Account, Record};
use super::broker::{self, Vhost};
use super::demo::{DemoConfig, DemoProcess};
use crate::tasks::record::RecordJob;

const WORK: &str = "demo.record";
const PARKING: &str = "demo.record.parking";
const QUARANTINE: &str = "demo.record.quarantine";

/// Where scenarios run.
#[derive(Debug)]
pub struct Lab {
    /// The `demo-worker` executable.
    pub demo_bin: PathBuf,
    /// The broker's URL (its vhost part is replaced per scenario).
    pub base_url: String,
    /// A scratch directory for record files and logs, removed on drop unless
    /// a scenario failed.
    pub dir: PathBuf,
    keep: bool,
}

/// One scenario's vhost, worker configuration and published messages.
#[derive(Debug)]
pub struct Run {
    /// Held for its drop, which deletes the vhost.
    _vhost: Option<Vhost>,
    /// How the scenario starts workers.
    pub config: DemoConfig,
    /// Ids of the confirmed messages.
    pub published: Vec<String>,
    connector: Connector,
    tiers: Vec<String>,
    spawned: usize,
}

impl Lab {
    /// A lab for the broker at `AMQP_URL` with the `demo-worker` given.
    pub fn new(demo_bin: PathBuf) -> Lab {
        let dir = std::env::temp_dir().join(format!("faults-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Lab {
            demo_bin,
            base_url: worker_core::connection::default_url(),
            dir,
            keep: false,
        }
    }

    /// Keeps the scratch directory (record files, worker logs) after the
    /// lab is dropped, for a run that failed without panicking.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// Prepares a scenario in a fresh vhost: declares the topology with the
    /// demo worker's own `topology declare`.
    pub async fn prepare(&self, name: &str, tiers: &str, args: &[&str]) -> Result<Run, String> {
        let vhost = Vhost::create(&self.base_url)?;
        self.prepare_at(name, vhost.url(), Some(vhost), tiers, args)
            .await
    }

    /// Prepares a scenario against `url` (a private node or cluster).
    pub async fn prepare_at(
        &self,
        name: &str,
        url: String,
        vhost: Option<Vhost>,
        tiers: &str,
        args: &[&str],
    ) -> Result<Run, String> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let config = DemoConfig {
            bin: self.demo_bin.clone(),
            url: url.clone(),
            record: dir.join("record.tsv"),
            tiers: tiers.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_dir: dir.clone(),
            tick_every: "off".to_owned(),
            env: Vec::new(),
        };
        let status = std::process::Command::new(&config.bin)
            .args(["topology", "declare"])
            .env("AMQP_URL", &url)
            .env("DEMO_RETRY_TIERS", tiers)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", config.bin.display()))?;
        if !status.success() {
            return Err(format!("demo-worker topology declare failed: {status}"));
        }
        let mut inspect = ConnectionConfig::new(url.clone());
        inspect.urls = url.split(',').map(str::to_owned).collect();
        let connector = Connector::new(inspect);
        let tiers = tiers
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| format!("{WORK}.retry.{}", t.trim()))
            .collect();
        Ok(Run {
            _vhost: vhost,
            config,
            published: Vec::new(),
            connector,
            tiers,
            spawned: 0,
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Keep the record files and worker logs when a scenario failed.
        if !self.keep && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Run {
    /// Publishes fixture jobs (confirmed).
    pub async fn publish(&mut self, jobs: &[RecordJob]) -> Result<(), String> {
        let ids = broker::publish_jobs(self.first_url(), jobs).await?;
        self.published.extend(ids);
        Ok(())
    }

    /// Publishes undecodable bodies with the given ids.
    pub async fn publish_raw(&mut self, items: &[(String, Vec<u8>)]) -> Result<(), String> {
        broker::publish_raw(self.first_url(), items).await?;
        self.published
            .extend(items.iter().map(|(id, _)| id.clone()));
        Ok(())
    }

    fn first_url(&self) -> &str {
        self.config
            .url
            .split(',')
            .next()
            .unwrap_or(&self.config.url)
    }

    /// Starts another demo worker.
    pub fn spawn(&mut self) -> Result<DemoProcess, String> {
        self.spawned += 1;
        self.config
            .spawn(self.spawned)
            .map_err(|e| format!("cannot start demo-worker: {e}"))
    }

    /// Workers started so far.
    pub fn spawned(&self) -> usize {
        self.spawned
    }

    /// What the record file says now.
    pub fn record(&self) -> Record {
        Record::read(&self.config.record)
    }

    /// Every handler run so far (successful or not), by id.
    pub fn runs(&self) -> Record {
        Record::read(&self.config.runs_file())
    }

    /// Waits until at least `n` distinct ids were handled.
    pub async fn wait_handled(&self, n: usize, limit: Duration) -> bool {
        broker::wait_for(limit, || async move { self.record().distinct() >= n }).await
    }

    /// Messages in the work queue, quarantine and the tiers, and in parking.
    /// The inspection connection reopens by itself, on any of the scenario's
    /// URLs, after a broker restart or failover.
    pub async fn depths(&self) -> (usize, usize) {
        let mut queued = 0;
        for queue in [WORK, QUARANTINE]
            .into_iter()
            .chain(self.tiers.iter().map(String::as_str))
        {
            queued += self.depth(queue).await;
        }
        (queued, self.depth(PARKING).await)
    }

    /// Each of the task's queues with its ready messages and consumers,
    /// for a report of work that did not settle (`demo.record: 12 ready, 2
    /// consumers; ...`).
    pub async fn describe_queues(&self) -> String {
        let mut parts = Vec::new();
        for queue in [WORK, QUARANTINE, PARKING]
            .into_iter()
            .chain(self.tiers.iter().map(String::as_str))
        {
            parts.push(match ops::queue_depth(&self.connector, queue).await {
                Ok(Some(d)) => format!("{queue}: {} ready, {} consumers", d.messages, d.consumers),
                Ok(None) => format!("{queue}: missing"),
                Err(e) => format!("{queue}: {e}"),
            });
        }
        parts.join("; ")
    }

    async fn depth(&self, queue: &str) -> usize {
        match ops::queue_depth(&self.connector, queue).await {
            Ok(depth) => depth.map_or(0, |d| d.messages as usize),
            Err(_) => usize::MAX / 4,
        }
    }

    /// Publishes `n` plain jobs, starts a worker and waits until a quarter
    /// of them were handled: the moment the scenarios inject their fault.
    pub async fn start_backlog(
        &mut self,
        prefix: &str,
        n: usize,
        sleep_ms: u64,
    ) -> Result<DemoProcess, String> {
        self.publish(&plain_jobs(prefix, n, sleep_ms)).await?;
        let worker = self.spawn()?;
        if !self.wait_handled(n / 4, SETTLE).await {
            return Err("the worker made no progress".into());
        }
        Ok(worker)
    }

    /// Waits until everything settled while `worker` kept running, stops it
    /// with SIGTERM, and returns the account (also printed under `name`) and
    /// the parked messages.
    pub async fn finish(
        &self,
        mut worker: DemoProcess,
        name: &str,
    ) -> Result<(Account, Vec<ParkedMessage>), String> {
        if !self.wait_settled(SETTLE).await {
            return Err(format!(
                "{name}: the backlog did not settle within {SETTLE:?}"
            ));
        }
        if let Some(status) = worker.exited() {
            return Err(format!(
                "{name}: the worker exited ({status}) instead of recovering"
            ));
        }
        worker
            .terminate(Duration::from_secs(30))
            .await
            .ok_or_else(|| format!("{name}: the worker did not stop after SIGTERM"))?;
        let (account, parked) = self.account().await;
        println!("{name}: {account} (workers started: {})", self.spawned);
        Ok((account, parked))
    }

    /// Whether every published message is handled or parked.
    pub async fn settled(&self) -> bool {
        let (queued, parked) = self.depths().await;
        queued == 0 && self.record().distinct() + parked >= self.published.len()
    }

    /// Waits until every published message is handled or parked.
    pub async fn wait_settled(&self, limit: Duration) -> bool {
        broker::wait_for(limit, || self.settled()).await
    }

    /// Keeps a worker running, starting a new one whenever it dies (a
    /// crash loop), until everything settled, `limit` passed or
    /// `max_restarts` were used. Returns whether it settled, the restarts,
    /// and the last worker.
    pub async fn supervise(
        &mut self,
        mut worker: DemoProcess,
        limit: Duration,
        max_restarts: usize,
    ) -> Result<(bool, usize, DemoProcess), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut restarts = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let this = &*self;
            let stopped = broker::wait_for(left, || {
                let dead = worker.exited().is_some();
                async move { dead || this.settled().await }
            })
            .await;
            if this.settled().await {
                return Ok((true, restarts, worker));
            }
            if !stopped || restarts >= max_restarts {
                return Ok((false, restarts, worker));
            }
            restarts += 1;
            worker = self.spawn()?;
        }
    }

    /// Reads parking (without removing anything) and builds the account.
    pub async fn account(&self) -> (Account, Vec<ParkedMessage>) {
        let (queued, _) = self.depths().await;
        let parked = ops::parked::list(
            &self.connector,
            PARKING,
            &ops::parked::Filter::default(),
            ops::parked::Page::first(usize::MAX),
        )
        .await
        .map(|listing| listing.messages)
        .unwrap_or_default();
        let ids: Vec<(String, String)> = parked
            .iter()
            .map(|p| (p.message_id.clone().unwrap_or_default(), p.reason.clone()))
            .collect();
        let account = Account::settle(&self.published, &self.record(), &ids, queued);
        (account, parked)
    }

    /// Closes every worker connection of this scenario's vhost (the broker
    /// side of a network fault): those that carry a connection name, which
    /// the scenario's own inspection connection does not.
    pub fn close_connections(&self, vhost: &str) -> Result<usize, String> {
        let listing = broker::rabbitmqctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "vhost",
            "client_properties",
        ])?;
        let mut closed = 0;
        for line in listing.lines() {
            let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
            if let [pid, v, properties, ..] = cols.as_slice() {
                if *v == vhost
                    && properties.contains("\"connection_name\"")
                    && broker::rabbitmqctl(&["close_connection", pid, "fault test"]).is_ok()
                {
                    closed += 1;
                }
            }
        }
        Ok(closed)
    }

    /// The vhost's name, if the scenario runs in one.
    pub fn vhost(&self) -> Option<&str> {
        self._vhost.as_ref().map(Vhost::name)
    }
}

/// `n` plain jobs named `<prefix>-<i>`.
pub fn plain_jobs(prefix: &str, n: usize, sleep_ms: u64) -> Vec<RecordJob> {
    (0..n)
        .map(|i| RecordJob {
            id: format!("{prefix}-{i}"),
            sleep_ms,
            ..RecordJob::default()
        })
        .collect()
}

/// How long a scenario may take to settle.
pub const SETTLE: Duration = Duration::from_secs(240);

/// `n` scaled by `FAULTS_SCALE` (default 1.0; `0.1` for a quick local run), at least 100.
pub fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("FAULTS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(100)
}
