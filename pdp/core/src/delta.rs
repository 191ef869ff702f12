//! Changes published over a built snapshot: [`Snapshot::apply`] and the [`Overlay`] it makes.
//!
//! A full build of a million users takes seconds; a lock must reach decisions in about a
//! millisecond. So a later revision is the last full build's indexes, shared, plus an overlay
//! of what differs: users' entries (status and groups), the user keys that resolve differently,
//! groups that came or went, and the index of each connector whose policies changed, rebuilt
//! whole (a connector has hundreds of policies, not millions). Lookups consult the overlay
//! first. Applying a change costs in proportion to the change plus a copy of the overlay, so
//! the publisher folds the overlay into a fresh build in the background once it grows (see
//! [`Snapshot::pending_changes`]).
//!
//! The overlay holds whole values, never edits: a snapshot built from the resulting model and
//! one made by applying changes decide every request alike (the tests check this against the
//! reference rule over random change sequences).

use crate::agents::AgentIndex;
use crate::identity::Matches;
use crate::model::{Agent, Policy, Settings, User};
use crate::snapshot::{
    ConnectorIndex, GroupIdx, Indexes, Key, Keyed, Map, PolicyEntry, PolicyIdx, Snapshot,
    UserEntry, UserGroups, UserIdx,
};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The model at a revision, as [`Snapshot::apply`] asks about it: typically the store's
/// in-memory view.
pub trait Directory {
    fn user(&self, id: &str) -> Option<&User>;
    /// The ids of the groups the user is a member of (existing groups or not, any order).
    fn groups_of(&self, user_id: &str) -> Vec<&str>;
    fn group_exists(&self, id: &str) -> bool;
    fn policy(&self, id: &str) -> Option<&Policy>;
    /// The id of the user whose external id is exactly `key`, or `Many` if several have it.
    fn users_with_external_id(&self, key: &str) -> Matches<&str>;
    /// The id of the user with an email or user name whose normalized form
    /// ([`crate::identity::normalize`]) is `key`, or `Many` if several have one.
    fn users_with_login(&self, key: &str) -> Matches<&str>;
    /// Every registered agent (a few dozen at most), in any order.
    fn agents(&self) -> Vec<&Agent>;
    fn settings(&self) -> Settings;
}

/// What changed between two revisions, by id. Listing something that did not change is
/// harmless; leaving out something that did is not.
#[derive(Debug, Default)]
pub struct Changes<'c> {
    /// Users added, removed, or changed in anything decisions read (status, id keys, emails,
    /// user name, or their groups: including through a group of theirs being added or removed).
    pub users: Vec<UserDelta<'c>>,
    /// Groups added or removed.
    pub groups: Vec<&'c str>,
    /// Policies added, changed or removed.
    pub policies: Vec<&'c str>,
    /// Whether any agent or the settings changed (the agents are indexed anew, whole).
    pub agents: bool,
}

/// One changed user, with what they were at the earlier revision (`None`: they were not).
#[derive(Debug, Clone, Copy)]
pub struct UserDelta<'c> {
    pub id: &'c str,
    pub before: Option<&'c User>,
}

