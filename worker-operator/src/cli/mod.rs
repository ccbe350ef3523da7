//! A command line for your worker binary.
//!
//! Hand your tasks to [`App`] in `main` and the binary gets the operations
//! side for free: consume, enqueue, inspect and replay parked messages,
//! declare and check topology, show queue depths, export metrics and probes.
//!
//! ```no_run
//! use worker_core::{Task, TaskContext, TaskError};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct Email { to: String }
//! struct SendEmail;
//! impl Task for SendEmail {
//!     type Payload = Email;
//!     const NAME: &'static str = "send_email";
//!     const QUEUE: &'static str = "emails";
//!     async fn run(&self, _: TaskContext, _: Email) -> Result<(), TaskError> { Ok(()) }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     worker_operator::cli::App::new("demo-worker")
//!         .register(SendEmail)
//!         .run()
//! }
//! ```
//!
//! Then:
//!
//! ```text
//! demo-worker run --concurrency 8 --http :9464
//! demo-worker enqueue send_email '{"to":"a@example.com"}'
//! demo-worker enqueue send_email --from emails.ndjson   # one payload a line
//! demo-worker parked list send_email
//! demo-worker parked show 6f1c...          # every task's parking queue
//! demo-worker parked replay send_email --all
//! demo-worker parked purge send_email --yes
//! demo-worker topology check               # exit 5 when a queue differs
//! demo-worker status --json
//! demo-worker dashboard --http 127.0.0.1:9465  # the web dashboard, without consuming
//! ```
//!
//! # Configuration
//!
//! | flag | environment | meaning |
//! | --- | --- | --- |
//! | `--url` (repeatable) | `AMQP_URL` (comma-separated) | broker URLs, tried in order; default `amqp://guest:guest@127.0.0.1:5672/%2f` |
//! | `--vhost` | `AMQP_VHOST` | replaces the URLs' vhost |
//! | `--user` | `AMQP_USER` | replaces the URLs' user |
//! | | `AMQP_PASSWORD` | replaces the URLs' password (no flag: flags show in `ps`) |
//! | `--password-file` | `AMQP_PASSWORD_FILE` | the password, read from a file |
//! | `--tls-ca-file` | `AMQP_TLS_CA_FILE` | CA certificates (PEM) for `amqps://` |
//! | `--tls-cert-file`, `--tls-key-file` | `AMQP_TLS_CERT_FILE`, `AMQP_TLS_KEY_FILE` | client certificate and key (PEM) |
//! | `--require-tls` | `AMQP_REQUIRE_TLS` | refuse `amqp://` to a host that is not this machine (credentials in clear text) instead of warning |
//! | `run --concurrency` | `WORKER_CONCURRENCY` | handlers at once per queue |
//! | `run --prefetch` | `WORKER_PREFETCH` | unacked deliveries per queue |
//! | `run --grace-period` | `WORKER_GRACE_PERIOD` | time for in-flight work at stop (default `30s`) |
//! | `run --http` | `WORKER_HTTP_ADDR` | address of the [dashboard](crate::dashboard), `/metrics`, `/healthz`, `/readyz` |
//! | | `RABBIT_WORKER_DASHBOARD_TOKEN` | the dashboard's token, needed beyond loopback (no flag: flags show in `ps`) |
//! | `--dashboard-token-file` | `RABBIT_WORKER_DASHBOARD_TOKEN_FILE` | the dashboard's token, read from a file |
//! | `--read-only` | | the dashboard offers no replay or delete |
//! | `--log-level` | `RUST_LOG` | log filter; the flag wins |
//!
//! Passwords never appear in logs or errors: every URL shown goes through
//! [`redact_url`](worker_core::redact_url). Connecting as `guest` to a host that
//! is not this machine logs a warning (RabbitMQ only admits `guest` over
//! loopback).
//!
//! # Exit codes
//!
//! See [`exit`]: 0 ok, 1 other failure, 2 usage or bad input, 3
//! configuration, 4 broker unreachable or access refused, 5 topology
//! missing or different.
//!
//! # Progress
//!
//! `parked replay`, `parked purge` and `enqueue --from` show a progress bar
//! (or a spinner) on stderr when stderr is a terminal, and nothing else
//! when it is not: piped output stays exactly the result.

