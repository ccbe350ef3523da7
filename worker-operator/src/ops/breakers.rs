//! The circuit breakers of running worker processes, as each one's
//! `/readyz` lists them.
//!
//! A breaker's state lives in the process it protects (each process trips
//! and probes on its own outcomes), so the broker cannot say whether one is
//! open: a paused queue just has fewer consumers. `status --worker URL`
//! asks the processes it is given instead, over the HTTP endpoint that
//! `run --http` serves.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// How long one worker may take to answer, connection included.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The most of a `/readyz` body that is read.
const MAX_BODY: usize = 64 << 10;

/// What one worker process said, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBreakers {
    /// The worker's HTTP address, as given, with any password masked.
    pub worker: String,
    /// Its readiness and breakers, or what went wrong.
    pub answer: Result<Readyz, String>,
}

/// A worker's `/readyz`: whether it is ready, and each breaker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readyz {
    /// `200` (ready) or not.
    pub ready: bool,
    /// (task, state) for every task with a breaker: `closed`, `half-open`
    /// or `open`.
    pub breakers: Vec<(String, String)>,
}

impl WorkerBreakers {
    /// The state of `task`'s breaker in this worker, when it answered and
    /// has one.
    pub fn state_of(&self, task: &str) -> Option<&str> {
        let readyz = self.answer.as_ref().ok()?;
        readyz
            .breakers
            .iter()
            .find(|(t, _)| t == task)
            .map(|(_, s)| s.as_str())
    }

    /// As JSON: `worker`, then `ready` and `breakers`, or `error`.
    pub fn to_json(&self) -> Value {
        match &self.answer {
            Ok(r) => json!({
                "worker": self.worker,
                "ready": r.ready,
                "breakers": r.breakers.iter().map(|(t, s)| json!({"task": t, "state": s})).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"worker": self.worker, "error": e}),
        }
    }
}

/// Asks every worker in `workers` (`http://host:port` or `host:port`), one
/// after another, each within a few seconds.
pub async fn read_all(workers: &[String]) -> Vec<WorkerBreakers> {
    let mut out = Vec::with_capacity(workers.len());
    for worker in workers {
        let answer = match tokio::time::timeout(TIMEOUT, readyz(worker)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
        };
        out.push(WorkerBreakers {
            worker: worker_core::error::redact_url(worker),
            answer,
        });
    }
    out
}

/// `GET /readyz` from `worker`.
async fn readyz(worker: &str) -> Result<Readyz, String> {
    let authority = authority(worker)?;
    let stream = TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let connection = tokio::spawn(connection);
    let request = Request::get("/readyz")
        .header(header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET /readyz: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading /readyz: {e}"))?
        .to_bytes();
    connection.abort();
    if status != 200 && status != 503 {
        return Err(format!(
            "/readyz answered {status}: is this a worker's --http address?"
        ));
    }
    Ok(Readyz {
        ready: status == 200,
        breakers: parse(&String::from_utf8_lossy(&body)),
    })
}

/// `host:port` of `http://host:port[/]` or `host:port`.
fn authority(worker: &str) -> Result<String, String> {
    let uri: Uri = worker
        .parse()
        .map_err(|e| format!("not an HTTP address ({e}); give http://HOST:PORT"))?;
    match uri.scheme_str() {
        None | Some("http") => {}
        Some(other) => {
            return Err(format!(
                "{other}:// is not supported: a worker serves /readyz over plain http://"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| "no host: give http://HOST:PORT".to_owned())?;
    if authority.port().is_none() {
        return Err("no port: give http://HOST:PORT, the worker's --http address".to_owned());
    }
    // `/readyz` needs no credentials: any given are left out.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    Ok(host_port.to_owned())
}

/// The `breaker <task>: <state>` lines of a `/readyz` body.
fn parse(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter_map(|l| l.strip_prefix("breaker "))
        .filter_map(|l| l.rsplit_once(": "))
        .map(|(task, state)| (task.to_owned(), state.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_breaker_lines_of_a_readyz_body() {
        let body = "ready\nbreaker send_email: open\nbreaker a: b: half-open\n";
        assert_eq!(
            parse(body),
            [
                ("send_email".to_owned(), "open".to_owned()),
                ("a: b".to_owned(), "half-open".to_owned())
            ]
        );
        assert!(parse("not ready: not connected\n").is_empty());
    }

    #[test]
    fn takes_an_address_with_or_without_its_scheme() {
        assert_eq!(authority("http://10.0.0.5:9464/").unwrap(), "10.0.0.5:9464");
        assert_eq!(authority("localhost:9464").unwrap(), "localhost:9464");
        assert_eq!(authority("http://u:p@[::1]:9464").unwrap(), "[::1]:9464");
        assert!(authority("https://a:1").unwrap_err().contains("plain http"));
        assert!(authority("http://a").unwrap_err().contains("no port"));
        assert!(authority("a b").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_worker_is_reported_not_fatal() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let got = read_all(&[format!("127.0.0.1:{port}")]).await;
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .answer
                .as_ref()
                .unwrap_err()
                .contains("cannot connect"),
            "{got:?}"
        );
        assert_eq!(got[0].state_of("any"), None);
        // An address given with credentials is never printed with them.
        let got = read_all(&[format!("http://ops:hunter2@127.0.0.1:{port}")]).await;
        assert_eq!(got[0].worker, format!("http://ops:***@127.0.0.1:{port}"));
        assert!(!format!("{:?}", got[0].to_json()).contains("hunter2"));
    }
}