/// What differs from the indexes a snapshot shares.
#[derive(Debug, Clone)]
pub(crate) struct Overlay {
    /// Current entries of users that differ from their indexed entry, and of users added since.
    /// An entry whose groups changed has its range in `groups`, offset by the indexed
    /// `user_groups`' length.
    pub(crate) users: Map<UserIdx, UserEntry>,
    /// Changed users' groups, each user's sorted and deduplicated. Append-only; folding
    /// reclaims it.
    pub(crate) groups: Vec<GroupIdx>,
    /// Keys that resolve differently from the indexes' maps (`None`: to nobody). The entry is
    /// the indexed one for indexed users; `users` overrides it.
    pub(crate) by_id: Map<Key, Option<UserEntry>>,
    pub(crate) by_external_id: Map<Key, Option<Keyed>>,
    pub(crate) by_email: Map<Key, Option<Keyed>>,
    /// Indexes handed out since the build (to added users, or ids a changed policy names).
    user_ids: Map<Key, UserIdx>,
    /// The same, by index.
    ids_by_idx: Map<UserIdx, Key>,
    /// Primary emails of users added or changed since the build.
    pub(crate) emails: Map<UserIdx, Key>,
    /// The agent registry, when any agent or the setting changed since the build.
    pub(crate) agents: Option<Arc<AgentIndex>>,
    next_user: UserIdx,
    pub(crate) user_count: usize,
    /// Likewise for groups.
    group_ids: Map<Box<str>, GroupIdx>,
    group_ids_by_idx: Map<GroupIdx, Box<str>>,
    next_group: GroupIdx,
    /// Groups whose existence differs from the indexes'.
    group_exists: Map<Box<str>, bool>,
    /// Entries of policies added or changed since the build: index `indexed len + i`.
    pub(crate) policies: Vec<Arc<PolicyEntry>>,
    /// Policy id → its current index (`None`: removed), for policies changed since the build.
    policy_ids: Map<Box<str>, Option<PolicyIdx>>,
    pub(crate) policy_count: usize,
    /// Connectors whose policies changed, indexed anew (`None`: no policy left).
    pub(crate) connectors: Map<Box<str>, Option<Arc<ConnectorIndex>>>,
    /// All connector names, sorted, once some connector came or went.
    pub(crate) connector_names: Option<Vec<Box<str>>>,
}

/// Which key map a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KeyKind {
    Id,
    ExternalId,
    Login,
}

impl Overlay {
    fn empty(indexes: &Indexes) -> Overlay {
        Overlay {
            users: Map::default(),
            groups: Vec::new(),
            by_id: Map::default(),
            by_external_id: Map::default(),
            by_email: Map::default(),
            user_ids: Map::default(),
            ids_by_idx: Map::default(),
            emails: Map::default(),
            agents: None,
            next_user: (indexes.user_count + indexes.reserved_users.len()) as UserIdx,
            user_count: indexes.user_count,
            group_ids: Map::default(),
            group_ids_by_idx: Map::default(),
            next_group: (indexes.group_index.len() + indexes.reserved_groups.len()) as GroupIdx,
            group_exists: Map::default(),
            policies: Vec::new(),
            policy_ids: Map::default(),
            policy_count: indexes.policies.len(),
            connectors: Map::default(),
            connector_names: None,
        }
    }

    /// The index the user with this id has (or would have), if the id was ever seen.
    fn known_user_idx(&self, indexes: &Indexes, id: &str) -> Option<UserIdx> {
        if let Some(entry) = indexes.by_id.get(id) {
            return Some(entry.idx);
        }
        indexes
            .reserved_users
            .get(id)
            .or_else(|| self.user_ids.get(id))
            .copied()
    }

    /// The index of the user with this id, handing out a new one to an id never seen.
    fn user_idx(&mut self, indexes: &Indexes, id: &str) -> UserIdx {
        if let Some(idx) = self.known_user_idx(indexes, id) {
            return idx;
        }
        let idx = self.next_user;
        self.next_user += 1;
        self.user_ids.insert(id.into(), idx);
        self.ids_by_idx.insert(idx, id.into());
        idx
    }

    /// The id of a user given an index since the build.
    pub(crate) fn user_id(&self, idx: UserIdx) -> Option<&str> {
        self.ids_by_idx.get(&idx).map(|id| id.as_str())
    }

    /// The index of the group with this id, handing out a new one to an id never seen.
    fn group_idx(&mut self, indexes: &Indexes, id: &str) -> GroupIdx {
        if let Some(&idx) = indexes.group_index.get(id) {
            return idx;
        }
        if let Some(&idx) = indexes.reserved_groups.get(id) {
            return idx;
        }
        if let Some(&idx) = self.group_ids.get(id) {
            return idx;
        }
        let idx = self.next_group;
        self.next_group += 1;
        self.group_ids.insert(id.into(), idx);
        self.group_ids_by_idx.insert(idx, id.into());
        idx
    }

