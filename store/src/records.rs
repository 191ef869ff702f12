//! Records the store keeps beside the model: admin API tokens and the audit log. Neither is part
//! of what a snapshot is built from, so neither is in `meta/counts`.

use pdp::{Role, Timestamp};
use serde::{Deserialize, Serialize};

/// A lock whose user the identity provider deleted, kept under the user's user name and
/// external id: a user created again with either starts locked (see
/// [`crate::Tx::take_kept_lock`]), so deleting and re-creating a person never lifts an
/// administrator's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptLock {
    /// The deleted user's id.
    pub user_id: String,
    pub lock: pdp::Lock,
}

/// An API key for the admin API, bound to a user. Only a hash of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiToken {
    /// Public and unique; part of the secret, so a presented secret finds its record.
    pub id: String,
    pub name: String,
    /// The user the token acts as.
    pub user_id: String,
    /// A role the token holds itself, on top of its user's groups' roles: how the first admin
    /// acts before any group has a role.
    pub role: Option<Role>,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// Who made it: a user id, or `cli` for a token made on the store directly.
    pub created_by: String,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    /// Whether the token may be used at `now`.
    pub fn usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// An identity provider's connection to the SCIM endpoint, with its own bearer token. Only a
/// hash of the token's secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScimConnection {
    /// Public and unique; part of the secret, so a presented secret finds its record.
    pub id: String,
    /// What the admin called it, e.g. `okta`; the audit log's actor is `scim:<name>`.
    pub name: String,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Who made it: a user id, or `cli` for a connection made on the store directly.
    pub created_by: String,
    /// When its secret was last replaced (`RotateScimConnection`).
    pub rotated_at: Option<Timestamp>,
    /// The secret before the last rotation, still accepted until `previous_valid_until`.
    pub previous_secret_hash: Option<String>,
    pub previous_valid_until: Option<Timestamp>,
    /// When a request last authenticated with it, to the minute or so (bumped at most once a
    /// minute, so SCIM traffic does not write on every request).
    pub last_used_at: Option<Timestamp>,
}

/// The kinds of SCIM resource whose documents the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimKind {
    User,
    Group,
}

/// One entry of the audit log: an admin or sync change, or a refused attempt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEvent {
    /// Assigned by the store; increases with every event appended.
    pub seq: u64,
    pub time: Timestamp,
    /// Who acted: a user id, `scim:<connection>`, or `cli`.
    pub actor: String,
    /// The credential used, when there was one (an API token id).
    pub via: Option<String>,
    /// What was done, `<kind>.<verb>`: `user.lock`, `group.delete`, `auth.denied`…
    pub action: String,
    /// The kind of record acted on: `user`, `group`, `policy`, `token`, or `api` for a refused call.
    pub target_kind: String,
    pub target_id: String,
    /// `ok`, or `denied` for an attempt that was refused.
    pub outcome: String,
    /// Free text: why an attempt was refused, what a bulk change covered.
    pub detail: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The revision the change committed at; 0 for a refused attempt.
    pub revision: u64,
}
