//! The console's requests to the identity provider, through the product's one outbound client
//! (`admin::outbound`: one HTTP/1.1 connection per request, TLS with the webpki roots, no
//! redirects followed): plain `http` only to a loopback address, a deadline on the whole
//! exchange, and an answer larger than the bound refused rather than cut.

use bytes::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Uri};
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::time::Duration;

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
    client: admin::outbound::Client,
}

impl Fetch {
    pub fn new() -> Fetch {
        Fetch {
            client: admin::outbound::Client::new(Vec::new(), "the identity provider"),
        }
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
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "portcullis-console");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if form.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let limits = admin::outbound::Limits {
            timeout: TIMEOUT,
            max_answer: MAX_ANSWER,
            read_body: |_| true,
        };
        let sent = self
            .client
            .send(url, request, Bytes::from(form.unwrap_or_default()), limits);
        // The deadline covers the whole exchange, connecting included.
        let answer = tokio::time::timeout(TIMEOUT, sent)
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer within {}",
                    humantime::format_duration(TIMEOUT)
                ))
            })?
            .map_err(fail)?;
        if !answer.whole {
            return Err(fail(format!(
                "the answer could not be read whole (at most {MAX_ANSWER} bytes)"
            )));
        }
        Ok(Answer {
            status: answer.status,
            body: answer.body,
        })
    }
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
