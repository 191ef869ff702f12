//! The key layout of the store's single sled tree.
//!
//! Every record lives in one tree under a prefix, so one change (its records, the revision and
//! the counts) is one `apply_batch`, which sled applies and recovers atomically:
//!
//! | key | value |
//! | --- | --- |
//! | `meta/format` | format version, u32 big-endian |
//! | `meta/revision` | the last committed revision, u64 big-endian |
//! | `meta/counts` | users, groups, memberships, policies, agents ([`crate::codec::Counts`]) |
//! | `meta/id` | the store's id: 32 lowercase hex characters, random ([`crate::Store::id`]) |
//! | `u/<user id>` | JSON of `pdp::User` |
//! | `g/<group id>` | JSON of `pdp::Group` |
//! | `m/<group id>\0<user id>` | the membership ([`crate::codec::encode_membership`]) |
//! | `r/<user id>\0<group id>` | empty: the reverse index, a user's groups |
//! | `p/<policy id>` | JSON of `pdp::Policy` |
//! | `n/<agent id>` | JSON of `pdp::Agent` |
//! | `c/settings` | JSON of `pdp::Settings` (absent: the defaults); part of the model, not counted |
//! | `t/<token id>` | JSON of [`crate::ApiToken`] |
//! | `a/<seq: u64 big-endian>` | JSON of [`crate::AuditEvent`] |
//! | `k/<connection id>` | JSON of [`crate::ScimConnection`] |
//! | `f/<flow id>` | JSON of `pdp::ApprovalFlow` |
//! | `c/approval-flow` | the default approval flow's id (UTF-8); absent: the built-in flow |
//! | `q/<request id>` | JSON of `pdp::ApprovalRequest` |
//! | `w/<webhook id>` | JSON of [`crate::Webhook`]: an endpoint, with its signing key |
//! | `h/<seq: u64 big-endian>` | JSON of [`crate::Delivery`]: the webhook outbox, in the order deliveries were queued ([`crate::webhooks`]); attempts are written outside the revision |
//! | `s/u/<user id>`, `s/g/<group id>` | the SCIM document of a user or group synced over SCIM (JSON) |
//! | `meta/pending` | present while a change too large for one batch is being applied |
//! | `x/<chunk: u64 big-endian>` | while such a change is applied: the old values of the keys one of its chunks wrote ([`crate::undo`]) |
//! | `l/<revision: u64 big-endian>` | the change log: the ids that revision touched, or a marker that it touched too many to list ([`crate::changelog`]) |
//! | `d/<seq: u64 big-endian>` | the journal ([`crate::Journal`]): an entry, opaque (the decision log's blocks of answered decisions, `seq` the first's: crate `decision-log`) |
//! | `e/<name><seq: u64 big-endian>` | empty: the journal's index, entry `seq` filed under `name` (the decision log's names: `i/<user id>\0` and `k/<user key, lower-cased>\0`) |
//!
//! `a/`, `t/`, `k/`, `s/`, `f/`, `q/`, `w/`, `h/`, `l/`, `d/` and `e/` are outside `meta/counts`: they are not part of
//! the model. `d/` and `e/` are written outside the revision too (the journal is appended
//! without the write lock, bumping nothing).
//!
//! Ids never contain `\0` (checked by [`check_id`]), so `\0` splits pair keys unambiguously and a
//! `<id>\0` prefix never matches a longer id. `m/` and `meta/` differ in their second byte, so a
//! scan of `m/` never sees metadata.

use crate::{Error, Result};

/// Every `meta/` key.
pub(crate) const META: &[u8] = b"meta/";
pub(crate) const FORMAT: &[u8] = b"meta/format";
pub(crate) const REVISION: &[u8] = b"meta/revision";
pub(crate) const COUNTS: &[u8] = b"meta/counts";
pub(crate) const PENDING: &[u8] = b"meta/pending";
pub(crate) const ID: &[u8] = b"meta/id";

