//! The HTTP ports (SCIM, `/metrics`): hyper's connections with a header-read timeout and an
//! idle timeout, on a [`Listener`] with a connection cap.
//!
//! hyper times the headers itself (`header_read_timeout`, with tokio's timer): from the start of
//! a connection or the end of the previous response until a request's headers are complete, so
//! a client that connects and sends nothing, or trickles its headers, is cut off. hyper has no
//! idle timeout, so each connection's I/O is watched here: when nothing moved either way for the
//! idle timeout the connection shuts down gracefully (an HTTP/2 connection with streams open
//! answers them first).

use crate::listen::{Capped, Listener};
use crate::net::until;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

/// How long a connection that was asked to close (idle, or the server stopping) may take to
/// finish the request in flight before it is dropped.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The HTTP timeouts (`--http-header-timeout`, `--http-idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

impl From<&crate::listen::Args> for Timeouts {
    fn from(args: &crate::listen::Args) -> Self {
        Timeouts {
            header: args.http_header_timeout,
            idle: args.http_idle_timeout,
        }
    }
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Serves `router` over plain HTTP/1.1 on `listener` until `stopped`, then waits for the open
/// connections to finish (each within [`DRAIN`]).
pub async fn serve(
    mut listener: Listener,
    router: axum::Router,
    timeouts: Timeouts,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut stop = std::pin::pin!(until(stopped.clone()));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            (connection, _) = listener.accept() => {
                tokio::spawn(serve_connection(
                    connection,
                    Protocol::Http1,
                    router.clone(),
                    timeouts,
                    stopped.clone(),
                ));
            }
        }
    }
    listener.drained().await;
    Ok(())
}

/// Serves one connection with `router` until the client closes it, it times out, or
/// `stopped` (then it finishes the request in flight, within [`DRAIN`]).
pub async fn serve_connection<IO>(
    io: IO,
    protocol: Protocol,
    router: axum::Router,
    timeouts: Timeouts,
    stopped: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io,
        activity: Arc::clone(&activity),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    builder.http2().timer(TokioTimer::new());
    // The protocol is known (plain HTTP/1.1, or TLS's ALPN), so hyper does not wait for bytes
    // to guess it, which no timeout would bound.
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    let service = Counted {
        router,
        activity: Arc::clone(&activity),
    };
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let mut stop = std::pin::pin!(until(stopped));
    let mut closing: Option<Instant> = None;
    loop {
        let idle_at = activity.last() + timeouts.idle;
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    debug!(%error, "an HTTP connection ended with an error");
                }
                return;
            }
            _ = &mut stop, if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + DRAIN);
            }
            _ = tokio::time::sleep_until(idle_at), if closing.is_none() => {
                // Bytes may have moved while asleep, and a request being answered is not
                // idle: only a full idle period with nothing in flight closes.
                if activity.idle() && activity.last() + timeouts.idle <= Instant::now() {
                    debug!("closing an idle HTTP connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + DRAIN);
                }
            }
            _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => {
                debug!("dropping an HTTP connection that did not finish in time");
                return;
            }
        }
    }
}

/// When a connection's I/O last moved, in milliseconds since it was accepted, and how many of
/// its requests are being answered.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The router, counting the requests in flight on one connection in its [`Activity`].
#[derive(Clone)]
struct Counted {
    router: axum::Router,
    activity: Arc<Activity>,
}

impl<B> tower_service::Service<axum::extract::Request<B>> for Counted
where
    axum::Router: tower_service::Service<
            axum::extract::Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
    <axum::Router as tower_service::Service<axum::extract::Request<B>>>::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.router.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request<B>) -> Self::Future {
        let in_flight = InFlight::new(Arc::clone(&self.activity));
        let answer = self.router.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(in_flight);
            answered
        })
    }
}

/// One request being answered; the idle period starts over when it is.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// I/O that records in [`Activity`] when bytes move.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The protocol TLS agreed on (ALPN): HTTP/2 when the client offered `h2`.
pub fn negotiated<IO>(tls: &tokio_rustls::server::TlsStream<Capped<IO>>) -> Protocol {
    match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    }
}
