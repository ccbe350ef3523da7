//! An end-to-end run that exits by itself: enqueue four emails, run a
//! worker until they are dealt with, show what was parked.
//!
//! ```text
//! cargo run -p examples --bin quickstart
//! ```
//!
//! One email goes through at once, one fails twice at the provider and is
//! retried in process, one fails three times and waits a second in the
//! broker's 1 s delay tier before it goes out, one has no valid recipient
//! and is parked.
//!
//! The broker: `AMQP_URL` when set (a broker that does not answer there is
//! an error), else RabbitMQ at the default address when one answers, else
//! the embedded in-memory broker (`worker-devbroker`, on the wall clock),
//! said in the first line of output.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use examples::tasks::email::{Email, SendEmail};
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use worker_core::connection::{ConnectionConfig, Connector, DEFAULT_URL};
use worker_core::{Outcome, Task, Worker};
use worker_devbroker::MemoryBroker;
use worker_operator::ops;

/// Where the story runs.
enum Broker {
    /// RabbitMQ (or whatever `AMQP_URL` names).
    External,
    /// The embedded broker, kept alive for the run.
    Embedded(MemoryBroker),
}

impl Broker {
    /// `AMQP_URL` if set; RabbitMQ at the default address if it answers;
    /// else the embedded broker.
    async fn choose() -> Broker {
        if std::env::var_os("AMQP_URL").is_some_and(|url| !url.is_empty()) {
            return Broker::External;
        }
        let answers = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", 5672)),
        )
        .await
        .is_ok_and(|stream| stream.is_ok());
        if answers {
            return Broker::External;
        }
        let broker = MemoryBroker::start_with_real_clock().await;
        println!(
            "No RabbitMQ at {} and AMQP_URL is unset: running on the embedded \
             in-memory broker ({}); set AMQP_URL or start RabbitMQ to use a real one.\n",
            worker_core::redact_url(DEFAULT_URL),
            worker_devbroker::INFORMATION
        );
        Broker::Embedded(broker)
    }

    fn worker(&self) -> Worker {
        match self {
            Broker::External => Worker::from_env(),
            Broker::Embedded(broker) => {
                Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,examples=info,worker_core::middleware::park=warn".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // A tiny user middleware around the handler: count the successes, so
    // we know when all the work is done.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let broker = Broker::choose().await;
    let worker = broker
        .worker()
        .register(SendEmail)
        .wrap_handlers(move |handler| {
            let counter = counter.clone();
            BoxCloneSyncService::new(handler.map_response(move |outcome| {
                if matches!(outcome, Outcome::Succeeded) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                outcome
            }))
        });
    let publisher = worker.publisher().clone();
    let connector = worker.connector().clone();
    let spec = worker.specs().remove(0);
    worker.declare_topology().await?;
    let parked_before = ops::queue_depth(&connector, &spec.parking)
        .await?
        .map_or(0, |d| d.messages);

    let emails = [
        Email {
            to: "ada@example.com".into(),
            subject: "Welcome".into(),
            provider_failures: 0,
        },
        Email {
            to: "grace@example.com".into(),
            subject: "Your invoice".into(),
            provider_failures: 2,
        },
        Email {
            to: "alan@example.com".into(),
            subject: "Your report".into(),
            provider_failures: 3,
        },
        Email {
            to: "nobody".into(),
            subject: "Undeliverable".into(),
            provider_failures: 0,
        },
    ];
    for email in &emails {
        let id = SendEmail::enqueue(&publisher, email).await?;
        println!(
            "enqueued {} to {:<18} message id {id}",
            SendEmail::NAME,
            email.to
        );
    }

    let running = worker.start().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let parked = ops::queue_depth(&connector, &spec.parking)
            .await?
            .map_or(0, |d| d.messages);
        if sent.load(Ordering::SeqCst) == 3 && parked > parked_before {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the emails were not handled within 30 s; is a worker of another version consuming demo.emails?".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await?;
    println!(
        "\n3 emails sent (one after two provider failures retried in process, one after \
         three and a second in the 1 s delay tier), 1 parked"
    );

    let listing = ops::parked::list(
        &connector,
        &spec.parking,
        &ops::parked::Filter::default(),
        ops::parked::Page::first(10),
    )
    .await?;
    println!(
        "\n{} message(s) parked in {}:",
        listing.total, listing.queue
    );
    for message in &listing.messages {
        println!("  {}", message.summary());
    }
    // Close before the embedded broker goes away with `broker`.
    connector.close().await;
    match broker {
        Broker::External => println!(
            "\nList them any time with: cargo run -p examples --bin demo-worker -- parked list {}",
            SendEmail::NAME
        ),
        Broker::Embedded(_) => println!(
            "\nThe embedded broker forgets them when this program exits. For a broker that \
             stays up: cargo run -p worker-devbroker (in memory), or RabbitMQ."
        ),
    }
    Ok(())
}
