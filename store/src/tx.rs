//! Transactions: several reads and writes that commit as one revision, or not at all.
//!
//! The admin API and scim validate a write against the state it changes (a policy naming users
//! that must exist, a group whose policies must be cleaned as it goes) and record an audit event
//! with it. A [`Tx`] runs under the store's write lock, so what it read cannot change before it
//! commits, and everything it wrote lands in one batch with the new revision.

use crate::change::{Change, Kind};
use crate::records::{ApiToken, AuditEvent, KeptLock, ScimConnection, ScimKind};
use crate::store::{Store, not_found};
use crate::{Error, Result, codec, keys};
use pdp::{Agent, Agents, Group, Membership, Policy, Settings, User};
use std::collections::{BTreeMap, HashSet};

/// One change under construction; see [`Store::transact`].
///
/// Reads see the state before the change: a transaction never needs to read its own writes,
/// and each record may be written at most once (a second write is an error). The exceptions
/// are the agent registry and the policies an agent's deletion cleans, both taken as the
/// change leaves them.
pub struct Tx<'c, 's> {
    change: &'c mut Change<'s>,
    store: &'c Store,
    written: HashSet<Vec<u8>>,
    /// Agents this change put (`Some`) or deleted (`None`), by id: the agent invariants are
    /// checked against the registry as this change leaves it.
    agents_written: BTreeMap<String, Option<Agent>>,
    /// Policies this change put or deleted, by id: deleting an agent cleans the selectors of
    /// the policies as this change leaves them (an apply may write both in one change).
    policies_written: BTreeMap<String, Option<Policy>>,
}