mod args;
mod commands;
mod enqueue_file;
pub mod exit;
mod logging;
mod progress;

pub use args::{
    Cli, Command, DashboardArgs, DashboardOptions, EnqueueArgs, FilterArgs, GlobalArgs, JsonArgs,
    ParkedCommand, ParkedDeleteArgs, ParkedListArgs, ParkedPurgeArgs, ParkedReplayArgs,
    ParkedShowArgs, RunArgs, StatusArgs, TopologyCommand,
};
pub use logging::log_filter;

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use worker_core::connection::Secret;

use worker_core::task::Task;
use worker_core::worker::Worker;

type Setup = Box<dyn FnOnce(Worker) -> Worker + Send>;

/// A worker binary's command line: register tasks, then [`run`](App::run).
///
/// `App` builds the tokio runtime, sets up logging, reads configuration
/// from flags and the environment, builds the [`Worker`] and runs the
/// subcommand. Everything a [`Worker`] can be given goes through
/// [`register`](App::register), [`state`](App::state) and
/// [`configure`](App::configure).
pub struct App {
    name: String,
    about: Option<String>,
    version: Option<String>,
    run_help: Option<String>,
    use_env: bool,
    setup: Vec<Setup>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("setup_steps", &self.setup.len())
            .finish_non_exhaustive()
    }
}

/// What a command printed and how the process should exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code (see [`exit`]).
    pub code: u8,
    /// The result, for stdout.
    pub stdout: String,
    /// An error or warning for a person, for stderr (already says what to do next).
    pub stderr: String,
}

impl Finished {
    fn ok(stdout: String) -> Finished {
        Finished {
            code: exit::OK,
            stdout,
            stderr: String::new(),
        }
    }

    fn fail(code: u8, message: impl Into<String>) -> Finished {
        Finished {
            code,
            stdout: String::new(),
            stderr: message.into(),
        }
    }
}

impl App {
    /// An app named `name` (the binary's name in help and usage lines).
    pub fn new(name: impl Into<String>) -> Self {
        App {
            name: name.into(),
            about: None,
            version: None,
            run_help: None,
            use_env: true,
            setup: Vec::new(),
        }
    }

