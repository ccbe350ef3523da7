//! A private RabbitMQ node for tests that stop, restart or kill the broker.
//!
//! [`RabbitNode::start`] runs the installed `rabbitmq-server` (Debian's
//! package: `apt-get install rabbitmq-server`) as a node of its own: a name
//! like `tk-1a2b3c4d@localhost`, free AMQP and distribution ports, and a
//! temporary directory holding its configuration (`loopback_users = none`,
//! so `guest` may connect), data, logs, pid file and the `HOME` (Erlang
//! cookie) that both the server and `rabbitmqctl` use. It does not touch the
//! system's `rabbit@<host>` node.
//!
//! The node is ready when `rabbitmqctl await_startup` succeeds (retried
//! every half second; it fails until the node registered) and an AMQP
//! connection opens. [`stop`](RabbitNode::stop) stops it politely,
//! [`start_again`](RabbitNode::start_again) boots it on the same data
//! directory (durable queues and persistent messages survive), and
//! [`kill`](RabbitNode::kill) sends SIGKILL to the Erlang VM to simulate a
//! crash. Dropping the node stops it, then removes its directory (a node
//! whose directory was deleted would keep running).
//!
//! [`RabbitNode::builder`] adds to the defaults: more `rabbitmq.conf`
//! lines, enabled plugins, files (certificates) in the node's directory.
//!
//! Starting a node takes a few seconds: start one per test binary, not one
//! per test.
//!
//! Which `rabbitmq-server` runs: the machine's own, or, when
//! `RABBITMQ_SERVER_ROOT` names another root directory (a chroot holding
//! another RabbitMQ version, as `scripts/test-on-each-broker` sets for the
//! 4.0 run), the one in that root, run with `chroot`. The node's directory
//! then lives in the root's `/tmp`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), worker_testkit::node::NodeError> {
//! use worker_testkit::node::RabbitNode;
//!
//! let mut node = RabbitNode::start().await?;
//! let url = node.url(); // amqp://guest:guest@127.0.0.1:<port>/%2f
//! node.stop().await?;
//! node.start_again().await?;
//! # let _ = url;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

/// Where Debian's package installs the server scripts.
const BIN_DIR: &str = "/usr/lib/rabbitmq/bin";

/// How long a node may take to boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `rabbitmqctl stop` may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the CLI of the broker under test, `rabbitmqctl ARGS`; its output,
/// or what went wrong.
///
/// The command is `RABBITMQCTL` (split at whitespace), which
/// `scripts/test-on-each-broker` sets for each broker version, or plain
/// `rabbitmqctl` (as root, Debian's wrapper reaches the machine's node).
///
/// # Errors
///
/// When the command cannot run or exits unsuccessfully (the message holds
/// its error output).
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let line = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
    let mut words = line.split_whitespace();
    let program = words.next().unwrap_or("rabbitmqctl");
    let out = Command::new(program)
        .args(words)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {line} ({e}); install rabbitmq-server"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{line} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where the `rabbitmq-server` under test is installed.
#[derive(Debug, Clone)]
struct Install {
    /// `None` for the machine's own install, else the root to `chroot` into.
    root: Option<PathBuf>,
}

impl Install {
    fn from_env() -> Install {
        let root = std::env::var_os("RABBITMQ_SERVER_ROOT")
            .map(PathBuf::from)
            .filter(|r| !r.as_os_str().is_empty() && r != Path::new("/"));
        Install { root }
    }

    /// Where private nodes' directories go.
    fn scratch_dir(&self) -> PathBuf {
        match &self.root {
            Some(root) => root.join("tmp"),
            None => std::env::temp_dir(),
        }
    }

    /// The host path `host` as the server sees it.
    fn inside(&self, host: &Path) -> PathBuf {
        match &self.root {
            Some(root) => Path::new("/").join(host.strip_prefix(root).unwrap_or(host)),
            None => host.to_path_buf(),
        }
    }

    /// The server script `program` on the host.
    fn script(&self, program: &str) -> PathBuf {
        let path = Path::new(BIN_DIR).join(program);
        match &self.root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(&path)),
            None => path,
        }
    }

    /// A command running the server script `program`.
    fn command(&self, program: &str) -> Command {
        match &self.root {
            Some(root) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(root).arg(Path::new(BIN_DIR).join(program));
                cmd
            }
            None => Command::new(Path::new(BIN_DIR).join(program)),
        }
    }
}

/// A private node could not be started, stopped or reached.
#[derive(Debug, Clone)]
pub struct NodeError {
    message: String,
}

impl NodeError {
    fn new(message: impl Into<String>) -> NodeError {
        NodeError {
            message: message.into(),
        }
    }

