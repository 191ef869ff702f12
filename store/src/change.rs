//! One change under construction: the writes of a single committed revision, and the counts they
//! leave behind.
//!
//! Nothing reaches sled before the commit unless the change outgrows one batch, in which case
//! it spills into chunks guarded by an undo log ([`crate::undo`]). So a write that fails halfway
//! just drops (or, after a spill, rolls back) its `Change`. Each key is written at most once
//! per change (callers reject duplicates first): the counts and the undo log rely on it.

use crate::codec::{self, Counts};
use crate::error::engine;
use crate::undo::{self, InFlight};
use crate::view::Update;
use crate::written::Written;
use crate::{Error, Result, keys};
use pdp::Membership;
use sled::IVec;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    User,
    Group,
    Policy,
    Membership,
    Agent,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Policy => "policy",
            Kind::Membership => "membership",
            Kind::Agent => "agent",
        }
    }
}

/// A staged write; `old` is kept for the undo log in case the change spills.
struct Write {
    key: Vec<u8>,
    value: Option<IVec>,
    old: Option<IVec>,
}

pub(crate) struct Change<'s> {
    db: &'s sled::Db,
    in_flight: &'s InFlight,
    /// Told every key staged, for a backup reading meanwhile ([`crate::written`]).
    written: &'s Written,
    staged: Vec<Write>,
    counts: Counts,
    changed: bool,
    /// Chunks applied so far; each has its undo entry.
    spilled: u64,
    /// The revision this change commits as.
    pub(crate) next_revision: u64,
    /// The model updates of the chunks spilled so far, for the in-memory view; `None` once the
    /// change is too large to list (the view is then reloaded).
    spilled_updates: Option<Vec<Update>>,
}

/// Chunks whose updates a change still lists for the view; past this (a bulk import) the view
/// is reloaded instead. 64 chunks cover a 30,000-member group change.
const LISTED_CHUNKS: u64 = 64;

/// A built change: the last batch to apply and the counts after it.
pub(crate) struct Built {
    pub(crate) batch: sled::Batch,
    pub(crate) counts: Counts,
    /// Earlier chunks were applied already, guarded by the undo log.
    pub(crate) spilled: bool,
    /// What the change did to the model, for the in-memory view and the change log; `None`
    /// when it spilled more than [`LISTED_CHUNKS`] chunks (the view is then reloaded and the
    /// log marks the revision too large: a change that large, a bulk import, rewrites much of
    /// the model anyway).
    pub(crate) updates: Option<Vec<Update>>,
}

