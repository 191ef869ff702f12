//! An immutable, indexed view of one model revision, built once and read by every decision.
//!
//! Everything a decision needs is resolved here, at build time: user keys to dense indexes,
//! each user's groups, and per (connector, tool) the enabled policies that can apply, already in
//! the order in which the first one that matches is the answer. Deciding is then a few hash
//! lookups and a short scan.
//!
//! Later revisions are published as an [`Overlay`](crate::delta) over these indexes (see
//! [`Snapshot::apply`]), so a change costs in proportion to itself, not to the directory.

use crate::agents::AgentIndex;
use crate::delta::Overlay;
use crate::expression::Expression;
use crate::identity::{self, Matches, Resolved, UserKeys};
use crate::model::{
    Action, Agent, Agents, Condition, Group, Mfa, Model, Policy, Settings, StepUp, Tools, User,
    UserStatus,
};
use foldhash::fast::RandomState;
use std::collections::{BTreeMap, HashMap};
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
/// store's in-memory view). A key several users share resolves to none of them (see
/// [`identity`]); on a repeated user id, which the store never holds, the first user wins.
#[derive(Debug)]
pub struct Parts<'m, M> {
    pub revision: u64,
    pub users: Vec<&'m User>,
    pub groups: Vec<&'m Group>,
    /// `(group id, user id)` of each membership.
    pub memberships: M,
    pub policies: Vec<&'m Policy>,
    pub agents: Vec<&'m Agent>,
    pub settings: Settings,
}

/// The indexed snapshot of one model revision: the indexes of a full build, shared with every
/// snapshot derived from it, and what changed since that build (see [`Snapshot::apply`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) revision: u64,
    pub(crate) indexes: Arc<Indexes>,
    /// What differs from the indexes; `None` right after a full build.
    pub(crate) overlay: Option<Arc<Overlay>>,
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
    /// Group id → dense index, for the groups of the model.
    pub(crate) group_index: Map<Box<str>, GroupIdx>,
    /// Ids some policy names that are no user of the model, with the index such a user gets
    /// if a later revision adds them (so the policy's posting lists already cover them).
    /// Invariant: indexes from `user_count` up, in no particular order.
    pub(crate) reserved_users: Map<Key, UserIdx>,
    /// Likewise for groups; indexes from `group_index.len()` up.
    pub(crate) reserved_groups: Map<Box<str>, GroupIdx>,
    /// Invariant: the groups of every user in more than [`INLINE_GROUPS`], each user's sorted
    /// and deduplicated, concatenated; such a user's [`UserGroups`] is a range into it.
    pub(crate) user_groups: Vec<GroupIdx>,
    /// Exact user id → user. Keys up to 24 bytes are stored inline in the table, so a lookup
    /// does not chase a pointer to compare them (typical ids and emails fit), and the value is
    /// the whole (small) user entry, so the status checks read no other cache line.
    pub(crate) by_id: Map<Key, UserEntry>,
    /// Exact identity-provider id → the user or users with it (an id that is also some user's
    /// `id` is found by id first).
    pub(crate) by_external_id: Map<Key, Keyed>,
    /// Normalized email or user name ([`identity::normalize`]) → the user or users with it.
    pub(crate) by_email: Map<Key, Keyed>,
    /// User index → id, for the users of the build (`user_count` of them) and then the
    /// reserved ones, in index order.
    pub(crate) ids: Vec<Key>,
    /// User index → primary email (what conditions see as `user.email`), for the users of the
    /// build.
    pub(crate) emails: Vec<Key>,
    /// Group index → id, for the groups of the build and then the reserved ones.
    pub(crate) group_ids: Vec<Box<str>>,
    pub(crate) agents: Arc<AgentIndex>,
    /// Invariant: sorted by policy id.
    pub(crate) policies: Vec<PolicyEntry>,
    pub(crate) connectors: Map<Box<str>, ConnectorIndex>,
    /// Connector names, sorted, for listing.
    pub(crate) connector_names: Vec<Box<str>>,
}

