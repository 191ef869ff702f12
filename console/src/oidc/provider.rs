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
        }
    }

    async fn metadata(&self) -> Result<Arc<Metadata>, FetchError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, metadata)) = &cache.metadata {
            if at.elapsed() < DISCOVERY_MAX_AGE {
                return Ok(Arc::clone(metadata));
            }
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
        if let Some(methods) = &metadata.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(FetchError(
                    "the identity provider does not support PKCE with S256".into(),
                ));
            }
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
        if let Some((at, keys)) = &cache.keys {
            if keys.find(alg, kid).is_some() || at.elapsed() < KEYS_MIN_INTERVAL {
                return Ok(Arc::clone(keys));
            }
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
