//! SCIM connections over the API: create and rotate (the secret shown once), revoke, list.
//! Writes are Admin only; Read Only may list.
//!
//! A secret reads `scim_<connection id>_<64 lower-hex digits>` ([`secret::Kind::Scim`]), the
//! shape the SCIM endpoint (`scim::connection`) looks up and checks; only its hash is stored. Rotation keeps the id
//! (the identity provider's records of it stay right) and replaces the random part; the old
//! secret's hash is kept, and accepted, until the grace period ends. Neither a secret nor a hash
//! leaves this module: responses and audit events carry the connection without them.

use crate::auth::Caller;
use crate::{Error, Result, audit, clock, convert, text};
use live::Live;
use pdp::Timestamp;
use pdp_service::secret::{self, Kind};
use portcullis_proto::v1 as pb;
use std::time::Duration;
use store::ScimConnection;

/// Longest connection name, in characters (as `portcullis scim-token create`).
const MAX_NAME: usize = 64;
/// Longest grace period of a rotation: long enough to reconfigure an identity provider over a
/// weekend, short enough that a leaked old secret does not linger.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The connection without its secrets' hashes, for the audit log.
fn redacted(connection: &ScimConnection) -> ScimConnection {
    ScimConnection {
        secret_hash: String::new(),
        previous_secret_hash: None,
        ..connection.clone()
    }
}

fn convert(c: &ScimConnection, now: Timestamp) -> pb::ScimConnection {
    pb::ScimConnection {
        id: c.id.clone(),
        name: c.name.clone(),
        created_at: Some(convert::timestamp(c.created_at)),
        created_by: c.created_by.clone(),
        last_used_at: c.last_used_at.map(convert::timestamp),
        rotated_at: c.rotated_at.map(convert::timestamp),
        previous_valid_until: c
            .previous_valid_until
            .filter(|until| now < *until && c.revoked_at.is_none())
            .map(convert::timestamp),
        revoked_at: c.revoked_at.map(convert::timestamp),
    }
}

