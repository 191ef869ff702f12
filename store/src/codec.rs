//! How records and metadata are encoded as sled values.
//!
//! Users, groups and policies are JSON: pdp's types use `serde(default)`, so a field added later
//! reads as its default from older records. Memberships are far more numerous and have two
//! fixed fields, so they are a compact binary value with a leading version byte.

use crate::{Error, Result};
use pdp::{Membership, MembershipSource, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The on-disk format this build reads and writes, stored at `meta/format`.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Encode {
        what,
        reason: e.to_string(),
    })
}

pub(crate) fn from_json<T: DeserializeOwned>(
    what: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("cannot decode the {what} record `{id}`: {e}")))
}

const MEMBERSHIP_V1: u8 = 1;
const MEMBERSHIP_LEN: usize = 1 + 8 + 1;

/// `[version 1][joined_at: i64 big-endian][source: 0 = IdP, 1 = Local]`; the ids are in the key.
pub(crate) fn encode_membership(m: &Membership) -> [u8; MEMBERSHIP_LEN] {
    let mut out = [0; MEMBERSHIP_LEN];
    out[0] = MEMBERSHIP_V1;
    out[1..9].copy_from_slice(&m.joined_at.0.to_be_bytes());
    out[9] = match m.source {
        MembershipSource::Idp => 0,
        MembershipSource::Local => 1,
    };
    out
}

pub(crate) fn decode_membership(group_id: &str, user_id: &str, bytes: &[u8]) -> Result<Membership> {
    let bad = || {
        Error::Corrupt(format!(
            "cannot decode the membership of user `{user_id}` in group `{group_id}`"
        ))
    };
    let [MEMBERSHIP_V1, joined @ .., source] = bytes else {
        return Err(bad());
    };
    let joined: [u8; 8] = joined.try_into().map_err(|_| bad())?;
    let source = match source {
        0 => MembershipSource::Idp,
        1 => MembershipSource::Local,
        _ => return Err(bad()),
    };
    Ok(Membership {
        group_id: group_id.to_owned(),
        user_id: user_id.to_owned(),
        joined_at: Timestamp(i64::from_be_bytes(joined)),
        source,
    })
}

pub(crate) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(crate) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("`{what}` is not an 8-byte integer")))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn encode_format() -> [u8; 4] {
    FORMAT_VERSION.to_be_bytes()
}

/// The stored format version, or `None` if the bytes are not one at all.
pub(crate) fn decode_format(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

const UNDO_V1: u8 = 1;

/// The undo entry of one chunk: `[version 1]` then, per key it wrote, length-prefixed (u32
/// big-endian) fields: the key, a marker (empty: the key was absent; `[1]`: it had a value)
/// and, if it had one, the old value.
pub(crate) fn encode_undo<'a>(
    writes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<u8> {
    let mut out = vec![UNDO_V1];
    let mut put = |bytes: &[u8]| {
        // Keys and values are far below 4 GiB: ids are at most 256 bytes, records are small.
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for (key, old) in writes {
        put(key);
        match old {
            None => put(&[]),
            Some(old) => {
                put(&[1]);
                put(old);
            }
        }
    }
    out
}

/// A key and the value it had before a change (`None`: it was absent).
pub(crate) type OldValue<'b> = (&'b [u8], Option<&'b [u8]>);

/// The keys an undo entry covers and their old values.
pub(crate) fn decode_undo(bytes: &[u8]) -> Result<Vec<OldValue<'_>>> {
    let bad = || Error::Corrupt("cannot decode an undo entry".to_owned());
    let Some((&UNDO_V1, mut rest)) = bytes.split_first() else {
        return Err(bad());
    };
    let mut writes = Vec::new();
    while !rest.is_empty() {
        let key = take_field(&mut rest).ok_or_else(bad)?;
        let old = match take_field(&mut rest).ok_or_else(bad)? {
            [] => None,
            [1] => Some(take_field(&mut rest).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        writes.push((key, old));
    }
    Ok(writes)
}

/// Splits a u32-length-prefixed field off the front of `rest`.
fn take_field<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let field = tail.get(..len)?;
    *rest = &tail[len..];
    Some(field)
}

/// How many records of each kind the store holds, kept in `meta/counts` by every change so a
/// load can tell a complete directory from a partial one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    pub policies: u64,
    pub agents: u64,
}

/// Users, groups, memberships and policies: stores written before agents; read as no agents.
const COUNTS_V1: u8 = 1;
/// The four of version 1, then agents.
const COUNTS_V2: u8 = 2;
const COUNTS_LEN: usize = 1 + 5 * 8;

impl Counts {
    pub(crate) fn encode(&self) -> [u8; COUNTS_LEN] {
        let mut out = [0; COUNTS_LEN];
        out[0] = COUNTS_V2;
        for (i, n) in [
            self.users,
            self.groups,
            self.memberships,
            self.policies,
            self.agents,
        ]
        .into_iter()
        .enumerate()
        {
            out[1 + i * 8..9 + i * 8].copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Counts> {
        let bad = || Error::Corrupt("cannot decode `meta/counts`".to_owned());
        let (fields, rest) = match bytes {
            [COUNTS_V1, rest @ ..] => (4, rest),
            [COUNTS_V2, rest @ ..] => (5, rest),
            _ => return Err(bad()),
        };
        if rest.len() != fields * 8 {
            return Err(bad());
        }
        let n = |i: usize| decode_u64("meta/counts", &rest[i * 8..(i + 1) * 8]);
        Ok(Counts {
            users: n(0)?,
            groups: n(1)?,
            memberships: n(2)?,
            policies: n(3)?,
            agents: if fields == 5 { n(4)? } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_round_trips() {
        let m = Membership {
            group_id: "g".into(),
            user_id: "u".into(),
            joined_at: Timestamp(-5),
            source: MembershipSource::Local,
        };
        assert_eq!(
            decode_membership("g", "u", &encode_membership(&m)).unwrap(),
            m
        );
        assert!(decode_membership("g", "u", &[2; MEMBERSHIP_LEN]).is_err());
        assert!(decode_membership("g", "u", &[1, 0]).is_err());
    }

    #[test]
    fn undo_round_trips() {
        let writes: Vec<OldValue<'_>> =
            vec![(b"u/a", None), (b"u/b", Some(b"")), (b"", Some(b"old"))];
        let encoded = encode_undo(writes.iter().copied());
        assert_eq!(decode_undo(&encoded).unwrap(), writes);
        assert_eq!(decode_undo(&encode_undo(std::iter::empty())).unwrap(), []);
        assert!(decode_undo(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode_undo(b"").is_err());
    }

    #[test]
    fn counts_round_trip() {
        let c = Counts {
            users: 1,
            groups: 2,
            memberships: u64::MAX,
            policies: 4,
            agents: 5,
        };
        assert_eq!(Counts::decode(&c.encode()).unwrap(), c);
        // A version 1 record (before agents) reads as no agents.
        let mut v1 = c.encode()[..33].to_vec();
        v1[0] = 1;
        assert_eq!(Counts::decode(&v1).unwrap(), Counts { agents: 0, ..c });
        assert!(Counts::decode(&c.encode()[..10]).is_err());
    }
}