/// What a key other than an id names: one user, or several (then the key names nobody).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyed {
    One(UserEntry),
    Many,
}

impl Keyed {
    /// Files one more user under a key that already names `self`.
    pub(crate) fn and(self, entry: UserEntry) -> Keyed {
        match self {
            Keyed::One(e) if e.idx == entry.idx => Keyed::One(e),
            _ => Keyed::Many,
        }
    }

    pub(crate) fn matches(&self) -> Matches<&UserEntry> {
        match self {
            Keyed::One(entry) => Matches::One(entry),
            Keyed::Many => Matches::Many,
        }
    }
}

/// Files `entry` under `key` in a map of [`Keyed`].
fn file(map: &mut Map<Key, Keyed>, key: Key, entry: UserEntry) {
    map.entry(key)
        .and_modify(|keyed| *keyed = keyed.and(entry))
        .or_insert(Keyed::One(entry));
}

/// What deciding needs of a user. Invariant: the same value under each of the user's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserEntry {
    pub(crate) idx: UserIdx,
    pub(crate) status: UserStatus,
    pub(crate) mfa: Mfa,
    pub(crate) groups: UserGroups,
}

/// How many groups an entry holds inline: most users are in three or fewer, and then deciding
/// reads their groups from the key map's slot it already loaded instead of another cache line.
pub(crate) const INLINE_GROUPS: usize = 3;

/// A user's groups, sorted and deduplicated: inline when there are at most [`INLINE_GROUPS`],
/// else a range of [`Indexes::user_groups`] (from `start` below its length) or of the
/// overlay's groups (offset by that length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserGroups {
    len: u32,
    /// The groups when `len <= INLINE_GROUPS` (unused ones are 0), else `[start, 0, 0]`.
    data: [GroupIdx; INLINE_GROUPS],
}

impl UserGroups {
    pub(crate) const NONE: UserGroups = UserGroups {
        len: 0,
        data: [0; INLINE_GROUPS],
    };

    /// `groups` inline if they fit, else as the range `start..start + groups.len()` of the
    /// arena they are (to be) stored in: the caller stores them there when this says
    /// [`UserGroups::inline`] is `None`.
    pub(crate) fn new(groups: &[GroupIdx], start: usize) -> UserGroups {
        let mut data = [0; INLINE_GROUPS];
        match data.get_mut(..groups.len()) {
            Some(inline) => inline.copy_from_slice(groups),
            None => data[0] = start as u32,
        }
        UserGroups {
            len: groups.len() as u32,
            data,
        }
    }

    /// The groups, when they are held inline.
    pub(crate) fn inline(&self) -> Option<&[GroupIdx]> {
        self.data.get(..self.len as usize)
    }

    /// The range of an arena holding the groups, when they are not inline.
    fn range(&self) -> std::ops::Range<usize> {
        let start = self.data[0] as usize;
        start..start + self.len as usize
    }
}

/// A policy as decisions read it. What an answer reads of its deciding policy (id, flow,
/// requirement, action) comes first, and entries start on a cache line (`align(64)`, kept in
/// field order by `repr(C)`), so answering loads one line of the entry.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct PolicyEntry {
    pub(crate) id: Box<str>,
    /// A Require approval policy's flow, if it names one.
    pub(crate) approval_flow: Option<Box<str>>,
    /// A Step up policy's requirement (boxed: rare, and kept off the first line).
    pub(crate) step_up: Option<Box<StepUp>>,
    pub(crate) action: Action,
    pub(crate) enabled: bool,
    pub(crate) all_users: bool,
    pub(crate) connector: Box<str>,
    pub(crate) name: Box<str>,
    pub(crate) tools: Tools,
    /// Invariant: sorted. Ids the model does not have map to reserved indexes, which no
    /// user holds until one with that id is added.
    pub(crate) users: Box<[UserIdx]>,
    /// Invariant: sorted. Groups the model does not have map to reserved indexes, which no
    /// user's groups include.
    pub(crate) groups: Box<[GroupIdx]>,
    pub(crate) conditions: Box<[Condition]>,
    /// The agent ids the policy is for, sorted; `None`: every agent.
    pub(crate) agents: Option<Box<[Box<str>]>>,
    /// The CEL condition, compiled (or why it does not compile: then the policy never applies).
    pub(crate) expression: Option<Result<Arc<Expression>, Box<str>>>,
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
    pub(crate) by_user: Postings,
    /// Group → ranks of the policies naming the group (all-users policies left out).
    pub(crate) by_group: Postings,
    /// By rank: whether deciding must look at the policy itself (conditions, agents, step-up),
    /// so the common case never loads it.
    pub(crate) conditional: Box<[bool]>,
}

