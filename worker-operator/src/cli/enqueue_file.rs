//! `enqueue TASK --from FILE`: one message per line of newline-delimited JSON.
//!
//! Lines are read as they come (a file of any size, or stdin), checked
//! against the task's payload type like a single `enqueue`, and published
//! in chunks of [`CHUNK`] with pipelined confirms, so memory holds one
//! chunk at most. A line that is not JSON or does not match the payload
//! type is refused: counted with its line number and reason, never sent.
//! The first broker failure (a nack, an unroutable message, a confirm
//! timeout, a lost connection) stops the reading: the lines after it are
//! neither read nor sent, and the summary says how far it got.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, BufReader};

use super::commands::{Failed, Outcome};
use super::progress::{Bar, Bars};
use super::{exit, Finished};
use worker_core::error::Error;
use worker_core::publisher::EnqueueOptions;
use worker_core::topology::TaskSpec;
use worker_core::worker::Worker;

/// Messages published before their confirms are awaited.
const CHUNK: usize = 1000;
/// Refused lines listed in the summary; the rest are counted.
const LISTED: usize = 20;

/// What happened to the lines so far.
#[derive(Debug, Default)]
struct Summary {
    sent: usize,
    confirmed: usize,
    refused: usize,
    /// The first [`LISTED`] refused lines: number and reason.
    listed: Vec<(usize, String)>,
    /// The first broker failure, and the last line read before it.
    failure: Option<(Error, usize)>,
}

impl Summary {
    fn refuse(&mut self, line: usize, reason: String) {
        self.refused += 1;
        if self.listed.len() < LISTED {
            self.listed.push((line, reason));
        }
    }

    fn stdout(&self) -> String {
        let mut out = format!(
            "sent {}, confirmed {}, refused {}\n",
            self.sent, self.confirmed, self.refused
        );
        for (line, reason) in &self.listed {
            let _ = writeln!(out, "  line {line}: {reason}");
        }
        if self.refused > self.listed.len() {
            let _ = writeln!(out, "  and {} more", self.refused - self.listed.len());
        }
        out
    }

    fn progress(&self) -> String {
        format!("sent {}, refused {}", self.sent, self.refused)
    }
}

/// One line of the input, judged.
enum Line {
    Blank,
    Refused(String),
    Payload(serde_json::Value),
}

fn judge(worker: &Worker, spec: &TaskSpec, raw: &[u8]) -> Line {
    let text = raw.strip_suffix(b"\n").unwrap_or(raw);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(value) => value,
        Err(e) => return Line::Refused(format!("not valid JSON ({e})")),
    };
    match worker.check_payload(spec.name, None, text) {
        Some(Ok(())) | None => Line::Payload(value),
        Some(Err(e)) => Line::Refused(format!(
            "does not match task {}'s payload type: {e}",
            spec.name
        )),
    }
}

pub(super) async fn enqueue_from(
    worker: &Worker,
    spec: &Arc<TaskSpec>,
    path: &Path,
    options: EnqueueOptions,
    bars: Bars,
) -> Outcome {
    let (mut reader, bar): (Box<dyn AsyncBufRead + Unpin + Send>, Bar) = if path == Path::new("-") {
        (
            Box::new(BufReader::new(tokio::io::stdin())),
            bars.spinner("reading stdin"),
        )
    } else {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            Failed(
                exit::USAGE,
                format!("cannot open {} (--from): {e}", path.display()),
            )
        })?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::new(file)), bars.bytes(size))
    };
    let publisher = worker.publisher();
    let mut summary = Summary::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut raw = Vec::new();
    let mut number = 0usize;
    let mut read = 0u64;
    let mut unreadable = None;
    loop {
        raw.clear();
        let n = match reader.read_until(b'\n', &mut raw).await {
            Ok(n) => n,
            Err(e) => {
                unreadable = Some(format!(
                    "cannot read line {} of {}: {e}",
                    number + 1,
                    path.display()
                ));
                break;
            }
        };
        if n == 0 {
            break;
        }
        number += 1;
        read += n as u64;
        bar.set_position(read);
        match judge(worker, spec, &raw) {
            Line::Blank => {}
            Line::Refused(reason) => summary.refuse(number, reason),
            Line::Payload(value) => {
                let (_, message) =
                    publisher.task_message(spec.name, &spec.queue, &value, options.clone())?;
                chunk.push(message);
            }
        }
        if chunk.len() == CHUNK {
            send(worker, &mut chunk, &mut summary, number).await;
            bar.set_message(summary.progress());
            if summary.failure.is_some() {
                break;
            }
        }
    }
    if summary.failure.is_none() && !chunk.is_empty() {
        send(worker, &mut chunk, &mut summary, number).await;
    }
    drop(bar);
    Ok(finish(summary, unreadable))
}

