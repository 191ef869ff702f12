//! The HTTP port (SCIM, `/metrics`) over TLS, for `serve --http-tls`.
//!
//! gRPC's TLS (tonic's) offers only `h2` in ALPN, which a client that speaks only HTTP/1.1 (most
//! identity providers' SCIM clients) cannot agree to. Here TLS is terminated with rustls offering
//! `h2` and `http/1.1`, and each decrypted connection is served in the protocol it agreed on
//! (`crate::http`, with its timeouts). Handshakes
//! run on tasks of their own, so a slow client never holds up the accept loop. SIGHUP reads the
//! files again: connections accepted from then on get the new certificate (and client CA); open
//! ones carry on. Files that do not load keep the old ones.

use crate::http::{self, Timeouts};
use crate::listen::Listener;
use crate::net::{TlsFiles, until};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info, warn};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the files into an acceptor, checking them now rather than at the first handshake.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let what = || {
        format!(
            "--tls-cert `{}` / --tls-key `{}`",
            files.cert.display(),
            files.key.display()
        )
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a PEM certificate chain", what()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{}: not a PEM private key", what()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let bad = || format!("--client-ca-file `{}`", ca.display());
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).with_context(bad)? {
                roots.add(cert.with_context(bad)?).with_context(bad)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(bad)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("{}: the key does not fit the certificate", what()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` over TLS from `files` until `stopped`, HTTP/1.1 or HTTP/2 as
/// ALPN agreed, with `timeouts`; then waits for the open connections to finish. The files are
/// read and SIGHUP is watched before this returns.
pub fn serve(
    mut listener: Listener,
    router: axum::Router,
    timeouts: Timeouts,
    files: TlsFiles,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let mut acceptor = acceptor(&files)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")?;
    Ok(async move {
        let mut stop = std::pin::pin!(until(stopped.clone()));
        loop {
            tokio::select! {
                _ = &mut stop => break,
                (connection, peer) = listener.accept() => {
                    let (acceptor, router, stopped) = (acceptor.clone(), router.clone(), stopped.clone());
                    // The connection keeps its slot through the handshake.
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await {
                            Ok(Ok(tls)) => {
                                let protocol = http::negotiated(&tls);
                                http::serve_connection(tls, protocol, router, timeouts, stopped).await;
                            }
                            Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                            Err(_) => debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                _ = hangup.recv() => match self::acceptor(&files) {
                    Ok(reloaded) => {
                        acceptor = reloaded;
                        info!(listener = "HTTP", cert = %files.cert.display(), "reloaded the TLS certificate");
                    }
                    Err(e) => warn!(
                        listener = "HTTP",
                        error = format!("{e:#}"),
                        "cannot reload the TLS certificate: serving the previous one"
                    ),
                },
            }
        }
        listener.drained().await;
        Ok(())
    })
}
