//! An immutable, indexed view of one model revision, built once and read by every decision.
//!
//! Everything a decision needs is resolved here, at build time: user keys to dense indexes,
//! each user's groups, and per (connector, tool) the enabled policies that can apply, already in
//! the order in which the first one that matches is the answer. Deciding is then a few hash
//! lookups and a short scan.

use crate::model::{Action, Condition, Group, Model, Policy, Tools, User, UserStatus};
use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::Arc;

/// A hash map with a per-process random seed: fast on short keys, and keys synced from an
/// identity provider cannot be chosen to collide.
pub(crate) type Map<K, V> = HashMap<K, V, RandomState>;

/// A user key (id, external id, lower-cased email): short ones live inline.
pub(crate) type Key = compact_str::CompactString;

/// Dense index of a user in [`Snapshot::users`].
pub(crate) type UserIdx = u32;
/// Dense index of a group; only groups that exist in the model get one.
pub(crate) type GroupIdx = u32;
/// Dense index of a policy in [`Snapshot::policies`]; policies are sorted by id, so a lower
/// index is a lower id.
pub(crate) type PolicyIdx = u32;

/// A model given by parts, for building a snapshot from something other than a [`Model`] (the
/// store's in-memory view). Order matters as in a `Model`: on a user key clash the first user
/// wins.
#[derive(Debug)]
pub struct Parts<'m, M> {
    pub revision: u64,
    pub users: Vec<&'m User>,
    pub groups: Vec<&'m Group>,
    /// `(group id, user id)` of each membership.
    pub memberships: M,
    pub policies: Vec<&'m Policy>,
}

/// The indexed snapshot of one model revision.
///
/// The indexes are shared: a snapshot that differs from another only in some users' status (a
/// lock, an unlock, a deactivation) or group memberships is made with
/// [`Snapshot::with_changes`] in proportion to those users, so such changes never wait for a
/// rebuild.
#[derive(Debug, Clone)]
pub struct Snapshot {
    revision: u64,
    indexes: Arc<Indexes>,
    /// Users whose status or groups differ from the indexed ones.
    overlay: Option<Arc<Overlay>>,
}

/// Users changed since the indexes were built, in full.
#[derive(Debug, Clone, Default)]
struct Overlay {
    /// Invariant: keys are indexes of users in the indexes; an entry whose groups changed has
    /// its range in `groups`, offset by the indexed `user_groups`' length.
    users: Map<UserIdx, UserEntry>,
    /// Overridden users' groups, each user's sorted and deduplicated.
    groups: Vec<GroupIdx>,
}

/// One user's state for [`Snapshot::with_changes`].
#[derive(Debug, Clone)]
pub struct UserChange<'c> {
    pub id: &'c str,
    pub status: UserStatus,
    /// The ids of all the groups the user is now in; `None` if they did not change.
    pub groups: Option<Vec<&'c str>>,
}

impl std::ops::Deref for Snapshot {
    type Target = Indexes;

    fn deref(&self) -> &Indexes {
        &self.indexes
    }
}

/// Everything a snapshot indexes, built once by [`Snapshot::build`].
#[derive(Debug)]
pub struct Indexes {
    pub(crate) user_count: usize,
    /// Group id → dense index.
    pub(crate) group_index: Map<Box<str>, GroupIdx>,
    /// Invariant: every user's groups, sorted and deduplicated, concatenated;
    /// `UserEntry::groups_*` is a range into it.
    pub(crate) user_groups: Vec<GroupIdx>,
    /// Exact user id → user. Keys up to 24 bytes are stored inline in the table, so a lookup
    /// does not chase a pointer to compare them (typical ids and emails fit), and the value is
    /// the whole (small) user entry, so the status checks read no other cache line.
    pub(crate) by_id: Map<Key, UserEntry>,
    /// Exact identity-provider id → user; an id that is also some user's `id` is shadowed.
    pub(crate) by_external_id: Map<Key, UserEntry>,
    /// Lower-cased email or user name → user; on a clash the user first in model order wins.
    pub(crate) by_email: Map<Key, UserEntry>,
    /// Invariant: sorted by policy id.
    pub(crate) policies: Vec<PolicyEntry>,
    pub(crate) connectors: Map<Box<str>, ConnectorIndex>,
    /// Connector names, sorted, for listing.
    pub(crate) connector_names: Vec<Box<str>>,
}

