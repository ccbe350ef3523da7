//! The command line, as clap types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use worker_core::connection::Secret;

/// Parsed command line of a worker binary.
#[derive(Debug, Clone, Parser)]
#[command(
    disable_help_subcommand = true,
    after_help = "Exit codes: 0 ok, 1 other failure, 2 usage or bad input, 3 configuration, \
4 broker unreachable or access refused, 5 topology missing or different.\n\
Logs go to stderr (RUST_LOG or --log-level), results to stdout."
)]
pub struct Cli {
    /// Connection and logging options (allowed before or after the subcommand).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Clone, Default, Args)]
pub struct GlobalArgs {
    /// Broker URL, amqp://user:password@host:5672/vhost or amqps://...; repeat
    /// it or separate with commas to list cluster nodes, tried in order.
    /// Passwords in URLs are never logged. The password is better given by
    /// AMQP_PASSWORD or AMQP_PASSWORD_FILE.
    #[arg(
        long = "url",
        env = "AMQP_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub urls: Vec<String>,

    /// Virtual host, replacing the one in the URLs.
    #[arg(long, env = "AMQP_VHOST", global = true)]
    pub vhost: Option<String>,

    /// User name, replacing the one in the URLs (the password comes from
    /// AMQP_PASSWORD or --password-file).
    #[arg(long, env = "AMQP_USER", global = true)]
    pub user: Option<String>,

    /// File holding the password (a trailing newline is ignored).
    #[arg(long, env = "AMQP_PASSWORD_FILE", value_name = "PATH", global = true)]
    pub password_file: Option<PathBuf>,

    /// CA certificate(s) in PEM to trust for amqps:// URLs, on top of the
    /// system's trust store. Hostnames are always verified.
    #[arg(long, env = "AMQP_TLS_CA_FILE", value_name = "PATH", global = true)]
    pub tls_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS; needs --tls-key-file.
    #[arg(long, env = "AMQP_TLS_CERT_FILE", value_name = "PATH", global = true)]
    pub tls_cert_file: Option<PathBuf>,

    /// Client private key (PEM) for mutual TLS; needs --tls-cert-file.
    #[arg(long, env = "AMQP_TLS_KEY_FILE", value_name = "PATH", global = true)]
    pub tls_key_file: Option<PathBuf>,

    /// Refuse to send the user name and password in clear text: an
    /// `amqp://` URL to a host that is not this machine is a configuration
    /// error (exit 3) instead of a warning.
    #[arg(long, env = "AMQP_REQUIRE_TLS", global = true)]
    pub require_tls: bool,

    /// Log filter, for example `info` or `warn,worker_core=debug`; wins over
    /// RUST_LOG. Default: `warn`, plus worker_core's `info` lines for `run`.
    #[arg(long, value_name = "FILTER", global = true)]
    pub log_level: Option<String>,

    /// The password from `AMQP_PASSWORD` (there is no flag: flags show in
    /// `ps`). [`App::try_parse_from`](super::App::try_parse_from) reads it
    /// with the other variables, unless the app [ignores the
    /// environment](super::App::ignore_env).
    #[arg(skip)]
    pub password: Option<Secret>,

    /// The dashboard's token from `RABBIT_WORKER_DASHBOARD_TOKEN` (no flag,
    /// for the same reason), read like [`password`](Self::password).
    #[arg(skip)]
    pub dashboard_token: Option<Secret>,
}

/// Shows the URLs with their passwords redacted.
impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| worker_core::redact_url(u))
            .collect();
        f.debug_struct("GlobalArgs")
            .field("urls", &urls)
            .field("vhost", &self.vhost)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("require_tls", &self.require_tls)
            .field("log_level", &self.log_level)
            .field("password", &self.password)
            .field("dashboard_token", &self.dashboard_token)
            .finish()
    }
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Consume and handle tasks until SIGINT or SIGTERM, then stop cleanly.
    Run(RunArgs),
    /// Validate a JSON payload against a task's payload type and publish it,
    /// or publish one per line of a file with --from.
    Enqueue(EnqueueArgs),
    /// Inspect, replay or purge parked (dead) messages.
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// Declare or check the queues the tasks need.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Show each task's queue depth, consumers, parked count and delay tiers.
    Status(StatusArgs),
    /// List the registered tasks and their options (no broker needed).
    Tasks,
    /// Serve the web dashboard (and its JSON API) without consuming.
    Dashboard(DashboardArgs),
}