impl std::fmt::Debug for Tx<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Runs `build` under the write lock and commits what it wrote as one revision, durable
    /// when this returns. If `build` fails nothing is written; if it writes nothing (or only
    /// audit events), nothing is committed and the current revision is returned.
    pub fn transact<T, E: From<Error>>(
        &self,
        build: impl FnOnce(&mut Tx<'_, '_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(u64, T), E> {
        let (revision, out) = self.transact_applied(build)?;
        self.sync(revision)?;
        Ok((revision, out))
    }

    /// [`Store::transact`] without waiting for durability: the change is applied (later
    /// transactions and the view see it) but is not acknowledged until [`Store::sync`] of its
    /// revision returns. For callers that serialize their commits and should still share the
    /// fsync with each other.
    pub fn transact_applied<T, E: From<Error>>(
        &self,
        build: impl FnOnce(&mut Tx<'_, '_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(u64, T), E> {
        let mut out = None;
        let revision = self.commit_applied(|change| {
            let mut tx = Tx {
                change,
                store: self,
                written: HashSet::new(),
                agents_written: BTreeMap::new(),
                policies_written: BTreeMap::new(),
            };
            out = Some(build(&mut tx)?);
            Ok::<(), E>(())
        })?;
        match out {
            Some(out) => Ok((revision, out)),
            // `commit` returns Ok only after running `build` to success.
            None => Err(E::from(Error::Failed)),
        }
    }
}

impl<'s> Tx<'_, 's> {
    /// The change itself, for an import, which writes records wholesale: refused once this
    /// transaction wrote anything (and its caller writes nothing after it but audit events).
    pub(crate) fn change_for_import(&mut self) -> Result<&mut Change<'s>> {
        if !self.written.is_empty() || !self.agents_written.is_empty() {
            return Err(Error::Duplicate {
                kind: "write in one change to",
                id: "an import".to_owned(),
            });
        }
        Ok(&mut *self.change)
    }
}

impl Tx<'_, '_> {
    /// The revision this change commits as, if it changes anything.
    pub fn revision(&self) -> u64 {
        self.change.next_revision
    }

    /// The value of a record outside the model before this change.
    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.change.get(key)
    }

    /// The records under `prefix` before this change, in key order.
    pub(crate) fn scan_raw(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.change.scan(prefix)
    }

    /// Writes a record outside the model: a change of its own (it bumps the revision).
    pub(crate) fn put_raw(&mut self, key: Vec<u8>, value: &[u8]) -> Result<()> {
        self.claim(&key)?;
        self.change.put_record(key, value)
    }

    /// Removes a record outside the model, if it exists.
    pub(crate) fn remove_raw(&mut self, key: Vec<u8>) -> Result<()> {
        if self.change.exists(&key)? {
            self.claim(&key)?;
            self.change.remove_record(key)?;
        }
        Ok(())
    }

    /// Claims `key` for this change, refusing a second write of it.
    fn claim(&mut self, key: &[u8]) -> Result<()> {
        if self.written.insert(key.to_vec()) {
            Ok(())
        } else {
            Err(Error::Duplicate {
                kind: "write in one change to",
                id: String::from_utf8_lossy(key).escape_debug().to_string(),
            })
        }
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
        id: &str,
    ) -> Result<Option<T>> {
        match self.change.get(key)? {
            Some(bytes) => codec::from_json(what, id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn user(&self, id: &str) -> Result<Option<User>> {
        keys::check_id("user id", id)?;
        self.get("user", &keys::user(id), id)
    }

    pub fn group(&self, id: &str) -> Result<Option<Group>> {
        keys::check_id("group id", id)?;
        self.get("group", &keys::group(id), id)
    }

    pub fn policy(&self, id: &str) -> Result<Option<Policy>> {
        keys::check_id("policy id", id)?;
        self.get("policy", &keys::policy(id), id)
    }

    pub fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        keys::check_id("token id", id)?;
        self.get("token", &keys::token(id), id)
    }

    pub fn is_member(&self, group_id: &str, user_id: &str) -> Result<bool> {
        keys::check_id("group id", group_id)?;
        keys::check_id("user id", user_id)?;
        self.change.exists(&keys::member(group_id, user_id))
    }

    /// Every group holding a role, by id (policies as code manages roles as one set; a
    /// directory has few such groups, but every group is read to find them).
    pub fn groups_with_roles(&self) -> Result<Vec<Group>> {
        let mut groups = Vec::new();
        for item in self.change.scan(keys::GROUP) {
            let (key, value) = item?;
            let id = keys::id_of(keys::GROUP, &key)?;
            let group: Group = codec::from_json("group", id, &value)?;
            if !group.roles.is_empty() {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// Every policy, by id.
    pub fn policies(&self) -> Result<Vec<Policy>> {
        let mut policies = Vec::new();
        for item in self.change.scan(keys::POLICY) {
            let (key, value) = item?;
            let id = keys::id_of(keys::POLICY, &key)?;
            policies.push(codec::from_json("policy", id, &value)?);
        }
        Ok(policies)
    }

    /// Creates or replaces a user.
    pub fn put_user(&mut self, user: &User) -> Result<()> {
        keys::check_id("user id", &user.id)?;
        let key = keys::user(&user.id);
        self.claim(&key)?;
        let value = codec::to_json("user", user)?;
        self.change.put(Kind::User, key, &value)
    }

    /// Deletes a user, their memberships and their SCIM document ([`Error::NotFound`] if there
    /// is no such user). Policies naming them are the caller's to clean. A locked user's lock
    /// is kept under their user name and external id ([`KeptLock`]).
    pub fn delete_user(&mut self, id: &str) -> Result<()> {
        keys::check_id("user id", id)?;
        let key = keys::user(id);
        let Some(user) = self.user(id)? else {
            return Err(not_found("user", id));
        };
        if let Some(lock) = &user.lock {
            let kept = KeptLock {
                user_id: user.id.clone(),
                lock: lock.clone(),
            };
            let value = codec::to_json("kept lock", &kept)?;
            for key in kept_lock_keys(&user.user_name, user.external_id.as_deref()) {
                self.claim(&key)?;
                self.change.put_record(key, &value)?;
            }
        }
        self.claim(&key)?;
        self.change.remove(Kind::User, key)?;
        let mut groups = Vec::new();
        for item in self.change.scan(&keys::groups_of(id)) {
            let (key, _) = item?;
            groups.push(keys::ids_of(keys::REVERSE, &key)?.1.to_owned());
        }
        for group_id in groups {
            self.claim(&keys::member(&group_id, id))?;
            self.change.remove_membership(&group_id, id)?;
        }
        self.delete_scim(ScimKind::User, id)
    }

    /// The lock kept for a deleted user with this user name (normalized) or external id, if
    /// any, which this change consumes: the caller creating a user with these identifiers
    /// locks them with it.
    pub fn take_kept_lock(
        &mut self,
        user_name: &str,
        external_id: Option<&str>,
    ) -> Result<Option<KeptLock>> {
        let mut found: Option<KeptLock> = None;
        for key in kept_lock_keys(user_name, external_id) {
            if let Some(kept) = self.get::<KeptLock>("kept lock", &key, user_name)? {
                found.get_or_insert(kept);
                self.claim(&key)?;
                self.change.remove_record(key)?;
            }
        }
        Ok(found)
    }

    /// Creates or replaces a group; its members are untouched.
    pub fn put_group(&mut self, group: &Group) -> Result<()> {
        keys::check_id("group id", &group.id)?;
        let key = keys::group(&group.id);
        self.claim(&key)?;
        let value = codec::to_json("group", group)?;
        self.change.put(Kind::Group, key, &value)
    }

    /// Deletes a group, its memberships and its SCIM document; its users stay.
    pub fn delete_group(&mut self, id: &str) -> Result<()> {
        keys::check_id("group id", id)?;
        let key = keys::group(id);
        if !self.change.exists(&key)? {
            return Err(not_found("group", id));
        }
        self.claim(&key)?;
        self.change.remove(Kind::Group, key)?;
        let mut users = Vec::new();
        for item in self.change.scan(&keys::members_of(id)) {
            let (key, _) = item?;
            users.push(keys::ids_of(keys::MEMBER, &key)?.1.to_owned());
        }
        for user_id in users {
            self.claim(&keys::member(id, &user_id))?;
            self.change.remove_membership(id, &user_id)?;
        }
        self.delete_scim(ScimKind::Group, id)
    }

    /// Adds memberships to a group that exists or that this change writes (users who belong
    /// already keep theirs); returns how many were added.
    pub fn add_members(&mut self, group_id: &str, members: &[Membership]) -> Result<usize> {
        keys::check_id("group id", group_id)?;
        let group = keys::group(group_id);
        if !self.written.contains(&group) && !self.change.exists(&group)? {
            return Err(not_found("group", group_id));
        }
        let checked: Vec<Membership> = self
            .change
            .check_members(group_id, members, |_| false)?
            .into_values()
            .cloned()
            .collect();
        let mut added = 0;
        for m in checked {
            let key = keys::member(group_id, &m.user_id);
            if !self.change.exists(&key)? {
                self.claim(&key)?;
                self.change.put_membership(&m, None)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Removes users from an existing group; returns how many were members.
    pub fn remove_members(&mut self, group_id: &str, user_ids: &[&str]) -> Result<usize> {
        keys::check_id("group id", group_id)?;
        if !self.change.exists(&keys::group(group_id))? {
            return Err(not_found("group", group_id));
        }
        let unique: std::collections::BTreeSet<&str> = user_ids.iter().copied().collect();
        let mut removed = 0;
        for user_id in unique {
            keys::check_id("membership user id", user_id)?;
            let key = keys::member(group_id, user_id);
            if self.change.exists(&key)? {
                self.claim(&key)?;
                self.change.remove_membership(group_id, user_id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Creates or replaces a policy. The caller checks what its scope names; the agents its
    /// selector names must be registered (as this change leaves the registry: put agents
    /// before the policies naming them).
    pub fn put_policy(&mut self, policy: &Policy) -> Result<()> {
        keys::check_id("policy id", &policy.id)?;
        if let Agents::Only(ids) = &policy.agents {
            let agents = self.agents()?;
            check_selector(policy, ids, |id| agents.iter().any(|a| a.id == id))?;
        }
        let key = keys::policy(&policy.id);
        self.claim(&key)?;
        let value = codec::to_json("policy", policy)?;
        self.change.put(Kind::Policy, key, &value)?;
        self.policies_written
            .insert(policy.id.clone(), Some(policy.clone()));
        Ok(())
    }

    pub fn delete_policy(&mut self, id: &str) -> Result<()> {
        keys::check_id("policy id", id)?;
        let key = keys::policy(id);
        if !self.change.exists(&key)? {
            return Err(not_found("policy", id));
        }
        self.claim(&key)?;
        self.change.remove(Kind::Policy, key)?;
        self.policies_written.insert(id.to_owned(), None);
        Ok(())
    }

    /// Every policy, by id, as this change leaves them.
    fn policies_as_left(&self) -> Result<Vec<Policy>> {
        let mut policies: BTreeMap<String, Policy> = self
            .policies()?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        for (id, written) in &self.policies_written {
            match written {
                Some(policy) => policies.insert(id.clone(), policy.clone()),
                None => policies.remove(id),
            };
        }
        Ok(policies.into_values().collect())
    }

    /// Removes a user (`group: false`) or a group (`group: true`) from every policy scope that
    /// names it, stamping those policies `updated_at = now`; returns each policy before and
    /// after, by id. Deleting a user or group calls this in the same change, so no policy keeps
    /// naming what is gone.
    pub fn remove_from_scopes(
        &mut self,
        group: bool,
        id: &str,
        now: pdp::Timestamp,
    ) -> Result<Vec<(Policy, Policy)>> {
        let mut changed = Vec::new();
        for policy in self.policies()? {
            let named = if group {
                &policy.scope.groups
            } else {
                &policy.scope.users
            };
            if !named.iter().any(|n| n == id) {
                continue;
            }
            let mut after = policy.clone();
            let named = if group {
                &mut after.scope.groups
            } else {
                &mut after.scope.users
            };
            named.retain(|n| n != id);
            after.updated_at = now;
            self.put_policy(&after)?;
            changed.push((policy, after));
        }
        Ok(changed)
    }

    pub fn agent(&self, id: &str) -> Result<Option<Agent>> {
        keys::check_id("agent id", id)?;
        if let Some(written) = self.agents_written.get(id) {
            return Ok(written.clone());
        }
        self.get("agent", &keys::agent(id), id)
    }

    /// Every registered agent, by id, as this change leaves them.
    pub fn agents(&self) -> Result<Vec<Agent>> {
        let mut agents = BTreeMap::new();
        for item in self.change.scan(keys::AGENT) {
            let (key, value) = item?;
            let id = keys::id_of(keys::AGENT, &key)?;
            agents.insert(
                id.to_owned(),
                codec::from_json::<Agent>("agent", id, &value)?,
            );
        }
        for (id, written) in &self.agents_written {
            match written {
                Some(agent) => agents.insert(id.clone(), agent.clone()),
                None => agents.remove(id),
            };
        }
        Ok(agents.into_values().collect())
    }

    /// Creates or replaces an agent. Its id and aliases must be valid ids, and none may be
    /// another agent's id or alias ([`Error::AgentNameTaken`]), nor repeat within it.
    pub fn put_agent(&mut self, agent: &Agent) -> Result<()> {
        let others = self.agents()?;
        check_agent(agent, others.iter().filter(|a| a.id != agent.id))?;
        let key = keys::agent(&agent.id);
        self.claim(&key)?;
        let value = codec::to_json("agent", agent)?;
        self.change.put(Kind::Agent, key, &value)?;
        self.agents_written
            .insert(agent.id.clone(), Some(agent.clone()));
        Ok(())
    }

    /// Deletes an agent and removes it from every policy's agent selector (the policies as
    /// this change leaves them, so a policy this change wrote is not written twice), stamping
    /// those policies `updated_at = now`; returns each such policy before and after. A policy left
    /// selecting no agent keeps `Agents::Only([])`: it covers no agent (widening it to every
    /// agent would grant what its author restricted).
    pub fn delete_agent(&mut self, id: &str, now: pdp::Timestamp) -> Result<Vec<(Policy, Policy)>> {
        keys::check_id("agent id", id)?;
        if self.agent(id)?.is_none() {
            return Err(not_found("agent", id));
        }
        let key = keys::agent(id);
        self.claim(&key)?;
        self.change.remove(Kind::Agent, key)?;
        self.agents_written.insert(id.to_owned(), None);
        let mut changed = Vec::new();
        for policy in self.policies_as_left()? {
            let Agents::Only(ids) = &policy.agents else {
                continue;
            };
            if !ids.iter().any(|a| a == id) {
                continue;
            }
            let mut after = policy.clone();
            after.agents = Agents::Only(ids.iter().filter(|a| *a != id).cloned().collect());
            after.updated_at = now;
            self.put_policy(&after)?;
            changed.push((policy, after));
        }
        Ok(changed)
    }

    /// The organisation's settings as they stand before this change.
    pub fn settings(&self) -> Result<Settings> {
        match self.change.get(keys::SETTINGS)? {
            Some(value) => codec::from_json("settings", "settings", &value),
            None => Ok(Settings::default()),
        }
    }

    /// Writes the organisation's settings.
    pub fn put_settings(&mut self, settings: &Settings) -> Result<()> {
        self.claim(keys::SETTINGS)?;
        let value = codec::to_json("settings", settings)?;
        self.change.put_record(keys::SETTINGS.to_vec(), &value)
    }

    /// Creates or replaces an API token.
    pub fn put_token(&mut self, token: &ApiToken) -> Result<()> {
        keys::check_id("token id", &token.id)?;
        let key = keys::token(&token.id);
        self.claim(&key)?;
        let value = codec::to_json("token", token)?;
        self.change.put_record(key, &value)
    }

    pub fn connection(&self, id: &str) -> Result<Option<ScimConnection>> {
        keys::check_id("connection id", id)?;
        self.get("SCIM connection", &keys::connection(id), id)
    }

    /// Every SCIM connection, by id, as stored before this change: enough to check a new
    /// connection's name against the others, since transactions run one at a time.
    pub fn connections(&self) -> Result<Vec<ScimConnection>> {
        let mut connections = Vec::new();
        for item in self.change.scan(keys::CONNECTION) {
            let (key, value) = item?;
            let id = keys::id_of(keys::CONNECTION, &key)?;
            connections.push(codec::from_json("SCIM connection", id, &value)?);
        }
        Ok(connections)
    }

    /// Creates or replaces a SCIM connection.
    pub fn put_connection(&mut self, connection: &ScimConnection) -> Result<()> {
        keys::check_id("connection id", &connection.id)?;
        let key = keys::connection(&connection.id);
        self.claim(&key)?;
        let value = codec::to_json("SCIM connection", connection)?;
        self.change.put_record(key, &value)
    }

    /// The SCIM document kept for a user or group, if it was synced over SCIM.
    pub fn scim(&self, kind: ScimKind, id: &str) -> Result<Option<serde_json::Value>> {
        keys::check_id("SCIM resource id", id)?;
        self.get("SCIM document", &keys::scim(kind, id), id)
    }

    /// Keeps `document` as the SCIM document of a user or group (which the caller writes in the
    /// same change).
    pub fn put_scim(
        &mut self,
        kind: ScimKind,
        id: &str,
        document: &serde_json::Value,
    ) -> Result<()> {
        keys::check_id("SCIM resource id", id)?;
        let key = keys::scim(kind, id);
        self.claim(&key)?;
        let value = codec::to_json("SCIM document", document)?;
        self.change.put_record(key, &value)
    }

    /// Drops the SCIM document of a user or group, if there is one.
    pub fn delete_scim(&mut self, kind: ScimKind, id: &str) -> Result<()> {
        keys::check_id("SCIM resource id", id)?;
        let key = keys::scim(kind, id);
        if self.change.exists(&key)? {
            self.claim(&key)?;
            self.change.remove_record(key)?;
        }
        Ok(())
    }

    /// Records `event` with this change (its `seq` and `revision` are filled in). It is kept
    /// only if the change commits something.
    pub fn audit(&mut self, mut event: AuditEvent) -> Result<()> {
        event.seq = self.store.next_audit_seq();
        event.revision = self.revision();
        let value = codec::to_json("audit event", &event)?;
        self.change.put_note(keys::audit(event.seq), &value)
    }
}

/// Where a deleted user's lock is kept: under their normalized user name and their external id.
fn kept_lock_keys(user_name: &str, external_id: Option<&str>) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(2);
    if !user_name.is_empty() {
        keys.push(keys::kept_lock("u", &pdp::identity::normalize(user_name)));
    }
    if let Some(external_id) = external_id.filter(|x| !x.is_empty()) {
        keys.push(keys::kept_lock("x", external_id));
    }
    keys
}

/// Checks an agent's id and aliases: valid ids, none repeated within it, none another agent's
/// id or alias.
pub(crate) fn check_agent<'a>(
    agent: &Agent,
    others: impl Iterator<Item = &'a Agent> + Clone,
) -> Result<()> {
    keys::check_id("agent id", &agent.id)?;
    let mut own = HashSet::from([agent.id.as_str()]);
    for alias in &agent.aliases {
        keys::check_id("agent alias", alias)?;
        if !own.insert(alias.as_str()) {
            return Err(Error::AgentNameTaken {
                field: "alias",
                name: alias.clone(),
                taken_as: if *alias == agent.id {
                    "the id"
                } else {
                    "an alias"
                },
                by: agent.id.clone(),
            });
        }
    }
    for other in others {
        for (field, name) in
            std::iter::once(("id", &agent.id)).chain(agent.aliases.iter().map(|a| ("alias", a)))
        {
            let taken_as = if other.id == *name {
                "the id"
            } else if other.aliases.contains(name) {
                "an alias"
            } else {
                continue;
            };
            return Err(Error::AgentNameTaken {
                field,
                name: name.clone(),
                taken_as,
                by: other.id.clone(),
            });
        }
    }
    Ok(())
}

/// Checks a policy's agent selector: valid ids, each once, each registered.
pub(crate) fn check_selector(
    policy: &Policy,
    ids: &[String],
    registered: impl Fn(&str) -> bool,
) -> Result<()> {
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        keys::check_id("policy agent id", id)?;
        if !seen.insert(id.as_str()) {
            return Err(Error::Duplicate {
                kind: "agent in the selector of a policy",
                id: id.clone(),
            });
        }
        if !registered(id) {
            return Err(Error::UnknownAgent {
                policy_id: policy.id.clone(),
                agent_id: id.clone(),
            });
        }
    }
    Ok(())
}