impl<'s> Change<'s> {
    /// A change over `db`, whose counts are `counts` before it.
    pub(crate) fn new(
        db: &'s sled::Db,
        in_flight: &'s InFlight,
        written: &'s Written,
        counts: Counts,
        next_revision: u64,
    ) -> Change<'s> {
        Change {
            db,
            in_flight,
            written,
            staged: Vec::new(),
            counts,
            changed: false,
            spilled: 0,
            next_revision,
            spilled_updates: Some(Vec::new()),
        }
    }

    /// The value at `key` before this change (its own writes are not visible, except those
    /// already spilled; a key is written once, so callers never read back their own write).
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.db.get(key).map_err(engine)
    }

    pub(crate) fn exists(&self, key: &[u8]) -> Result<bool> {
        self.db.contains_key(key).map_err(engine)
    }

    /// The records under `prefix`, in key order.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(IVec, IVec)>> + use<'s> {
        self.db.scan_prefix(prefix).map(|item| item.map_err(engine))
    }

    /// Writes a record, reading its current value to count it and to skip identical rewrites.
    pub(crate) fn put(&mut self, kind: Kind, key: Vec<u8>, value: &[u8]) -> Result<()> {
        let old = self.get(&key)?;
        self.put_over(kind, key, value, old)
    }

    /// Writes a record whose current value (`old`) the caller has already read.
    pub(crate) fn put_over(
        &mut self,
        kind: Kind,
        key: Vec<u8>,
        value: &[u8],
        old: Option<IVec>,
    ) -> Result<()> {
        match &old {
            Some(old) if old == value => return Ok(()),
            Some(_) => {}
            None => *self.count(kind) += 1,
        }
        self.stage(key, Some(value.into()), old)
    }

    /// Writes a record outside the model (an API token): not counted, but a change of its own.
    pub(crate) fn put_record(&mut self, key: Vec<u8>, value: &[u8]) -> Result<()> {
        let old = self.get(&key)?;
        if old.as_deref() == Some(value) {
            return Ok(());
        }
        self.stage(key, Some(value.into()), old)
    }

    /// Removes a record outside the model that the caller has seen to exist.
    pub(crate) fn remove_record(&mut self, key: Vec<u8>) -> Result<()> {
        let old = self.get(&key)?;
        self.stage(key, None, old)
    }

    /// Writes a record that goes with the change but is no change by itself (an audit event):
    /// if nothing else changes, it is dropped with the change.
    pub(crate) fn put_note(&mut self, key: Vec<u8>, value: &[u8]) -> Result<()> {
        let changed = self.changed;
        self.stage(key, Some(value.into()), None)?;
        self.changed = changed;
        Ok(())
    }

    /// Removes a record the caller has seen to exist.
    pub(crate) fn remove(&mut self, kind: Kind, key: Vec<u8>) -> Result<()> {
        let count = self.count(kind);
        *count = count.checked_sub(1).ok_or_else(|| {
            Error::Corrupt(format!(
                "`meta/counts` has no {} left to remove",
                kind.name()
            ))
        })?;
        let old = self.get(&key)?;
        self.stage(key, None, old)
    }

    /// Writes a membership (whose current value is `old`) and, if it is new, its reverse-index
    /// entry.
    pub(crate) fn put_membership(&mut self, m: &Membership, old: Option<IVec>) -> Result<()> {
        if old.is_none() {
            self.stage(
                keys::reverse(&m.user_id, &m.group_id),
                Some(IVec::default()),
                None,
            )?;
        }
        let value = codec::encode_membership(m);
        self.put_over(
            Kind::Membership,
            keys::member(&m.group_id, &m.user_id),
            &value,
            old,
        )
    }

    /// Removes an existing membership and its reverse-index entry.
    pub(crate) fn remove_membership(&mut self, group_id: &str, user_id: &str) -> Result<()> {
        self.stage(
            keys::reverse(user_id, group_id),
            None,
            Some(IVec::default()),
        )?;
        self.remove(Kind::Membership, keys::member(group_id, user_id))
    }

    /// Makes `members` (checked by [`Change::check_members`]) the whole member set of a group.
    pub(crate) fn replace_members(
        &mut self,
        group_id: &str,
        members: &BTreeMap<&str, &Membership>,
    ) -> Result<()> {
        let mut old = HashMap::new();
        for item in self.scan(&keys::members_of(group_id)) {
            let (key, value) = item?;
            let (_, user_id) = keys::ids_of(keys::MEMBER, &key)?;
            if members.contains_key(user_id) {
                old.insert(user_id.to_owned(), value);
            } else {
                self.remove_membership(group_id, user_id)?;
            }
        }
        for (user_id, m) in members {
            self.put_membership(m, old.remove(*user_id))?;
        }
        Ok(())
    }

    /// Checks memberships given for one group: each names that group and a valid user that
    /// exists (in the store, or per `known_user`, in the same change), at most once.
    pub(crate) fn check_members<'m>(
        &self,
        group_id: &str,
        members: impl IntoIterator<Item = &'m Membership>,
        known_user: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<&'m str, &'m Membership>> {
        // Sorted, so writes and errors come in the same order every time.
        let mut checked = BTreeMap::new();
        for m in members {
            if m.group_id != group_id {
                return Err(Error::WrongGroup {
                    expected: group_id.to_owned(),
                    found: m.group_id.clone(),
                });
            }
            keys::check_id("membership user id", &m.user_id)?;
            if checked.insert(m.user_id.as_str(), m).is_some() {
                return Err(Error::Duplicate {
                    kind: "membership",
                    id: format!("{group_id}/{}", m.user_id),
                });
            }
            if !known_user(&m.user_id) && !self.exists(&keys::user(&m.user_id))? {
                return Err(Error::Dangling {
                    group_id: group_id.to_owned(),
                    user_id: m.user_id.clone(),
                    missing: "user",
                });
            }
        }
        Ok(checked)
    }

    /// The last batch and the counts after it, or `None` if nothing would change.
    pub(crate) fn finish(self) -> Option<Built> {
        if !self.changed {
            return None;
        }
        // Decoding records this change encoded itself cannot fail; if it did, reloading the
        // view (`None`) would still be right.
        let mut this = self;
        let updates = match this.spilled_updates.take() {
            None => None,
            Some(mut updates) => this.decode_staged().map(|last| {
                updates.extend(last);
                updates
            }),
        };
        Some(this.built(updates))
    }

    fn built(mut self, updates: Option<Vec<Update>>) -> Built {
        let mut batch = sled::Batch::default();
        // The last batch commits the change whole, so its own writes need no undo entries.
        for write in self.staged.drain(..) {
            match write.value {
                Some(value) => batch.insert(write.key, value),
                None => batch.remove(write.key),
            }
        }
        if self.spilled() {
            batch.remove(keys::PENDING);
        }
        Built {
            batch,
            counts: self.counts,
            spilled: self.spilled(),
            updates,
        }
    }

    /// Whether chunks of this change were applied, so dropping it needs a rollback.
    pub(crate) fn spilled(&self) -> bool {
        self.spilled > 0
    }

    fn stage(&mut self, key: Vec<u8>, value: Option<IVec>, old: Option<IVec>) -> Result<()> {
        self.written.note(&key);
        self.staged.push(Write { key, value, old });
        self.changed = true;
        if self.staged.len() >= undo::CHUNK {
            self.spill()?;
        }
        Ok(())
    }

    /// The model updates of the staged writes (`None` if one does not decode, which cannot
    /// happen for records this change encoded; reloading the view would still be right).
    fn decode_staged(&self) -> Option<Vec<Update>> {
        self.staged
            .iter()
            .filter_map(|w| Update::decode(&w.key, w.value.as_deref()))
            .collect::<Result<Vec<_>>>()
            .ok()
    }

    /// Applies the staged writes as one chunk, with the undo entry that can take it back.
    fn spill(&mut self) -> Result<()> {
        if !self.spilled() {
            self.in_flight.begin();
        }
        self.spilled_updates = match self.spilled_updates.take() {
            Some(mut updates) if self.spilled < LISTED_CHUNKS => {
                self.decode_staged().map(|chunk| {
                    updates.extend(chunk);
                    updates
                })
            }
            _ => None,
        };
        let mut batch = sled::Batch::default();
        batch.insert(keys::PENDING, &[][..]);
        let undo = codec::encode_undo(self.staged.iter().map(|w| (&w.key[..], w.old.as_deref())));
        batch.insert(keys::undo(self.spilled), undo);
        self.spilled += 1;
        for write in self.staged.drain(..) {
            match write.value {
                Some(value) => batch.insert(write.key, value),
                None => batch.remove(write.key),
            }
        }
        self.db.apply_batch(batch).map_err(engine)
    }

    fn count(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::User => &mut self.counts.users,
            Kind::Group => &mut self.counts.groups,
            Kind::Policy => &mut self.counts.policies,
            Kind::Membership => &mut self.counts.memberships,
            Kind::Agent => &mut self.counts.agents,
        }
    }
}
