//! The console's requests to the identity provider: one HTTP/1.1 connection per request (TLS
//! with the webpki roots for `https`; plain `http` only to a loopback address), a deadline on
//! the whole exchange, the answer read up to a bound, no redirects followed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Uri};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// How long one request may take, connecting and answering together.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a discovery document, a key set, a token response).
const MAX_ANSWER: usize = 256 * 1024;

/// Whether the console may send a request to `uri`: https anywhere, http only on loopback.
pub(crate) fn allowed(uri: &Uri) -> bool {
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => uri.host().is_some_and(loopback),
        _ => false,
    }
}

fn loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request that failed: what to tell the operator (never a secret).
#[derive(Debug, Clone)]
pub(crate) struct FetchError(pub String);

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An answer: its status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| FetchError(format!("the identity provider's {what} is unreadable: {e}")))
    }
}

pub(crate) struct Fetch {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Fetch {
    pub fn new() -> Fetch {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
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
                tracing::error!(%error, "no TLS for the identity provider: sign-in will fail");
                None
            }
        };
        Fetch { tls }
    }

    /// GET `url`, expecting 200 with JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, FetchError> {
        let answer = self.send(Method::GET, url, None, None).await?;
        if answer.status != 200 {
            return Err(FetchError(format!(
                "the identity provider answered HTTP {} for its {what} (`{url}`)",
                answer.status
            )));
        }
        answer.json(what)
    }

    /// POST a form to `url` with an `Authorization` header.
    pub async fn post_form(
        &self,
        url: &str,
        authorization: &str,
        form: String,
    ) -> Result<Answer, FetchError> {
        self.send(Method::POST, url, Some(authorization), Some(form))
            .await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        form: Option<String>,
    ) -> Result<Answer, FetchError> {
        let fail = |problem: String| FetchError(format!("{method} `{url}`: {problem}"));
        let uri: Uri = url.parse().map_err(|e| fail(format!("invalid url: {e}")))?;
        if !allowed(&uri) {
            return Err(fail(
                "must be https (plain http only to a loopback address)".into(),
            ));
        }
        let https = uri.scheme_str() == Some("https");
        let authority = uri
            .authority()
            .ok_or_else(|| fail("no host".into()))?
            .as_str()
            .to_owned();
        let host = uri.host().ok_or_else(|| fail("no host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "portcullis-console");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if form.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| fail(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| fail(format!("cannot connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            if https {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| fail(format!("invalid host for TLS: {e}")))?;
                let connector = self
                    .tls
                    .as_ref()
                    .ok_or_else(|| fail("TLS is unavailable".into()))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail(format!("TLS: {e}")))?;
                exchange(tls, request).await.map_err(fail)
            } else {
                exchange(tcp, request).await.map_err(fail)
            }
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
            fail(format!(
                "no answer within {}",
                humantime::format_duration(TIMEOUT)
            ))
        })?
    }
}

/// Aborts the connection's task when the exchange ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<Answer, String>
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
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| {
            format!("the answer could not be read whole (at most {MAX_ANSWER} bytes): {e}")
        })?
        .to_bytes();
    Ok(Answer { status, body })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        let ok = |url: &str| allowed(&url.parse().unwrap());
        assert!(ok("https://idp.example.com/x"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://[::1]:8080/token"));
        assert!(ok("http://localhost/"));
        assert!(!ok("http://idp.example.com"));
        assert!(!ok("http://10.0.0.1"));
        assert!(!ok("ftp://127.0.0.1"));
        assert!(!ok("/relative"));
    }
}
