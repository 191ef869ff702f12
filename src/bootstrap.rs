//! `serve --bootstrap-token-file` / `PORTCULLIS_BOOTSTRAP_TOKEN`: the first admin's token, given
//! by the operator (a Kubernetes secret) instead of made with the server stopped.
//!
//! On start, before anything listens, the secret is stored hashed as an Admin token of
//! `--bootstrap-user`, audited `token.bootstrap`, unless a token with that secret exists already:
//! a restart with the same secret stores nothing. A token an admin revoked stays revoked. The
//! secret is never logged (its [`Secret`] prints redacted).

use admin::token::Bootstrapped;
use anyhow::{Context, bail};
use std::path::PathBuf;
use store::Store;
use tracing::{info, warn};

/// Shortest random part of a bootstrap secret, in characters: 32 hex digits are 128 bits.
const MIN_RANDOM: usize = 32;
/// Longest bootstrap secret, in bytes.
const MAX_SECRET: usize = 512;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store this file's secret, on start, as an Admin token of --bootstrap-user (once: a
    /// restart with the same secret stores nothing). The secret reads `pcl_<16 hex digits>_<at
    /// least 32 characters>`, e.g. `printf 'pcl_%s_%s' $(openssl rand -hex 8) $(openssl rand
    /// -hex 32)`
    #[arg(
        long,
        env = "PORTCULLIS_BOOTSTRAP_TOKEN_FILE",
        requires = "bootstrap_user",
        conflicts_with = "bootstrap_token"
    )]
    bootstrap_token_file: Option<PathBuf>,
    /// The bootstrap secret itself, as --bootstrap-token-file has it; meant for the environment
    /// (a Kubernetes secret), since a flag shows in the process list
    #[arg(
        long,
        env = "PORTCULLIS_BOOTSTRAP_TOKEN",
        hide_env_values = true,
        requires = "bootstrap_user"
    )]
    bootstrap_token: Option<Secret>,
    /// Whose the bootstrap token is: an email, user name or user id of a user in the store
    #[arg(long, env = "PORTCULLIS_BOOTSTRAP_USER")]
    bootstrap_user: Option<String>,
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The token id of a bootstrap secret, or why it is not one (never quoting the secret).
fn id_of(secret: &str) -> anyhow::Result<&str> {
    const SHAPE: &str = "it must read `pcl_<16 lower-case hex digits>_<at least 32 characters>`";
    if secret.len() > MAX_SECRET {
        bail!("the bootstrap secret is longer than {MAX_SECRET} bytes");
    }
    let Some((id, random)) = secret
        .strip_prefix("pcl_")
        .and_then(|rest| rest.split_once('_'))
    else {
        bail!("the bootstrap secret is not a token secret: {SHAPE}");
    };
    let hex = id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex {
        bail!("the bootstrap secret's id is not 16 lower-case hex digits: {SHAPE}");
    }
    let printable = random.bytes().all(|b| b.is_ascii_graphic());
    if random.len() < MIN_RANDOM || !printable {
        bail!("the bootstrap secret's random part is too short or not printable: {SHAPE}");
    }
    Ok(id)
}

impl Args {
    /// The bootstrap secret, read from its file or the environment.
    fn secret(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.bootstrap_token_file {
            return crate::net::read_secret(path).map(Some);
        }
        Ok(self
            .bootstrap_token
            .as_ref()
            .map(|Secret(s)| s.trim().to_owned()))
    }

    /// Stores the bootstrap token on `store` if it is not there yet; see the module docs.
    pub fn apply(&self, store: &Store) -> anyhow::Result<()> {
        let Some(secret) = self.secret()? else {
            return Ok(());
        };
        let id = id_of(&secret)?;
        let user = self
            .bootstrap_user
            .as_deref()
            .context("--bootstrap-user is required with a bootstrap token")?;
        let outcome = admin::token::bootstrap_on_store(store, id, &secret, user)
            .map_err(|e| anyhow::anyhow!("cannot store the bootstrap token: {e}"))?;
        match outcome {
            Bootstrapped::Stored => info!(token = %id, %user, "bootstrap admin token stored"),
            Bootstrapped::Exists => info!(token = %id, "bootstrap admin token already stored"),
            Bootstrapped::Revoked => {
                warn!(token = %id, "the bootstrap token was revoked: it stays revoked")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_secrets_name_a_token() {
        let good = format!("pcl_0123456789abcdef_{}", "a".repeat(32));
        assert_eq!(id_of(&good).unwrap(), "0123456789abcdef");
        for bad in [
            "hunter2".to_owned(),
            format!("pcl_0123456789ABCDEF_{}", "a".repeat(32)),
            format!("pcl_0123_{}", "a".repeat(32)),
            "pcl_0123456789abcdef_short".to_owned(),
            format!("pcl_0123456789abcdef_{}", "a".repeat(600)),
        ] {
            let error = id_of(&bad).unwrap_err().to_string();
            assert!(!error.contains(&bad), "{error}");
        }
        assert_eq!(format!("{:?}", Secret(good)), "Secret(redacted)");
    }
}