    /// The id of a group given an index since the build.
    pub(crate) fn group_id(&self, idx: GroupIdx) -> Option<&str> {
        self.group_ids_by_idx.get(&idx).map(|id| &**id)
    }

    fn group_exists(&self, indexes: &Indexes, id: &str) -> bool {
        match self.group_exists.get(id) {
            Some(&exists) => exists,
            None => indexes.group_index.contains_key(id),
        }
    }

    /// The entry the key maps hold for the user with this id: the indexed one for an indexed
    /// user, else the one in `users`.
    fn keyed_entry(&self, indexes: &Indexes, id: &str) -> Option<UserEntry> {
        if let Some(&entry) = indexes.by_id.get(id) {
            return Some(entry);
        }
        let idx = self.known_user_idx(indexes, id)?;
        self.users.get(&idx).copied()
    }

    /// The policy at `idx`, an index of the indexes or of this overlay.
    pub(crate) fn policy<'s>(
        &'s self,
        indexes: &'s Indexes,
        idx: PolicyIdx,
    ) -> Option<&'s PolicyEntry> {
        match indexes.policies.get(idx as usize) {
            Some(policy) => Some(policy),
            None => self
                .policies
                .get(idx as usize - indexes.policies.len())
                .map(|p| &**p),
        }
    }

    /// The current index of the policy with this id.
    fn policy_idx(&self, indexes: &Indexes, id: &str) -> Option<PolicyIdx> {
        match self.policy_ids.get(id) {
            Some(changed) => *changed,
            None => indexes.policy_idx(id),
        }
    }

    /// The current index of a connector's policies.
    pub(crate) fn connector<'s>(
        &'s self,
        indexes: &'s Indexes,
        name: &str,
    ) -> Option<&'s ConnectorIndex> {
        match self.connectors.get(name) {
            Some(changed) => changed.as_deref(),
            None => indexes.connectors.get(name),
        }
    }
}

