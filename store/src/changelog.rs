//! The change log: for each recent revision, the ids of the model records it touched, so a
//! follower of the store at revision `r` can catch up to the current revision by refetching
//! only those records ([`Store::touched_between`]) instead of resyncing everything.
//!
//! Revision `r`'s record, `l/<r>`, is written in the batch that commits `r` (the last batch of a
//! chunked change, never a chunk), so it is there exactly when the revision is. A revision that
//! changed nothing in the model (an API token, a SCIM connection) still gets a record, an empty
//! one: a follower must know it missed nothing.
//!
//! The log keeps the last [`Options::change_log_revisions`](crate::Options) revisions. The commit
//! of `R` deletes `l/<R - keep>` in its batch, so the window stays exact without a scan; opening
//! a store prunes what an earlier, larger window left behind.
//!
//! A record is a small binary value (ids are repeated in every record, so JSON's quoting and
//! field names would double its size), in one of two forms:
//!
//! - `[1]` then, per id touched, `[kind][length: LEB128 varint][id: UTF-8]`, kind being `u`
//!   (user), `g` (group), `p` (policy), `n` (agent) or `c` (the settings, with an empty id);
//!   each id once, users first, then groups, policies and agents, each in id order, then the
//!   settings;
//! - `[2]`: the revision touched too many records to list ([`MAX_LOGGED_IDS`], or a change too
//!   large to list at all, such as a bulk import): a follower must resync.
//!
//! A membership counts as touching its user, not its group: it is part of the user's decision
//! data, and a group's own record says nothing about who belongs to it.

use crate::error::engine;
use crate::store::Store;
use crate::view::Update;
use crate::written::Written;
use crate::{Error, Result, keys, undo, varint};
use std::collections::BTreeSet;

/// How many revisions the change log keeps by default: days of ordinary admin and SCIM traffic,
/// so a follower catches up after any control plane restart short of a long outage.
pub const CHANGE_LOG_REVISIONS: u64 = 100_000;

/// A revision touching more ids than this is logged as too large: a follower would refetch a
/// good part of the directory anyway, and resyncing costs it no more than the record would.
pub(crate) const MAX_LOGGED_IDS: usize = 50_000;

const LISTED: u8 = 1;
const TOO_LARGE: u8 = 2;

const USER: u8 = b'u';
const GROUP: u8 = b'g';
const POLICY: u8 = b'p';
const AGENT: u8 = b'n';
const SETTINGS: u8 = b'c';

/// The model records some revisions touched, by id ([`Store::touched_between`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Users put or deleted, or whose memberships changed.
    pub users: BTreeSet<String>,
    /// Groups put or deleted.
    pub groups: BTreeSet<String>,
    pub policies: BTreeSet<String>,
    /// Agents put or deleted.
    pub agents: BTreeSet<String>,
    /// Whether the settings were written.
    pub settings: bool,
}

impl Store {
    /// What the revisions in `(after, through]` touched, merged, or `None` when the change log
    /// does not cover every one of them: pruned, written before the log existed, a change too
    /// large to list, or `through` beyond the latest applied revision. `after == through` gives
    /// `Some` empty; `after > through` (a follower ahead of this store) gives `None`.
    ///
    /// It reads only the records of that range, stopping at the first it cannot use. A
    /// revision it covers may be applied but not yet durable (like a [`crate::View`]'s).
    pub fn touched_between(&self, after: u64, through: u64) -> Result<Option<Touched>> {
        if after > through || through > self.inner.durability.last_applied() {
            return Ok(None);
        }
        let mut touched = Touched::default();
        if after == through {
            return Ok(Some(touched));
        }
        // Every revision up to `through` is applied, and records are never rewritten, so the
        // range is stable while read (a concurrent prune can only make it come out `None`).
        let mut covered = after;
        for item in self
            .inner
            .db
            .range(keys::log(after + 1)..=keys::log(through))
        {
            let (key, value) = item.map_err(engine)?;
            let revision = keys::log_revision(&key)?;
            if revision != covered + 1 || !merge(revision, &value, &mut touched)? {
                return Ok(None);
            }
            covered = revision;
        }
        Ok((covered == through).then_some(touched))
    }
}

/// Adds the record of `revision` to the batch committing it, with `updates` the change made
/// (`None`: too large to list), and drops the record falling out of the last `keep` revisions.
/// Both keys are noted in `written` (the caller holds the write lock).
pub(crate) fn record(
    batch: &mut sled::Batch,
    written: &Written,
    revision: u64,
    keep: u64,
    updates: Option<&[Update]>,
) {
    if keep == 0 {
        return;
    }
    let key = keys::log(revision);
    written.note(&key);
    batch.insert(key, encode(updates));
    if let Some(gone) = revision.checked_sub(keep).filter(|&r| r > 0) {
        let key = keys::log(gone);
        written.note(&key);
        batch.remove(key);
    }
}

/// Deletes the records older than the last `keep` revisions of a store at `revision`: those an
/// earlier, larger window left. Reads only those keys, so it costs nothing when there are none.
/// Oldest first, a batch at a time: an interrupted prune leaves the log contiguous.
pub(crate) fn prune(db: &sled::Db, revision: u64, keep: u64) -> Result<()> {
    let Some(last_gone) = revision.checked_sub(keep) else {
        return Ok(());
    };
    let mut batch = sled::Batch::default();
    let mut staged = 0;
    for item in db.range(keys::LOG.to_vec()..=keys::log(last_gone)) {
        let (key, _) = item.map_err(engine)?;
        batch.remove(key);
        staged += 1;
        if staged == undo::CHUNK {
            db.apply_batch(std::mem::take(&mut batch)).map_err(engine)?;
            staged = 0;
        }
    }
    if staged > 0 {
        db.apply_batch(batch).map_err(engine)?;
    }
    Ok(())
}