pub(crate) const USER: &[u8] = b"u/";
pub(crate) const GROUP: &[u8] = b"g/";
pub(crate) const MEMBER: &[u8] = b"m/";
pub(crate) const REVERSE: &[u8] = b"r/";
pub(crate) const POLICY: &[u8] = b"p/";
pub(crate) const AGENT: &[u8] = b"n/";
/// The organisation's settings: one record.
pub(crate) const SETTINGS: &[u8] = b"c/settings";
pub(crate) const UNDO: &[u8] = b"x/";
pub(crate) const TOKEN: &[u8] = b"t/";
pub(crate) const AUDIT: &[u8] = b"a/";
pub(crate) const CONNECTION: &[u8] = b"k/";
pub(crate) const SCIM_USER: &[u8] = b"s/u/";
pub(crate) const SCIM_GROUP: &[u8] = b"s/g/";
pub(crate) const LOG: &[u8] = b"l/";
pub(crate) const JOURNAL: &[u8] = b"d/";
pub(crate) const JOURNAL_INDEX: &[u8] = b"e/";
pub(crate) const FLOW: &[u8] = b"f/";
/// The organisation's default approval flow: one record.
pub(crate) const DEFAULT_FLOW: &[u8] = b"c/approval-flow";
pub(crate) const APPROVAL: &[u8] = b"q/";
pub(crate) const WEBHOOK: &[u8] = b"w/";
/// The webhook outbox.
pub(crate) const DELIVERY: &[u8] = b"h/";
/// Locks kept after their user was deleted, by the identity provider's identifiers.
pub(crate) const KEPT_LOCK: &[u8] = b"o/";

/// Longer ids are rejected: keys stay small and an id is never a document.
pub(crate) const MAX_ID_LEN: usize = 256;

const SEPARATOR: u8 = 0;

/// Rejects ids that would break the key layout or bloat it; `field` names the id in the error.
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_ID_LEN {
        "must be at most 256 bytes"
    } else if id.as_bytes().contains(&SEPARATOR) {
        "must not contain a NUL character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        field,
        id: shown(id),
        reason,
    })
}

/// An id as an error message shows it: escaped, and cut short if long.
fn shown(id: &str) -> String {
    const SHOWN: usize = 64;
    let mut out: String = id
        .chars()
        .take(SHOWN)
        .collect::<String>()
        .escape_debug()
        .collect();
    if id.chars().count() > SHOWN {
        out.push('…');
    }
    out
}

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + id.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

fn pair(prefix: &[u8], first: &str, second: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + first.len() + 1 + second.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(first.as_bytes());
    key.push(SEPARATOR);
    key.extend_from_slice(second.as_bytes());
    key
}

pub(crate) fn user(id: &str) -> Vec<u8> {
    key(USER, id)
}

pub(crate) fn group(id: &str) -> Vec<u8> {
    key(GROUP, id)
}

pub(crate) fn policy(id: &str) -> Vec<u8> {
    key(POLICY, id)
}

pub(crate) fn agent(id: &str) -> Vec<u8> {
    key(AGENT, id)
}

pub(crate) fn member(group_id: &str, user_id: &str) -> Vec<u8> {
    pair(MEMBER, group_id, user_id)
}

pub(crate) fn reverse(user_id: &str, group_id: &str) -> Vec<u8> {
    pair(REVERSE, user_id, group_id)
}

pub(crate) fn flow(id: &str) -> Vec<u8> {
    key(FLOW, id)
}

pub(crate) fn approval(id: &str) -> Vec<u8> {
    key(APPROVAL, id)
}

pub(crate) fn webhook(id: &str) -> Vec<u8> {
    key(WEBHOOK, id)
}

pub(crate) fn delivery(seq: u64) -> Vec<u8> {
    numbered(DELIVERY, seq)
}

/// The `seq` in a delivery's key.
pub(crate) fn delivery_seq(key: &[u8]) -> Result<u64> {
    number_of(DELIVERY, key)
}

pub(crate) fn token(id: &str) -> Vec<u8> {
    key(TOKEN, id)
}

pub(crate) fn connection(id: &str) -> Vec<u8> {
    key(CONNECTION, id)
}

pub(crate) fn scim(kind: crate::ScimKind, id: &str) -> Vec<u8> {
    match kind {
        crate::ScimKind::User => key(SCIM_USER, id),
        crate::ScimKind::Group => key(SCIM_GROUP, id),
    }
}

/// A kept lock's key: `kind` is `u` (a normalized user name) or `x` (an external id).
pub(crate) fn kept_lock(kind: &str, identifier: &str) -> Vec<u8> {
    pair(KEPT_LOCK, kind, identifier)
}

pub(crate) fn audit(seq: u64) -> Vec<u8> {
    numbered(AUDIT, seq)
}

/// The sequence number in an audit key.
pub(crate) fn audit_seq(key: &[u8]) -> Result<u64> {
    number_of(AUDIT, key)
}

/// The change log record of `revision`.
pub(crate) fn log(revision: u64) -> Vec<u8> {
    numbered(LOG, revision)
}

/// The revision in a change log key.
pub(crate) fn log_revision(key: &[u8]) -> Result<u64> {
    number_of(LOG, key)
}

/// The journal's entry `seq`.
pub(crate) fn journal(seq: u64) -> Vec<u8> {
    numbered(JOURNAL, seq)
}

/// The `seq` in a journal entry's key.
pub(crate) fn journal_seq(key: &[u8]) -> Result<u64> {
    number_of(JOURNAL, key)
}