impl Candidates {
    /// Indexes `order` (policies with their entries), which must already be in rank order.
    fn new(order: &[(PolicyIdx, &PolicyEntry)]) -> Candidates {
        let mut all_users = Vec::new();
        let mut by_user: BTreeMap<UserIdx, Vec<u32>> = BTreeMap::new();
        let mut by_group: BTreeMap<GroupIdx, Vec<u32>> = BTreeMap::new();
        let mut conditional = Vec::with_capacity(order.len());
        for (rank, &(_, policy)) in order.iter().enumerate() {
            let rank = rank as u32;
            conditional.push(policy.needs_a_look());
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
            order: order.iter().map(|(p, _)| *p).collect(),
            all_users: all_users.into(),
            by_user: Postings::new(by_user),
            by_group: Postings::new(by_group),
            conditional: conditional.into(),
        }
    }
}

/// The bits of a [`Postings`] filter: one cache line. Keys are dense indexes, so their low
/// bits spread well; with a few dozen keys, most absent ones find their bit clear.
const FILTER_BITS: usize = 512;

/// Posting lists (ascending ranks) by key (a user or group index), flattened into one
/// allocation: a candidate set's lists are read from a few adjacent cache lines, without a
/// hash probe or a pointer to follow per list. A decision looks up one user and a few groups,
/// most of which have no list: the filter answers those without a search.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    /// Bit `key % FILTER_BITS` is set for every key with a list.
    filter: [u64; FILTER_BITS / 64],
    /// How many keys.
    len: usize,
    /// The keys, ascending (`len` of them); then each key's end in the ranks (`len`); then
    /// the ranks, each key's in a row.
    data: Box<[u32]>,
}