/// What deciding needs of a user. Invariant: the same value under each of the user's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserEntry {
    pub(crate) idx: UserIdx,
    pub(crate) status: UserStatus,
    pub(crate) groups_start: u32,
    pub(crate) groups_len: u32,
}

#[derive(Debug)]
pub(crate) struct PolicyEntry {
    pub(crate) id: Box<str>,
    pub(crate) name: Box<str>,
    pub(crate) action: Action,
    pub(crate) enabled: bool,
    pub(crate) tools: Tools,
    pub(crate) all_users: bool,
    /// Invariant: sorted; users the model does not have are dropped.
    pub(crate) users: Box<[UserIdx]>,
    /// Invariant: sorted; groups the model does not have are dropped.
    pub(crate) groups: Box<[GroupIdx]>,
    pub(crate) conditions: Box<[Condition]>,
}

/// The policies of one connector.
#[derive(Debug, Default)]
pub(crate) struct ConnectorIndex {
    /// Tool → the candidates for it: the enabled policies that list it or cover all tools.
    pub(crate) by_tool: Map<Box<str>, Candidates>,
    /// The enabled all-tools policies: the candidates for a tool no policy lists.
    pub(crate) all_tools: Candidates,
    /// Tool names some policy lists, sorted.
    pub(crate) tool_names: Vec<Box<str>>,
    /// Every policy of the connector, enabled or not, in id order (for explanations).
    pub(crate) policies: Box<[PolicyIdx]>,
}

/// The candidate policies for one (connector, tool), indexed by whom they cover.
///
/// A policy's *rank* is its position in `order`. Invariant: `order` is sorted by action, most
/// restrictive first, then by policy id, so the candidate with the lowest rank among those that
/// apply is the deciding one. The posting lists below hold ranks in ascending order, so the
/// lowest applicable rank is found from the heads of the user's few lists, without scanning
/// policies that do not cover the user.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub(crate) order: Box<[PolicyIdx]>,
    /// Ranks of the policies whose scope is all users.
    pub(crate) all_users: Box<[u32]>,
    /// User → ranks of the policies naming the user (all-users policies left out).
    pub(crate) by_user: Map<UserIdx, Box<[u32]>>,
    /// Group → ranks of the policies naming the group (all-users policies left out).
    pub(crate) by_group: Map<GroupIdx, Box<[u32]>>,
    /// By rank: whether the policy has conditions, so the common case never loads the policy.
    pub(crate) conditional: Box<[bool]>,
}

impl Candidates {
    /// Indexes `order`, which must already be in rank order.
    fn new(order: Vec<PolicyIdx>, entries: &[PolicyEntry]) -> Candidates {
        let mut all_users = Vec::new();
        let mut by_user: Map<UserIdx, Vec<u32>> = Map::default();
        let mut by_group: Map<GroupIdx, Vec<u32>> = Map::default();
        let mut conditional = Vec::with_capacity(order.len());
        for (rank, &p) in order.iter().enumerate() {
            let rank = rank as u32;
            let policy = &entries[p as usize];
            conditional.push(!policy.conditions.is_empty());
            if policy.all_users {
                all_users.push(rank);
                continue;
            }
            for &u in policy.users.iter() {
                by_user.entry(u).or_default().push(rank);
            }
            for &g in policy.groups.iter() {
                by_group.entry(g).or_default().push(rank);
            }
        }
        Candidates {
            order: order.into(),
            all_users: all_users.into(),
            by_user: by_user.into_iter().map(|(k, v)| (k, v.into())).collect(),
            by_group: by_group.into_iter().map(|(k, v)| (k, v.into())).collect(),
            conditional: conditional.into(),
        }
    }
}

