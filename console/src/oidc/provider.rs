//! The identity provider as the console knows it: its discovery document (read on first use,
//! again after an hour), its signing keys (cached; fetched again when a token names a key we do
//! not have, at most once a minute so that forged key ids cannot make us hammer the provider),
//! the authorization request, and the code exchange.

use super::Config;
use super::fetch::{Fetch, FetchError};
use super::id_token::{self, Claims, Expected, Keys};
use super::pending::Pending;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A discovery document is read again after this long.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// The key set is fetched again for an unknown key id at most this often.
const KEYS_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The parts of the discovery document the console uses.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct Cache {
    metadata: Option<(Instant, Arc<Metadata>)>,
    keys: Option<(Instant, Arc<Keys>)>,
}

/// The console's client of the identity provider.
pub(crate) struct Client {
    pub config: Config,
    pub pending: Pending,
    fetch: Fetch,
    /// One discovery or key fetch at a time; each is bounded by the fetch timeout.
    cache: Mutex<Cache>,
    /// [`KEYS_MIN_INTERVAL`] (shorter in tests).
    keys_min_interval: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a sign-in starts with: where to send the browser, and what to hold until it is back.
pub(crate) struct Start {
    pub location: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
}

impl Client {
    pub fn new(config: Config) -> Client {
        Client {
            config,
            pending: Pending::default(),
            fetch: Fetch::new(),
            cache: Mutex::new(Cache::default()),
            keys_min_interval: KEYS_MIN_INTERVAL,
        }
    }

