//! Secrets callers present as bearer tokens: reading one from `authorization`, minting the two
//! stored kinds (admin API tokens and SCIM connection tokens), keeping only their hash, and
//! checking a presented one in constant time.
//!
//! One home for what the decision token, the admin API, its console and the SCIM endpoint all
//! need; the store keeps the hashes, the services decide what a valid secret lets in.
//!
//! A stored secret reads `<prefix><token id>_<random part>`: the id (16 lower-case hex digits,
//! so it never contains the `_` that ends it) finds the stored record, and the random part
//! (32 bytes from the OS) is what makes it secret. Only SHA-256 of the whole secret is stored; a
//! fast hash is right here because the secret is random, not a password.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a secret's random part.
const RANDOM_BYTES: usize = 32;
/// Random bytes in a token id (16 hex digits).
const ID_BYTES: usize = 8;
/// Longest token id a presented secret may name.
const MAX_ID: usize = 64;

/// The system random source failed: nothing can be minted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system random source failed: {0}")]
pub struct RandomFailed(String);

/// The secret of an `authorization` value `Bearer <secret>`: the scheme is case-insensitive,
/// surrounding whitespace is ignored, and an empty secret is none.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, secret) = authorization.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

/// `bytes` random bytes from the OS.
pub fn random(bytes: usize) -> Result<Vec<u8>, RandomFailed> {
    let mut out = vec![0; bytes];
    getrandom::fill(&mut out).map_err(|e| RandomFailed(e.to_string()))?;
    Ok(out)
}

/// `bytes` random bytes from the OS, as lower-case hex.
pub fn random_hex(bytes: usize) -> Result<String, RandomFailed> {
    Ok(hex::encode(random(bytes)?))
}

/// A new token id: 16 lower-case hex digits.
pub fn new_id() -> Result<String, RandomFailed> {
    random_hex(ID_BYTES)
}

/// The kinds of stored secrets, each with its own prefix and random part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pcl_<id>_<43 base64url characters>`: an admin API token.
    Api,
    /// `scim_<id>_<64 lower-hex digits>`: a SCIM connection's token.
    Scim,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Api => "pcl_",
            Kind::Scim => "scim_",
        }
    }

    /// A new secret naming token `id`; nothing is stored.
    pub fn mint(self, id: &str) -> Result<String, RandomFailed> {
        let random = random(RANDOM_BYTES)?;
        let random = match self {
            Kind::Api => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random),
            Kind::Scim => hex::encode(random),
        };
        Ok(format!("{}{id}_{random}", self.prefix()))
    }

    /// The token id a presented secret names, if it has the shape of this kind's.
    pub fn id_of(self, secret: &str) -> Option<&str> {
        let rest = secret.strip_prefix(self.prefix())?;
        let (id, random) = rest.split_once('_')?;
        // SCIM ids were always hex; API ids may come from a bootstrap secret, checked there.
        let shaped = match self {
            Kind::Api => true,
            Kind::Scim => id.bytes().all(|b| b.is_ascii_hexdigit()),
        };
        (!id.is_empty() && id.len() <= MAX_ID && shaped && !random.is_empty()).then_some(id)
    }
}

/// What the store keeps of a secret: SHA-256 of it, as lower-case hex.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to one of `stored` (hashes from [`hash`]), compared in constant time
/// with every one, so the time does not tell which matched.
pub fn verify<'a>(secret: &str, stored: impl IntoIterator<Item = &'a str>) -> bool {
    let presented = hash(secret);
    let found = stored
        .into_iter()
        .fold(subtle::Choice::from(0), |found, stored| {
            found | presented.as_bytes().ct_eq(stored.as_bytes())
        });
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_reads_the_secret_of_the_scheme_only() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer(" bEaReR   abc  "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer(""), None);
    }

    #[test]
    fn minted_secrets_name_their_id_and_verify_against_their_hash_only() {
        for kind in [Kind::Api, Kind::Scim] {
            let id = new_id().unwrap();
            assert_eq!(id.len(), 16);
            let secret = kind.mint(&id).unwrap();
            assert_eq!(kind.id_of(&secret), Some(id.as_str()));
            let other = if kind == Kind::Api {
                Kind::Scim
            } else {
                Kind::Api
            };
            assert_eq!(other.id_of(&secret), None);
            let stored = hash(&secret);
            assert_ne!(stored, secret);
            assert!(verify(&secret, [stored.as_str()]));
            assert!(verify(&secret, ["00", stored.as_str()]));
            assert!(!verify(&format!("{secret}x"), [stored.as_str()]));
            assert!(!verify(&secret, []));
            assert_ne!(kind.mint(&id).unwrap(), secret);
        }
        assert_eq!(Kind::Scim.mint("ab").unwrap().len(), "scim_ab_".len() + 64);
        assert_eq!(Kind::Api.mint("ab").unwrap().len(), "pcl_ab_".len() + 43);
        assert_eq!(Kind::Api.id_of("pcl__abc"), None);
        assert_eq!(Kind::Api.id_of("pcl_abc_"), None);
        assert_eq!(Kind::Scim.id_of("scim_xyz_abc"), None);
        assert_eq!(Kind::Api.id_of(&format!("pcl_{}_x", "a".repeat(65))), None);
    }
}
