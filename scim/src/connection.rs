//! SCIM connections: one per identity provider, each with its own bearer token.
//!
//! A secret reads `scim_<connection id>_<64 lower-hex digits>` ([`secret::Kind::Scim`]): the id
//! finds the stored record; the store keeps only the secret's hash, and a presented secret is
//! compared in constant time.

use crate::{Result, ScimError, clock};
use pdp::Timestamp;
use pdp_service::secret::{self, Kind};
use store::{AuditEvent, ScimConnection, Store};

/// Longest connection name, in characters.
const MAX_NAME: usize = 64;

/// The connection id a presented secret names, if it has the shape of one.
pub(crate) fn id_of(secret: &str) -> Option<&str> {
    Kind::Scim.id_of(secret)
}

/// Whether `secret` is the connection's current secret, or its previous one (before a rotation)
/// while `now` is within the rotation's grace period. Both are compared in constant time.
pub(crate) fn accepts(connection: &ScimConnection, secret: &str, now: Timestamp) -> bool {
    let previous = match (
        &connection.previous_secret_hash,
        connection.previous_valid_until,
    ) {
        (Some(previous), Some(until)) if now < until => Some(previous.as_str()),
        _ => None,
    };
    secret::verify(
        secret,
        std::iter::once(connection.secret_hash.as_str()).chain(previous),
    )
}

/// Makes a SCIM connection named `name` (what the audit log calls it: `scim:<name>`) on the
/// store, audited with actor `cli`; returns it with its secret, which is shown once and never
/// stored. A name an active connection already has is refused (409 `uniqueness`): the audit
/// log could not tell them apart. Meant for a store no server holds (`portcullis scim-token
/// create`), so the name check and the write do not race with other writers in practice.
pub fn create_connection(store: &Store, name: &str) -> Result<(ScimConnection, String)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ScimError::invalid_value(
            "the connection name must not be empty",
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME {
        return Err(ScimError::invalid_value(format!(
            "the connection name has {chars} characters, the limit is {MAX_NAME}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ScimError::invalid_value(
            "the connection name must not contain control characters",
        ));
    }
    if let Some(other) = store
        .connections()?
        .into_iter()
        .find(|c| c.revoked_at.is_none() && c.name == name)
    {
        return Err(ScimError::uniqueness(format!(
            "SCIM connection `{}` is already named `{name}`",
            other.id
        )));
    }
    let (_, made) = store.transact(|tx| {
        let mut id = secret::new_id()?;
        // 64 random bits: a collision is all but impossible, but never overwrite.
        while tx.connection(&id)?.is_some() {
            id = secret::new_id()?;
        }
        let secret = Kind::Scim.mint(&id)?;
        let connection = ScimConnection {
            id,
            name: name.to_owned(),
            secret_hash: secret::hash(&secret),
            created_at: clock::now(),
            created_by: "cli".into(),
            ..ScimConnection::default()
        };
        tx.put_connection(&connection)?;
        let shown = ScimConnection {
            secret_hash: String::new(),
            ..connection.clone()
        };
        tx.audit(AuditEvent {
            time: connection.created_at,
            actor: "cli".into(),
            action: "scim_connection.create".into(),
            target_kind: "scim_connection".into(),
            target_id: connection.id.clone(),
            outcome: "ok".into(),
            detail: format!("named `{name}`"),
            after: serde_json::to_value(&shown).ok(),
            ..AuditEvent::default()
        })?;
        Ok::<_, ScimError>((connection, secret))
    })?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_name_their_connection_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (connection, secret) = create_connection(&store, " okta ").unwrap();
        assert_eq!(connection.name, "okta");
        assert_eq!(id_of(&secret), Some(connection.id.as_str()));
        assert_eq!(connection.id.len(), 16);
        assert_eq!(secret.len(), "scim_".len() + 16 + 1 + 64);
        let now = clock::now();
        assert!(accepts(&connection, &secret, now));
        assert!(!accepts(&connection, &format!("{secret}0"), now));
        // Rotated: the old secret is accepted until the end of the grace period only.
        let rotated = ScimConnection {
            secret_hash: secret::hash("scim_new"),
            previous_secret_hash: Some(connection.secret_hash.clone()),
            previous_valid_until: Some(Timestamp(now.0 + 1000)),
            ..connection.clone()
        };
        assert!(accepts(&rotated, &secret, now));
        assert!(accepts(&rotated, "scim_new", Timestamp(now.0 + 5000)));
        assert!(!accepts(&rotated, &secret, Timestamp(now.0 + 1000)));
        assert_eq!(
            store.get_connection(&connection.id).unwrap(),
            Some(connection)
        );
        let again = create_connection(&store, "okta").unwrap_err();
        assert_eq!(again.status, 409);
        assert_eq!(create_connection(&store, "  ").unwrap_err().status, 400);
        let events = store.audit_events(None, 10, |_| true, |_| false).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "scim_connection.create");
        assert_eq!(events[0].actor, "cli");
        assert_eq!(id_of("scim__abc"), None);
        assert_eq!(id_of("scim_xyz_abc"), None);
        assert_eq!(id_of("pcl_abc_def"), None);
    }
}