/// `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Consume only this task's queue (repeatable). Tasks sharing that
    /// queue are served too.
    #[arg(long = "task", value_name = "NAME")]
    pub tasks: Vec<String>,

    /// Consume only this queue (repeatable).
    #[arg(long = "queue", value_name = "NAME")]
    pub queues: Vec<String>,

    /// Handlers running at once per queue, replacing each task's own.
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,

    /// Unacked deliveries per queue (1..=65535; quorum queues cap it at 2000),
    /// replacing each task's own.
    #[arg(long, env = "WORKER_PREFETCH", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: Option<u16>,

    /// How long in-flight handlers may run after a stop signal (250ms, 30s, 5m).
    #[arg(long, env = "WORKER_GRACE_PERIOD", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub grace_period: Duration,

    /// Serve /metrics, /healthz and /readyz on this address (`0.0.0.0:9464`,
    /// `127.0.0.1:9464` or `:9464` for every interface).
    #[arg(long, env = "WORKER_HTTP_ADDR", value_name = "ADDR", value_parser = parse_addr)]
    pub http: Option<SocketAddr>,

    /// Do not declare queues at start (they must exist).
    #[arg(long)]
    pub no_declare: bool,

    /// The dashboard served at `/` of --http.
    #[command(flatten)]
    pub dashboard: DashboardOptions,
}

/// `dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Serve the dashboard on this address (`127.0.0.1:9465`; an address
    /// beyond loopback needs RABBIT_WORKER_DASHBOARD_TOKEN or --dashboard-token-file).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub http: SocketAddr,

    /// Access and actions.
    #[command(flatten)]
    pub dashboard: DashboardOptions,
}

/// How the dashboard is reached and what it may do.
#[derive(Debug, Clone, Default, Args)]
pub struct DashboardOptions {
    /// File holding the dashboard's token (a trailing newline is ignored);
    /// or set RABBIT_WORKER_DASHBOARD_TOKEN. Needed on an address beyond loopback.
    #[arg(long, env = "RABBIT_WORKER_DASHBOARD_TOKEN_FILE", value_name = "PATH")]
    pub dashboard_token_file: Option<PathBuf>,

    /// Show parked messages but offer no replay or delete (the API answers 403).
    #[arg(long)]
    pub read_only: bool,
}

/// `enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// The task name.
    pub task: String,
    /// The payload as JSON, or `-` to read it from stdin.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub json: Option<String>,
    /// Publish one message per line of FILE (`-` for stdin), each line a
    /// JSON payload; blank lines are skipped. Lines that are not JSON or do
    /// not match the task's payload type are refused and listed, never
    /// sent; the others are published with confirms, a thousand at a time.
    /// Prints `sent N, confirmed N, refused N`. Exit 2 when a line was
    /// refused, 1 (or 4, 5) when the broker did not confirm them all.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Use this message id instead of a random UUID.
    #[arg(long, value_name = "ID", conflicts_with = "from")]
    pub id: Option<String>,
    /// Set the correlation id.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// The messages' priority (0..=255), for tasks with `priority`: higher
    /// runs first (quorum queues: 5 and above is high).
    #[arg(long, value_name = "N")]
    pub priority: Option<u8>,
}

