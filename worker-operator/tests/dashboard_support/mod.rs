//! What the dashboard tests share: a task that fails as its payload says,
//! parking messages through a real worker, and a small HTTP/1.1 client.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use worker_core::publisher::EnqueueOptions;
use worker_core::{Task, TaskError, Worker};

/// A payment; the handler fails as `fail` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub order: String,
    /// `Some((true, msg))`: transient failure (parked as `exhausted`, no
    /// retries); `Some((false, msg))`: permanent (parked as `permanent`).
    pub fail: Option<(bool, String)>,
}

/// The handler's verdict on a payment.
pub fn verdict(p: &Payment) -> Result<(), TaskError> {
    match &p.fail {
        None => Ok(()),
        Some((true, msg)) => Err(TaskError::transient(msg.clone())),
        Some((false, msg)) => Err(TaskError::permanent(msg.clone())),
    }
}

/// Every queue of `task`'s plan.
pub fn queues<T: Task>(task: &T) -> Vec<String> {
    let spec = worker_core::topology::TaskSpec::new(T::NAME, T::QUEUE, task.options());
    worker_core::topology::plan(&spec, worker_core::broker::Capabilities::unknown())
        .into_iter()
        .map(|q| q.name)
        .collect()
}

/// Publishes `payments` (id, payment) for `T` and runs a worker until
/// `parked` messages sit in its parking queue; the worker is stopped after.
pub async fn park_through_worker<T>(task: T, payments: &[(String, Payment)], parked: u32)
where
    T: Task<Payload = Payment> + Clone,
{
    let names = queues(&task);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::support::delete_queues(&names).await;
    park_more(task, payments, parked).await;
}

/// Enqueues `payments` of `task` (its queues declared) and runs a worker
/// until its parking queue holds `parked` messages.
pub async fn park_more<T>(task: T, payments: &[(String, Payment)], parked: u32)
where
    T: Task<Payload = Payment> + Clone,
{
    let worker = Worker::from_env().register(task.clone());
    worker.declare_topology().await.expect("declare");
    let publisher = worker.publisher().clone();
    for (id, payment) in payments {
        publisher
            .enqueue_with::<T>(
                payment,
                EnqueueOptions {
                    message_id: Some(id.clone()),
                    ..EnqueueOptions::default()
                },
            )
            .await
            .expect("enqueue");
    }
    let running = worker.start().await.expect("worker starts");
    let conn = crate::support::connect().await;
    let parking = format!("{}.parking", T::QUEUE);
    crate::support::eventually(Duration::from_secs(20), "messages parked", || {
        let conn = &conn;
        let parking = &parking;
        async move { crate::support::depth(conn, parking).await == parked }
    })
    .await;
    running.shutdown().await.expect("worker stops");
}

/// An answer: status, head (lowercased header lines), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request on a new connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| addr.to_string(), |(_, v)| (*v).to_owned());
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("answered within 30 s")
        .unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out}"));
    Answer {
        status,
        head: head.to_lowercase(),
        body: body.to_owned(),
    }
}

/// A free port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
