//! Sign-in with the company's identity provider over OpenID Connect: the authorization code
//! flow with PKCE (S256), `state` and `nonce`, the client authenticated at the token endpoint
//! with `client_secret_basic`.
//!
//! The provider is discovered from its issuer ([`provider`]: the discovery document's issuer
//! must be the configured one, its keys are cached and fetched again for an unknown key id, at
//! most once a minute); a sign-in in progress is held server-side, bound to the browser that
//! started it by a cookie of its own ([`pending`]); the ID token is checked whole before
//! anything in it is believed ([`id_token`]); and who it names is matched to one directory
//! user by the admin service (`admin::auth::sign_in_with_provider`), which also decides whether
//! they may have the console at all. Every request the console makes to the provider is
//! bounded in time and size ([`fetch`]).

mod fetch;
pub(crate) mod flow;
mod id_token;
mod pending;
mod provider;

pub(crate) use provider::Client;

use crate::settings::ProviderSettings;
use axum::http::Uri;
use std::path::Path;

/// The largest client secret file read.
const MAX_SECRET_FILE: u64 = 4096;
/// The longest client id, issuer or public URL accepted.
const MAX_SETTING: usize = 2048;

/// A checked identity provider configuration, its client secret read.
#[derive(Clone)]
pub struct Config {
    /// Exactly as configured: the discovery document and every ID token must name it so.
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// `<public url>/console/sign-in/callback`.
    pub(crate) redirect_uri: String,
    pub(crate) scopes: String,
    /// What the sign-in page calls the provider.
    pub(crate) name: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A configuration that cannot be used: the message says which setting and why.
#[derive(Debug, Clone)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Config {
    pub(crate) fn from_settings(
        settings: &ProviderSettings,
    ) -> Result<Option<Config>, ConfigError> {
        let given = |set: bool, flag: &'static str| set.then_some(flag);
        let others: Vec<&str> = [
            given(settings.client_id.is_some(), "--console-oidc-client-id"),
            given(
                settings.client_secret_file.is_some(),
                "--console-oidc-client-secret-file",
            ),
            given(settings.name.is_some(), "--console-oidc-name"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let Some(issuer) = &settings.issuer else {
            if others.is_empty() {
                return Ok(None);
            }
            return Err(error(format!(
                "{} set but --console-oidc-issuer is not: identity provider sign-in needs \
                 --console-oidc-issuer, --console-oidc-client-id, \
                 --console-oidc-client-secret-file and --console-public-url together",
                others.join(", ")
            )));
        };
        let missing: Vec<&str> = [
            given(settings.client_id.is_none(), "--console-oidc-client-id"),
            given(
                settings.client_secret_file.is_none(),
                "--console-oidc-client-secret-file",
            ),
            given(settings.public_url.is_none(), "--console-public-url"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !missing.is_empty() {
            return Err(error(format!(
                "--console-oidc-issuer is set but {} not: identity provider sign-in needs them all",
                missing.join(", ")
            )));
        }
        let (Some(client_id), Some(secret_file), Some(public_url)) = (
            &settings.client_id,
            &settings.client_secret_file,
            &settings.public_url,
        ) else {
            return Err(error("identity provider settings are incomplete"));
        };
        let issuer_uri = checked_url("--console-oidc-issuer", issuer)?;
        let public_url = checked_origin(public_url)?;
        let client_id = client_id.trim();
        if client_id.is_empty() || client_id.len() > MAX_SETTING {
            return Err(error(format!(
                "--console-oidc-client-id: must be 1 to {MAX_SETTING} characters"
            )));
        }
        let scopes: Vec<&str> = settings.scopes.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            return Err(error(format!(
                "--console-oidc-scopes: `{}` must include `openid`",
                settings.scopes
            )));
        }
        let name = match settings.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.chars().take(100).collect(),
            _ => issuer_uri.host().unwrap_or(issuer).to_owned(),
        };
        Ok(Some(Config {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            client_secret: read_secret(secret_file)?,
            redirect_uri: format!("{public_url}/console/sign-in/callback"),
            scopes: scopes.join(" "),
            name,
        }))
    }
}

/// `--console-public-url`, checked: the console's origin (https, or http on loopback; no path
/// or query), without a trailing `/`; `None` when it is not set. It stands alone too: webhook
/// notifications link to the console with it.
pub(crate) fn public_url(settings: &ProviderSettings) -> Result<Option<String>, ConfigError> {
    settings
        .public_url
        .as_deref()
        .map(checked_origin)
        .transpose()
}

fn checked_origin(public_url: &str) -> Result<String, ConfigError> {
    let public_uri = checked_url("--console-public-url", public_url)?;
    if !matches!(public_uri.path(), "" | "/") || public_uri.query().is_some() {
        return Err(error(format!(
            "--console-public-url: `{public_url}` must be the console's origin only \
             (scheme, host and port, no path)"
        )));
    }
    Ok(public_url.trim_end_matches('/').to_owned())
}

/// An absolute https URL, or http to a loopback host (a provider on this machine, in tests).
fn checked_url(flag: &str, value: &str) -> Result<Uri, ConfigError> {
    if value.len() > MAX_SETTING {
        return Err(error(format!(
            "{flag}: longer than {MAX_SETTING} characters"
        )));
    }
    let uri: Uri = value
        .parse()
        .map_err(|e| error(format!("{flag}: `{value}` is not a URL: {e}")))?;
    if uri.host().is_none() {
        return Err(error(format!("{flag}: `{value}` has no host")));
    }
    if !fetch::allowed(&uri) {
        return Err(error(format!(
            "{flag}: `{value}` must be https (plain http only to a loopback address)"
        )));
    }
    Ok(uri)
}

/// The client secret: the file's first line, trimmed.
fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| {
            error(format!(
                "--console-oidc-client-secret-file: cannot read `{shown}`: {e}"
            ))
        })?
        .len();
    if size > MAX_SECRET_FILE {
        return Err(error(format!(
            "--console-oidc-client-secret-file: `{shown}` is larger than {MAX_SECRET_FILE} bytes"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(format!(
            "--console-oidc-client-secret-file: cannot read `{shown}`: {e}"
        ))
    })?;
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        return Err(error(format!(
            "--console-oidc-client-secret-file: `{shown}` is empty"
        )));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &Path) -> ProviderSettings {
        ProviderSettings {
            issuer: Some("https://idp.example.com".into()),
            client_id: Some("portcullis".into()),
            client_secret_file: Some(secret.to_owned()),
            public_url: Some("https://portcullis.example.com/".into()),
            scopes: "openid email".into(),
            name: None,
        }
    }

    #[test]
    fn all_or_nothing() {
        let dir = std::env::temp_dir().join(format!("console-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();

        assert!(
            Config::from_settings(&ProviderSettings::default())
                .unwrap()
                .is_none()
        );
        let config = Config::from_settings(&settings(&secret)).unwrap().unwrap();
        assert_eq!(config.client_secret, "s3cret");
        assert_eq!(
            config.redirect_uri,
            "https://portcullis.example.com/console/sign-in/callback"
        );
        assert_eq!(config.name, "idp.example.com");

        let half = ProviderSettings {
            public_url: None,
            ..settings(&secret)
        };
        let message = Config::from_settings(&half).unwrap_err().to_string();
        assert!(message.contains("--console-public-url"), "{message}");

        let no_issuer = ProviderSettings {
            issuer: None,
            ..settings(&secret)
        };
        let message = Config::from_settings(&no_issuer).unwrap_err().to_string();
        assert!(
            message.contains("--console-oidc-issuer is not"),
            "{message}"
        );

        // The public URL alone is no half configuration: webhooks link to the console with it.
        let public_only = ProviderSettings {
            public_url: Some("https://portcullis.example.com/".into()),
            ..ProviderSettings::default()
        };
        assert!(Config::from_settings(&public_only).unwrap().is_none());
        assert_eq!(
            public_url(&public_only).unwrap().as_deref(),
            Some("https://portcullis.example.com")
        );
        for wrong in [
            "https://portcullis.example.com/console",
            "http://example.com",
        ] {
            let wrong = ProviderSettings {
                public_url: Some(wrong.into()),
                ..ProviderSettings::default()
            };
            assert!(public_url(&wrong).is_err(), "{wrong:?}");
        }
        assert!(public_url(&ProviderSettings::default()).unwrap().is_none());

        let plain = ProviderSettings {
            issuer: Some("http://idp.example.com".into()),
            ..settings(&secret)
        };
        assert!(
            Config::from_settings(&plain).is_err(),
            "plain http off loopback"
        );
        let loopback = ProviderSettings {
            issuer: Some("http://127.0.0.1:8080".into()),
            ..settings(&secret)
        };
        assert!(Config::from_settings(&loopback).is_ok());

        let no_openid = ProviderSettings {
            scopes: "email".into(),
            ..settings(&secret)
        };
        assert!(Config::from_settings(&no_openid).is_err());

        std::fs::write(&secret, "\n").unwrap();
        assert!(Config::from_settings(&settings(&secret)).is_err(), "empty");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
