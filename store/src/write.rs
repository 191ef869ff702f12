//! Every write but import: each is one change, committed as one revision.
//!
//! A write that would change nothing (rewriting a record as it is, adding an existing member,
//! removing a non-member) commits nothing and returns the current revision.

use crate::change::{Built, Change, Kind};
use crate::error::engine;
use crate::store::{Store, not_found};
use crate::{Error, Result, changelog, codec, keys, lock, undo};
use pdp::{Group, Membership, Policy, User};
use std::collections::HashSet;

impl Store {
    /// Creates or replaces a user.
    pub fn put_user(&self, user: &User) -> Result<u64> {
        keys::check_id("user id", &user.id)?;
        let value = codec::to_json("user", user)?;
        self.commit(|change| change.put(Kind::User, keys::user(&user.id), &value))
    }

    /// Deletes a user, their memberships and SCIM document. Policies naming the user keep
    /// naming them.
    pub fn delete_user(&self, id: &str) -> Result<u64> {
        Ok(self.transact(|tx| tx.delete_user(id))?.0)
    }

    /// Creates or replaces a group and, when `members` is given, makes it the group's whole
    /// member set, in one change. Every member must name this group and an existing user.
    pub fn put_group(&self, group: &Group, members: Option<&[Membership]>) -> Result<u64> {
        keys::check_id("group id", &group.id)?;
        let value = codec::to_json("group", group)?;
        self.commit(|change| {
            if let Some(members) = members {
                let members = change.check_members(&group.id, members, |_| false)?;
                change.replace_members(&group.id, &members)?;
            }
            change.put(Kind::Group, keys::group(&group.id), &value)
        })
    }

    /// Deletes a group, its memberships and SCIM document; its users stay. Policies naming the
    /// group keep naming it.
    pub fn delete_group(&self, id: &str) -> Result<u64> {
        Ok(self.transact(|tx| tx.delete_group(id))?.0)
    }

    /// Adds members to an existing group, all or none. A user who already belongs keeps the
    /// membership they have (its `joined_at` and `source`).
    pub fn add_members(&self, group_id: &str, members: &[Membership]) -> Result<u64> {
        keys::check_id("group id", group_id)?;
        self.commit(|change| {
            if !change.exists(&keys::group(group_id))? {
                return Err(not_found("group", group_id));
            }
            for m in change
                .check_members(group_id, members, |_| false)?
                .into_values()
            {
                if !change.exists(&keys::member(group_id, &m.user_id))? {
                    change.put_membership(m, None)?;
                }
            }
            Ok(())
        })
    }

    /// Removes users from an existing group, all or none; users who do not belong are ignored.
    pub fn remove_members(&self, group_id: &str, user_ids: &[&str]) -> Result<u64> {
        keys::check_id("group id", group_id)?;
        for user_id in user_ids {
            keys::check_id("membership user id", user_id)?;
        }
        self.commit(|change| {
            if !change.exists(&keys::group(group_id))? {
                return Err(not_found("group", group_id));
            }
            // Each key at most once per change: a repeated id is removed once.
            let unique: HashSet<&str> = user_ids.iter().copied().collect();
            for user_id in unique {
                if change.exists(&keys::member(group_id, user_id))? {
                    change.remove_membership(group_id, user_id)?;
                }
            }
            Ok(())
        })
    }

    /// Creates or replaces a policy. Users and groups in its scope need not exist; agents its
    /// selector names must be registered.
    pub fn put_policy(&self, policy: &Policy) -> Result<u64> {
        Ok(self.transact(|tx| tx.put_policy(policy))?.0)
    }

    /// Creates or replaces an agent ([`crate::Tx::put_agent`] says what is checked).
    pub fn put_agent(&self, agent: &pdp::Agent) -> Result<u64> {
        Ok(self.transact(|tx| tx.put_agent(agent))?.0)
    }

    /// Deletes an agent and removes it from every policy's selector, in one change
    /// ([`crate::Tx::delete_agent`]).
    pub fn delete_agent(&self, id: &str) -> Result<u64> {
        Ok(self
            .transact(|tx| tx.delete_agent(id, pdp::Timestamp::now()))?
            .0)
    }

    /// Writes the organisation's settings.
    pub fn put_settings(&self, settings: &pdp::Settings) -> Result<u64> {
        Ok(self.transact(|tx| tx.put_settings(settings))?.0)
    }

    pub fn delete_policy(&self, id: &str) -> Result<u64> {
        keys::check_id("policy id", id)?;
        self.commit(|change| {
            if !change.exists(&keys::policy(id))? {
                return Err(not_found("policy", id));
            }
            change.remove(Kind::Policy, keys::policy(id))
        })
    }

    /// Builds a change against the committed state and commits it as the next revision, then
    /// waits until that revision is durable. `build` runs under the write lock, so what it
    /// validates against cannot change before the batch is applied; if it fails nothing is
    /// written.
    pub(crate) fn commit<E: From<Error>>(
        &self,
        build: impl FnOnce(&mut Change<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let revision = self.commit_applied(build)?;
        // Outside the write lock, so writers arriving meanwhile share this sync.
        self.inner
            .durability
            .sync_through(&self.inner.db, revision)?;
        Ok(revision)
    }

    /// [`Store::commit`] without waiting for durability: the revision is applied (readers see
    /// it) but must not be acknowledged before [`Store::sync`] of it returns.
    ///
    /// The only place a revision is committed: its last batch carries `meta/revision`, the
    /// counts and its change log record ([`crate::changelog`]) together.
    pub(crate) fn commit_applied<E: From<Error>>(
        &self,
        build: impl FnOnce(&mut Change<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let inner = &self.inner;
        inner.durability.check()?;
        let revision = {
            let mut writer = lock(&inner.writer)?;
            let mut change = Change::new(
                &inner.db,
                &inner.in_flight,
                &inner.written,
                writer.counts,
                writer.revision + 1,
            );
            if let Err(error) = build(&mut change) {
                if change.spilled() {
                    self.roll_back();
                }
                return Err(error);
            }
            match change.finish() {
                None => writer.revision,
                Some(Built {
                    mut batch,
                    counts,
                    spilled,
                    updates,
                }) => {
                    let revision = writer.revision + 1;
                    batch.insert(keys::REVISION, &codec::encode_u64(revision)[..]);
                    batch.insert(keys::COUNTS, &counts.encode()[..]);
                    changelog::record(
                        &mut batch,
                        &inner.written,
                        revision,
                        inner.change_log_revisions,
                        updates.as_deref(),
                    );
                    if let Err(error) = inner.db.apply_batch(batch) {
                        // sled may have applied part of the batch in memory: stop writing.
                        inner.durability.fail();
                        return Err(engine(error).into());
                    }
                    writer.revision = revision;
                    writer.counts = counts;
                    inner.durability.applied(revision);
                    if spilled {
                        inner.in_flight.end();
                        // Undo entries left behind would corrupt the next large change's undo log.
                        if let Err(error) = undo::discard(&inner.db) {
                            inner.durability.fail();
                            return Err(error.into());
                        }
                    }
                    self.advance_view(revision, updates);
                    revision
                }
            }
        };
        Ok(revision)
    }

    /// Undoes the applied chunks of a large change that failed before committing. If even that
    /// fails, the store refuses writes; reopening finishes the rollback.
    fn roll_back(&self) {
        let inner = &self.inner;
        match undo::roll_back(&inner.db) {
            Ok(()) => inner.in_flight.end(),
            // Readers keep seeing old values through the undo entries left.
            Err(_) => inner.durability.fail(),
        }
    }
}
