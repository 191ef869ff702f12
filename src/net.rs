//! What `serve` and `sidecar` share about listening: secrets read from files, TLS, the health
//! listener for probes, and stopping on a signal.

use crate::listen::{Capped, Listener};
use anyhow::Context;
use pdp_service::{DecisionService, RequireToken};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpStream;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

/// A secret kept in a file (a mounted Kubernetes Secret, say), trimmed; empty is an error.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let secret = secret.trim().to_owned();
    anyhow::ensure!(!secret.is_empty(), "`{}` is empty", path.display());
    Ok(secret)
}

/// The PEM files a TLS listener serves from, read at start and again on SIGHUP.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads and checks the files now rather than at the first handshake.
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
        };
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        // Building a server with it parses the files: a bad certificate or key stops us here.
        tonic::transport::Server::builder()
            .tls_config(tls.clone())
            .with_context(|| {
                format!(
                    "--tls-cert `{}` / --tls-key `{}`{}: not a usable PEM certificate chain and key{}",
                    self.cert.display(),
                    self.key.display(),
                    self.client_ca
                        .as_ref()
                        .map(|ca| format!(" / --client-ca-file `{}`", ca.display()))
                        .unwrap_or_default(),
                    if self.client_ca.is_some() { " and CA" } else { "" }
                )
            })?;
        Ok(tls)
    }
}

/// Serves `routes` on `listener` with `server`'s settings until `stopped`; over TLS with `tls`.
///
/// The files are read and SIGHUP is watched before this returns, so the caller can log that
/// it serves. With TLS, SIGHUP reads the files again: connections accepted from then on get
/// the new certificate (and client CA), while open ones (sidecar streams, say) carry on with
/// the old one on the server that accepted them. Files that do not load keep the old ones.
pub fn serve(
    mut listener: Listener,
    server: tonic::transport::Server,
    routes: Routes,
    tls: Option<TlsFiles>,
    stopped: tokio::sync::watch::Receiver<bool>,
    name: &'static str,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let first = tls.as_ref().map(TlsFiles::load).transpose()?;
    #[cfg(unix)]
    let mut hangup = match tls {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot watch SIGHUP")?,
        ),
        None => None,
    };
    Ok(async move {
        let failed = move |e| anyhow::Error::new(e).context(format!("the {name} server failed"));
        let (Some(files), Some(first)) = (tls, first) else {
            return server
                .clone()
                .add_routes(routes)
                .serve_with_incoming_shutdown(listener.incoming(), until(stopped))
                .await
                .map_err(failed);
        };
        // Each certificate gets its own server, fed the connections accepted while it is
        // the newest.
        let start = |tls: ServerTlsConfig| -> anyhow::Result<_> {
            let (accepted, connections) = tokio::sync::mpsc::channel::<Capped<TcpStream>>(64);
            let connections = futures_util::stream::unfold(connections, |mut connections| async {
                connections
                    .recv()
                    .await
                    .map(|c| (Ok::<_, std::io::Error>(c), connections))
            });
            let router = server
                .clone()
                .tls_config(tls)
                .context("cannot set up TLS")?
                .add_routes(routes.clone());
            let served = tokio::spawn(
                router.serve_with_incoming_shutdown(Box::pin(connections), until(stopped.clone())),
            );
            anyhow::Ok((accepted, served))
        };
        let (mut newest, first) = start(first)?;
        let (mut older, mut servers) = (Vec::new(), vec![first]);
        let mut stop = std::pin::pin!(until(stopped.clone()));
        loop {
            #[cfg(unix)]
            let reload = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let reload = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = &mut stop => break,
                (connection, _) = listener.accept() => {
                    if newest.send(connection).await.is_err() {
                        break; // that server stopped: its error is reported below
                    }
                },
                _ = reload => match files.load().and_then(start) {
                    Ok((accepted, served)) => {
                        // The older servers keep their connections (and their feed stays open).
                        older.push(std::mem::replace(&mut newest, accepted));
                        servers.push(served);
                        info!(listener = name, cert = %files.cert.display(), "reloaded the TLS certificate");
                    }
                    Err(e) => warn!(
                        listener = name,
                        error = format!("{e:#}"),
                        "cannot reload the TLS certificate: serving the previous one"
                    ),
                },
            }
        }
        // The newest first: if it stopped on its own, its error is the one to report.
        for served in servers.into_iter().rev() {
            served
                .await
                .with_context(|| format!("the {name} server task failed"))?
                .map_err(failed)?;
        }
        drop((newest, older));
        Ok(())
    })
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
    cap: usize,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = Listener::bind(addr, cap, "health").await?;
    info!(health_addr = %listener.local_addr()?, "serving gRPC health for probes");
    Ok(tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(listener.incoming(), until(stopped))
            .await
            .context("the health server failed")
    }))
}

/// gRPC server reflection over every `portcullis.v1` service and health, so `grpcurl` works
/// without the .proto files: `grpc.reflection.v1` and, for clients that still ask it (Python's
/// grpcio-reflection, older grpcurl and Postman builds), `grpc.reflection.v1alpha`.
pub fn reflection(routes: &mut tonic::service::RoutesBuilder) -> anyhow::Result<()> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .context("cannot build the reflection service")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("cannot build the reflection service (v1alpha)")?;
    routes.add_service(v1).add_service(v1alpha);
    Ok(())
}

type Decisions = pb::decision_service_server::DecisionServiceServer<DecisionService>;
type GuardedDecisions = tonic::service::interceptor::InterceptedService<Decisions, RequireToken>;

/// DecisionService decoding requests of at most `max_message` bytes, open or behind a token:
/// one of the two is `Some` (the router's type differs with and without the interceptor, so
/// both are added as optional services).
pub fn decisions(
    service: DecisionService,
    token: Option<RequireToken>,
    max_message: usize,
) -> (Option<Decisions>, Option<GuardedDecisions>) {
    let server = service.into_server().max_decoding_message_size(max_message);
    match token {
        None => (Some(server), None),
        Some(token) => (
            None,
            Some(tonic::service::interceptor::InterceptedService::new(
                server, token,
            )),
        ),
    }
}

/// Waits for the HTTP server and the health listener to finish draining after the gRPC
/// server did.
pub async fn drained(
    http: tokio::task::JoinHandle<anyhow::Result<()>>,
    probes: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    http.await.context("the HTTP server task failed")??;
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
