//! Opening a lapin connection whose incoming bytes pass the guard: a tokio
//! reactor whose TCP stream type is the guarded one, and the transport
//! closure that connects, does TLS when the URL asks for it, and wraps the
//! plaintext in [`HeaderDepthGuard`].

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::unix::io::{AsFd, AsRawFd};
#[cfg(windows)]
use std::os::windows::io::{AsRawSocket, AsSocket};
use std::time::{Duration, Instant};

use async_rs::traits::Reactor;
use async_rs::util::RuntimeParts;
use async_rs::{Runtime, Tokio};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::Stream;
use lapin::tcp::{AsyncTcpStream, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use super::HeaderDepthGuard;

/// A TCP stream of tokio's, plain or under TLS.
type Transport = AsyncTcpStream<<Tokio as Reactor>::TcpStream>;

/// tokio's reactor, handing out guarded streams.
#[derive(Debug, Clone)]
pub(crate) struct GuardedReactor(Tokio);

impl Reactor for GuardedReactor {
    type TcpStream = HeaderDepthGuard<Transport>;
    type Sleep = <Tokio as Reactor>::Sleep;

    // async-rs's bound, `AsSysFd`, is not nameable outside it; on unix it is
    // exactly `AsFd + AsRawFd` (on windows `AsSocket + AsRawSocket`).
    #[cfg(unix)]
    fn register<H: Read + Write + AsFd + AsRawFd + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.0.register(socket)
    }

    #[cfg(windows)]
    fn register<H: Read + Write + AsSocket + AsRawSocket + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.0.register(socket)
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.0.sleep(dur)
    }

    fn interval(&self, dur: Duration) -> impl Stream<Item = Instant> + Send + 'static {
        self.0.interval(dur)
    }

    fn tcp_connect_addr(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connecting = self.0.tcp_connect_addr(addr);
        async move {
            Ok(HeaderDepthGuard::new(AsyncTcpStream::Plain(
                connecting.await?,
            )))
        }
    }
}

/// The runtime lapin drives a guarded connection with: tokio's executor and
/// the guarded reactor.
type GuardedKit = RuntimeParts<Tokio, GuardedReactor>;

/// Opens a lapin connection to `uri` (TLS per its scheme, with `tls`) whose
/// incoming frames pass the header-depth guard. Must run inside a tokio
/// runtime.
pub(crate) async fn connect(
    uri: AMQPUri,
    properties: ConnectionProperties,
    tls: OwnedTLSConfig,
) -> lapin::Result<Connection> {
    let tokio = Tokio::current();
    let runtime = Runtime::new(RuntimeParts::new(
        tokio.clone(),
        GuardedReactor(tokio.clone()),
    ));
    let plain = Runtime::new(tokio);
    Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, _: Runtime<GuardedKit>| {
            let transport = open(&plain, &uri, &tls).await?;
            Ok(AsyncTcpStream::Plain(HeaderDepthGuard::new(transport)))
        },
        properties,
    )
    .await
}

/// TCP to the URL's host and port, then TLS for `amqps://`.
async fn open(
    runtime: &Runtime<Tokio>,
    uri: &AMQPUri,
    tls: &OwnedTLSConfig,
) -> io::Result<Transport> {
    let host = uri.authority.host.clone();
    let addrs = runtime.to_socket_addrs((host.clone(), uri.authority.port));
    let stream = AsyncTcpStream::connect(runtime, addrs).await?;
    match uri.scheme {
        AMQPScheme::AMQP => Ok(stream),
        AMQPScheme::AMQPS => stream.into_tls(&host, tls.as_ref()).await,
    }
}
