//! A fault-injecting TCP proxy between the workers and the broker.
//!
//! Workers connect to the proxy's port instead of the broker's. The proxy
//! forwards bytes both ways in [`Mode::Pass`]; in [`Mode::Cut`] it drops
//! every open connection and refuses new ones (a network partition that
//! resets sockets); in [`Mode::Stall`] it forwards nothing but keeps the
//! sockets open, so only heartbeats can tell that the peer is gone. It runs
//! in the soak's own process: no root, no network namespaces.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Pass,
    /// Drop every connection and refuse new ones.
    Cut,
    /// Forward nothing; keep the sockets open.
    Stall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: Mode,
    /// Bumped by each cut: a connection opened before it ends.
    cuts: u64,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (state, watcher) = watch::channel(State {
            mode: Mode::Pass,
            cuts: 0,
        });
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = *watcher.borrow();
                if state.mode == Mode::Cut {
                    continue; // dropped: the client sees the connection reset
                }
                tokio::spawn(forward(client, upstream, watcher.clone(), state.cuts));
            }
        });
        Ok(FaultProxy {
            addr,
            state,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode; a cut ends every open connection at once.
    pub fn set(&self, mode: Mode) {
        self.state.send_modify(|s| {
            if mode == Mode::Cut {
                s.cuts += 1;
            }
            s.mode = mode;
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Mode::Cut);
        self.accept.abort();
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    cuts: u64,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends both: dropping the halves closes the sockets.
    tokio::select! {
        () = pump(client_read, server_write, state.clone(), cuts) => {}
        () = pump(server_read, client_write, state, cuts) => {}
    }
}

/// Copies `from` to `to` until either side closes or a cut comes; holds
/// what it read while the mode is [`Mode::Stall`].
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    cuts: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = state.wait_for(|s| s.cuts != cuts) => return,
        };
        let cut = match state
            .wait_for(|s| s.cuts != cuts || s.mode != Mode::Stall)
            .await
        {
            Ok(now) => now.cuts != cuts,
            Err(_) => true,
        };
        if cut {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(limit, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_stalls_and_cuts() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let long = Duration::from_secs(5);
        assert_eq!(
            round_trip(&mut s, long).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(Mode::Stall);
        assert_eq!(
            round_trip(&mut s, Duration::from_millis(300)).await,
            None,
            "nothing comes back while stalled"
        );
        proxy.set(Mode::Pass);
        let mut held = [0u8; 4];
        tokio::time::timeout(long, s.read_exact(&mut held))
            .await
            .expect("the held bytes arrive once the stall ends")
            .unwrap();
        assert_eq!(&held, b"ping");

        proxy.set(Mode::Cut);
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(long, s.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "the cut closes the socket");
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut refused, long).await,
            None,
            "refused while cut"
        );

        proxy.set(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut again, long).await.as_deref(),
            Some(&b"ping"[..])
        );
    }
}
