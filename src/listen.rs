//! Every TCP listener `serve` and `sidecar` own: a cap on open connections per listener, a
//! descriptor budget that keeps the gRPC port serving whatever the HTTP port receives, and
//! accept loops that back off when accepting fails (out of descriptors, say) instead of spinning.
//!
//! At the cap a listener waits: it stops accepting until one of its connections closes, and new
//! clients queue in the kernel's backlog (then their SYNs go unanswered) without costing us a
//! descriptor. Go's `netutil.LimitListener` and nginx's `worker_connections` do the same.
//!
//! The budget: at start the soft `RLIMIT_NOFILE` is raised to the hard one (as servers do), and
//! the descriptors it allows, less [`RESERVE`] for the store, the log files, the control socket
//! and outgoing connections, are shared out: half to the gRPC port, a quarter to the HTTP port,
//! an eighth each to the health and metrics ports. A listener's cap is its setting or its share,
//! whichever is smaller, so no flood on one port can take the descriptors another needs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

/// Descriptors kept out of the listeners' budget: the store's files, the decision-log file,
/// stdio, the runtime's own (epoll, eventfd), the control socket and outgoing connections
/// (OTLP, the control plane for a sidecar).
pub const RESERVE: u64 = 64;
/// The cap of the health and metrics listeners (probes and scrapers: a few clients each).
pub const PROBE_CONNECTIONS: usize = 64;
/// The longest an accept loop sleeps after a failure; the sleep doubles from [`BACKOFF_FIRST`].
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// At most one log line per listener this often about failing accepts, with how many failed.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits and timeouts of the network ports.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "listen_args")]
pub struct Args {
    /// The most connections the gRPC port holds open at once; at the cap it accepts no more
    /// until one closes (clients wait in the kernel's backlog). Lowered to half of the
    /// descriptor budget (docs/operations.md) if that is smaller.
    #[arg(long, env = "PORTCULLIS_GRPC_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_connections: u32,
    /// The most connections the HTTP port holds open at once; at the cap it accepts no more
    /// until one closes. Lowered to a quarter of the descriptor budget if that is smaller, so a
    /// flood on this port cannot take the descriptors gRPC needs.
    #[arg(long, env = "PORTCULLIS_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// How long an HTTP client has to send a request's headers, counted from connecting or
    /// from the previous response: a client that sends nothing, or trickles its headers, is
    /// disconnected then. For HTTP/1.1 it also bounds the wait for the next request.
    #[arg(long, env = "PORTCULLIS_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_header_timeout: Duration,
    /// An HTTP connection that has sent and received nothing for this long is closed (after
    /// the request in flight, if any, is answered).
    #[arg(long, env = "PORTCULLIS_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,
}

/// `serve`'s network settings: the limits, and where metrics are served.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "serve_listen_args")]
pub struct ServeArgs {
    /// Serve Prometheus metrics at `/metrics` on this address (plain HTTP) instead of the HTTP
    /// port, which then answers 404 there: the SCIM port often faces the identity provider
    /// across the internet, metrics need not. Port 0 picks a free one (the log line says which).
    #[arg(long, env = "PORTCULLIS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub limits: Args,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

/// The connection cap of each listener, from the settings and the descriptor budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub grpc: usize,
    pub http: usize,
    pub health: usize,
    pub metrics: usize,
}

impl Caps {
    /// Raises the soft descriptor limit to the hard one, then shares the budget out (module
    /// docs) and logs the caps, warning when the budget lowered a setting.
    pub fn from_budget(args: &Args) -> Caps {
        let descriptors = raise_descriptor_limit();
        let caps = Caps::within(args, descriptors);
        info!(
            descriptors,
            grpc = caps.grpc,
            http = caps.http,
            health = caps.health,
            metrics = caps.metrics,
            "connection caps"
        );
        for (what, setting, cap) in [
            (
                "--grpc-max-connections",
                args.grpc_max_connections,
                caps.grpc,
            ),
            (
                "--http-max-connections",
                args.http_max_connections,
                caps.http,
            ),
        ] {
            if (setting as usize) > cap {
                warn!(
                    setting = what,
                    configured = setting,
                    cap,
                    descriptors,
                    "the descriptor limit (RLIMIT_NOFILE) lowers this connection cap"
                );
            }
        }
        caps
    }