/// The record of a change that made `updates` (`None`: too large to list).
fn encode(updates: Option<&[Update]>) -> Vec<u8> {
    let Some(([users, groups, policies, agents], settings)) = updates.and_then(touched_by) else {
        return vec![TOO_LARGE];
    };
    let mut out = vec![LISTED];
    let settings = if settings {
        BTreeSet::from([""])
    } else {
        BTreeSet::new()
    };
    for (kind, ids) in [
        (USER, users),
        (GROUP, groups),
        (POLICY, policies),
        (AGENT, agents),
        (SETTINGS, settings),
    ] {
        for id in ids {
            out.push(kind);
            varint::put(&mut out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
        }
    }
    out
}

/// The user, group, policy and agent ids `updates` touch and whether they wrote the settings,
/// or `None` past [`MAX_LOGGED_IDS`] (checked as they are collected, so a huge change never
/// builds a huge set).
fn touched_by(updates: &[Update]) -> Option<([BTreeSet<&str>; 4], bool)> {
    let mut sets: [BTreeSet<&str>; 4] = Default::default();
    let mut settings = false;
    let mut total = 0;
    for update in updates {
        let (set, id) = match update {
            Update::User(id, _) | Update::Member(_, id, _) => (0, id),
            Update::Group(id, _) => (1, id),
            Update::Policy(id, _) => (2, id),
            Update::Agent(id, _) => (3, id),
            Update::Settings(_) => {
                settings = true;
                continue;
            }
        };
        if sets[set].insert(id.as_str()) {
            total += 1;
            if total > MAX_LOGGED_IDS {
                return None;
            }
        }
    }
    Some((sets, settings))
}

/// Adds the ids in the record of `revision` to `into`; `false` if it is the too-large marker.
fn merge(revision: u64, bytes: &[u8], into: &mut Touched) -> Result<bool> {
    let bad = || {
        Error::Corrupt(format!(
            "cannot decode the change log record of revision {revision}"
        ))
    };
    let mut rest = match bytes.split_first() {
        Some((&LISTED, rest)) => rest,
        Some((&TOO_LARGE, [])) => return Ok(false),
        _ => return Err(bad()),
    };
    while let Some((&kind, tail)) = rest.split_first() {
        rest = tail;
        let len = varint::take(&mut rest)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(bad)?;
        let id = rest.get(..len).ok_or_else(bad)?;
        let id = std::str::from_utf8(id).map_err(|_| bad())?.to_owned();
        rest = &rest[len..];
        let set = match kind {
            USER => &mut into.users,
            GROUP => &mut into.groups,
            POLICY => &mut into.policies,
            AGENT => &mut into.agents,
            SETTINGS => {
                into.settings = true;
                continue;
            }
            _ => return Err(bad()),
        };
        set.insert(id);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(bytes: &[u8]) -> Result<Option<Touched>> {
        let mut touched = Touched::default();
        Ok(merge(7, bytes, &mut touched)?.then_some(touched))
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|&id| id.to_owned()).collect()
    }

    #[test]
    fn records_round_trip() {
        let long = "x".repeat(keys::MAX_ID_LEN);
        let updates = vec![
            Update::User("bob".into(), None),
            Update::Member("eng".into(), "alice".into(), None),
            Update::User("alice".into(), None),
            Update::Group("eng".into(), None),
            Update::Policy(long.clone(), None),
            Update::Agent("claude".into(), None),
            Update::Settings(pdp::Settings::default()),
        ];
        let encoded = encode(Some(&updates));
        assert_eq!(encoded[..5], [LISTED, USER, 5, b'a', b'l']);
        let touched = listed(&encoded).unwrap().unwrap();
        assert_eq!(touched.users, set(&["alice", "bob"]));
        assert_eq!(touched.groups, set(&["eng"]));
        assert_eq!(touched.policies, set(&[&long]));
        assert_eq!(touched.agents, set(&["claude"]));
        assert!(touched.settings);
        assert_eq!(
            listed(&encode(Some(&[]))).unwrap(),
            Some(Touched::default())
        );
        assert_eq!(listed(&encode(None)).unwrap(), None);
    }

    #[test]
    fn too_many_ids_are_too_large() {
        let updates: Vec<Update> = (0..=MAX_LOGGED_IDS)
            .map(|i| Update::Policy(format!("p{i}"), None))
            .collect();
        assert_eq!(encode(Some(&updates)), [TOO_LARGE]);
        assert_eq!(encode(Some(&updates[1..]))[0], LISTED);
    }

    #[test]
    fn bad_records_are_corrupt() {
        let good = encode(Some(&[Update::User("alice".into(), None)]));
        for bad in [
            &b""[..],
            &[3],
            &[TOO_LARGE, 0],
            &good[..good.len() - 1],
            &[LISTED, b'x', 1, b'a'],
            &[LISTED, USER, 1, 0xff],
            &[LISTED, USER, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ] {
            assert!(matches!(listed(bad), Err(Error::Corrupt(_))), "{bad:?}");
        }
    }
}
