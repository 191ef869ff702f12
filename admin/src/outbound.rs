//! The product's one outbound HTTP client: the webhook deliverer's POSTs and the console's
//! requests to the identity provider. Each request has a connection of its own (HTTP/1.1, TLS
//! with the webpki roots and any the operator adds for `https`), connecting and then answering
//! each within the caller's `timeout`, no redirect followed (a 3xx is an answer like any other),
//! and at most the caller's bound of the answer's body read. The callers keep their own limits
//! and what they make of an answer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// What one request may take, and which answers' bodies are read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To connect, and then (again) to be answered.
    pub timeout: Duration,
    /// The most of an answer's body read; the rest is left unread.
    pub max_answer: usize,
    /// Whether the body of an answer with this status is read at all.
    pub read_body: fn(u16) -> bool,
}

/// An answer: its status and the body as far as it was read (`whole` when nothing was left).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub whole: bool,
}

/// The client: the TLS settings, shared by every request.
pub struct Client {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client {
    /// A client trusting the webpki roots and `extra` ones; `purpose` says in the log what
    /// fails when TLS cannot be set up.
    pub fn new(extra: Vec<rustls::pki_types::CertificateDer<'static>>, purpose: &str) -> Client {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for root in extra {
            if let Err(error) = roots.add(root) {
                tracing::warn!(%error, purpose, "an added root certificate was refused");
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => {
                let mut config = builder.with_root_certificates(roots).with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            Err(error) => {
                // The ring provider supports the default versions: not expected to happen.
                tracing::error!(%error, purpose, "no TLS: https requests will fail");
                None
            }
        };
        Client { tls }
    }

    /// Sends `request` (method, headers; its path and `Host` are set here from `url`) with
    /// `body` to `url`, which must be http or https.
    pub async fn send(
        &self,
        url: &str,
        request: hyper::http::request::Builder,
        body: Bytes,
        limits: Limits,
    ) -> Result<Answer, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid url: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the url is neither https nor http".into()),
        };
        let authority = uri.authority().ok_or("the url has no host")?.as_str();
        let host = uri.host().ok_or("the url has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = request
            .uri(path)
            .header(HOST, authority)
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let timeout = limits.timeout;
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                format!(
                    "no connection within {}",
                    humantime::format_duration(timeout)
                )
            })?
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let exchange = async {
            if https {
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("invalid host for TLS: {e}"))?;
                let connector = self.tls.as_ref().ok_or("TLS is unavailable")?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(tls, request, limits).await
            } else {
                exchange(tcp, request, limits).await
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))?
    }
}

/// Aborts the connection's task when the exchange ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<IO>(
    io: IO,
    request: hyper::Request<Full<Bytes>>,
    limits: Limits,
) -> Result<Answer, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {}", chain(&e)))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {}", chain(&e)))?;
    let status = response.status().as_u16();
    if !(limits.read_body)(status) {
        return Ok(Answer {
            status,
            body: Bytes::new(),
            whole: false,
        });
    }
    let mut body = response.into_body();
    let mut read = Vec::new();
    let whole = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limits.max_answer - read.len();
                    if data.len() > room {
                        read.extend_from_slice(&data[..room]);
                        break false;
                    }
                    read.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => break false,
        }
    };
    Ok(Answer {
        status,
        body: Bytes::from(read),
        whole,
    })
}

/// An error with its causes (hyper's own message is only "connection error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