impl Snapshot {
    /// This snapshot moved to `revision`, where `changes` say what differs and `directory` is
    /// the model at `revision`. Costs in proportion to the changes (plus a copy of what
    /// already differs from the last full build), never to the directory.
    pub fn apply(
        &self,
        revision: u64,
        changes: &Changes<'_>,
        directory: &impl Directory,
    ) -> Snapshot {
        if changes.users.is_empty()
            && changes.groups.is_empty()
            && changes.policies.is_empty()
            && !changes.agents
        {
            return Snapshot {
                revision,
                ..self.clone()
            };
        }
        let indexes = &*self.indexes;
        let mut o = match &self.overlay {
            Some(overlay) => (**overlay).clone(),
            None => Overlay::empty(indexes),
        };

        for &id in &changes.groups {
            let exists = directory.group_exists(id);
            if exists == indexes.group_index.contains_key(id) {
                o.group_exists.remove(id);
            } else {
                o.group_exists.insert(id.into(), exists);
            }
            if exists {
                o.group_idx(indexes, id);
            }
        }

        // Users' entries first: a key may resolve to a user listed after the one that freed it.
        let mut keys: BTreeSet<(KeyKind, Key)> = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for delta in &changes.users {
            if !seen.insert(delta.id) {
                continue;
            }
            let was = self.has_user_id(delta.id);
            let now = directory.user(delta.id);
            match (was, now.is_some()) {
                (false, true) => o.user_count += 1,
                (true, false) => o.user_count = o.user_count.saturating_sub(1),
                _ => {}
            }
            let idx = o.user_idx(indexes, delta.id);
            match now {
                Some(user) => {
                    let entry = self.entry_for(&mut o, directory, idx, delta.id, user);
                    if indexes.by_id.get(delta.id) == Some(&entry) {
                        o.users.remove(&idx);
                    } else {
                        o.users.insert(idx, entry);
                    }
                }
                None => {
                    o.users.remove(&idx);
                }
            }
            keys.insert((KeyKind::Id, delta.id.into()));
            for user in [delta.before, now].into_iter().flatten() {
                if let Some(external_id) = &user.external_id {
                    keys.insert((KeyKind::ExternalId, external_id.as_str().into()));
                }
                for login in user.logins() {
                    keys.insert((KeyKind::Login, login.into()));
                }
            }
        }
        for (kind, key) in keys {
            let holders = match kind {
                KeyKind::Id => {
                    let entry = directory
                        .user(&key)
                        .and_then(|_| o.keyed_entry(indexes, &key));
                    if indexes.by_id.get(&key).copied() == entry {
                        o.by_id.remove(&key);
                    } else {
                        o.by_id.insert(key, entry);
                    }
                    continue;
                }
                KeyKind::ExternalId => directory.users_with_external_id(&key),
                KeyKind::Login => directory.users_with_login(&key),
            };
            let entry = match holders {
                Matches::None => None,
                Matches::One(id) => o.keyed_entry(indexes, id).map(Keyed::One),
                Matches::Many => Some(Keyed::Many),
            };
            let (indexed, changed) = match kind {
                KeyKind::ExternalId => (&indexes.by_external_id, &mut o.by_external_id),
                _ => (&indexes.by_email, &mut o.by_email),
            };
            if indexed.get(&key).copied() == entry {
                changed.remove(&key);
            } else {
                changed.insert(key, entry);
            }
        }

        if !changes.policies.is_empty() {
            self.apply_policies(&mut o, &changes.policies, directory);
        }
        if changes.agents {
            let agents = directory.agents();
            // Indexes for the ids the scopes name first (handing out new ones as needed).
            let mut users: Map<Key, UserIdx> = Map::default();
            let mut groups: Map<Box<str>, GroupIdx> = Map::default();
            for agent in &agents {
                for id in &agent.scope.users {
                    users.insert(id.as_str().into(), o.user_idx(indexes, id));
                }
                for id in &agent.scope.groups {
                    groups.insert(id.as_str().into(), o.group_idx(indexes, id));
                }
            }
            let index = AgentIndex::build(
                &agents,
                directory.settings(),
                |id| users.get(id).copied().unwrap_or(UserIdx::MAX),
                |id| groups.get(id).copied().unwrap_or(GroupIdx::MAX),
            );
            o.agents = Some(Arc::new(index));
        }

        Snapshot {
            revision,
            indexes: Arc::clone(&self.indexes),
            overlay: Some(Arc::new(o)),
        }
    }

    /// How much this snapshot differs from its last full build (entries of the overlay): what
    /// a publisher compares with its bound to decide when to fold.
    pub fn pending_changes(&self) -> usize {
        self.overlay.as_ref().map_or(0, |o| {
            o.users.len()
                + o.by_id.len()
                + o.by_external_id.len()
                + o.by_email.len()
                + o.group_exists.len()
                + o.policy_ids.len()
                + o.groups.len() / 8
        })
    }

    /// Whether a user has this id (in this snapshot's revision).
    fn has_user_id(&self, id: &str) -> bool {
        if let Some(overlay) = &self.overlay
            && let Some(changed) = overlay.by_id.get(id)
        {
            return changed.is_some();
        }
        self.indexes.by_id.contains_key(id)
    }