impl Postings {
    pub(crate) fn new(lists: BTreeMap<u32, Vec<u32>>) -> Postings {
        let len = lists.len();
        let ranks: usize = lists.values().map(Vec::len).sum();
        let mut data = Vec::with_capacity(2 * len + ranks);
        let mut filter = [0; FILTER_BITS / 64];
        for &key in lists.keys() {
            let bit = key as usize % FILTER_BITS;
            filter[bit / 64] |= 1 << (bit % 64);
        }
        data.extend(lists.keys());
        let mut end = 0;
        for list in lists.values() {
            end += list.len() as u32;
            data.push(end);
        }
        for list in lists.values() {
            data.extend_from_slice(list);
        }
        Postings {
            filter,
            len,
            data: data.into(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ranks filed under `key` (empty if none).
    pub(crate) fn get(&self, key: u32) -> &[u32] {
        let bit = key as usize % FILTER_BITS;
        if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return &[];
        }
        let keys = self.data.get(..self.len).unwrap_or(&[]);
        let Ok(i) = keys.binary_search(&key) else {
            return &[];
        };
        let start = match i.checked_sub(1) {
            Some(before) => self.data.get(self.len + before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.data.get(self.len + i).copied().unwrap_or(0);
        let ranks = 2 * self.len;
        self.data
            .get(ranks + start as usize..ranks + end as usize)
            .unwrap_or(&[])
    }
}

impl Snapshot {
    /// Indexes `model`. Never fails: dangling references are kept aside, so they match nobody.
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
            agents: model.agents.iter().collect(),
            settings: model.settings,
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
            agents,
            settings,
        } = parts;
        let user_count = users.len();
        // Entries get their status and groups once those are known (below).
        let placeholder = |idx: usize| UserEntry {
            idx: idx as UserIdx,
            status: UserStatus::Active,
            mfa: Mfa::Unknown,
            groups: UserGroups::NONE,
        };
        let mut by_id: Map<Key, UserEntry> = Map::default();
        by_id.reserve(user_count);
        for (idx, user) in users.iter().copied().enumerate() {
            by_id
                .entry(user.id.as_str().into())
                .or_insert(placeholder(idx));
        }
        let mut by_external_id: Map<Key, Keyed> = Map::default();
        let mut by_email: Map<Key, Keyed> = Map::default();
        by_email.reserve(user_count);
        let mut ids: Vec<Key> = Vec::with_capacity(user_count);
        let mut emails: Vec<Key> = Vec::with_capacity(user_count);
        for (idx, user) in users.iter().copied().enumerate() {
            ids.push(user.id.as_str().into());
            emails.push(user.email().into());
            if let Some(external_id) = &user.external_id {
                file(
                    &mut by_external_id,
                    external_id.as_str().into(),
                    placeholder(idx),
                );
            }
            for name in user.logins() {
                file(&mut by_email, name.into(), placeholder(idx));
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
            let held = UserGroups::new(&groups, user_groups.len());
            if held.inline().is_none() {
                user_groups.extend_from_slice(&groups);
            }
            entries.push(UserEntry {
                idx: idx as UserIdx,
                status: user.status(),
                mfa: user.mfa,
                groups: held,
            });
        }
        for entry in by_id.values_mut() {
            *entry = entries[entry.idx as usize];
        }
        for keyed in by_external_id.values_mut().chain(by_email.values_mut()) {
            if let Keyed::One(entry) = keyed {
                *entry = entries[entry.idx as usize];
            }
        }

        let mut sorted = policies;
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut reserved_users: Map<Key, UserIdx> = Map::default();
        let mut reserved_groups: Map<Box<str>, GroupIdx> = Map::default();
        let policies: Vec<PolicyEntry> = sorted
            .iter()
            .map(|p| {
                let users = p
                    .scope
                    .users
                    .iter()
                    .map(|id| match by_id.get(id.as_str()) {
                        Some(entry) => entry.idx,
                        None => {
                            let next = (user_count + reserved_users.len()) as UserIdx;
                            *reserved_users.entry(id.as_str().into()).or_insert(next)
                        }
                    })
                    .collect();
                let groups = p
                    .scope
                    .groups
                    .iter()
                    .map(|id| match group_index.get(id.as_str()) {
                        Some(&idx) => idx,
                        None => {
                            let next = (group_index.len() + reserved_groups.len()) as GroupIdx;
                            *reserved_groups.entry(id.as_str().into()).or_insert(next)
                        }
                    })
                    .collect();
                PolicyEntry::new(p, users, groups)
            })
            .collect();

        let agents = AgentIndex::build(
            &agents,
            settings,
            |id| match by_id.get(id) {
                Some(entry) => entry.idx,
                None => {
                    let next = (user_count + reserved_users.len()) as UserIdx;
                    *reserved_users.entry(id.into()).or_insert(next)
                }
            },
            |id| match group_index.get(id) {
                Some(&idx) => idx,
                None => {
                    let next = (group_index.len() + reserved_groups.len()) as GroupIdx;
                    *reserved_groups.entry(id.into()).or_insert(next)
                }
            },
        );
        let mut group_ids: Vec<Box<str>> = vec![Box::from(""); group_index.len()];
        for (&id, &idx) in &group_index {
            group_ids[idx as usize] = id.into();
        }
        let mut reserved_g: Vec<(&Box<str>, &GroupIdx)> = reserved_groups.iter().collect();
        reserved_g.sort_unstable_by_key(|(_, idx)| **idx);
        group_ids.extend(reserved_g.into_iter().map(|(id, _)| id.clone()));

        let mut reserved: Vec<(&Key, &UserIdx)> = reserved_users.iter().collect();
        reserved.sort_unstable_by_key(|(_, idx)| **idx);
        ids.extend(reserved.into_iter().map(|(id, _)| id.clone()));

        let connectors = index_connectors(&policies);
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
                reserved_users,
                reserved_groups,
                user_groups,
                by_id,
                by_external_id,
                by_email,
                ids,
                emails,
                group_ids,
                agents: Arc::new(agents),
                policies,
                connectors,
                connector_names,
            }),
            overlay: None,
        }
    }