    /// The one-line description shown by `--help`.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.about = Some(about.into());
        self
    }

    /// Text shown at the end of `run --help`: the tasks' retry defaults and
    /// the environment variables they read, for example.
    ///
    /// ```
    /// # use worker_operator::cli::App;
    /// let app = App::new("demo").run_help("RETRY_TIERS sets the delay tiers (default 1s,5s)");
    /// let help = app.command().find_subcommand_mut("run").unwrap().render_long_help().to_string();
    /// assert!(help.contains("default 1s,5s"));
    /// ```
    pub fn run_help(mut self, text: impl Into<String>) -> Self {
        self.run_help = Some(text.into());
        self
    }

    /// Reads only the arguments given: no option falls back to its
    /// environment variable and `AMQP_PASSWORD` is not read. For tests and
    /// embedding, where the caller's environment must not change the result.
    ///
    /// ```
    /// # use worker_operator::cli::App;
    /// let cli = App::new("w").ignore_env().try_parse_from(["w", "status"]).unwrap();
    /// assert!(cli.global.urls.is_empty() && cli.global.password.is_none());
    /// ```
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// The version shown by `--version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Registers a task (see [`Worker::register`]).
    pub fn register<T: Task>(mut self, task: T) -> Self {
        self.setup.push(Box::new(move |w: Worker| w.register(task)));
        self
    }

    /// Adds shared state handlers can take (see [`Worker::state`]).
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.setup.push(Box::new(move |w: Worker| w.state(value)));
        self
    }

    /// Anything else a [`Worker`] can be given (user middleware, a retry
    /// layer), applied after the tasks and state added so far.
    ///
    /// ```
    /// # use worker_operator::cli::App;
    /// let app = App::new("demo").configure(|worker| worker.prefetch(50));
    /// # let _ = app;
    /// ```
    pub fn configure(mut self, f: impl FnOnce(Worker) -> Worker + Send + 'static) -> Self {
        self.setup.push(Box::new(f));
        self
    }

    /// The clap command, for help output or shell completions.
    pub fn command(&self) -> clap::Command {
        let mut cmd = Cli::command()
            .name(self.name.clone())
            .bin_name(self.name.clone());
        if let Some(about) = &self.about {
            cmd = cmd.about(about.clone());
        }
        if let Some(text) = &self.run_help {
            cmd = cmd.mut_subcommand("run", |run| run.after_help(text.clone()));
        }
        let cmd = match &self.version {
            Some(v) => cmd.version(v.clone()),
            None => cmd.disable_version_flag(true),
        };
        if self.use_env {
            cmd
        } else {
            without_env(cmd)
        }
    }

    /// Parses a command line (the first item is the program name).
    ///
    /// ```
    /// # use worker_operator::cli::{App, Command};
    /// let cli = App::new("demo").try_parse_from(["demo", "status", "--json"]).unwrap();
    /// assert!(matches!(cli.command, Command::Status(s) if s.json));
    /// assert!(App::new("demo").try_parse_from(["demo", "parked", "purge"]).is_err());
    /// ```
    pub fn try_parse_from<I, T>(&self, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = match self.command().try_get_matches_from(&args) {
            Ok(matches) => matches,
            // clap counts a value from the environment as typed, so with
            // AMQP_URL set `demo-worker` (or `demo-worker parked`) failed
            // with "requires a subcommand" instead of showing help. Asking
            // again without the environment makes the answer depend only on
            // what was typed.
            Err(e) if e.kind() == ErrorKind::MissingSubcommand && self.use_env => {
                return Err(
                    match without_env(self.command()).try_get_matches_from(&args) {
                        Err(help)
                            if help.kind()
                                == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
                        {
                            help
                        }
                        _ => e,
                    },
                );
            }
            Err(e) => return Err(e),
        };
        let mut cli = Cli::from_arg_matches(&matches)?;
        if self.use_env {
            cli.global.password = std::env::var("AMQP_PASSWORD")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new);
            cli.global.dashboard_token = std::env::var("RABBIT_WORKER_DASHBOARD_TOKEN")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new);
        }
        Ok(cli)
    }

    /// Parses the process's arguments, runs the subcommand on a new tokio
    /// runtime and returns the exit code. `run` stops on SIGINT or SIGTERM.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Like [`run`](App::run) with explicit arguments (the first is the program name).
    pub fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = match self.try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => {
                // clap prints help, version and usage errors itself.
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() {
                    exit::USAGE
                } else {
                    exit::OK
                });
            }
        };
        // Before logging starts, so that log lines make way for the bars.
        let bars = progress::Bars::on_stderr_terminal();
        if let Err(message) = logging::init(&cli) {
            eprintln!("error: {message}");
            return ExitCode::from(exit::USAGE);
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("{}-rt", self.name))
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the tokio runtime: {e}");
                return ExitCode::from(exit::FAILURE);
            }
        };
        // The signal handlers go in before anything starts (see stop_signal).
        let stop = {
            let _runtime = runtime.enter();
            worker_core::worker::stop_signal()
        };
        let finished = runtime.block_on(commands::execute(self.setup, cli, stop, &self.name, bars));
        // Whatever is still running (a lingering I/O task) must not keep a
        // stopped worker's process alive.
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        print!("{}", finished.stdout);
        if !finished.stderr.is_empty() {
            let text = finished.stderr.trim_end();
            if finished.code == exit::OK {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
        }
        ExitCode::from(finished.code)
    }

    /// Runs a parsed command inside an existing tokio runtime, without
    /// touching logging or printing anything (no progress bars either,
    /// even on a terminal); `stop` ends `run` (other commands ignore it).
    /// This is what tests drive.
    pub async fn execute(self, cli: Cli, stop: impl Future<Output = ()> + Send) -> Finished {
        commands::execute(self.setup, cli, stop, &self.name, progress::Bars::HIDDEN).await
    }
}

/// `cmd` with every option's environment variable dropped, subcommands included.
fn without_env(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = cmd.mut_args(|arg| arg.env(None));
    for name in names {
        cmd = cmd.mut_subcommand(name, without_env);
    }
    cmd
}
