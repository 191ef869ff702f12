//! API tokens: minting a secret (`pcl_<token id>_<random part>`, shaped and hashed by
//! [`pdp_service::secret`]), storing only its hash, and checking a presented secret in constant
//! time.

use crate::clock;
use pdp::{Role, Timestamp};
use pdp_service::secret::{self, Kind};
use std::time::Duration;
use store::{ApiToken, AuditEvent, Store};

/// A token just made, with the secret that is shown once.
#[derive(Debug)]
pub struct Minted {
    pub token: ApiToken,
    pub secret: String,
}

/// Makes a new token record and its secret; nothing is stored.
pub fn mint(
    user_id: &str,
    name: &str,
    role: Option<Role>,
    expires_in: Option<Duration>,
    created_by: &str,
) -> Result<Minted, secret::RandomFailed> {
    let id = secret::new_id()?;
    let secret = Kind::Api.mint(&id)?;
    let now = clock::now();
    let expires_at = expires_in.map(|d| {
        Timestamp(
            now.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    });
    Ok(Minted {
        token: ApiToken {
            id,
            name: name.to_owned(),
            user_id: user_id.to_owned(),
            role,
            secret_hash: secret::hash(&secret),
            created_at: now,
            created_by: created_by.to_owned(),
            expires_at,
            revoked_at: None,
        },
        secret,
    })
}

/// The token id a presented secret names, if it has the shape of one.
pub fn id_of(secret: &str) -> Option<&str> {
    Kind::Api.id_of(secret)
}

/// Whether `secret` is the token's, compared in constant time.
pub fn verify(token: &ApiToken, secret: &str) -> bool {
    secret::verify(secret, [token.secret_hash.as_str()])
}

/// What `portcullis token create` does: makes a token for the user this reference names (by
/// the one rule, [`crate::users::resolve`]) directly on a store no server holds, audited with
/// actor `cli`.
pub fn create_on_store(
    store: &Store,
    user: &str,
    name: &str,
    role: Option<Role>,
    expires_in: Option<Duration>,
) -> crate::Result<Minted> {
    let view = store.view()?;
    let user = crate::users::resolve(&view, "user", user)?;
    let minted = mint(&user.id, name, role, expires_in, "cli")?;
    let token = minted.token.clone();
    store.transact(|tx| {
        tx.put_token(&token)?;
        tx.audit(AuditEvent {
            time: token.created_at,
            actor: "cli".into(),
            action: "token.create".into(),
            target_kind: "token".into(),
            target_id: token.id.clone(),
            outcome: "ok".into(),
            detail: format!("for user `{}`", token.user_id),
            after: crate::audit::json(&crate::audit::redacted(&token)),
            ..AuditEvent::default()
        })?;
        Ok::<_, crate::Error>(())
    })?;
    Ok(minted)
}

/// What [`bootstrap_on_store`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    /// The token was stored now.
    Stored,
    /// A token with this secret exists already (a restart with the same secret).
    Exists,
    /// A token with this secret exists and was revoked: it stays revoked.
    Revoked,
}

/// What `serve --bootstrap-token-file` does on start: stores `secret` (which names token `id`,
/// checked by the caller) hashed as an Admin token of the user `user` names (by the one rule),
/// audited `token.bootstrap` with actor `bootstrap`, unless a token with that id exists. A
/// token with that id and another secret is refused: the operator must make a new secret.
pub fn bootstrap_on_store(
    store: &Store,
    id: &str,
    secret: &str,
    user: &str,
) -> crate::Result<Bootstrapped> {
    let view = store.view()?;
    let user = crate::users::resolve(&view, "bootstrap-user", user)?;
    let secret_hash = secret::hash(secret);
    // Checked before the transaction, which then only writes: `serve` calls this before
    // anything else can write to the store.
    if let Some(existing) = store.get_token(id)? {
        return match (verify(&existing, secret), existing.revoked_at) {
            (false, _) => Err(crate::Error::FailedPrecondition(format!(
                "a token `{id}` exists with another secret: make a new bootstrap secret"
            ))),
            (true, Some(_)) => Ok(Bootstrapped::Revoked),
            (true, None) => Ok(Bootstrapped::Exists),
        };
    }
    store.transact(|tx| {
        let token = ApiToken {
            id: id.to_owned(),
            name: "bootstrap".into(),
            user_id: user.id.clone(),
            role: Some(Role::Admin),
            secret_hash: secret_hash.clone(),
            created_at: clock::now(),
            created_by: "bootstrap".into(),
            expires_at: None,
            revoked_at: None,
        };
        tx.put_token(&token)?;
        tx.audit(AuditEvent {
            time: token.created_at,
            actor: "bootstrap".into(),
            action: "token.bootstrap".into(),
            target_kind: "token".into(),
            target_id: token.id.clone(),
            outcome: "ok".into(),
            detail: format!("admin token for user `{}`", token.user_id),
            after: crate::audit::json(&crate::audit::redacted(&token)),
            ..AuditEvent::default()
        })?;
        Ok::<_, crate::Error>(())
    })?;
    Ok(Bootstrapped::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_and_name_their_token() {
        let minted = mint("u1", "ci", None, None, "cli").unwrap();
        assert_eq!(id_of(&minted.secret), Some(minted.token.id.as_str()));
        assert!(verify(&minted.token, &minted.secret));
        assert!(!verify(&minted.token, &format!("{}x", minted.secret)));
        assert_ne!(minted.token.secret_hash, minted.secret);
        let other = mint("u1", "ci", None, None, "cli").unwrap();
        assert_ne!(other.secret, minted.secret);
        assert_eq!(id_of("pcl__abc"), None);
        assert_eq!(id_of("bearer"), None);
    }
}
