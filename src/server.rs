//! Starting an HTTP server: the one function every server gantry runs goes through
//! (`gantry serve`, `gantry registry serve`, the registries the runner embeds), so each has
//! the same protection against clients that hold connections open.
//!
//! - **Header-read timeout** ([`HEADER_READ_TIMEOUT`]): a request whose headers are not
//!   complete in time is answered by closing the connection. hyper starts this timer
//!   whenever it waits for a request head, so an idle keep-alive connection is closed by it
//!   too, and a new connection that sends nothing (the first request timeout).
//! - **Idle timeout** ([`IDLE_TIMEOUT`]): a connection on which no byte moves in either
//!   direction while the server waits on it (a stalled body, a client that stops reading a
//!   response) is closed. A handler that is busy does not count as idle: the timer only
//!   runs while the connection is polled and pending.
//!
//! Owns: the accept loop's settings (timeouts, TLS, graceful shutdown). Must not: know
//! any route or any server's semantics.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Headers must be complete within this time (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection on which nothing moves for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Running requests get this long to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on an already-bound listener until `shutdown` completes; TLS when `tls`
/// is given.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    // The remote address reaches handlers and request logs as `ConnectInfo<SocketAddr>`.
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(IdleAcceptor(IDLE_TIMEOUT))
        .handle(handle)
        .first_request_timeout(HEADER_READ_TIMEOUT);
    server
        .http_builder()
        .http1()
        .header_read_timeout(HEADER_READ_TIMEOUT);
    match tls {
        Some(cfg) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            server
                .map(|idle| {
                    axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                        .handshake_timeout(HEADER_READ_TIMEOUT)
                        .acceptor(idle)
                })
                .serve(service)
                .await
        }
        None => server.serve(service).await,
    }
}

/// Wraps each accepted stream in an [`IdleStream`], with `TCP_NODELAY` set.
#[derive(Clone, Copy, Debug)]
struct IdleAcceptor(Duration);

/// An accepted connection whose small writes must leave at once.
///
/// Why: hyper writes a response's HEADERS and DATA frames (and TLS records) as separate
/// small writes. With Nagle's algorithm on, the second waits for the client's ACK of the
/// first, which Linux delays by up to 40 ms: measured as ~40 ms gaps on every request of
/// the buildset registry on loopback. Every server gantry runs answers request by request,
/// so none gains from Nagle's batching.
trait NoDelay {
    fn no_delay(&self) -> io::Result<()>;
}

impl NoDelay for tokio::net::TcpStream {
    fn no_delay(&self) -> io::Result<()> {
        self.set_nodelay(true)
    }
}

#[cfg(test)]
impl NoDelay for tokio::io::DuplexStream {
    fn no_delay(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<I: NoDelay, S> Accept<I, S> for IdleAcceptor {
    type Stream = IdleStream<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(IdleStream<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(stream.no_delay().map(|()| {
            (
                IdleStream {
                    inner: stream,
                    idle: self.0,
                    deadline: Box::pin(tokio::time::sleep(self.0)),
                },
                service,
            )
        }))
    }
}

/// A stream that fails with `TimedOut` when a read or write has waited `idle` since the
/// last byte moved.
struct IdleStream<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleStream<S> {
    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.moved();
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.moved();
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.moved();
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stalled peer: the read fails once `idle` passes with nothing moving; bytes that
    /// move keep the stream open.
    #[tokio::test]
    async fn idle_stream_times_out() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut s, ()) = IdleAcceptor(Duration::from_millis(200))
            .accept(a, ())
            .await
            .unwrap();
        b.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 1);
        let start = std::time::Instant::now();
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