/// Publishes the chunk and counts what the broker confirmed.
async fn send(
    worker: &Worker,
    chunk: &mut Vec<worker_core::message::Outgoing>,
    summary: &mut Summary,
    line: usize,
) {
    worker.connector().wait_until_unblocked().await;
    let mut outcome = worker.publisher().publish_each(std::mem::take(chunk)).await;
    summary.sent += outcome.sent();
    summary.confirmed += outcome.confirmed();
    if summary.failure.is_none() {
        let first = match outcome.confirms.iter().position(Result::is_err) {
            Some(i) => outcome.confirms.swap_remove(i).err(),
            None => outcome.unsent.take(),
        };
        summary.failure = first.map(|e| (e, line));
    }
    chunk.reserve(CHUNK);
}

fn finish(summary: Summary, unreadable: Option<String>) -> Finished {
    let mut finished = Finished::ok(summary.stdout());
    let mut problems = Vec::new();
    if let Some((e, line)) = &summary.failure {
        finished.code = exit::code_for(e);
        if finished.code == exit::OK || finished.code == exit::USAGE {
            finished.code = exit::FAILURE;
        }
        problems.push(format!(
            "the broker did not confirm every message: {}; {} sent but not confirmed (they may or may not be in the queue: sending them again may duplicate some); stopped after line {line}, the lines after it were not sent",
            exit::describe(e),
            summary.sent - summary.confirmed,
        ));
    }
    if let Some(message) = unreadable {
        if finished.code == exit::OK {
            finished.code = exit::FAILURE;
        }
        problems.push(format!("{message}; the lines after it were not sent"));
    }
    if summary.refused > 0 {
        if finished.code == exit::OK {
            finished.code = exit::USAGE;
        }
        problems.push(format!(
            "{} line(s) refused (listed above) and not sent; fix them and send those lines again",
            summary.refused
        ));
    }
    finished.stderr = problems.join("\n");
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(refused: usize) -> Summary {
        let mut s = Summary {
            sent: 5,
            confirmed: 5,
            ..Summary::default()
        };
        for i in 0..refused {
            s.refuse(i + 1, format!("bad {i}"));
        }
        s
    }

    #[test]
    fn all_confirmed_is_ok_and_quiet() {
        let f = finish(summary(0), None);
        assert_eq!(f.code, exit::OK);
        assert_eq!(f.stdout, "sent 5, confirmed 5, refused 0\n");
        assert_eq!(f.stderr, "");
    }

    #[test]
    fn refused_lines_are_listed_up_to_twenty_then_counted() {
        let f = finish(summary(23), None);
        assert_eq!(f.code, exit::USAGE);
        let lines: Vec<&str> = f.stdout.lines().collect();
        assert_eq!(lines[0], "sent 5, confirmed 5, refused 23");
        assert_eq!(lines[1], "  line 1: bad 0");
        assert_eq!(lines[20], "  line 20: bad 19");
        assert_eq!(lines[21], "  and 3 more");
        assert_eq!(lines.len(), 22);
        assert!(f.stderr.contains("23 line(s) refused"), "{}", f.stderr);
    }

    #[test]
    fn a_broker_failure_wins_over_refused_lines() {
        let mut s = summary(1);
        s.confirmed = 3;
        s.failure = Some((
            Error::Nacked {
                routing_key: "q".into(),
            },
            1000,
        ));
        let f = finish(s, None);
        assert_eq!(f.code, exit::FAILURE);
        assert!(
            f.stderr.contains("2 sent but not confirmed"),
            "{}",
            f.stderr
        );
        assert!(f.stderr.contains("stopped after line 1000"), "{}", f.stderr);
        assert!(f.stderr.contains("1 line(s) refused"), "{}", f.stderr);
    }
}
