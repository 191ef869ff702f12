//! What `serve` and `sidecar` share about listening: secrets read from files, TLS, the health
//! listener for probes, and stopping on a signal.

use anyhow::Context;
use pdp_service::{DecisionService, RequireToken};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::path::Path;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tracing::info;

/// A secret kept in a file (a mounted Kubernetes Secret, say), trimmed; empty is an error.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let secret = secret.trim().to_owned();
    anyhow::ensure!(!secret.is_empty(), "`{}` is empty", path.display());
    Ok(secret)
}

/// TLS for a gRPC listener from PEM files, checked now rather than at the first handshake.
pub fn server_tls(cert: &Path, key: &Path) -> anyhow::Result<ServerTlsConfig> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
    };
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    // Building a server with it parses both files: a bad certificate or key stops us here.
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .with_context(|| {
            format!(
                "--tls-cert `{}` / --tls-key `{}`: not a usable PEM certificate chain and key",
                cert.display(),
                key.display()
            )
        })?;
    Ok(tls)
}

/// Accepted connections of a gRPC listener, with Nagle off: with our own listener the
/// builder's `tcp_nodelay` does not apply, and multi-frame responses would wait out delayed
/// ACKs (about 40 ms each).
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on `{addr}`"))
}

/// Serves only `grpc.health.v1` on `addr`, in plain text: for kubelet probes, which neither
/// do TLS nor reach a pod's loopback.
pub async fn serve_health(
    addr: SocketAddr,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = bind(addr).await?;
    info!(health_addr = %listener.local_addr()?, "serving gRPC health for probes");
    Ok(tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming(listener), until(stopped))
            .await
            .context("the health server failed")
    }))
}

/// gRPC server reflection over every `portcullis.v1` service and health, so `grpcurl` works
/// without the .proto files.
pub fn reflection() -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")
}

type Decisions = pb::decision_service_server::DecisionServiceServer<DecisionService>;
type GuardedDecisions = tonic::service::interceptor::InterceptedService<Decisions, RequireToken>;

/// DecisionService, open or behind a token: one of the two is `Some` (the router's type
/// differs with and without the interceptor, so both are added as optional services).
pub fn decisions(
    service: DecisionService,
    token: Option<RequireToken>,
) -> (Option<Decisions>, Option<GuardedDecisions>) {
    match token {
        None => (Some(service.into_server()), None),
        Some(token) => (
            None,
            Some(
                pb::decision_service_server::DecisionServiceServer::with_interceptor(
                    service, token,
                ),
            ),
        ),
    }
}

/// Waits for the HTTP server and the health listener to finish draining after the gRPC
/// server did.
pub async fn drained(
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    probes: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    http.await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    if let Some(probes) = probes {
        probes.await.context("the health server task failed")??;
    }
    info!("stopped");
    Ok(())
}

/// One signal stops every server: a watch that turns true on SIGINT or SIGTERM.
pub fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    stopped
}

/// Resolves once `stopped` turns true; servers then finish their in-flight requests.
pub async fn until(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|&s| s).await;
}

/// Resolves on SIGINT or SIGTERM.
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