    /// The entry of `user` (index `idx`) at the directory's revision, with their groups
    /// stored in the overlay unless they are the indexed ones.
    fn entry_for(
        &self,
        o: &mut Overlay,
        directory: &impl Directory,
        idx: UserIdx,
        id: &str,
        user: &User,
    ) -> UserEntry {
        let indexes = &*self.indexes;
        let mut groups: Vec<GroupIdx> = Vec::new();
        for group in directory.groups_of(id) {
            if o.group_exists(indexes, group) {
                groups.push(o.group_idx(indexes, group));
            }
        }
        groups.sort_unstable();
        groups.dedup();
        let email = user.email();
        if indexes.emails.get(idx as usize).is_some_and(|e| e == email) {
            o.emails.remove(&idx);
        } else {
            o.emails.insert(idx, email.into());
        }
        let held = match indexes.by_id.get(id) {
            Some(indexed) if self.indexed_groups_of(indexed) == groups.as_slice() => indexed.groups,
            _ => {
                let held = UserGroups::new(&groups, indexes.user_groups.len() + o.groups.len());
                if held.inline().is_none() {
                    o.groups.extend_from_slice(&groups);
                }
                held
            }
        };
        UserEntry {
            idx,
            status: user.status(),
            mfa: user.mfa,
            groups: held,
        }
    }

    /// Re-indexes the policies with these ids and every connector they were or are for.
    fn apply_policies(&self, o: &mut Overlay, ids: &[&str], directory: &impl Directory) {
        let indexes = &*self.indexes;
        let ids: BTreeSet<&str> = ids.iter().copied().collect();
        let mut connectors: BTreeSet<Box<str>> = BTreeSet::new();
        for &id in &ids {
            if let Some(old) = o.policy_idx(indexes, id)
                && let Some(entry) = o.policy(indexes, old)
            {
                connectors.insert(entry.connector.clone());
                o.policy_count = o.policy_count.saturating_sub(1);
            }
            match directory.policy(id) {
                Some(policy) => {
                    let users = policy
                        .scope
                        .users
                        .iter()
                        .map(|u| o.user_idx(indexes, u))
                        .collect();
                    let groups = policy
                        .scope
                        .groups
                        .iter()
                        .map(|g| o.group_idx(indexes, g))
                        .collect();
                    let entry = PolicyEntry::new(policy, users, groups);
                    let idx = (indexes.policies.len() + o.policies.len()) as PolicyIdx;
                    o.policies.push(Arc::new(entry));
                    o.policy_ids.insert(id.into(), Some(idx));
                    connectors.insert(policy.connector.as_str().into());
                    o.policy_count += 1;
                }
                None => {
                    if indexes.policy_idx(id).is_some() {
                        o.policy_ids.insert(id.into(), None);
                    } else {
                        o.policy_ids.remove(id);
                    }
                }
            }
        }

        for name in &connectors {
            // The connector's policies before, minus the changed ones, plus the changed ones
            // now for it; in id order.
            let mut policies: Vec<PolicyIdx> = self
                .connector(name)
                .map(|c| c.policies.to_vec())
                .unwrap_or_default();
            policies.retain(|&p| self.policy(p).is_some_and(|p| !ids.contains(&*p.id)));
            for &id in &ids {
                if let Some(Some(idx)) = o.policy_ids.get(id)
                    && o.policy(indexes, *idx)
                        .is_some_and(|p| p.connector == *name)
                {
                    policies.push(*idx);
                }
            }
            let index = {
                let o = &*o;
                let mut entries: Vec<(PolicyIdx, &PolicyEntry)> = policies
                    .into_iter()
                    .filter_map(|p| Some((p, o.policy(indexes, p)?)))
                    .collect();
                entries.sort_by(|(_, a), (_, b)| a.id.cmp(&b.id));
                (!entries.is_empty()).then(|| ConnectorIndex::new(entries))
            };
            if index.is_none() && !indexes.connectors.contains_key(name) {
                o.connectors.remove(name);
            } else {
                o.connectors.insert(name.clone(), index.map(Arc::new));
            }
        }

        let mut names: Vec<Box<str>> = indexes
            .connector_names
            .iter()
            .filter(|n| o.connector(indexes, n).is_some())
            .cloned()
            .collect();
        names.extend(
            o.connectors
                .iter()
                .filter(|(n, c)| c.is_some() && !indexes.connectors.contains_key(*n))
                .map(|(n, _)| n.clone()),
        );
        names.sort();
        o.connector_names = Some(names);
    }
}