    /// Whether the cause is that `rabbitmq-server` is not installed.
    pub fn is_not_installed(&self) -> bool {
        self.message.contains("apt-get install rabbitmq-server")
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

/// A RabbitMQ node of its own, in a temporary directory, on free ports.
#[derive(Debug)]
pub struct RabbitNode {
    install: Install,
    dir: PathBuf,
    home: PathBuf,
    name: String,
    amqp_port: u16,
    dist_port: u16,
    running: bool,
}

fn free_port() -> Result<u16, NodeError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| NodeError::new(format!("no free port: {e}")))
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A distribution port whose CLI ports (port + 10000 ..= port + 10010) are free too.
fn free_dist_port() -> Result<u16, NodeError> {
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port: u16 = rng.random_range(20_000..=45_000);
        if port_free(port) && (10_000..=10_010).all(|k| port_free(port + k)) {
            return Ok(port);
        }
    }
    Err(NodeError::new(
        "no free distribution port (with 11 free CLI ports 10000 above it)",
    ))
}

/// What a private node starts with besides the defaults (its AMQP
/// listener and `loopback_users = none`): more `rabbitmq.conf` lines,
/// plugins to enable, and files to put in its directory before it boots
/// (certificates, say). From [`RabbitNode::builder`].
///
/// In a configuration line, `{dir}` stands for the node's directory as the
/// server sees it: under a `RABBITMQ_SERVER_ROOT` chroot that is the path
/// inside the root, not the host's ([`RabbitNode::dir`] is the host's).
///
/// ```no_run
/// # async fn demo() -> Result<(), worker_testkit::node::NodeError> {
/// use worker_testkit::node::RabbitNode;
///
/// let node = RabbitNode::builder()
///     .file("ca.pem", std::fs::read("ca.pem").unwrap())
///     .config("ssl_options.cacertfile = {dir}/ca.pem")
///     .plugin("rabbitmq_auth_mechanism_ssl")
///     .start()
///     .await?;
/// # let _ = node; Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RabbitNodeBuilder {
    config: Vec<String>,
    plugins: Vec<String>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl RabbitNodeBuilder {
    /// Adds a line to `rabbitmq.conf` (`{dir}`: the node's directory as the
    /// server sees it).
    #[must_use]
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.config.push(line.into());
        self
    }

    /// Enables plugin `name` (as `rabbitmq_auth_mechanism_ssl`).
    #[must_use]
    pub fn plugin(mut self, name: impl Into<String>) -> Self {
        self.plugins.push(name.into());
        self
    }

    /// Writes `contents` to `name` (a path relative to the node's
    /// directory) before the node boots.
    #[must_use]
    pub fn file(mut self, name: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Creates the node's directory, with the additions, and boots it.
    ///
    /// # Errors
    ///
    /// As [`RabbitNode::start`], or when a file cannot be written.
    pub async fn start(&self) -> Result<RabbitNode, NodeError> {
        RabbitNode::start_with_home(None, self).await
    }
}

impl RabbitNode {
    /// Creates the node's directory and boots it.
    ///
    /// # Errors
    ///
    /// If `rabbitmq-server` is not installed (the message says to
    /// `apt-get install rabbitmq-server`), or the node does not come up (the
    /// message ends with the tail of its log).
    pub async fn start() -> Result<RabbitNode, NodeError> {
        RabbitNode::start_with_home(None, &RabbitNodeBuilder::default()).await
    }

    /// A node with more than the defaults: extra `rabbitmq.conf` lines,
    /// enabled plugins, files in its directory (see [`RabbitNodeBuilder`]).
    pub fn builder() -> RabbitNodeBuilder {
        RabbitNodeBuilder::default()
    }