    async fn metadata(&self) -> Result<Arc<Metadata>, FetchError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, metadata)) = &cache.metadata
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(Arc::clone(metadata));
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.fetch.get_json(&url, "discovery document").await?;
        // The issuer must be the one configured, exactly (OpenID Connect Discovery §4.3): a
        // document naming another issuer could send us someone else's keys.
        if metadata.issuer != self.config.issuer {
            return Err(FetchError(format!(
                "the discovery document at `{url}` names issuer `{}`, not `{}`",
                metadata.issuer, self.config.issuer
            )));
        }
        for (name, endpoint) in [
            ("authorization_endpoint", &metadata.authorization_endpoint),
            ("token_endpoint", &metadata.token_endpoint),
            ("jwks_uri", &metadata.jwks_uri),
        ] {
            let allowed = endpoint
                .parse()
                .map(|uri| super::fetch::allowed(&uri))
                .unwrap_or(false);
            if !allowed {
                return Err(FetchError(format!(
                    "the discovery document's {name} `{endpoint}` is not https"
                )));
            }
        }
        if let Some(methods) = &metadata.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(FetchError(
                "the identity provider does not support PKCE with S256".into(),
            ));
        }
        let metadata = Arc::new(metadata);
        cache.metadata = Some((Instant::now(), Arc::clone(&metadata)));
        Ok(metadata)
    }

    /// Begins a sign-in: fresh `state`, `nonce` and PKCE verifier, and the authorization URL.
    pub async fn start(&self) -> Result<Start, String> {
        let metadata = self.metadata().await.map_err(|e| e.0)?;
        let random = || crate::session::random().map_err(|e| e.to_string());
        let (state, nonce, verifier) = (random()?, random()?, random()?);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.config.client_id.as_str()),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("scope", self.config.scopes.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| e.to_string())?;
        let endpoint = &metadata.authorization_endpoint;
        let join = if endpoint.contains('?') { '&' } else { '?' };
        Ok(Start {
            location: format!("{endpoint}{join}{query}"),
            state,
            verifier,
            nonce,
        })
    }

    /// Exchanges an authorization code for an ID token and checks it.
    pub async fn finish(&self, code: &str, verifier: &str, nonce: &str) -> Result<Claims, String> {
        let metadata = self.metadata().await.map_err(|e| e.0)?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .map_err(|e| e.to_string())?;
        let answer = self
            .fetch
            .post_form(&metadata.token_endpoint, &self.basic(), form)
            .await
            .map_err(|e| e.0)?;
        #[derive(Deserialize)]
        struct Tokens {
            #[serde(default)]
            id_token: Option<String>,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            error_description: Option<String>,
        }
        let tokens: Tokens = answer.json("token response").map_err(|e| e.0)?;
        if answer.status != 200 {
            let error = tokens.error.unwrap_or_default();
            let description = tokens.error_description.unwrap_or_default();
            return Err(format!(
                "the identity provider refused the code exchange (HTTP {}): {} {}",
                answer.status,
                bounded(&error),
                bounded(&description)
            ));
        }
        let token = tokens
            .id_token
            .ok_or("the identity provider's token response has no ID token")?;
        let (alg, kid) = id_token::header(&token)?;
        let keys = self.keys(alg, kid.as_deref(), &metadata).await?;
        let key = keys
            .find(alg, kid.as_deref())
            .ok_or("no key of the identity provider's key set fits the ID token's signature")?;
        id_token::validate(
            &token,
            alg,
            key,
            &Expected {
                issuer: &self.config.issuer,
                client_id: &self.config.client_id,
                nonce,
            },
        )
    }

    /// The key set, fetched again if it has no key for this header (within the interval).
    async fn keys(
        &self,
        alg: jsonwebtoken::Algorithm,
        kid: Option<&str>,
        metadata: &Metadata,
    ) -> Result<Arc<Keys>, String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, keys)) = &cache.keys
            && (keys.find(alg, kid).is_some() || at.elapsed() < self.keys_min_interval)
        {
            return Ok(Arc::clone(keys));
        }
        let set: serde_json::Value = self
            .fetch
            .get_json(&metadata.jwks_uri, "key set")
            .await
            .map_err(|e| e.0)?;
        let keys = Arc::new(Keys::from_set(&set)?);
        cache.keys = Some((Instant::now(), Arc::clone(&keys)));
        Ok(keys)
    }

    /// `client_secret_basic` (RFC 6749 §2.3.1): id and secret form-encoded, then base64.
    fn basic(&self) -> String {
        let encode = |s: &str| {
            serde_urlencoded::to_string([("", s)])
                .unwrap_or_default()
                .trim_start_matches('=')
                .to_owned()
        };
        let pair = format!(
            "{}:{}",
            encode(&self.config.client_id),
            encode(&self.config.client_secret)
        );
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// A provider's error text, cut to a length a page can show.
pub(crate) fn bounded(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A canned HTTP server on loopback: `answer(path)` gives each request's JSON body (200);
    /// returns its base URL and how many requests each path got, as `(path, count)` pairs.
    async fn server(
        answer: impl Fn(&str, &str) -> String + Send + Sync + 'static,
    ) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (answer, log, at) = (Arc::new(answer), Arc::clone(&seen), base.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(path.clone());
                let body = answer(&at, &path);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            }
        });
        (base, seen)
    }

    fn client(issuer: &str) -> Client {
        Client::new(Config {
            issuer: issuer.to_owned(),
            client_id: "portcullis".into(),
            client_secret: "s3cret".into(),
            redirect_uri: "https://portcullis.example.com/console/sign-in/callback".into(),
            scopes: "openid email".into(),
            name: "IdP".into(),
        })
    }

    fn discovery(issuer: &str, token_endpoint: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth?tenant=a"),
            "token_endpoint": token_endpoint,
            "jwks_uri": format!("{issuer}/jwks"),
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string()
    }

    #[tokio::test]
    async fn the_authorization_request_carries_pkce_state_and_nonce() {
        let (base, seen) = server(|at, _| discovery(at, &format!("{at}/token"))).await;
        let client = client(&base);
        let start = client.start().await.unwrap();
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(start.verifier.as_bytes()));
        assert!(
            start
                .location
                .starts_with(&format!("{base}/auth?tenant=a&")),
            "{}",
            start.location
        );
        for part in [
            "response_type=code".to_owned(),
            "client_id=portcullis".to_owned(),
            format!("state={}", start.state),
            format!("nonce={}", start.nonce),
            format!("code_challenge={expected}"),
            "code_challenge_method=S256".to_owned(),
            "scope=openid+email".to_owned(),
        ] {
            assert!(start.location.contains(&part), "{part}: {}", start.location);
        }
        assert_ne!(start.state, start.nonce);
        // The discovery document is read once, then cached.
        client.start().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_discovery_document_of_another_issuer_or_off_https_is_refused() {
        let (base, _) =
            server(|at, _| discovery(&format!("{at}/other"), &format!("{at}/token"))).await;
        let error = client(&base).start().await.err().expect("refused");
        assert!(error.contains("names issuer"), "{error}");

        let (base, _) = server(|at, _| discovery(at, "http://idp.example.com/token")).await;
        let error = client(&base).start().await.err().expect("refused");
        assert!(
            error.contains("token_endpoint") && error.contains("not https"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn keys_are_fetched_again_for_an_unknown_key_id_at_most_once_an_interval() {
        let fetched = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&fetched);
        let (base, _) = server(move |at, path| {
            if path == "/jwks" {
                count.fetch_add(1, Ordering::SeqCst);
                serde_json::json!({"keys": [{
                    "kty": "RSA", "kid": "k1", "use": "sig",
                    "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
                    "e": "AQAB",
                }]})
                .to_string()
            } else {
                discovery(at, &format!("{at}/token"))
            }
        })
        .await;
        let mut client = client(&base);
        let metadata = client.metadata().await.unwrap();
        let found = client
            .keys(Algorithm::RS256, Some("k1"), &metadata)
            .await
            .unwrap();
        assert!(found.find(Algorithm::RS256, Some("k1")).is_some());
        client
            .keys(Algorithm::RS256, Some("k1"), &metadata)
            .await
            .unwrap();
        assert_eq!(fetched.load(Ordering::SeqCst), 1, "a known key id: cached");
        client
            .keys(Algorithm::RS256, Some("k9"), &metadata)
            .await
            .unwrap();
        assert_eq!(
            fetched.load(Ordering::SeqCst),
            1,
            "unknown, but fetched just now"
        );
        client.keys_min_interval = Duration::ZERO;
        let again = client
            .keys(Algorithm::RS256, Some("k9"), &metadata)
            .await
            .unwrap();
        assert_eq!(fetched.load(Ordering::SeqCst), 2, "unknown: fetched again");
        assert!(again.find(Algorithm::RS256, Some("k9")).is_none());
    }
}
