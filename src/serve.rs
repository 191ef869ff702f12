//! `portcullis serve`: the control plane. Opens the store, builds the snapshot, starts the
//! publisher that keeps it live with every write, and serves DecisionService and AdminService
//! with health checking and reflection until SIGINT or SIGTERM.

use admin::{Activity, AdminService};
use anyhow::Context;
use live::Live;
use pdp_service::{DecisionService, Recorder, RequireToken};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::server::TcpIncoming;
use tracing::info;

/// Decisions waiting for the recent-activity keeper; past this they are dropped, not waited for.
const RECORD_QUEUE: usize = 16 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store's directory (created if missing).
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// Where to serve gRPC; port 0 picks a free one (the log line says which).
    #[arg(long, env = "PORTCULLIS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Where to serve HTTP: the SCIM endpoint at `/scim/v2`. Port 0 picks a free one (the log
    /// line says which).
    #[arg(long, env = "PORTCULLIS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Require `authorization: Bearer <secret>` on DecisionService calls, the secret read from
    /// this file. Off by default: decisions are served to the gateway on loopback.
    #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
    decision_token_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Open and load before the runtime starts: a store that cannot be read stops us here, and
    // we never serve a partial directory.
    let store = store::Store::open(&args.data_dir)
        .with_context(|| format!("cannot open the store in `{}`", args.data_dir.display()))?;
    let decision_token = match &args.decision_token_file {
        None => None,
        Some(path) => {
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let secret = secret.trim().to_owned();
            anyhow::ensure!(!secret.is_empty(), "`{}` is empty", path.display());
            Some(RequireToken::new(&secret))
        }
    };
    let live = Live::start(store).context("cannot load the directory from the store")?;
    // The live handle holds the store, so no other process can write the directory while we
    // serve it.
    super::runtime()?.block_on(serve(live, args.grpc_addr, args.http_addr, decision_token))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    live: Live,
    addr: SocketAddr,
    http_addr: SocketAddr,
    decision_token: Option<RequireToken>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on `{addr}`"))?;
    let local = listener.local_addr()?;
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on `{http_addr}`"))?;
    let http_local = http_listener.local_addr()?;

    // One signal stops both servers; each finishes its in-flight requests.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|&s| s).await;
    };
    let scim = axum::serve(http_listener, sync::router(live.clone()))
        .with_graceful_shutdown(until_stopped(stopped.clone()));
    info!(http_addr = %http_local, "serving SCIM at /scim/v2");
    let http = tokio::spawn(async move { scim.await });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::decision_service_server::DecisionServiceServer<DecisionService>>()
        .await;
    health
        .set_serving::<pb::admin_service_server::AdminServiceServer<AdminService>>()
        .await;
    let (recorder, records) = Recorder::channel(RECORD_QUEUE);
    let activity = Activity::start(records);
    let engine = live.engine().clone();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;

    info!(grpc_addr = %local, revision = engine.revision(), "serving decisions");
    // With our own listener the builder's `tcp_nodelay` does not apply: set it on the incoming
    // stream, or multi-frame responses wait out Nagle and delayed ACKs (about 40 ms each).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let decisions = DecisionService::new(engine).with_recorder(recorder);
    // Optional services: the router's type differs with and without the interceptor.
    let (open, guarded) = match decision_token {
        None => (Some(decisions.into_server()), None),
        Some(token) => (
            None,
            Some(
                pb::decision_service_server::DecisionServiceServer::with_interceptor(
                    decisions, token,
                ),
            ),
        ),
    };
    tonic::transport::Server::builder()
        .add_optional_service(open)
        .add_optional_service(guarded)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AdminService::new(live, activity).into_server())
        .serve_with_incoming_shutdown(incoming, until_stopped(stopped))
        .await
        .context("the gRPC server failed")?;
    http.await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before the server returns.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    info!("shutting down");
}