    /// Like [`start`](RabbitNode::start), with `HOME` (and so the Erlang
    /// cookie) in `home` when given: nodes that share it can form a cluster.
    async fn start_with_home(
        home: Option<PathBuf>,
        extra: &RabbitNodeBuilder,
    ) -> Result<RabbitNode, NodeError> {
        let install = Install::from_env();
        let server = install.script("rabbitmq-server");
        if !server.exists() {
            return Err(NodeError::new(format!(
                "rabbitmq-server is not installed ({} is missing); install it with `apt-get install rabbitmq-server`",
                server.display()
            )));
        }
        let id = format!("{:08x}", rand::rng().random::<u32>());
        let dir = install.scratch_dir().join(format!("tk-rabbit-{id}"));
        let amqp_port = free_port()?;
        let dist_port = free_dist_port()?;
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                NodeError::new(format!("cannot create {}: {e}", dir.join(sub).display()))
            })?;
        }
        let write = |name: &Path, text: &[u8]| {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    NodeError::new(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            std::fs::write(&path, text)
                .map_err(|e| NodeError::new(format!("cannot write {}: {e}", path.display())))
        };
        for (name, contents) in &extra.files {
            if !name
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(NodeError::new(format!(
                    "{} is not a path inside the node's directory",
                    name.display()
                )));
            }
            write(name, contents)?;
        }
        let mut config = format!("listeners.tcp.default = {amqp_port}\nloopback_users = none\n");
        let seen = install.inside(&dir);
        for line in &extra.config {
            config.push_str(&line.replace("{dir}", &seen.to_string_lossy()));
            config.push('\n');
        }
        write(Path::new("rabbitmq.conf"), config.as_bytes())?;
        let plugins = format!("[{}].\n", extra.plugins.join(","));
        write(Path::new("enabled_plugins"), plugins.as_bytes())?;
        let home = home.unwrap_or_else(|| dir.join("home"));
        std::fs::create_dir_all(&home)
            .map_err(|e| NodeError::new(format!("cannot create {}: {e}", home.display())))?;
        ensure_cookie(&home)?;
        let mut node = RabbitNode {
            install,
            dir,
            home,
            name: format!("tk-{id}@localhost"),
            amqp_port,
            dist_port,
            running: false,
        };
        node.boot().await?;
        Ok(node)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The node name, `tk-<random>@localhost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP port.
    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// The Erlang distribution port.
    pub fn dist_port(&self) -> u16 {
        self.dist_port
    }

    /// The node's directory (config, data, logs, pid file, `HOME`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the node was started and not stopped or killed since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn env(&self, cmd: &mut Command) {
        let d = &self.install.inside(&self.dir);
        cmd.env("HOME", self.install.inside(&self.home))
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .stdin(Stdio::null());
    }

    /// A `rabbitmqctl -n <node>` command with the node's `HOME` (so it
    /// shares the node's Erlang cookie); add the arguments and run it.
    pub fn rabbitmqctl(&self) -> Command {
        let mut cmd = self.install.command("rabbitmqctl");
        self.env(&mut cmd);
        cmd.arg("-n").arg(&self.name);
        cmd
    }

    /// A `rabbitmq-diagnostics -n <node>` command, as
    /// [`rabbitmqctl`](RabbitNode::rabbitmqctl).
    pub fn rabbitmq_diagnostics(&self) -> Command {
        let mut cmd = self.install.command("rabbitmq-diagnostics");
        self.env(&mut cmd);
        cmd.arg("-n").arg(&self.name);
        cmd
    }

    async fn run(cmd: Command) -> Result<std::process::Output, NodeError> {
        let what = format!("{cmd:?}");
        tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| NodeError::new(format!("cannot run {what}: {e}")))
    }

    fn log_tail(&self) -> String {
        let path = self.dir.join("log").join(format!("{}.log", self.name));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(30);
                format!(
                    "\nlast lines of {}:\n{}",
                    path.display(),
                    lines[from..].join("\n")
                )
            }
            Err(_) => format!("\n(no log at {})", path.display()),
        }
    }

    async fn boot(&mut self) -> Result<(), NodeError> {
        let mut server = self.install.command("rabbitmq-server");
        self.env(&mut server);
        server.arg("-detached");
        let out = Self::run(server).await?;
        if !out.status.success() {
            return Err(NodeError::new(format!(
                "rabbitmq-server -detached failed for {}: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            )));
        }
        self.running = true;
        let started = Instant::now();
        // Fails (exit 69) until the node registered; retry every half second.
        loop {
            let mut ctl = self.rabbitmqctl();
            ctl.args(["await_startup", "--timeout", "30"]);
            let out = Self::run(ctl).await?;
            if out.status.success() {
                break;
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(NodeError::new(format!(
                    "node {} did not start within {BOOT_TIMEOUT:?}: {}{}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let url = self.url();
        loop {
            let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close(200, "ready".into()).await;
                    return Ok(());
                }
                other => {
                    if started.elapsed() > BOOT_TIMEOUT {
                        return Err(NodeError::new(format!(
                            "node {} started but AMQP on port {} does not answer: {:?}{}",
                            self.name,
                            self.amqp_port,
                            other.map(|r| r.map(|_| ())),
                            self.log_tail()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Stops the node politely (`rabbitmqctl stop`) and waits until its
    /// process is gone. Stopping a stopped node does nothing.
    ///
    /// # Errors
    ///
    /// If `rabbitmqctl stop` fails.
    pub async fn stop(&mut self) -> Result<(), NodeError> {
        if !self.running {
            return Ok(());
        }
        let ctl = self.stop_command();
        let out = tokio::time::timeout(STOP_TIMEOUT, Self::run(ctl))
            .await
            .map_err(|_| {
                NodeError::new(format!(
                    "rabbitmqctl stop did not return within {STOP_TIMEOUT:?} for {}",
                    self.name
                ))
            })??;
        if !out.status.success() {
            return Err(NodeError::new(format!(
                "rabbitmqctl stop failed for {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.wait_gone(Duration::from_secs(30)).await;
        self.running = false;
        Ok(())
    }

    /// Boots the node again on the same data directory and ports.
    ///
    /// # Errors
    ///
    /// As [`start`](RabbitNode::start).
    pub async fn start_again(&mut self) -> Result<(), NodeError> {
        if self.running {
            return Ok(());
        }
        self.boot().await
    }

    /// Kills the Erlang VM with SIGKILL (a crash: no clean shutdown), using
    /// the pid in the node's pid file, and waits until it is gone.
    ///
    /// # Errors
    ///
    /// If the pid file cannot be read or `kill` fails.
    pub async fn kill(&mut self) -> Result<(), NodeError> {
        if !self.running {
            return Ok(());
        }
        let pid = self.pid()?;
        let mut kill = Command::new("kill");
        kill.args(["-KILL", &pid.to_string()]);
        let out = Self::run(kill).await?;
        if !out.status.success() {
            return Err(NodeError::new(format!(
                "kill -KILL {pid} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.wait_gone(Duration::from_secs(10)).await;
        self.running = false;
        Ok(())
    }

    /// `rabbitmqctl stop`, with the pid file when there is one (then it
    /// also waits for the VM to exit; given a pid file that does not exist,
    /// as when the node never came up, it would wait for it forever).
    fn stop_command(&self) -> Command {
        let mut ctl = self.rabbitmqctl();
        ctl.arg("stop");
        let pid_file = self.dir.join("pid");
        if pid_file.exists() {
            ctl.arg(self.install.inside(&pid_file));
        }
        ctl
    }

    /// The Erlang VM's pid, from the pid file.
    ///
    /// # Errors
    ///
    /// If the pid file is missing or garbled.
    pub fn pid(&self) -> Result<u32, NodeError> {
        let path = self.dir.join("pid");
        std::fs::read_to_string(&path)
            .map_err(|e| NodeError::new(format!("cannot read {}: {e}", path.display())))?
            .trim()
            .parse()
            .map_err(|e| NodeError::new(format!("bad pid in {}: {e}", path.display())))
    }

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
    }

    async fn wait_gone(&self, limit: Duration) {
        let Ok(pid) = self.pid() else {
            return;
        };
        let deadline = Instant::now() + limit;
        while Self::alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if self.running {
            // Stop before removing the directory: a node whose directory
            // was deleted keeps running.
            let pid = self.pid().ok();
            let mut ctl = self.stop_command();
            ctl.stdout(Stdio::null()).stderr(Stdio::null());
            let stopped = status_within(ctl, STOP_TIMEOUT);
            if let Some(pid) = pid {
                if !stopped || Self::alive(pid) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while Self::alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` and says whether it succeeded within `limit` (killed if not).