    /// The caps with `descriptors` open files allowed; each at least 1.
    pub fn within(args: &Args, descriptors: u64) -> Caps {
        let budget = descriptors.saturating_sub(RESERVE);
        let share = |divisor: u64, setting: usize| {
            let share = usize::try_from(budget / divisor).unwrap_or(usize::MAX);
            setting.min(share).max(1)
        };
        Caps {
            grpc: share(2, args.grpc_max_connections as usize),
            http: share(4, args.http_max_connections as usize),
            health: share(8, PROBE_CONNECTIONS),
            metrics: share(8, PROBE_CONNECTIONS),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force
/// (`u64::MAX` when unlimited). A failure keeps the old limit, with a warning.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warn!(error = %e, current, maximum, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A TCP listener with a connection cap: each accepted connection holds one of `cap` slots
/// until it is dropped.
pub struct Listener {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
    cap: usize,
    backoff: Backoff,
}

impl Listener {
    pub async fn bind(addr: SocketAddr, cap: usize, name: &'static str) -> anyhow::Result<Self> {
        Ok(Listener::new(crate::net::bind(addr).await?, cap, name))
    }

    pub fn new(tcp: TcpListener, cap: usize, name: &'static str) -> Self {
        Listener {
            tcp,
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            backoff: Backoff::new(name),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection, with Nagle off (gRPC's multi-frame responses would otherwise wait
    /// out delayed ACKs); waits while the listener is at its cap, and backs off while accepting
    /// fails.
    pub async fn accept(&mut self) -> (Capped<TcpStream>, SocketAddr) {
        loop {
            // The semaphore is never closed, so acquiring only fails if it were.
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    self.backoff.succeeded();
                    let _ = stream.set_nodelay(true);
                    return (
                        Capped {
                            io: stream,
                            _slot: slot,
                        },
                        peer,
                    );
                }
                Err(e) => {
                    drop(slot);
                    self.backoff.failed(&e).await;
                }
            }
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn incoming(
        self,
    ) -> impl futures_util::Stream<Item = io::Result<Capped<TcpStream>>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let (connection, _) = listener.accept().await;
            Some((Ok(connection), listener))
        })
    }

    /// Resolves once every connection this listener accepted is closed.
    pub fn drained(&self) -> impl Future<Output = ()> + Send + 'static {
        let (slots, cap) = (Arc::clone(&self.slots), self.cap);
        async move {
            let _ = slots
                .acquire_many(u32::try_from(cap).unwrap_or(u32::MAX))
                .await;
        }
    }
}

/// How an accept loop waits after a failure: the delay doubles up to [`BACKOFF_MAX`] while
/// failures continue and starts over after a success; the log says so at most once per
/// [`LOG_EVERY`], with the count (out of descriptors, every accept fails at once).
pub struct Backoff {
    name: &'static str,
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl Backoff {
    pub fn new(name: &'static str) -> Self {
        Backoff {
            name,
            delay: BACKOFF_FIRST,
            failures: 0,
            logged: None,
        }
    }

    pub fn succeeded(&mut self) {
        self.delay = BACKOFF_FIRST;
    }

    pub async fn failed(&mut self, error: &io::Error) {
        let (delay, _) = self.record(error, Instant::now());
        tokio::time::sleep(delay).await;
    }

    /// Counts a failure at `now`, logging it unless a line went out within [`LOG_EVERY`];
    /// the delay to wait, and whether it logged.
    fn record(&mut self, error: &io::Error, now: Instant) -> (Duration, bool) {
        self.failures += 1;
        let log = self
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if log {
            warn!(
                listener = self.name,
                error = %error,
                failures = self.failures,
                retry_in = ?self.delay,
                "cannot accept connections"
            );
            self.logged = Some(now);
            self.failures = 0;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        (delay, log)
    }
}

/// A connection holding its listener's slot until dropped.
pub struct Capped<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Capped<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(grpc: u32, http: u32) -> Args {
        Args {
            grpc_max_connections: grpc,
            http_max_connections: http,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn accept_failures_back_off_and_log_once_per_period() {
        let mut backoff = Backoff::new("test");
        let error = io::Error::from_raw_os_error(24); // EMFILE
        let start = Instant::now();
        let mut at = start;
        let mut delays = Vec::new();
        let mut lines = 0;
        // 30 s of failures, out of descriptors all along.
        while at < start + Duration::from_secs(30) {
            let (delay, logged) = backoff.record(&error, at);
            delays.push(delay.as_millis());
            lines += usize::from(logged);
            at += delay;
        }
        assert_eq!(&delays[..9], &[5, 10, 20, 40, 80, 160, 320, 640, 1000]);
        assert!(delays[9..].iter().all(|&d| d == 1000), "{delays:?}");
        assert_eq!(lines, 3, "one line per 10 s");
        backoff.succeeded();
        assert_eq!(backoff.record(&error, at).0, BACKOFF_FIRST);
    }

    #[test]
    fn the_budget_lowers_caps_and_keeps_a_reserve() {
        let caps = Caps::within(&args(4096, 1024), 256);
        assert_eq!(
            caps,
            Caps {
                grpc: 96,
                http: 48,
                health: 24,
                metrics: 24
            }
        );
        assert!(
            (caps.grpc + caps.http + caps.health + caps.metrics) as u64 + RESERVE <= 256,
            "{caps:?}"
        );
        // A large limit leaves the settings as they are.
        let caps = Caps::within(&args(4096, 1024), 1 << 20);
        assert_eq!((caps.grpc, caps.http, caps.health), (4096, 1024, 64));
        // Below the reserve every listener still serves one connection.
        let caps = Caps::within(&args(4096, 1024), 10);
        assert_eq!((caps.grpc, caps.http), (1, 1));
    }
}
