//! [`HeaderDepthGuard`]: a byte stream whose reads pass through the
//! [`FrameScanner`]; writes go straight to the inner stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use super::scan::FrameScanner;

/// How much is read from the inner stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Wraps the plaintext stream of an AMQP connection (client side) and bounds
/// the nesting of every message header table the broker sends.
#[derive(Debug)]
pub(crate) struct HeaderDepthGuard<S> {
    inner: S,
    scanner: FrameScanner,
    /// Bytes the scanner released that the reader has not taken yet.
    ready: Vec<u8>,
    /// How much of `ready` the reader has taken.
    taken: usize,
    chunk: Box<[u8]>,
    ended: bool,
}

impl<S> HeaderDepthGuard<S> {
    pub(crate) fn new(inner: S) -> Self {
        HeaderDepthGuard {
            inner,
            scanner: FrameScanner::default(),
            ready: Vec::new(),
            taken: 0,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            ended: false,
        }
    }

    /// Copies what is ready into `buf`; `None` when nothing is.
    fn hand_out(&mut self, buf: &mut [u8]) -> Option<usize> {
        let pending = &self.ready[self.taken..];
        if pending.is_empty() {
            return None;
        }
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.taken += n;
        if self.taken == self.ready.len() {
            self.ready.clear();
            self.taken = 0;
        }
        Some(n)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderDepthGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if let Some(n) = this.hand_out(buf) {
                return Poll::Ready(Ok(n));
            }
            if this.ended {
                return Poll::Ready(Ok(0));
            }
            let read = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut this.chunk))?;
            if read == 0 {
                this.ended = true;
                this.scanner.finish(&mut this.ready);
            } else {
                this.scanner.feed(&this.chunk[..read], &mut this.ready);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderDepthGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::{AsyncReadExt, Cursor};

    #[tokio::test]
    async fn reads_pass_bytes_through_in_order_whatever_the_buffer_size() {
        // A heartbeat frame and a body frame: nothing to rewrite.
        let mut stream = vec![8, 0, 0, 0, 0, 0, 0, 0xCE];
        stream.extend_from_slice(&[3, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c', 0xCE]);
        for size in [1, 3, 64] {
            let mut guard = HeaderDepthGuard::new(Cursor::new(stream.clone()));
            let mut out = Vec::new();
            let mut buf = vec![0; size];
            loop {
                let n = guard.read(&mut buf).await.expect("reads");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, stream, "buffer of {size}");
        }
    }
}