fn status_within(mut cmd: Command, limit: Duration) -> bool {
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Writes a fresh Erlang cookie into `home`, readable by its owner only,
/// unless one is there. Done before any Erlang VM runs with that `HOME`:
/// otherwise the node and the CLI started beside it both create it, and one
/// can read it between the other's write and its `chmod`, then refuse it
/// ("must be accessible by owner only") and exit.
fn ensure_cookie(home: &Path) -> Result<(), NodeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = home.join(".erlang.cookie");
    let cookie: String = (0..20)
        .map(|_| char::from(b'A' + rand::rng().random_range(0..26u8)))
        .collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
    {
        Ok(mut file) => file
            .write_all(cookie.as_bytes())
            .map_err(|e| NodeError::new(format!("cannot write {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(NodeError::new(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Several private nodes joined into one RabbitMQ cluster on this machine.
///
/// The nodes share one `HOME`, so one Erlang cookie; nodes 2.. join the
/// first with `stop_app`, `join_cluster`, `start_app`. Quorum queues declared
/// afterwards get a member on every node.
///
/// ```no_run
/// # async fn demo() -> Result<(), worker_testkit::node::NodeError> {
/// use worker_testkit::node::RabbitCluster;
///
/// let mut cluster = RabbitCluster::start(3).await?;
/// let urls = cluster.urls(); // one URL per node, comma-separated
/// if let Some(leader) = cluster.queue_leader("orders").await? {
///     cluster.node_mut(leader).stop().await?;
/// }
/// # let _ = urls; Ok(()) }
/// ```
#[derive(Debug)]
pub struct RabbitCluster {
    nodes: Vec<RabbitNode>,
    home: PathBuf,
}

impl RabbitCluster {
    /// Starts `size` nodes and joins them into one cluster.
    ///
    /// # Errors
    ///
    /// As [`RabbitNode::start`], or when a node cannot join.
    pub async fn start(size: usize) -> Result<RabbitCluster, NodeError> {
        let id = format!("{:08x}", rand::rng().random::<u32>());
        let home = Install::from_env()
            .scratch_dir()
            .join(format!("tk-cluster-{id}"));
        let mut cluster = RabbitCluster {
            nodes: Vec::new(),
            home: home.clone(),
        };
        for _ in 0..size.max(1) {
            cluster.nodes.push(
                RabbitNode::start_with_home(Some(home.clone()), &RabbitNodeBuilder::default())
                    .await?,
            );
        }
        let first = cluster.nodes[0].name().to_owned();
        for node in &cluster.nodes[1..] {
            for args in [
                vec!["stop_app"],
                vec!["join_cluster", &first],
                vec!["start_app"],
            ] {
                let mut ctl = node.rabbitmqctl();
                ctl.args(&args);
                let out = RabbitNode::run(ctl).await?;
                if !out.status.success() {
                    return Err(NodeError::new(format!(
                        "rabbitmqctl {} on {} failed: {}",
                        args.join(" "),
                        node.name(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
        }
        Ok(cluster)
    }

    /// The nodes' URLs, comma-separated, in node order (what `AMQP_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RabbitNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &RabbitNode {
        &self.nodes[i]
    }

    /// Node `i`, to stop, start or kill.
    pub fn node_mut(&mut self, i: usize) -> &mut RabbitNode {
        &mut self.nodes[i]
    }

    /// The index of the node holding the leader of quorum queue `queue` in
    /// the default vhost, asked of any running node; `None` if unknown.
    ///
    /// # Errors
    ///
    /// When no running node answers.
    pub async fn queue_leader(&self, queue: &str) -> Result<Option<usize>, NodeError> {
        let Some(asked) = self.nodes.iter().find(|n| n.is_running()) else {
            return Err(NodeError::new("no node of the cluster is running"));
        };
        let mut ctl = asked.rabbitmqctl();
        ctl.args(["list_queues", "-q", "--no-table-headers", "name", "leader"]);
        let out = RabbitNode::run(ctl).await?;
        if !out.status.success() {
            return Err(NodeError::new(format!(
                "list_queues on {} failed: {}",
                asked.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let leader = listing.lines().find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next() == Some(queue)).then(|| cols.next().map(str::to_owned))?
        });
        Ok(leader.and_then(|name| self.nodes.iter().position(|n| n.name() == name)))
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // Nodes first (each stops and removes its own directory), then the shared HOME.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tk-node-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_cookie_is_made_owner_only_before_any_vm_runs_and_kept_after() {
        let home = scratch("cookie");
        ensure_cookie(&home).unwrap();
        let path = home.join(".erlang.cookie");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "Erlang refuses a cookie others can read");
        let cookie = std::fs::read_to_string(&path).unwrap();
        assert_eq!(cookie.len(), 20);
        assert!(cookie.bytes().all(|b| b.is_ascii_uppercase()), "{cookie}");
        ensure_cookie(&home).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            cookie,
            "a cluster's nodes share the first node's cookie"
        );
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn stopping_a_node_that_never_wrote_its_pid_file_does_not_wait_for_it() {
        let dir = scratch("stop");
        let node = RabbitNode {
            install: Install { root: None },
            dir: dir.clone(),
            home: dir.join("home"),
            name: "tk-test@localhost".into(),
            amqp_port: 1,
            dist_port: 2,
            running: false,
        };
        let args = |cmd: Command| -> Vec<String> {
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            args(node.stop_command()),
            ["-n", "tk-test@localhost", "stop"]
        );
        std::fs::write(dir.join("pid"), "42").unwrap();
        let pid_file = dir.join("pid").to_string_lossy().into_owned();
        assert_eq!(
            args(node.stop_command()),
            ["-n", "tk-test@localhost", "stop", pid_file.as_str()]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_command_that_outlives_its_limit_is_killed() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let started = Instant::now();
        assert!(!status_within(sleep, Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(status_within(Command::new("true"), Duration::from_secs(10)));
    }
}