impl Snapshot {
    /// Indexes `model`. Never fails: dangling references are dropped, so they match nobody.
    pub fn build(model: &Model) -> Snapshot {
        Snapshot::build_from(Parts {
            revision: model.revision,
            users: model.users.iter().collect(),
            groups: model.groups.iter().collect(),
            memberships: model
                .memberships
                .iter()
                .map(|m| (m.group_id.as_str(), m.user_id.as_str())),
            policies: model.policies.iter().collect(),
        })
    }

    /// Indexes a model given by parts (see [`Parts`]), as [`Snapshot::build`] does.
    pub fn build_from<'m>(parts: Parts<'m, impl Iterator<Item = (&'m str, &'m str)>>) -> Snapshot {
        let Parts {
            revision,
            users,
            groups,
            memberships,
            policies,
        } = parts;
        let user_count = users.len();
        // Entries get their status and groups once those are known (below).
        let placeholder = |idx: usize| UserEntry {
            idx: idx as UserIdx,
            status: UserStatus::Active,
            groups_start: 0,
            groups_len: 0,
        };
        let mut by_id: Map<Key, UserEntry> = Map::default();
        by_id.reserve(user_count);
        for (idx, user) in users.iter().copied().enumerate() {
            by_id
                .entry(user.id.as_str().into())
                .or_insert(placeholder(idx));
        }
        let mut by_external_id: Map<Key, UserEntry> = Map::default();
        let mut by_email: Map<Key, UserEntry> = Map::default();
        by_email.reserve(user_count);
        for (idx, user) in users.iter().copied().enumerate() {
            if let Some(external_id) = &user.external_id
                && !by_id.contains_key(external_id.as_str())
            {
                by_external_id
                    .entry(external_id.as_str().into())
                    .or_insert(placeholder(idx));
            }
            let names = user.emails.iter().chain(std::iter::once(&user.user_name));
            for name in names.filter(|n| !n.is_empty()) {
                by_email
                    .entry(name.to_lowercase().into())
                    .or_insert(placeholder(idx));
            }
        }

        let mut group_index: Map<&str, GroupIdx> = Map::default();
        for group in &groups {
            let next = group_index.len() as GroupIdx;
            group_index.entry(group.id.as_str()).or_insert(next);
        }

        // Each user's groups, via a per-user list, then flattened.
        let mut per_user: Vec<Vec<GroupIdx>> = vec![Vec::new(); user_count];
        let mut membership_count = 0;
        for (group_id, user_id) in memberships {
            membership_count += 1;
            if let (Some(u), Some(&g)) = (by_id.get(user_id), group_index.get(group_id)) {
                per_user[u.idx as usize].push(g);
            }
        }
        let mut user_groups = Vec::with_capacity(membership_count);
        let mut entries = Vec::with_capacity(user_count);
        for (idx, (user, mut groups)) in users.iter().copied().zip(per_user).enumerate() {
            groups.sort_unstable();
            groups.dedup();
            entries.push(UserEntry {
                idx: idx as UserIdx,
                status: user.status(),
                groups_start: user_groups.len() as u32,
                groups_len: groups.len() as u32,
            });
            user_groups.extend_from_slice(&groups);
        }
        let keyed = by_id
            .values_mut()
            .chain(by_external_id.values_mut())
            .chain(by_email.values_mut());
        for entry in keyed {
            *entry = entries[entry.idx as usize];
        }

        let mut sorted = policies;
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let policies: Vec<PolicyEntry> = sorted
            .iter()
            .map(|p| {
                let mut users: Vec<UserIdx> = p
                    .scope
                    .users
                    .iter()
                    .filter_map(|u| by_id.get(u.as_str()).map(|e| e.idx))
                    .collect();
                users.sort_unstable();
                users.dedup();
                let mut groups: Vec<GroupIdx> = p
                    .scope
                    .groups
                    .iter()
                    .filter_map(|g| group_index.get(g.as_str()).copied())
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                PolicyEntry {
                    id: p.id.as_str().into(),
                    name: p.name.as_str().into(),
                    action: p.action,
                    enabled: p.enabled,
                    tools: p.tools.clone(),
                    all_users: p.scope.all_users,
                    users: users.into(),
                    groups: groups.into(),
                    conditions: p.conditions.clone().into(),
                }
            })
            .collect();

        let connectors = index_connectors(&sorted, &policies);
        let mut connector_names: Vec<Box<str>> = connectors.keys().cloned().collect();
        connector_names.sort();

        Snapshot {
            revision,
            indexes: Arc::new(Indexes {
                user_count,
                group_index: group_index
                    .into_iter()
                    .map(|(id, idx)| (Box::from(id), idx))
                    .collect(),
                user_groups,
                by_id,
                by_external_id,
                by_email,
                policies,
                connectors,
                connector_names,
            }),
            overlay: None,
        }
    }

    /// This snapshot at `revision`, where the users with these ids have these statuses (and
    /// everything else is as it is here); see [`Snapshot::with_changes`].
    pub fn with_statuses<'u>(
        &self,
        revision: u64,
        statuses: impl IntoIterator<Item = (&'u str, UserStatus)>,
    ) -> Option<Snapshot> {
        self.with_changes(
            revision,
            statuses.into_iter().map(|(id, status)| UserChange {
                id,
                status,
                groups: None,
            }),
        )
    }

    /// This snapshot at `revision`, where these users have these statuses and (when given)
    /// belong to these groups, and everything else is as it is here. Costs in proportion to the
    /// changes. `None` if some id is not a user or a group of this snapshot: new users and groups
    /// need a rebuild.
    pub fn with_changes<'c>(
        &self,
        revision: u64,
        changes: impl IntoIterator<Item = UserChange<'c>>,
    ) -> Option<Snapshot> {
        let mut overlay = self.overlay.as_deref().cloned().unwrap_or_default();
        let indexed_groups = self.user_groups.len();
        for change in changes {
            let indexed = *self.by_id.get(change.id)?;
            let mut entry = overlay.users.get(&indexed.idx).copied().unwrap_or(indexed);
            entry.status = change.status;
            if let Some(groups) = change.groups {
                let mut groups = groups
                    .iter()
                    .map(|g| self.group_index.get(*g).copied())
                    .collect::<Option<Vec<GroupIdx>>>()?;
                groups.sort_unstable();
                groups.dedup();
                if groups.as_slice() == self.indexed_groups_of(&indexed) {
                    entry.groups_start = indexed.groups_start;
                    entry.groups_len = indexed.groups_len;
                } else {
                    entry.groups_start = (indexed_groups + overlay.groups.len()) as u32;
                    entry.groups_len = groups.len() as u32;
                    overlay.groups.extend_from_slice(&groups);
                }
            }
            if entry == indexed {
                overlay.users.remove(&indexed.idx);
            } else {
                overlay.users.insert(indexed.idx, entry);
            }
        }
        Some(Snapshot {
            revision,
            indexes: Arc::clone(&self.indexes),
            overlay: (!overlay.users.is_empty()).then(|| Arc::new(overlay)),
        })
    }

    /// How many users differ from the indexed ones (see [`Snapshot::with_changes`]).
    pub fn overridden_users(&self) -> usize {
        self.overlay.as_ref().map_or(0, |o| o.users.len())
    }

    /// The store revision this snapshot was built from.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user_count(&self) -> usize {
        self.user_count
    }

    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// Finds a user by id, then by external id, then by email or user name ignoring case, with
    /// their current status.
    pub(crate) fn find_user(&self, key: &str) -> Option<UserEntry> {
        let entry = self.find_indexed_user(key)?;
        if let Some(overlay) = &self.overlay
            && let Some(&changed) = overlay.users.get(&entry.idx)
        {
            return Some(changed);
        }
        Some(entry)
    }

    fn find_indexed_user(&self, key: &str) -> Option<UserEntry> {
        if let Some(&entry) = self.by_id.get(key) {
            return Some(entry);
        }
        if let Some(&entry) = self.by_external_id.get(key) {
            return Some(entry);
        }
        if key.bytes().any(|b| b.is_ascii_uppercase()) || !key.is_ascii() {
            // Lower-case into a stack buffer when we can: mixed-case emails are common and the
            // hot path should not allocate.
            let mut buf = [0u8; 128];
            if key.is_ascii() && key.len() <= buf.len() {
                let lower = &mut buf[..key.len()];
                lower.copy_from_slice(key.as_bytes());
                lower.make_ascii_lowercase();
                let lower = std::str::from_utf8(lower).ok()?;
                return self.by_email.get(lower).copied();
            }
            return self.by_email.get(key.to_lowercase().as_str()).copied();
        }
        self.by_email.get(key).copied()
    }

    /// The user's groups, sorted. `user` comes from [`Snapshot::find_user`].
    pub(crate) fn groups_of(&self, user: &UserEntry) -> &[GroupIdx] {
        let start = user.groups_start as usize;
        let len = user.groups_len as usize;
        let indexed = self.user_groups.len();
        if start < indexed || len == 0 {
            return self.indexed_groups_of(user);
        }
        match &self.overlay {
            Some(overlay) => overlay
                .groups
                .get(start - indexed..start - indexed + len)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    fn indexed_groups_of(&self, user: &UserEntry) -> &[GroupIdx] {
        let start = user.groups_start as usize;
        self.user_groups
            .get(start..start + user.groups_len as usize)
            .unwrap_or(&[])
    }
}

impl PolicyEntry {
    /// Whether the scope covers this user (given the user's sorted groups).
    pub(crate) fn covers(&self, user: UserIdx, user_groups: &[GroupIdx]) -> bool {
        self.all_users
            || self.users.binary_search(&user).is_ok()
            || sorted_intersect(&self.groups, user_groups)
    }
}

/// Whether two sorted slices share an element. Both are short in practice (a user is in a few
/// groups; a policy names a few), so a merge beats hashing.
fn sorted_intersect(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

fn index_connectors(sorted: &[&Policy], entries: &[PolicyEntry]) -> Map<Box<str>, ConnectorIndex> {
    #[derive(Default)]
    struct Building<'a> {
        by_tool: Map<&'a str, Vec<PolicyIdx>>,
        all_tools: Vec<PolicyIdx>,
        policies: Vec<PolicyIdx>,
    }
    let mut building: Map<&str, Building> = Map::default();
    for (idx, policy) in sorted.iter().enumerate() {
        let idx = idx as PolicyIdx;
        let b = building.entry(policy.connector.as_str()).or_default();
        b.policies.push(idx);
        match &policy.tools {
            Tools::All => {
                if policy.enabled {
                    b.all_tools.push(idx);
                }
            }
            Tools::Only(tools) => {
                for tool in tools {
                    let list = b.by_tool.entry(tool.as_str()).or_default();
                    if policy.enabled && list.last() != Some(&idx) {
                        list.push(idx);
                    }
                }
            }
        }
    }
    // Most restrictive first, then lowest id: the first applicable policy decides.
    let order = |list: &mut Vec<PolicyIdx>| {
        list.sort_by_key(|&p| (std::cmp::Reverse(entries[p as usize].action), p));
    };
    building
        .into_iter()
        .map(|(connector, mut b)| {
            order(&mut b.all_tools);
            let mut tool_names: Vec<Box<str>> = b.by_tool.keys().map(|t| Box::from(*t)).collect();
            tool_names.sort();
            let by_tool = b
                .by_tool
                .into_iter()
                .map(|(tool, mut list)| {
                    list.extend_from_slice(&b.all_tools);
                    order(&mut list);
                    (Box::from(tool), Candidates::new(list, entries))
                })
                .collect();
            let index = ConnectorIndex {
                by_tool,
                all_tools: Candidates::new(b.all_tools, entries),
                tool_names,
                policies: b.policies.into_boxed_slice(),
            };
            (Box::from(connector), index)
        })
        .collect()
}