    /// The store revision this snapshot was built from.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The agent a request's `agent` names as decisions see it: a registered agent's id
    /// (whichever of its id or aliases `agent` is), else `agent` itself (unregistered).
    pub fn agent_name<'a>(&'a self, agent: &'a str) -> &'a str {
        if agent.is_empty() {
            return agent;
        }
        self.agent_index().canonical(agent).unwrap_or(agent)
    }

    pub fn user_count(&self) -> usize {
        match &self.overlay {
            Some(overlay) => overlay.user_count,
            None => self.indexes.user_count,
        }
    }

    pub fn policy_count(&self) -> usize {
        match &self.overlay {
            Some(overlay) => overlay.policy_count,
            None => self.indexes.policies.len(),
        }
    }

    /// Resolves a user reference by the one rule ([`identity::resolve`]), with the user's
    /// current status and groups, and whether the reference was their id.
    /// The entry is borrowed from the map that holds it, so reading its inline groups loads
    /// nothing more.
    pub(crate) fn find_user(&self, key: &str) -> Resolved<(&UserEntry, identity::By)> {
        identity::resolve_by(&Keys(self), key).map(|(entry, by)| {
            let entry = match self
                .overlay
                .as_deref()
                .and_then(|overlay| overlay.users.get(&entry.idx))
            {
                Some(changed) => changed,
                None => entry,
            };
            (entry, by)
        })
    }

    /// The agent registry and the setting for unregistered agents.
    pub(crate) fn agent_index(&self) -> &AgentIndex {
        match self.overlay.as_deref().and_then(|o| o.agents.as_deref()) {
            Some(agents) => agents,
            None => &self.indexes.agents,
        }
    }

    /// The primary email of the user with this index.
    pub(crate) fn user_email(&self, idx: UserIdx) -> &str {
        if let Some(email) = self.overlay.as_deref().and_then(|o| o.emails.get(&idx)) {
            return email;
        }
        self.indexes
            .emails
            .get(idx as usize)
            .map_or("", |e| e.as_str())
    }

    /// The id of the group with this index.
    pub(crate) fn group_id(&self, idx: GroupIdx) -> Option<&str> {
        match self.indexes.group_ids.get(idx as usize) {
            Some(id) => Some(id),
            None => self.overlay.as_deref()?.group_id(idx),
        }
    }

    /// The id of the user with this index.
    pub(crate) fn user_id(&self, idx: UserIdx) -> Option<&str> {
        match self.indexes.ids.get(idx as usize) {
            Some(id) => Some(id),
            None => self.overlay.as_deref()?.user_id(idx),
        }
    }