/// `parked ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ParkedCommand {
    /// List parked messages: id, task, reason, attempts, when, error.
    /// Messages are read and returned to the queue, never removed.
    List(ParkedListArgs),
    /// Show one parked message with every header and its body:
    /// `parked show ID` searches every task's parking queue,
    /// `parked show TASK ID` only that task's.
    Show(ParkedShowArgs),
    /// Move parked messages back to the work queue with a fresh attempt count.
    Replay(ParkedReplayArgs),
    /// Delete parked messages by id or by filter (see `purge` for all).
    Delete(ParkedDeleteArgs),
    /// Delete every parked message of a task's queue.
    Purge(ParkedPurgeArgs),
}

/// Which parked messages: every condition given must hold (the same
/// filter as the dashboard's).
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only messages parked for this reason (`exhausted`, `permanent`, ...).
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Only messages whose error or body contains this text (any case).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only messages parked at or after this time (RFC 3339, or a duration ago: 2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages parked at or before this time (RFC 3339, or a duration ago: 2h).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl FilterArgs {
    /// The filter, or why a time does not parse.
    pub fn filter(&self) -> Result<crate::ops::parked::Filter, String> {
        let now = std::time::SystemTime::now();
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(|t| crate::ops::parked::parse_time(t, now))
                .transpose()
        };
        Ok(crate::ops::parked::Filter {
            reason: self.reason.clone(),
            text: self.grep.clone(),
            since: time(&self.since)?,
            until: time(&self.until)?,
        }
        .normalized())
    }
}

/// `parked list`.
#[derive(Debug, Clone, Args)]
pub struct ParkedListArgs {
    /// The task (or its queue name).
    pub task: String,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many messages, oldest first.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// Pass over this many matching messages first (the next page).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub offset: usize,
    /// Which messages.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `parked show`.
#[derive(Debug, Clone, Args)]
pub struct ParkedShowArgs {
    /// `ID`, or `TASK ID`.
    #[arg(value_name = "TASK_OR_ID", required = true, num_args = 1..=2)]
    pub args: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl ParkedShowArgs {
    /// `(task, id)`.
    pub fn task_and_id(&self) -> (Option<&str>, &str) {
        match self.args.as_slice() {
            [task, id] => (Some(task), id),
            [id] => (None, id),
            _ => unreachable!("clap takes one or two values"),
        }
    }
}

/// `parked replay`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "ids"])))]
pub struct ParkedReplayArgs {
    /// The task (or its queue name).
    pub task: String,
    /// Replay every message parked when the replay starts.
    #[arg(long)]
    pub all: bool,
    /// Replay the message with this id (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
}

/// `parked delete`.
#[derive(Debug, Clone, Args)]
pub struct ParkedDeleteArgs {
    /// The task (or its queue name).
    pub task: String,
    /// Delete the message with this id (repeatable); without ids, every
    /// message the filter lets through.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Which messages, when no id is given (at least one condition).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Confirm: the messages are deleted for good.
    #[arg(long)]
    pub yes: bool,
}

/// `parked purge`.
#[derive(Debug, Clone, Args)]
pub struct ParkedPurgeArgs {
    /// The task (or its queue name).
    pub task: String,
    /// Confirm: the messages are deleted for good.
    #[arg(long)]
    pub yes: bool,
}

/// `topology ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TopologyCommand {
    /// Declare every task's queues, tiers, parking queue and bindings.
    Declare,
    /// Compare the broker's queues with the ones the tasks declare; exit 5
    /// when one is missing or has other arguments. Creates nothing.
    Check(JsonArgs),
}

/// `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also ask this worker process (its `run --http` address,
    /// http://HOST:PORT) where its circuit breakers stand; repeat it or
    /// separate addresses with commas.
    #[arg(long = "worker", value_name = "URL", value_delimiter = ',')]
    pub workers: Vec<String>,
}

/// A `--json` flag alone.
#[derive(Debug, Clone, Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    worker_core::parse_duration(text)
}

/// `host:port`, `[v6]:port` or `:port` (every interface).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    full.parse().map_err(|_| {
        format!("invalid address {text:?}: write host:port, for example 0.0.0.0:9464 or :9464")
    })
}
