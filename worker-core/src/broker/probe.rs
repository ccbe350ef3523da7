//! Reading the broker's version from `connection.start`.
//!
//! RabbitMQ announces its version in the server properties of
//! `connection.start`, the first frame it sends after the client's protocol
//! header, before any login. lapin does not keep those properties, so the
//! probe opens a second, short-lived socket to the same address (through
//! lapin's own TCP and TLS stack, with the same TLS settings), sends the
//! protocol header, reads that one frame and hangs up. No credentials are
//! sent; the broker logs a harmless "closed before handshake" notice.

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use lapin::tcp::{AMQPUriTcpExt, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;

use super::Version;

/// `AMQP 0-9-1` protocol header.
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// The largest `connection.start` frame read; RabbitMQ's is about 600 bytes.
const MAX_START_FRAME: usize = 64 * 1024;

/// Reads the version `uri`'s broker announces; `None` when it cannot be
/// read within `timeout` (the caller then assumes the newest known rules).
pub async fn probe_version(
    uri: &AMQPUri,
    tls: &OwnedTLSConfig,
    timeout: Duration,
) -> Option<Version> {
    let read = read_server_properties(uri, tls);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(props)) => {
            let version = version_of(&props);
            if version.is_none() {
                tracing::warn!("RabbitMQ did not announce a version it understands; assuming the newest known rules");
            }
            version
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read RabbitMQ's version; assuming the newest known rules");
            None
        }
        Err(_) => {
            tracing::warn!(
                ?timeout,
                "RabbitMQ did not announce its version in time; assuming the newest known rules"
            );
            None
        }
    }
}

async fn read_server_properties(
    uri: &AMQPUri,
    tls: &OwnedTLSConfig,
) -> std::io::Result<FieldTable> {
    let runtime = lapin::runtime::default_runtime().map_err(std::io::Error::other)?;
    let mut stream = uri
        .connect_with_config_async(tls.as_ref(), &runtime)
        .await?;
    stream.write_all(PROTOCOL_HEADER).await?;
    stream.flush().await?;
    let mut header = [0u8; 7];
    stream.read_exact(&mut header).await?;
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > MAX_START_FRAME {
        return Err(invalid("the broker's first frame is not connection.start"));
    }
    let mut payload = vec![0u8; size];
    stream.read_exact(&mut payload).await?;
    let _ = stream.close().await;
    server_properties(&payload).ok_or_else(|| invalid("connection.start could not be read"))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// The server properties of a `connection.start` method payload: class 10,
/// method 10, two version octets, then the properties table.
fn server_properties(payload: &[u8]) -> Option<FieldTable> {
    let (ids, rest) = payload.split_at_checked(6)?;
    if ids[..4] != [0, 10, 0, 10] {
        return None;
    }
    lapin::types::parsing::parse_field_table(rest)
        .ok()
        .map(|(_, table)| table)
}

fn version_of(props: &FieldTable) -> Option<Version> {
    match props.inner().get("version")? {
        AMQPValue::LongString(s) => Version::parse(&String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Version::parse(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_payload(version: &str) -> Vec<u8> {
        let mut table = Vec::new();
        for (k, v) in [("product", "RabbitMQ"), ("version", version)] {
            table.push(u8::try_from(k.len()).unwrap());
            table.extend_from_slice(k.as_bytes());
            table.push(b'S');
            table.extend_from_slice(&u32::try_from(v.len()).unwrap().to_be_bytes());
            table.extend_from_slice(v.as_bytes());
        }
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend_from_slice(&u32::try_from(table.len()).unwrap().to_be_bytes());
        payload.extend_from_slice(&table);
        payload
    }

    #[test]
    fn reads_the_version_from_connection_start() {
        let props = server_properties(&start_payload("4.0.5")).unwrap();
        assert_eq!(version_of(&props), Some(Version::new(4, 0, 5)));
    }

    #[test]
    fn other_methods_and_short_payloads_are_refused() {
        let mut payload = start_payload("3.10.8");
        payload[3] = 11;
        assert!(server_properties(&payload).is_none());
        assert!(server_properties(&[0, 10]).is_none());
    }
}