    /// The user's groups, sorted. `user` comes from [`Snapshot::find_user`].
    pub(crate) fn groups_of<'s>(&'s self, user: &'s UserEntry) -> &'s [GroupIdx] {
        if let Some(inline) = user.groups.inline() {
            return inline;
        }
        let range = user.groups.range();
        let indexed = self.user_groups.len();
        if range.start < indexed {
            return self.user_groups.get(range).unwrap_or(&[]);
        }
        match &self.overlay {
            Some(overlay) => overlay
                .groups
                .get(range.start - indexed..range.end - indexed)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// The groups of an entry of the indexes (not of the overlay).
    pub(crate) fn indexed_groups_of<'s>(&'s self, user: &'s UserEntry) -> &'s [GroupIdx] {
        match user.groups.inline() {
            Some(inline) => inline,
            None => self.user_groups.get(user.groups.range()).unwrap_or(&[]),
        }
    }

    /// The policy at `idx` (an index of the indexes or of the overlay). `None` never happens
    /// for an index this snapshot handed out.
    pub(crate) fn policy(&self, idx: PolicyIdx) -> Option<&PolicyEntry> {
        match &self.overlay {
            Some(overlay) => overlay.policy(&self.indexes, idx),
            None => self.indexes.policies.get(idx as usize),
        }
    }

    /// The current index of a connector's policies.
    pub(crate) fn connector(&self, name: &str) -> Option<&ConnectorIndex> {
        match &self.overlay {
            Some(overlay) => overlay.connector(&self.indexes, name),
            None => self.indexes.connectors.get(name),
        }
    }

    /// The names of the connectors some policy is for, sorted.
    pub(crate) fn connector_names(&self) -> &[Box<str>] {
        match self
            .overlay
            .as_ref()
            .and_then(|o| o.connector_names.as_ref())
        {
            Some(names) => names,
            None => &self.indexes.connector_names,
        }
    }
}

/// The snapshot's key maps, as the resolution rule reads them: the overlay first, then the
/// indexes of the last full build.
struct Keys<'s>(&'s Snapshot);

impl<'s> UserKeys for Keys<'s> {
    type User = &'s UserEntry;

    fn with_id(&self, id: &str) -> Option<&'s UserEntry> {
        match self.0.overlay.as_deref().and_then(|o| o.by_id.get(id)) {
            Some(changed) => changed.as_ref(),
            None => self.0.indexes.by_id.get(id),
        }
    }

    fn with_external_id(&self, external_id: &str) -> Matches<&'s UserEntry> {
        keyed(
            &self.0.indexes.by_external_id,
            self.0.overlay.as_deref().map(|o| &o.by_external_id),
            external_id,
        )
    }

    fn with_login(&self, login: &str) -> Matches<&'s UserEntry> {
        keyed(
            &self.0.indexes.by_email,
            self.0.overlay.as_deref().map(|o| &o.by_email),
            login,
        )
    }

    fn same(a: &&'s UserEntry, b: &&'s UserEntry) -> bool {
        a.idx == b.idx
    }
}

fn keyed<'s>(
    base: &'s Map<Key, Keyed>,
    over: Option<&'s Map<Key, Option<Keyed>>>,
    key: &str,
) -> Matches<&'s UserEntry> {
    let found = match over.and_then(|over| over.get(key)) {
        Some(changed) => changed.as_ref(),
        None => base.get(key),
    };
    found.map_or(Matches::None, Keyed::matches)
}

impl Indexes {
    /// The index of the indexed policy with this id.
    pub(crate) fn policy_idx(&self, id: &str) -> Option<PolicyIdx> {
        self.policies
            .binary_search_by(|p| (*p.id).cmp(id))
            .ok()
            .map(|idx| idx as PolicyIdx)
    }
}

impl PolicyEntry {
    /// Indexes one policy, given the indexes of the users and groups its scope names.
    pub(crate) fn new(
        policy: &Policy,
        mut users: Vec<UserIdx>,
        mut groups: Vec<GroupIdx>,
    ) -> PolicyEntry {
        users.sort_unstable();
        users.dedup();
        groups.sort_unstable();
        groups.dedup();
        PolicyEntry {
            id: policy.id.as_str().into(),
            connector: policy.connector.as_str().into(),
            name: policy.name.as_str().into(),
            action: policy.action,
            enabled: policy.enabled,
            tools: policy.tools.clone(),
            all_users: policy.scope.all_users,
            users: users.into(),
            groups: groups.into(),
            conditions: policy.conditions.clone().into(),
            agents: match &policy.agents {
                Agents::All => None,
                Agents::Only(ids) => {
                    let mut ids: Vec<Box<str>> = ids.iter().map(|id| id.as_str().into()).collect();
                    ids.sort();
                    ids.dedup();
                    Some(ids.into())
                }
            },
            step_up: policy
                .step_up
                .clone()
                .filter(|_| policy.action == Action::StepUp)
                .map(Box::new),
            approval_flow: policy
                .approval_flow_id
                .as_deref()
                .filter(|_| policy.action == Action::RequireApproval)
                .map(Into::into),
            expression: policy.expression.as_deref().map(|source| {
                Expression::compile(source)
                    .map(Arc::new)
                    .map_err(|e| e.to_string().into())
            }),
        }
    }

