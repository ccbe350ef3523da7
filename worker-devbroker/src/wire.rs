//! Frames on the socket: reading, writing, and splitting content into frames.

use std::io;
use std::time::Duration;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::ShortString;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// The largest frame the broker offers (RabbitMQ's default).
pub(crate) const FRAME_MAX: u32 = 131_072;

/// The frame type of a content header.
const CONTENT_HEADER: u8 = 2;

/// The protocol header of AMQP 0-9-1.
pub(crate) const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

const FRAME_END: u8 = 0xCE;

/// A short string, cut (on a character boundary) to 255 bytes if needed.
pub(crate) fn ss(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

/// What goes to a connection's writer.
#[derive(Debug)]
pub(crate) enum Out {
    /// Frames to send, in order.
    Frames(Vec<AMQPFrame>),
    /// Raw bytes (the protocol header of a version mismatch).
    Raw(Vec<u8>),
    /// Send heartbeats every so often from now on.
    Heartbeat(Duration),
    /// Flush and close the socket.
    Shutdown,
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the socket or it failed.
    Closed,
    /// A frame the broker cannot accept: (reply code, text).
    Bad(u16, String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// Reads frames from a socket.
pub(crate) struct FrameReader {
    rd: BufReader<OwnedReadHalf>,
    frame_max: u32,
}

impl FrameReader {
    pub(crate) fn new(rd: OwnedReadHalf) -> FrameReader {
        FrameReader {
            rd: BufReader::with_capacity(64 * 1024, rd),
            frame_max: FRAME_MAX,
        }
    }

    pub(crate) fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// The 8-byte protocol header a client opens with.
    pub(crate) async fn protocol_header(&mut self) -> Result<[u8; 8], ReadError> {
        let mut header = [0u8; 8];
        self.rd.read_exact(&mut header).await?;
        Ok(header)
    }

    /// The next frame.
    pub(crate) async fn next(&mut self) -> Result<AMQPFrame, ReadError> {
        let mut head = [0u8; 7];
        self.rd.read_exact(&mut head).await?;
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        if size > self.frame_max {
            return Err(ReadError::Bad(
                501,
                format!(
                    "FRAME_ERROR - frame size {size} exceeds the negotiated frame_max {}",
                    self.frame_max
                ),
            ));
        }
        let mut raw = Vec::with_capacity(7 + size as usize + 1);
        raw.extend_from_slice(&head);
        raw.resize(7 + size as usize + 1, 0);
        self.rd.read_exact(&mut raw[7..]).await?;
        if raw[raw.len() - 1] != FRAME_END {
            return Err(ReadError::Bad(
                501,
                "FRAME_ERROR - frame does not end with 0xCE".to_owned(),
            ));
        }
        if head[0] == CONTENT_HEADER {
            // A client may send a header table nested thousands deep; the
            // parser would recurse through all of it (RabbitMQ takes it).
            let payload_end = raw.len() - 1;
            worker_core::connection::guard::bound_header_depth(&mut raw[7..payload_end]);
        }
        match parse_frame(raw.as_slice()) {
            Ok((_, frame)) => Ok(frame),
            Err(e) => Err(ReadError::Bad(502, format!("SYNTAX_ERROR - {e:?}"))),
        }
    }
}

/// Appends the encoding of `frame` to `out`.
fn encode(frame: &AMQPFrame, out: &mut Vec<u8>) {
    let buf = std::mem::take(out);
    let len = buf.len();
    match gen_frame(frame)(WriteContext::from(buf)) {
        Ok(ctx) => *out = ctx.into_inner().0,
        Err(e) => {
            // Cannot happen for frames this broker builds; never send half a frame.
            tracing::error!(error = ?e, frame = %frame, "memory broker: cannot encode frame");
            out.truncate(len);
        }
    }
}

/// Sends what arrives on `rx` until told to shut down or the socket fails.
pub(crate) async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut heartbeat: Option<tokio::time::Interval> = None;
    loop {
        let first = match &mut heartbeat {
            Some(interval) => tokio::select! {
                out = rx.recv() => out,
                _ = interval.tick() => Some(Out::Frames(vec![AMQPFrame::Heartbeat])),
            },
            None => rx.recv().await,
        };
        let Some(first) = first else {
            break;
        };
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Frames(frames) => frames.iter().for_each(|f| encode(f, &mut buf)),
                Out::Raw(bytes) => buf.extend_from_slice(&bytes),
                Out::Heartbeat(every) => {
                    let mut interval = tokio::time::interval(every);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    heartbeat = Some(interval);
                }
                Out::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() >= 256 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
        if shutdown {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// A method followed by its content header and body frames.
pub(crate) fn content_frames(
    channel: u16,
    method: AMQPClass,
    properties: basic::AMQPProperties,
    body: &[u8],
    frame_max: u32,
) -> Vec<AMQPFrame> {
    let chunk = (frame_max.max(4096) - 8) as usize;
    let mut frames = Vec::with_capacity(2 + body.len() / chunk + 1);
    frames.push(AMQPFrame::Method(channel, method));
    frames.push(AMQPFrame::Header(
        channel,
        AMQPContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties,
        },
    ));
    for part in body.chunks(chunk) {
        frames.push(AMQPFrame::Body(channel, part.to_vec()));
    }
    frames
}
