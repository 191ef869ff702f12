//! An optional shared secret for DecisionService (and the sidecars' stream), for when it is
//! reachable beyond loopback.
//!
//! Several secrets may be valid at once, so a secret is rotated without downtime: add the new one,
//! move the callers over, remove the old one. The set is swapped whole ([`RequireToken::replace`],
//! on SIGHUP), and every clone of a `RequireToken` sees the swap: the interceptors already built
//! into the server, and `ApprovalService`'s check.

use arc_swap::ArcSwap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The most secrets valid at once: a rotation needs two, a few more cover several teams.
pub const MAX_SECRETS: usize = 16;

/// Requires `authorization: Bearer <secret>` on every call, compared in constant time with each
/// valid secret.
#[derive(Clone)]
pub struct RequireToken {
    expected: Arc<ArcSwap<Vec<Box<[u8]>>>>,
}

impl std::fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        write!(f, "RequireToken({} secrets)", self.expected.load().len())
    }
}

/// Why a set of secrets was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("no secret: at least one is required")]
    Empty,
    #[error("{0} secrets, the most is {MAX_SECRETS}")]
    TooMany(usize),
}

impl RequireToken {
    /// One valid secret.
    pub fn new(secret: &str) -> RequireToken {
        RequireToken {
            expected: Arc::new(ArcSwap::from_pointee(vec![secret.as_bytes().into()])),
        }
    }

    /// Several valid secrets (1 to [`MAX_SECRETS`]).
    pub fn with_secrets<S: AsRef<str>>(secrets: &[S]) -> Result<RequireToken, SecretsError> {
        let token = RequireToken::new("");
        token.replace(secrets)?;
        Ok(token)
    }

    /// Makes `secrets` the valid ones, for every clone, from the next call on; a set that is
    /// refused changes nothing.
    pub fn replace<S: AsRef<str>>(&self, secrets: &[S]) -> Result<(), SecretsError> {
        if secrets.is_empty() {
            return Err(SecretsError::Empty);
        }
        if secrets.len() > MAX_SECRETS {
            return Err(SecretsError::TooMany(secrets.len()));
        }
        let set = secrets
            .iter()
            .map(|s| s.as_ref().as_bytes().into())
            .collect();
        self.expected.store(Arc::new(set));
        Ok(())
    }

    /// How many secrets are valid.
    pub fn len(&self) -> usize {
        self.expected.load().len()
    }

    /// Always false: there is at least one secret.
    pub fn is_empty(&self) -> bool {
        self.expected.load().is_empty()
    }

    /// Whether `presented` is one of the secrets (compared in constant time with every one, so
    /// the time does not tell which matched).
    pub fn matches(&self, presented: &str) -> bool {
        let presented = presented.trim().as_bytes();
        let set = self.expected.load();
        let found = set.iter().fold(subtle::Choice::from(0), |found, secret| {
            found | presented.ct_eq(secret)
        });
        bool::from(found)
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::secret::bearer);
        match presented {
            Some(secret) if self.matches(secret) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid token")),
            None => Err(Status::unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_secret_of_the_set_matches_and_a_swap_reaches_every_clone() {
        let token = RequireToken::with_secrets(&["old", "new"]).unwrap();
        let clone = token.clone();
        assert!(clone.matches("old") && clone.matches(" new "));
        assert!(!clone.matches("other") && !clone.matches(""));
        token.replace(&["new"]).unwrap();
        assert!(!clone.matches("old") && clone.matches("new"));
        assert_eq!(token.replace::<&str>(&[]), Err(SecretsError::Empty));
        let many = vec!["s"; MAX_SECRETS + 1];
        assert_eq!(token.replace(&many), Err(SecretsError::TooMany(17)));
        assert!(clone.matches("new"), "a refused set changes nothing");
        assert_eq!(format!("{clone:?}"), "RequireToken(1 secrets)");
    }
}
