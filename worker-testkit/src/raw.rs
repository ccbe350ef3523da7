//! Messages no well-behaved client would send, written as raw AMQP 0-9-1
//! frames: lapin's own encoder cannot (or must not) produce them.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An encoded field table (length prefix included) holding one entry `k`
/// whose value is a table holding `k`, and so on, `depth` tables deep.
/// Seven bytes a level: about 18,000 levels fit RabbitMQ's default
/// `frame_max`. Built without recursion.
pub fn nested_table(depth: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + 7 * depth);
    for level in 0..=depth {
        let content = u32::try_from(7 * (depth - level)).expect("depth fits a frame");
        bytes.extend_from_slice(&content.to_be_bytes());
        if level < depth {
            bytes.extend_from_slice(b"\x01kF");
        }
    }
    bytes
}

/// What [`publish_raw`] sends.
#[derive(Debug, Clone)]
pub struct RawMessage<'a> {
    /// Routing key on the default exchange: the queue.
    pub queue: &'a str,
    /// The `type` property (the task name).
    pub kind: &'a str,
    /// The `message-id` property.
    pub message_id: &'a str,
    /// The encoded headers table, length prefix included (see [`nested_table`]).
    pub headers: &'a [u8],
    /// The body, sent as `application/json`, persistent.
    pub body: &'a [u8],
}

/// Publishes one message over a fresh plain `amqp://` connection and waits
/// for the broker's publisher confirm.
pub async fn publish_raw(url: &str, message: &RawMessage<'_>) -> io::Result<()> {
    let uri: lapin::uri::AMQPUri = url.parse().map_err(io::Error::other)?;
    let auth = &uri.authority;
    let mut conn = Raw(TcpStream::connect((auth.host.as_str(), auth.port)).await?);
    conn.0.write_all(b"AMQP\x00\x00\x09\x01").await?;
    conn.expect(0, (10, 10)).await?;
    let mut start_ok = method(10, 11);
    start_ok.extend_from_slice(&0u32.to_be_bytes());
    short(&mut start_ok, "PLAIN");
    let user = &auth.userinfo;
    long(
        &mut start_ok,
        format!("\0{}\0{}", user.username, user.password).as_bytes(),
    );
    short(&mut start_ok, "en_US");
    conn.send(1, 0, &start_ok).await?;
    let tune = conn.expect(0, (10, 30)).await?;
    let mut tune_ok = method(10, 31);
    tune_ok.extend_from_slice(&tune[4..10]);
    tune_ok.extend_from_slice(&0u16.to_be_bytes());
    conn.send(1, 0, &tune_ok).await?;
    let mut open = method(10, 40);
    short(&mut open, &uri.vhost);
    short(&mut open, "");
    open.push(0);
    conn.send(1, 0, &open).await?;
    conn.expect(0, (10, 41)).await?;
    let mut channel_open = method(20, 10);
    short(&mut channel_open, "");
    conn.send(1, 1, &channel_open).await?;
    conn.expect(1, (20, 11)).await?;
    let mut select = method(85, 10);
    select.push(0);
    conn.send(1, 1, &select).await?;
    conn.expect(1, (85, 11)).await?;

    let mut publish = method(60, 40);
    publish.extend_from_slice(&0u16.to_be_bytes());
    short(&mut publish, "");
    short(&mut publish, message.queue);
    publish.push(0b01); // mandatory
    conn.send(1, 1, &publish).await?;
    let mut header = Vec::new();
    header.extend_from_slice(&60u16.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(message.body.len() as u64).to_be_bytes());
    // content-type, headers, delivery-mode, message-id, type
    header.extend_from_slice(&0b1011_0000_1010_0000u16.to_be_bytes());
    short(&mut header, "application/json");
    header.extend_from_slice(message.headers);
    header.push(2);
    short(&mut header, message.message_id);
    short(&mut header, message.kind);
    conn.send(2, 1, &header).await?;
    conn.send(3, 1, message.body).await?;
    conn.expect(1, (60, 80)).await?;

    let mut close = method(10, 50);
    close.extend_from_slice(&200u16.to_be_bytes());
    short(&mut close, "");
    close.extend_from_slice(&[0, 0, 0, 0]);
    conn.send(1, 0, &close).await?;
    conn.expect(0, (10, 51)).await?;
    Ok(())
}

struct Raw(TcpStream);

impl Raw {
    async fn send(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![kind];
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(0xCE);
        self.0.write_all(&frame).await
    }

    /// Reads the next method frame, which must be `want` on `channel`; returns its payload.
    async fn expect(&mut self, channel: u16, want: (u16, u16)) -> io::Result<Vec<u8>> {
        let mut head = [0u8; 7];
        self.0.read_exact(&mut head).await?;
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0u8; size + 1];
        self.0.read_exact(&mut payload).await?;
        payload.pop();
        let got_channel = u16::from_be_bytes([head[1], head[2]]);
        let got = payload.get(..4).map(|m| {
            (
                u16::from_be_bytes([m[0], m[1]]),
                u16::from_be_bytes([m[2], m[3]]),
            )
        });
        if head[0] != 1 || got_channel != channel || got != Some(want) {
            return Err(io::Error::other(format!(
                "expected method {want:?} on channel {channel}, got frame type {} on channel {got_channel}: {got:?} {}",
                head[0],
                String::from_utf8_lossy(&payload)
            )));
        }
        Ok(payload)
    }
}

fn method(class: u16, id: u16) -> Vec<u8> {
    let mut payload = class.to_be_bytes().to_vec();
    payload.extend_from_slice(&id.to_be_bytes());
    payload
}

fn short(buf: &mut Vec<u8>, s: &str) {
    buf.push(u8::try_from(s.len()).expect("short string"));
    buf.extend_from_slice(s.as_bytes());
}

fn long(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_are_length_prefixed_at_every_level() {
        assert_eq!(nested_table(0), [0, 0, 0, 0]);
        assert_eq!(nested_table(1), [0, 0, 0, 7, 1, b'k', b'F', 0, 0, 0, 0]);
        assert_eq!(nested_table(15_000).len(), 4 + 7 * 15_000);
    }
}