fn name(name: &str) -> Result<String> {
    let name = name.trim();
    text::required("name", name)?;
    let chars = name.chars().count();
    if chars > MAX_NAME {
        return Err(Error::invalid(
            "name",
            format!("has {chars} characters, the limit is {MAX_NAME}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// `0s` to [`MAX_GRACE`], unset being `0s`.
fn grace(grace: Option<prost_types::Duration>) -> Result<Duration> {
    let Some(grace) = grace else {
        return Ok(Duration::ZERO);
    };
    let limit = humantime::format_duration(MAX_GRACE);
    let grace = Duration::try_from(grace)
        .map_err(|_| Error::invalid("grace", format!("must be 0s to {limit}, not negative")))?;
    if grace > MAX_GRACE {
        return Err(Error::invalid(
            "grace",
            format!(
                "{} is longer than {limit}",
                humantime::format_duration(grace)
            ),
        ));
    }
    Ok(grace)
}

/// A connection id as the store takes it, checked before any lookup.
fn id(id: &str) -> Result<&str> {
    text::required("id", id)?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "id",
            "is not a SCIM connection id (hex digits, as `admin scim-connections list` shows)",
        ));
    }
    Ok(id)
}

pub(crate) async fn list(live: &Live) -> Result<pb::ListScimConnectionsResponse> {
    let mut connections = live.blocking(|store| store.connections()).await??;
    connections.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let now = clock::now();
    Ok(pb::ListScimConnectionsResponse {
        connections: connections.iter().map(|c| convert(c, now)).collect(),
    })
}

pub(crate) async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateScimConnectionRequest,
) -> Result<pb::CreateScimConnectionResponse> {
    let pb::CreateScimConnectionRequest { name: wanted } = request;
    let name = name(&wanted)?;
    let (revision, (connection, secret)) = live
        .write(move |tx| -> Result<(ScimConnection, String)> {
            if let Some(other) = tx
                .connections()?
                .into_iter()
                .find(|c| c.revoked_at.is_none() && c.name == name)
            {
                return Err(Error::FailedPrecondition(format!(
                    "name: SCIM connection `{}` is already named `{name}`",
                    other.id
                )));
            }
            let mut id = secret::new_id()?;
            // 64 random bits: a collision is all but impossible, but never overwrite.
            while tx.connection(&id)?.is_some() {
                id = secret::new_id()?;
            }
            let secret = Kind::Scim.mint(&id)?;
            let connection = ScimConnection {
                id,
                name: name.clone(),
                secret_hash: secret::hash(&secret),
                created_at: clock::now(),
                created_by: caller.user_id.clone(),
                ..ScimConnection::default()
            };
            tx.put_connection(&connection)?;
            let mut event =
                caller.event("scim_connection.create", "scim_connection", &connection.id);
            event.detail = format!("named `{name}`");
            event.after = audit::json(&redacted(&connection));
            tx.audit(event)?;
            Ok((connection, secret))
        })
        .await?;
    Ok(pb::CreateScimConnectionResponse {
        connection: Some(convert(&connection, clock::now())),
        secret,
        revision,
    })
}

pub(crate) async fn rotate(
    live: &Live,
    caller: Caller,
    request: pb::RotateScimConnectionRequest,
) -> Result<pb::RotateScimConnectionResponse> {
    let pb::RotateScimConnectionRequest {
        id: wanted,
        grace: wanted_grace,
    } = request;
    let id = id(&wanted)?.to_owned();
    let grace = grace(wanted_grace)?;
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let secret = Kind::Scim.mint(&id)?;
    let hash = secret::hash(&secret);
    let (revision, connection) = live
        .write(move |tx| -> Result<ScimConnection> {
            let before = tx
                .connection(&id)?
                .ok_or_else(|| Error::not_found("SCIM connection", &id))?;
            if before.revoked_at.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "SCIM connection `{id}` is revoked: create a new one"
                )));
            }
            let now = clock::now();
            let mut after = before.clone();
            after.previous_secret_hash = (grace_ms > 0).then(|| before.secret_hash.clone());
            after.previous_valid_until =
                (grace_ms > 0).then(|| Timestamp(now.0.saturating_add(grace_ms)));
            after.secret_hash = hash;
            after.rotated_at = Some(now);
            tx.put_connection(&after)?;
            let mut event = caller.event("scim_connection.rotate", "scim_connection", &id);
            event.detail = format!(
                "`{}`, the old secret accepted for {}",
                after.name,
                humantime::format_duration(grace)
            );
            event.before = audit::json(&redacted(&before));
            event.after = audit::json(&redacted(&after));
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::RotateScimConnectionResponse {
        connection: Some(convert(&connection, clock::now())),
        secret,
        revision,
    })
}

pub(crate) async fn revoke(
    live: &Live,
    caller: Caller,
    request: pb::RevokeScimConnectionRequest,
) -> Result<pb::RevokeScimConnectionResponse> {
    let pb::RevokeScimConnectionRequest { id: wanted } = request;
    let id = id(&wanted)?.to_owned();
    let (revision, connection) = live
        .write(move |tx| -> Result<ScimConnection> {
            let before = tx
                .connection(&id)?
                .ok_or_else(|| Error::not_found("SCIM connection", &id))?;
            if before.revoked_at.is_some() {
                return Ok(before);
            }
            let mut after = before.clone();
            after.revoked_at = Some(clock::now());
            after.previous_secret_hash = None;
            after.previous_valid_until = None;
            tx.put_connection(&after)?;
            let mut event = caller.event("scim_connection.revoke", "scim_connection", &id);
            event.detail = format!("`{}`", after.name);
            event.before = audit::json(&redacted(&before));
            event.after = audit::json(&redacted(&after));
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::RevokeScimConnectionResponse {
        connection: Some(convert(&connection, clock::now())),
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_bounded_and_names_the_field() {
        assert_eq!(grace(None).unwrap(), Duration::ZERO);
        let d = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
        assert_eq!(grace(d(3600)).unwrap(), Duration::from_secs(3600));
        let negative = grace(d(-1)).unwrap_err().to_string();
        assert!(
            negative.starts_with("grace: ") && negative.contains("negative"),
            "{negative}"
        );
        let huge = grace(d(i64::MAX)).unwrap_err().to_string();
        assert!(
            huge.starts_with("grace: ") && huge.contains("longer than 7days"),
            "{huge}"
        );
        assert!(name(" ").is_err() && name(&"x".repeat(65)).is_err());
        assert_eq!(name(" okta ").unwrap(), "okta");
    }
}
