//! `rabbit-worker-devbroker`: the in-memory broker on a fixed port, for
//! development with nothing installed.
//!
//! ```text
//! rabbit-worker-devbroker                    # 127.0.0.1:5672, modelled on RabbitMQ 4.0
//! rabbit-worker-devbroker --port 5673 --as 3.10
//! ```

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use worker_core::broker::Version;
use worker_devbroker::{MemoryBroker, INFORMATION, PRODUCT};

/// An AMQP 0-9-1 broker in memory, modelled on RabbitMQ: in-memory, not
/// durable, for development and tests. Any user name and password are
/// accepted; only the virtual host `/` exists. Everything is forgotten when
/// it stops.
#[derive(Debug, Parser)]
#[command(name = "rabbit-worker-devbroker", version)]
struct Args {
    /// The port to listen on.
    #[arg(long, env = "DEVBROKER_PORT", default_value_t = 5672)]
    port: u16,
    /// The address to listen on; anything but a loopback address needs
    /// --allow-remote.
    #[arg(long, env = "DEVBROKER_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Listen on a non-loopback address: anyone who can reach it can read
    /// and publish every message, with any credentials.
    #[arg(long)]
    allow_remote: bool,
    /// The RabbitMQ version whose rules to follow where versions differ
    /// (3.10, 4.0 or 4.3).
    #[arg(long = "as", value_name = "VERSION", default_value = "4.0", value_parser = parse_version)]
    model: Version,
}

fn parse_version(text: &str) -> Result<Version, String> {
    match text {
        "3.10" | "3.10.8" => Ok(Version::new(3, 10, 8)),
        "4.0" | "4.0.5" => Ok(Version::new(4, 0, 5)),
        "4.3" | "4.3.6" => Ok(Version::new(4, 3, 6)),
        other => Err(format!(
            "{other:?} is not a modelled version: use 3.10, 4.0 or 4.3"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bind.is_loopback() && !args.allow_remote {
        eprintln!(
            "error: {} is not a loopback address; the development broker accepts any \
             credentials, so it listens beyond this machine only with --allow-remote",
            args.bind
        );
        return ExitCode::from(2);
    }
    let addr = SocketAddr::new(args.bind, args.port);
    let broker = match MemoryBroker::serve_on(addr, args.model).await {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {addr}: {e}; is RabbitMQ (or another broker) \
                 already there? Choose another port with --port"
            );
            return ExitCode::FAILURE;
        }
    };
    let stop = StopSignals::listen();
    let host = match args.bind {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    // Written, not printed: a closed stdout (a pipe whose reader left)
    // must not stop the broker.
    let _ = writeln!(
        std::io::stdout(),
        "{PRODUCT} ({INFORMATION}), modelled on RabbitMQ {}: \
         amqp://guest:guest@{host}:{}/%2f; Ctrl-C stops it and forgets every message",
        args.model,
        broker.port()
    );
    stop.wait().await;
    let _ = writeln!(std::io::stdout(), "{PRODUCT} stopped");
    ExitCode::SUCCESS
}

/// Ctrl-C or SIGTERM, listened for from its creation on: made before the
/// ready line is printed, so a stop sent as soon as that line is read is
/// never missed (an unhandled SIGTERM would end the process uncleanly).
struct StopSignals {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            StopSignals { signals }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
