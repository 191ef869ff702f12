//! `portcullis sidecar`: a PDP-only process next to an agent gateway. It follows the control
//! plane's snapshot stream and serves DecisionService from memory, with no store; health says
//! NOT_SERVING until the first snapshot arrives and while it fails closed; `/metrics` on the
//! HTTP port reports the revision, the lag and the staleness, and decisions as `serve` does.
//! Checks naming an approval are decided with the grants the control plane streams
//! (`docs/approvals.md`, Sidecars).

use crate::listen::{Caps, Listener};
use crate::metrics::Metrics;
use crate::{http, net, telemetry};
use anyhow::Context;
use fleet::Follower;
use pdp_service::{DecisionService, RequireToken};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing::info;

/// How often health follows the follower's state.
const HEALTH_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's gRPC address, `https://host:port` (or `http://` without TLS).
    #[arg(long, env = "PORTCULLIS_UPSTREAM")]
    upstream: String,
    /// The secret the control plane expects from sidecars (its --sidecar-token-file).
    #[arg(long, env = "PORTCULLIS_UPSTREAM_TOKEN_FILE")]
    upstream_token_file: Option<PathBuf>,
    /// The PEM CA certificate that signed the control plane's certificate; without it, the
    /// webpki roots.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<PathBuf>,
    /// Present this PEM client certificate chain to the control plane (with
    /// --upstream-client-key), for one that requires client certificates (--client-ca-file).
    #[arg(
        long,
        env = "PORTCULLIS_UPSTREAM_CLIENT_CERT",
        requires = "upstream_client_key"
    )]
    upstream_client_cert: Option<PathBuf>,
    /// The PEM private key of --upstream-client-cert.
    #[arg(
        long,
        env = "PORTCULLIS_UPSTREAM_CLIENT_KEY",
        requires = "upstream_client_cert"
    )]
    upstream_client_key: Option<PathBuf>,
    /// Where to serve decisions; port 0 picks a free one (the log line says which). Not the
    /// server's 50051, so a sidecar and a control plane run side by side on one host.
    #[arg(long, env = "PORTCULLIS_GRPC_ADDR", default_value = "127.0.0.1:50061")]
    grpc_addr: SocketAddr,
    /// Where to serve Prometheus metrics at `/metrics` and the AuthZEN API at `/access/v1`
    /// (docs/authzen.md).
    #[arg(long, env = "PORTCULLIS_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    http_addr: SocketAddr,
    /// Also serve gRPC health alone here: for probes, which cannot reach a pod's loopback.
    #[arg(long, env = "PORTCULLIS_HEALTH_ADDR")]
    health_addr: Option<SocketAddr>,
    /// How long the control plane may be unreachable before every check is denied with reason
    /// STALE_SNAPSHOT (fail closed).
    #[arg(long, env = "PORTCULLIS_MAX_STALENESS", default_value = "60s", value_parser = humantime::parse_duration)]
    max_staleness: Duration,
    /// Keep answering from a stale snapshot instead of failing closed (metrics still say it
    /// is stale).
    #[arg(long, env = "PORTCULLIS_SERVE_STALE")]
    serve_stale: bool,
    /// Require `authorization: Bearer <secret>` on DecisionService calls and AuthZEN
    /// evaluations and searches, a secret of this file
    /// (one per line; several are valid at once; SIGHUP reads it again).
    #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
    decision_token_file: Option<PathBuf>,
    #[command(flatten)]
    grpc_limits: crate::grpc_limits::Args,
    #[command(flatten)]
    listen: crate::listen::Args,
    #[command(flatten)]
    pub telemetry: crate::telemetry::Args,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = args
        .upstream_token_file
        .as_deref()
        .map(net::read_secret)
        .transpose()?;
    let ca = args
        .upstream_ca_file
        .as_deref()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display())))
        .transpose()?;
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))
    };
    let mut upstream = fleet::Upstream::new(&args.upstream, token.as_deref(), ca.as_deref())
        .context("--upstream")?;
    if let (Some(cert), Some(key)) = (&args.upstream_client_cert, &args.upstream_client_key) {
        upstream = upstream
            .with_client_identity(&read(cert)?, &read(key)?)
            .context("--upstream-client-cert")?;
    }
    let decision_token = args
        .decision_token_file
        .as_deref()
        .map(|p| crate::token_files::load("decision-token-file", p))
        .transpose()?;
    let options = fleet::Options {
        max_staleness: args.max_staleness,
        serve_stale: args.serve_stale,
        ..fleet::Options::default()
    };
    super::runtime()?.block_on(serve(args, upstream, options, decision_token))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    args: Args,
    upstream: fleet::Upstream,
    options: fleet::Options,
    decision_token: Option<RequireToken>,
) -> anyhow::Result<()> {
    let caps = Caps::from_budget(&args.listen);
    let listener = Listener::bind(args.grpc_addr, caps.grpc, "gRPC").await?;
    let local = listener.local_addr()?;
    let http_listener = Listener::bind(args.http_addr, caps.http, "HTTP").await?;
    let http_local = http_listener.local_addr()?;
    let stopped = net::stop_on_signal();
    crate::reload::on_sighup()?;

    info!(upstream = %args.upstream, max_staleness = ?options.max_staleness, "following the control plane");
    let follower = Follower::start(upstream, options).context("cannot start following")?;

    let mut metrics = Metrics::new(follower.engine());
    metrics.follower(follower.clone());
    let decision_metrics = metrics.decisions();
    // Approval ids are honoured from the grants the control plane streams; once grants are
    // used on the control plane (Require approval when it cannot be reached). One
    // DecisionService answers gRPC Check and AuthZEN over HTTP alike.
    let decisions = DecisionService::new(follower.engine().clone())
        .with_freshness(follower.freshness().clone())
        .with_metrics(decision_metrics)
        .with_approvals(std::sync::Arc::new(follower.approvals().clone()))
        .with_max_batch(args.grpc_limits.batch_checks())
        .with_check_bounds(args.grpc_limits.check_bounds())
        .with_json_max_depth(args.grpc_limits.json_depth());
    let authzen = telemetry::authzen(pdp_service::authzen::router(
        decisions.clone(),
        decision_token.clone(),
        false,
        args.grpc_limits.authzen_body_bytes(),
    ));
    let http = http::serve(
        http_listener,
        metrics.router().merge(authzen),
        http::Timeouts::from(&args.listen),
        stopped.clone(),
    );
    info!(http_addr = %http_local, "serving metrics at /metrics and AuthZEN at /access/v1");
    let http = tokio::spawn(http);

    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(follow_health(follower.clone(), health));
    let probes = match args.health_addr {
        Some(addr) => Some(
            net::serve_health(addr, caps.health, health_service.clone(), stopped.clone()).await?,
        ),
        None => None,
    };
    let max_message = args.grpc_limits.message_bytes();
    let (open, guarded) = net::decisions(decisions, decision_token, max_message);
    info!(grpc_addr = %local, "serving decisions");
    let mut routes = tonic::service::Routes::builder();
    telemetry::add(&mut routes, open);
    telemetry::add(&mut routes, guarded);
    routes.add_service(health_service);
    net::reflection(&mut routes)?;
    tonic::transport::Server::builder()
        .add_routes(crate::grpc_limits::refusing_large_messages(
            routes.routes(),
            max_message,
        ))
        .serve_with_incoming_shutdown(listener.incoming(), net::until(stopped))
        .await
        .context("the gRPC server failed")?;
    net::drained(http, probes).await
}

/// Keeps gRPC health in step with the follower: SERVING once a snapshot arrived and while it
/// does not fail closed.
async fn follow_health(follower: Follower, health: tonic_health::server::HealthReporter) {
    type Decisions = pb::decision_service_server::DecisionServiceServer<DecisionService>;
    let mut serving = None;
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    loop {
        tick.tick().await;
        let status = follower.status();
        let now = status.has_snapshot && !status.failing_closed;
        if serving == Some(now) {
            continue;
        }
        serving = Some(now);
        if now {
            health.set_serving::<Decisions>().await;
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
        } else {
            health.set_not_serving::<Decisions>().await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        }
        info!(serving = now, revision = status.revision, "health");
    }
}