    /// Whether deciding must look at the policy itself, beyond its scope: it has conditions,
    /// an agent selector, or a step-up requirement a request may meet.
    pub(crate) fn needs_a_look(&self) -> bool {
        !self.conditions.is_empty()
            || self.agents.is_some()
            || self.expression.is_some()
            || self.step_up.is_some()
    }

    /// Whether the policy is for this agent (`None`: an unregistered one).
    pub(crate) fn covers_agent(&self, agent: Option<&str>) -> bool {
        match (&self.agents, agent) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(ids), Some(agent)) => ids.binary_search_by(|id| (**id).cmp(agent)).is_ok(),
        }
    }

    /// Whether the scope covers this user (given the user's sorted groups).
    pub(crate) fn covers(&self, user: UserIdx, user_groups: &[GroupIdx]) -> bool {
        self.all_users
            || self.users.binary_search(&user).is_ok()
            || sorted_intersect(&self.groups, user_groups)
    }
}

/// Whether two sorted slices share an element. Both are short in practice (a user is in a few
/// groups; a policy names a few), so a merge beats hashing.
pub(crate) fn sorted_intersect(a: &[u32], b: &[u32]) -> bool {
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

/// Indexes every connector of `entries` (which are in id order).
fn index_connectors(entries: &[PolicyEntry]) -> Map<Box<str>, ConnectorIndex> {
    let mut per_connector: Map<&str, Vec<PolicyIdx>> = Map::default();
    for (idx, policy) in entries.iter().enumerate() {
        per_connector
            .entry(&policy.connector)
            .or_default()
            .push(idx as PolicyIdx);
    }
    per_connector
        .into_iter()
        .map(|(connector, policies)| {
            let policies = policies
                .into_iter()
                .map(|p| (p, &entries[p as usize]))
                .collect();
            let index = ConnectorIndex::new(policies);
            (Box::from(connector), index)
        })
        .collect()
}

impl ConnectorIndex {
    /// Indexes one connector's policies, given in id order with their entries.
    pub(crate) fn new(policies: Vec<(PolicyIdx, &PolicyEntry)>) -> ConnectorIndex {
        let mut by_tool: Map<&str, Vec<(PolicyIdx, &PolicyEntry)>> = Map::default();
        let mut all_tools = Vec::new();
        for &(idx, policy) in &policies {
            match &policy.tools {
                Tools::All => {
                    if policy.enabled {
                        all_tools.push((idx, policy));
                    }
                }
                Tools::Only(tools) => {
                    for tool in tools {
                        let list = by_tool.entry(tool.as_str()).or_default();
                        if policy.enabled && list.last().map(|(p, _)| *p) != Some(idx) {
                            list.push((idx, policy));
                        }
                    }
                }
            }
        }
        // Most restrictive first, then lowest id: the first applicable policy decides.
        let order = |list: &mut Vec<(PolicyIdx, &PolicyEntry)>| {
            list.sort_by(|(_, a), (_, b)| {
                (std::cmp::Reverse(a.action), &a.id).cmp(&(std::cmp::Reverse(b.action), &b.id))
            });
        };
        order(&mut all_tools);
        let mut tool_names: Vec<Box<str>> = by_tool.keys().map(|t| Box::from(*t)).collect();
        tool_names.sort();
        let by_tool = by_tool
            .into_iter()
            .map(|(tool, mut list)| {
                list.extend_from_slice(&all_tools);
                order(&mut list);
                (Box::from(tool), Candidates::new(&list))
            })
            .collect();
        ConnectorIndex {
            by_tool,
            all_tools: Candidates::new(&all_tools),
            tool_names,
            policies: policies.into_iter().map(|(idx, _)| idx).collect(),
        }
    }
}