/// The prefix of the journal's index entries filed under `name`.
pub(crate) fn journal_index(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(JOURNAL_INDEX.len() + name.len() + 8);
    key.extend_from_slice(JOURNAL_INDEX);
    key.extend_from_slice(name);
    key
}

/// The index entry filing the journal's entry `seq` under `name`.
pub(crate) fn journal_indexed(name: &[u8], seq: u64) -> Vec<u8> {
    let mut key = journal_index(name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The `seq` an index entry under `prefix` (from [`journal_index`]) files, if `key` is one:
/// a longer key belongs to a longer name that begins with this one.
pub(crate) fn indexed_seq(prefix: &[u8], key: &[u8]) -> Option<u64> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
}

/// The `seq` at the end of any index entry of the journal.
pub(crate) fn index_entry_seq(key: &[u8]) -> Result<u64> {
    key.strip_prefix(JOURNAL_INDEX)
        .and_then(|rest| rest.len().checked_sub(8).map(|at| &rest[at..]))
        .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| malformed(key))
}

/// Where the old values overwritten by chunk `chunk` of a large change are kept.
pub(crate) fn undo(chunk: u64) -> Vec<u8> {
    numbered(UNDO, chunk)
}

/// A key numbered in order: big-endian, so keys sort as their numbers do.
fn numbered(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

fn number_of(prefix: &[u8], key: &[u8]) -> Result<u64> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| malformed(key))
}

/// The prefix of every membership of one group.
pub(crate) fn members_of(group_id: &str) -> Vec<u8> {
    let mut key = key(MEMBER, group_id);
    key.push(SEPARATOR);
    key
}

/// The prefix of every reverse-index entry of one user.
pub(crate) fn groups_of(user_id: &str) -> Vec<u8> {
    let mut key = key(REVERSE, user_id);
    key.push(SEPARATOR);
    key
}

/// The id in a single-id key, checked to be UTF-8 (the store only writes valid ids).
pub(crate) fn id_of<'k>(prefix: &[u8], key: &'k [u8]) -> Result<&'k str> {
    let rest = key.strip_prefix(prefix).ok_or_else(|| malformed(key))?;
    std::str::from_utf8(rest).map_err(|_| malformed(key))
}

/// The two ids of a pair key (`m/` or `r/`), in key order.
pub(crate) fn ids_of<'k>(prefix: &[u8], key: &'k [u8]) -> Result<(&'k str, &'k str)> {
    let rest = key.strip_prefix(prefix).ok_or_else(|| malformed(key))?;
    let at = rest
        .iter()
        .position(|&b| b == SEPARATOR)
        .ok_or_else(|| malformed(key))?;
    let first = std::str::from_utf8(&rest[..at]).map_err(|_| malformed(key))?;
    let second = std::str::from_utf8(&rest[at + 1..]).map_err(|_| malformed(key))?;
    Ok((first, second))
}

fn malformed(key: &[u8]) -> Error {
    Error::Corrupt(format!(
        "malformed key `{}`",
        String::from_utf8_lossy(key).escape_debug()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("user id", "alice").is_ok());
        assert!(check_id("user id", &"a".repeat(256)).is_ok());
        for bad in ["", "a\0b", &"a".repeat(257)] {
            let error = check_id("user id", bad).unwrap_err().to_string();
            assert!(error.starts_with("invalid user id `"), "{error}");
        }
    }

    #[test]
    fn pair_keys_split_back() {
        let key = member("g1", "u1");
        assert_eq!(ids_of(MEMBER, &key).unwrap(), ("g1", "u1"));
        assert!(key.starts_with(&members_of("g1")));
        assert!(!key.starts_with(&members_of("g")));
        assert_eq!(id_of(USER, &user("ü")).unwrap(), "ü");
        assert!(ids_of(MEMBER, b"m/nosep").is_err());
    }

    #[test]
    fn journal_keys_sort_by_seq_and_split_back() {
        assert!(journal(255) < journal(256));
        assert_eq!(journal_seq(&journal(u64::MAX)).unwrap(), u64::MAX);
        let prefix = journal_index(b"k/a\0");
        let entry = journal_indexed(b"k/a\0", 9);
        assert_eq!(indexed_seq(&prefix, &entry), Some(9));
        assert_eq!(index_entry_seq(&entry).unwrap(), 9);
        // A key `a\0…` that only starts like `a`'s entries is not one of them.
        let longer = journal_indexed(b"k/a\0bcdefghi\0", 9);
        assert!(longer.starts_with(&prefix));
        assert_eq!(indexed_seq(&prefix, &longer), None);
        assert_eq!(index_entry_seq(&longer).unwrap(), 9);
        assert!(index_entry_seq(b"e/short").is_err());
    }
}
