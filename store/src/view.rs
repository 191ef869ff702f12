//! The model at one revision, in memory: what the admin API lists and searches and what the
//! snapshot publisher builds from, without reading sled.
//!
//! A [`View`] is built once from the store (on the first [`crate::Store::view`]) and then kept in
//! step by every commit, under the write lock, from the records the change wrote. Its maps are
//! persistent (`imbl`): a new revision shares every unchanged node with the previous one, so
//! each commit costs in proportion to what it changed, and a reader keeps a consistent revision
//! for as long as it holds its `Arc<View>`.

use crate::{Result, codec, keys};
use imbl::{OrdMap, OrdSet};
use pdp::identity::{Matches, Resolved, UserKeys};
use pdp::{
    Agent, Group, Membership, MembershipSource, Mfa, Model, Policy, Settings, Timestamp, User,
};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::sync::Arc;

/// A record id, shared between the maps that name it.
pub type Id = Arc<str>;

/// The in-memory model at one revision, with the orders the admin API lists by. Cloning is
/// cheap and clones are independent.
#[derive(Clone, Default)]
pub struct View {
    revision: u64,
    /// Which load of the store this view descends from: views of one generation share
    /// structure, so diffing them costs in proportion to the change.
    generation: u64,
    users: OrdMap<Id, Arc<User>>,
    /// Invariant: one entry per user, `(lower-cased primary email, id)`.
    users_by_email: OrdSet<(Arc<str>, Id)>,
    /// Invariant: one entry per user, `(created, id, lower-cased primary email)`.
    users_by_created: OrdSet<(Timestamp, Id, Arc<str>)>,
    /// Invariant: one entry per user, `(MFA rank, lower-cased primary email, id)`.
    users_by_mfa: OrdSet<(u8, Arc<str>, Id)>,
    /// Invariant: one entry per distinct normalized user name or email of each user,
    /// `(login, id)`: how decisions find users by email (see [`User::logins`]).
    users_by_login: OrdSet<(Arc<str>, Id)>,
    /// Invariant: one entry per user with an external id, `(external id, id)`.
    users_by_external: OrdSet<(Arc<str>, Id)>,
    groups: OrdMap<Id, GroupEntry>,
    /// Invariant: one entry per group with an external id, `(external id, id)`.
    groups_by_external: OrdSet<(Arc<str>, Id)>,
    /// Invariant: one entry per group, `(lower-cased name, id)`.
    groups_by_name: OrdSet<(Arc<str>, Id)>,
    /// Invariant: one entry per group, `(member count, id)`.
    groups_by_size: OrdSet<(usize, Id)>,
    /// `(group id, user id)` → when and how the user joined.
    members: OrdMap<(Id, Id), Joined>,
    /// Invariant: exactly the keys of `members`, reversed: `(user id, group id)`.
    user_groups: OrdSet<(Id, Id)>,
    policies: OrdMap<Id, Arc<Policy>>,
    agents: OrdMap<Id, Arc<Agent>>,
    /// Invariant: one entry per alias of each agent, alias → agent id (the store keeps aliases
    /// unique across agents' ids and aliases).
    agent_aliases: OrdMap<Arc<str>, Id>,
    settings: Settings,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("revision", &self.revision)
            .field("users", &self.users.len())
            .field("groups", &self.groups.len())
            .field("memberships", &self.members.len())
            .field("policies", &self.policies.len())
            .field("agents", &self.agents.len())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupEntry {
    pub group: Arc<Group>,
    pub members: usize,
}

/// When and how a user joined a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub at: Timestamp,
    pub source: MembershipSource,
}

/// What changed between two views, by id ([`View::changes_since`]).
#[derive(Debug, Clone, Default)]
pub struct ViewChanges {
    /// Users added, removed or changed, with their record in the earlier view.
    pub users: Vec<(Id, Option<Arc<User>>)>,
    /// Groups added or removed.
    pub groups: Vec<Id>,
    /// Policies added, changed or removed.
    pub policies: Vec<Id>,
    /// Whether any agent or the settings differ.
    pub agents: bool,
}

impl ViewChanges {
    /// These changes as a snapshot takes them.
    pub fn as_changes(&self) -> pdp::Changes<'_> {
        pdp::Changes {
            users: self
                .users
                .iter()
                .map(|(id, before)| pdp::UserDelta {
                    id,
                    before: before.as_deref(),
                })
                .collect(),
            groups: self.groups.iter().map(|id| &**id).collect(),
            policies: self.policies.iter().map(|id| &**id).collect(),
            agents: self.agents,
        }
    }

    /// How many records changed.
    pub fn len(&self) -> usize {
        self.users.len() + self.groups.len() + self.policies.len() + usize::from(self.agents)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The view as a snapshot asks about it. Model order is id order: the order [`View::users`]
/// gives users in, so snapshots built from a view agree.
impl pdp::Directory for View {
    fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(|u| &**u)
    }

    fn groups_of(&self, user_id: &str) -> Vec<&str> {
        View::groups_of(self, user_id).map(|(g, _)| &**g).collect()
    }

    fn group_exists(&self, id: &str) -> bool {
        self.groups.contains_key(id)
    }

    fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.get(id).map(|p| &**p)
    }

    fn users_with_external_id(&self, key: &str) -> Matches<&str> {
        matches(self.matching(&self.users_by_external, key.to_owned()))
    }

    fn users_with_login(&self, key: &str) -> Matches<&str> {
        matches(self.matching(&self.users_by_login, key.to_owned()))
    }

    fn agents(&self) -> Vec<&pdp::Agent> {
        self.agents.values().map(|a| &**a).collect()
    }

    fn settings(&self) -> pdp::Settings {
        self.settings
    }
}

/// The view's key indexes, as the resolution rule ([`pdp::identity::resolve`]) reads them.
impl UserKeys for View {
    type User = Id;

    fn with_id(&self, id: &str) -> Option<Id> {
        self.users.get_key_value(id).map(|(id, _)| Arc::clone(id))
    }

    fn with_external_id(&self, external_id: &str) -> Matches<Id> {
        matches(self.matching(&self.users_by_external, external_id.to_owned())).map(Arc::from)
    }

    fn with_login(&self, login: &str) -> Matches<Id> {
        matches(self.matching(&self.users_by_login, login.to_owned())).map(Arc::from)
    }

    fn same(a: &Id, b: &Id) -> bool {
        a == b
    }
}

/// One id, or several.
fn matches<'v>(mut ids: impl Iterator<Item = &'v Id>) -> Matches<&'v str> {
    match (ids.next(), ids.next()) {
        (None, _) => Matches::None,
        (Some(id), None) => Matches::One(id),
        (Some(_), Some(_)) => Matches::Many,
    }
}

/// An identifier another user already answers to ([`View::identifier_taken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// `userName` or `externalId`.
    pub attribute: &'static str,
    pub value: String,
    /// The user it names.
    pub by: Id,
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} `{}` already names user `{}`",
            self.attribute, self.value, self.by
        )
    }
}

/// The orders users are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserOrder {
    /// By primary email, ignoring case.
    Email,
    /// By provisioning time.
    Created,
    /// Enabled, then disabled, then not configured; by email within each.
    Mfa,
}

/// A user's position in every [`UserOrder`]: page tokens carry the last row's, so the next page
/// starts right after it even if that user changed or went away meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKey {
    pub email: String,
    pub created: Timestamp,
    pub mfa: u8,
    pub id: String,
}

impl UserKey {
    pub fn of(user: &User) -> UserKey {
        UserKey {
            email: user.email().to_lowercase(),
            created: user.created_at,
            mfa: mfa_rank(user.mfa),
            id: user.id.clone(),
        }
    }
}

/// The orders groups are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOrder {
    /// By name, ignoring case.
    Name,
    /// By member count.
    Size,
}

/// A group's position in every [`GroupOrder`] (see [`UserKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKey {
    pub name: String,
    pub size: usize,
    pub id: String,
}

/// Where an MFA status sorts in [`UserOrder::Mfa`].
pub fn mfa_rank(mfa: Mfa) -> u8 {
    match mfa {
        Mfa::Enabled => 0,
        Mfa::Disabled => 1,
        Mfa::Unknown => 2,
    }
}

/// What one committed change did to one model record (`None`: removed). A follower of the
/// store (a sidecar) replays the changes it receives as these.
#[derive(Debug)]
pub enum Update {
    User(String, Option<User>),
    Group(String, Option<Group>),
    Member(String, String, Option<Membership>),
    Policy(String, Option<Policy>),
    Agent(String, Option<Agent>),
    /// The organisation's settings, written whole.
    Settings(Settings),
}

impl Update {
    /// The update a write of `value` at `key` makes, if the key holds a model record.
    pub(crate) fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Result<Update>> {
        if key == keys::SETTINGS {
            // Settings are only ever put; a missing record reads as the defaults.
            let settings = value
                .map(|v| codec::from_json("settings", "settings", v))
                .transpose();
            return Some(settings.map(|s| Update::Settings(s.unwrap_or_default())));
        }
        let prefix = [
            keys::USER,
            keys::GROUP,
            keys::MEMBER,
            keys::POLICY,
            keys::AGENT,
        ]
        .into_iter()
        .find(|p| key.starts_with(p))?;
        Some((|| {
            if prefix == keys::MEMBER {
                let (group_id, user_id) = keys::ids_of(prefix, key)?;
                let membership = value
                    .map(|v| codec::decode_membership(group_id, user_id, v))
                    .transpose()?;
                return Ok(Update::Member(
                    group_id.to_owned(),
                    user_id.to_owned(),
                    membership,
                ));
            }
            let id = keys::id_of(prefix, key)?.to_owned();
            Ok(match prefix {
                keys::USER => {
                    let user = value
                        .map(|v| codec::from_json("user", &id, v))
                        .transpose()?;
                    Update::User(id, user)
                }
                keys::GROUP => {
                    let group = value
                        .map(|v| codec::from_json("group", &id, v))
                        .transpose()?;
                    Update::Group(id, group)
                }
                keys::AGENT => {
                    let agent = value
                        .map(|v| codec::from_json("agent", &id, v))
                        .transpose()?;
                    Update::Agent(id, agent)
                }
                _ => {
                    let policy = value
                        .map(|v| codec::from_json("policy", &id, v))
                        .transpose()?;
                    Update::Policy(id, policy)
                }
            })
        })())
    }
}

impl View {
    /// Indexes a whole model at once. Each map is collected from its keys sorted first, so
    /// inserts run in order instead of missing the cache at a million random places, and in
    /// two passes that leave every leaf full ([`packed`]); the users' and the groups' halves
    /// are built on two threads.
    /// It must build exactly what inserting the records one by one would (tests compare them).
    ///
    /// A follower that receives a whole model (a sidecar) builds its view with this too.
    pub fn from_model(model: Model) -> View {
        let Model {
            revision,
            users,
            groups,
            memberships,
            policies,
            agents,
            settings,
        } = model;
        // User ids are interned first, so both halves share each id's allocation.
        let mut ids: Vec<Id> = users.iter().map(|u| Arc::from(u.id.as_str())).collect();
        let interned: std::collections::HashSet<Id> = ids.iter().cloned().collect();
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut view, half) = std::thread::scope(|scope| {
            let groups_half = scope.spawn(|| groups_half(groups, memberships, &interned));
            let mut view = View {
                revision,
                generation,
                ..View::default()
            };
            let users: Vec<(Id, Arc<User>)> = {
                let mut pairs: Vec<(Id, Arc<User>)> = ids
                    .drain(..)
                    .zip(users)
                    .map(|(id, user)| (id, Arc::new(user)))
                    .collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                pairs.dedup_by(|b, a| a.0 == b.0);
                pairs
            };
            let mut by_email = Vec::with_capacity(users.len());
            let mut by_created = Vec::with_capacity(users.len());
            let mut by_mfa = Vec::with_capacity(users.len());
            let mut by_login = Vec::with_capacity(users.len());
            let mut by_external = Vec::new();
            for (id, user) in &users {
                let email: Arc<str> = Arc::from(user.email().to_lowercase());
                for login in user.logins() {
                    by_login.push((shared(login, &email), Arc::clone(id)));
                }
                by_email.push((Arc::clone(&email), Arc::clone(id)));
                by_created.push((user.created_at, Arc::clone(id), Arc::clone(&email)));
                by_mfa.push((mfa_rank(user.mfa), email, Arc::clone(id)));
                if let Some(external) = &user.external_id {
                    by_external.push((Arc::from(external.as_str()), Arc::clone(id)));
                }
            }
            view.users = packed_map(users);
            view.users_by_email = sorted_set(by_email);
            view.users_by_created = sorted_set(by_created);
            view.users_by_mfa = sorted_set(by_mfa);
            view.users_by_login = sorted_set(by_login);
            view.users_by_external = sorted_set(by_external);
            let half = match groups_half.join() {
                Ok(half) => half,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (view, half)
        });
        view.groups = half.groups;
        view.groups_by_name = half.groups_by_name;
        view.groups_by_size = half.groups_by_size;
        view.groups_by_external = half.groups_by_external;
        view.members = half.members;
        view.user_groups = half.user_groups;
        view.policies = policies
            .into_iter()
            .map(|p| (Arc::from(p.id.as_str()), Arc::new(p)))
            .collect();
        for agent in agents {
            view.put_agent(agent);
        }
        view.settings = settings;
        view
    }

    /// Applies one committed change's updates, in the order it staged them. Memberships must
    /// name users and groups the view holds after the change (the store checks that; a
    /// follower replays what the store checked).
    pub fn apply(&mut self, revision: u64, updates: Vec<Update>) {
        // Removals of memberships come before the removal of their user or group within a change
        // in some writers and after in others: apply memberships last so counts stay right.
        let mut members = Vec::new();
        for update in updates {
            match update {
                Update::User(_, Some(user)) => self.put_user(user),
                Update::User(id, None) => self.remove_user(&id),
                Update::Group(id, Some(group)) => {
                    debug_assert_eq!(id, group.id);
                    self.put_group(group)
                }
                Update::Group(id, None) => self.remove_group(&id),
                Update::Policy(id, Some(policy)) => {
                    self.policies.insert(Arc::from(id), Arc::new(policy));
                }
                Update::Policy(id, None) => {
                    self.policies.remove(id.as_str());
                }
                Update::Agent(_, Some(agent)) => self.put_agent(agent),
                Update::Agent(id, None) => self.remove_agent(&id),
                Update::Settings(settings) => self.settings = settings,
                Update::Member(group_id, user_id, m) => members.push((group_id, user_id, m)),
            }
        }
        for (group_id, user_id, m) in members {
            match m {
                Some(m) => self.put_member(m),
                None => self.remove_member(&group_id, &user_id),
            }
        }
        self.revision = revision;
    }

    /// The interned id of a user, so the maps naming it share one allocation.
    fn user_id(&self, id: &str) -> Id {
        self.users
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| Arc::clone(k))
    }

    fn group_id(&self, id: &str) -> Id {
        self.groups
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| Arc::clone(k))
    }

    fn put_agent(&mut self, agent: Agent) {
        self.remove_agent(&agent.id);
        let id: Id = Arc::from(agent.id.as_str());
        for alias in &agent.aliases {
            self.agent_aliases
                .insert(Arc::from(alias.as_str()), Arc::clone(&id));
        }
        self.agents.insert(id, Arc::new(agent));
    }

    fn remove_agent(&mut self, id: &str) {
        if let Some(old) = self.agents.remove(id) {
            for alias in &old.aliases {
                // Only if still this agent's: a change may move an alias between agents.
                if self
                    .agent_aliases
                    .get(alias.as_str())
                    .is_some_and(|a| **a == *id)
                {
                    self.agent_aliases.remove(alias.as_str());
                }
            }
        }
    }

    fn put_user(&mut self, user: User) {
        let id = self.user_id(&user.id);
        self.put_user_as(user, id);
    }

    /// Puts a user whose id is interned as `id`.
    fn put_user_as(&mut self, user: User, id: Id) {
        self.remove_user_orders(&user.id);
        let email: Arc<str> = Arc::from(user.email().to_lowercase());
        for login in user.logins() {
            self.users_by_login
                .insert((shared(login, &email), Arc::clone(&id)));
        }
        self.users_by_email
            .insert((Arc::clone(&email), Arc::clone(&id)));
        self.users_by_created
            .insert((user.created_at, Arc::clone(&id), Arc::clone(&email)));
        self.users_by_mfa
            .insert((mfa_rank(user.mfa), email, Arc::clone(&id)));
        if let Some(external) = &user.external_id {
            self.users_by_external
                .insert((Arc::from(external.as_str()), Arc::clone(&id)));
        }
        self.users.insert(id, Arc::new(user));
    }

    fn remove_user_orders(&mut self, id: &str) {
        let Some((id, old)) = self.users.get_key_value(id) else {
            return;
        };
        let (id, old) = (Arc::clone(id), Arc::clone(old));
        let email: Arc<str> = Arc::from(old.email().to_lowercase());
        self.users_by_email
            .remove(&(Arc::clone(&email), Arc::clone(&id)));
        self.users_by_created
            .remove(&(old.created_at, Arc::clone(&id), Arc::clone(&email)));
        for login in old.logins() {
            self.users_by_login
                .remove(&(Arc::from(login), Arc::clone(&id)));
        }
        if let Some(external) = &old.external_id {
            self.users_by_external
                .remove(&(Arc::from(external.as_str()), Arc::clone(&id)));
        }
        self.users_by_mfa.remove(&(mfa_rank(old.mfa), email, id));
    }

    fn remove_user(&mut self, id: &str) {
        self.remove_user_orders(id);
        self.users.remove(id);
    }

    fn put_group(&mut self, group: Group) {
        let id = self.group_id(&group.id);
        let members = match self.groups.get(&id) {
            Some(old) => {
                let old_name = Arc::from(old.group.display_name.to_lowercase());
                let count = old.members;
                self.groups_by_name.remove(&(old_name, Arc::clone(&id)));
                if let Some(external) = &old.group.external_id {
                    self.groups_by_external
                        .remove(&(Arc::from(external.as_str()), Arc::clone(&id)));
                }
                count
            }
            None => {
                self.groups_by_size.insert((0, Arc::clone(&id)));
                0
            }
        };
        self.groups_by_name.insert((
            Arc::from(group.display_name.to_lowercase()),
            Arc::clone(&id),
        ));
        if let Some(external) = &group.external_id {
            self.groups_by_external
                .insert((Arc::from(external.as_str()), Arc::clone(&id)));
        }
        self.groups.insert(
            id,
            GroupEntry {
                group: Arc::new(group),
                members,
            },
        );
    }

    fn remove_group(&mut self, id: &str) {
        if let Some(old) = self.groups.remove(id) {
            let id: Id = Arc::from(id);
            self.groups_by_name.remove(&(
                Arc::from(old.group.display_name.to_lowercase()),
                Arc::clone(&id),
            ));
            if let Some(external) = &old.group.external_id {
                self.groups_by_external
                    .remove(&(Arc::from(external.as_str()), Arc::clone(&id)));
            }
            self.groups_by_size.remove(&(old.members, id));
        }
    }

    fn resize_group(&mut self, id: &Id, by: isize) {
        if let Some(entry) = self.groups.get_mut(id) {
            let old = entry.members;
            entry.members = old.saturating_add_signed(by);
            let new = entry.members;
            self.groups_by_size.remove(&(old, Arc::clone(id)));
            self.groups_by_size.insert((new, Arc::clone(id)));
        }
    }

    fn put_member(&mut self, m: Membership) {
        let user_id = self.user_id(&m.user_id);
        self.put_member_as(m, user_id);
    }

    /// Puts a membership whose user id is interned as `user_id`.
    fn put_member_as(&mut self, m: Membership, user_id: Id) {
        let group_id = self.group_id(&m.group_id);
        let joined = Joined {
            at: m.joined_at,
            source: m.source,
        };
        let key = (Arc::clone(&group_id), Arc::clone(&user_id));
        if self.members.insert(key, joined).is_none() {
            self.user_groups.insert((user_id, Arc::clone(&group_id)));
            self.resize_group(&group_id, 1);
        }
    }

    fn remove_member(&mut self, group_id: &str, user_id: &str) {
        let key: (Id, Id) = (Arc::from(group_id), Arc::from(user_id));
        if self.members.remove(&key).is_some() {
            let (group_id, user_id) = key;
            self.user_groups.remove(&(user_id, Arc::clone(&group_id)));
            self.resize_group(&group_id, -1);
        }
    }

    /// The model this view holds, as [`crate::Store::load`] returns it (records by id).
    pub fn to_model(&self) -> Model {
        Model {
            agents: self.agents.values().map(|a| Agent::clone(a)).collect(),
            settings: self.settings,
            revision: self.revision,
            users: self.users.values().map(|u| User::clone(u)).collect(),
            groups: self
                .groups
                .values()
                .map(|g| Group::clone(&g.group))
                .collect(),
            memberships: self
                .members
                .iter()
                .map(|((group_id, user_id), joined)| Membership {
                    group_id: group_id.to_string(),
                    user_id: user_id.to_string(),
                    joined_at: joined.at,
                    source: joined.source,
                })
                .collect(),
            policies: self.policies.values().map(|p| Policy::clone(p)).collect(),
        }
    }

    /// The store revision this view is at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Which load of the store this view descends from (see [`View::changes_since`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn user(&self, id: &str) -> Option<&Arc<User>> {
        self.users.get(id)
    }

    /// The user a reference names, by the one rule every caller uses
    /// ([`pdp::identity::resolve`]): an id, else the one user with that external id, email or
    /// user name.
    pub fn resolve_user(&self, reference: &str) -> Resolved<&Arc<User>> {
        match pdp::identity::resolve(self, reference) {
            Resolved::User(id) => match self.users.get(&id) {
                Some(user) => Resolved::User(user),
                None => Resolved::Unknown,
            },
            Resolved::Ambiguous => Resolved::Ambiguous,
            Resolved::Unknown => Resolved::Unknown,
        }
    }

    /// The ids of the users a non-id reference matches (external id, or an email or user name
    /// once normalized), sorted, at most `limit`: what an ambiguous reference is reported with.
    pub fn users_sharing(&self, reference: &str, limit: usize) -> Vec<Id> {
        let login = pdp::identity::normalize(reference).into_owned();
        let mut ids: Vec<Id> = self
            .matching(&self.users_by_external, reference.to_owned())
            .chain(self.matching(&self.users_by_login, login))
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        ids
    }

    /// Another user (not `except`) that a reference to this user name or external id would
    /// also name, were it stored: what the SCIM service provider and the import refuse (SCIM
    /// lets a service provider keep `userName` unique, and an `externalId` names one resource
    /// of its client). A user name may equal no other user's id, external id, user name or
    /// email; an external id no other user's id, external id, user name or email. Emails may
    /// repeat (people share mailboxes): a shared one is ambiguous and names nobody.
    pub fn identifier_taken(
        &self,
        user_name: &str,
        external_id: Option<&str>,
        except: Option<&str>,
    ) -> Option<Taken> {
        let other = |id: &Id| except != Some(&**id);
        let by_id = |key: &str| {
            self.users
                .get_key_value(key)
                .map(|(id, _)| id)
                .filter(|id| other(id))
        };
        let by_external = |key: &str| {
            self.matching(&self.users_by_external, key.to_owned())
                .find(|id| other(id))
        };
        let by_login = |key: &str| {
            self.matching(
                &self.users_by_login,
                pdp::identity::normalize(key).into_owned(),
            )
            .find(|id| other(id))
        };
        let taken = |attribute: &'static str, value: &str, by: Option<&Id>| {
            by.map(|by| Taken {
                attribute,
                value: value.to_owned(),
                by: Arc::clone(by),
            })
        };
        let login = pdp::identity::normalize(user_name);
        taken("userName", user_name, by_id(user_name))
            .or_else(|| taken("userName", user_name, by_login(user_name)))
            .or_else(|| taken("userName", user_name, by_external(user_name)))
            .or_else(|| taken("userName", user_name, by_external(&login)))
            .or_else(|| {
                let external = external_id?;
                taken("externalId", external, by_id(external))
                    .or_else(|| taken("externalId", external, by_external(external)))
                    .or_else(|| taken("externalId", external, by_login(external)))
            })
    }

    /// The users whose user name is `name` once both are normalized (ignoring case and
    /// width), by id.
    pub fn users_named<'v>(&'v self, name: &str) -> impl Iterator<Item = &'v Arc<User>> + 'v {
        let name = pdp::identity::normalize(name).into_owned();
        self.matching(&self.users_by_login, name.clone())
            .filter_map(|id| self.users.get(id))
            .filter(move |u| pdp::identity::normalize(&u.user_name) == name)
    }

    /// The users whose external id is exactly `external_id`, by id.
    pub fn users_with_external_id<'v>(
        &'v self,
        external_id: &str,
    ) -> impl Iterator<Item = &'v Arc<User>> + 'v {
        self.matching(&self.users_by_external, external_id.to_owned())
            .filter_map(|id| self.users.get(id))
    }

    /// The groups whose name is `name`, ignoring case, by id.
    pub fn groups_named<'v>(&'v self, name: &str) -> impl Iterator<Item = &'v GroupEntry> + 'v {
        self.matching(&self.groups_by_name, name.to_lowercase())
            .filter_map(|id| self.groups.get(id))
    }

    /// The groups whose external id is exactly `external_id`, by id.
    pub fn groups_with_external_id<'v>(
        &'v self,
        external_id: &str,
    ) -> impl Iterator<Item = &'v GroupEntry> + 'v {
        self.matching(&self.groups_by_external, external_id.to_owned())
            .filter_map(|id| self.groups.get(id))
    }

    /// The ids filed under `key` in a `(key, id)` set.
    fn matching<'v>(
        &'v self,
        set: &'v OrdSet<(Arc<str>, Id)>,
        key: String,
    ) -> impl Iterator<Item = &'v Id> + 'v {
        let key: Arc<str> = Arc::from(key);
        let start = (Arc::clone(&key), Arc::from(""));
        set.range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(k, _)| *k == key)
            .map(|(_, id)| id)
    }

    /// What changed between `earlier` and this view, as a snapshot of `earlier` needs it to
    /// move to this view ([`pdp::Snapshot::apply`]): users added, removed or changed (with
    /// their record in `earlier`), including users whose memberships changed; groups added or
    /// removed; policies added, changed or removed. Visits only the parts of the maps the two
    /// do not share, so it costs in proportion to the change when `earlier` is an ancestor of
    /// this view; a view of another generation (the store reloaded its view after a bulk
    /// change) shares nothing with this one, so that answers `None` at once.
    pub fn changes_since(&self, earlier: &View) -> Option<ViewChanges> {
        use imbl::ordmap::DiffItem;
        if earlier.generation != self.generation {
            return None;
        }
        let mut users: std::collections::BTreeMap<Id, Option<Arc<User>>> = Default::default();
        for item in earlier.users.diff(&self.users) {
            match item {
                DiffItem::Add(id, _) => {
                    users.insert(Arc::clone(id), None);
                }
                DiffItem::Remove(id, old) | DiffItem::Update { old: (id, old), .. } => {
                    users.insert(Arc::clone(id), Some(Arc::clone(old)));
                }
            }
        }
        for item in earlier.members.diff(&self.members) {
            match item {
                DiffItem::Add((_, user), _) | DiffItem::Remove((_, user), _) => {
                    users
                        .entry(Arc::clone(user))
                        .or_insert_with(|| earlier.users.get(user).cloned());
                }
                // When or how they joined: no part of a decision.
                DiffItem::Update { .. } => {}
            }
        }
        let groups = earlier
            .groups
            .diff(&self.groups)
            .filter_map(|item| match item {
                DiffItem::Add(id, _) | DiffItem::Remove(id, _) => Some(Arc::clone(id)),
                // A group's fields (name, roles, member count) are no part of a decision.
                DiffItem::Update { .. } => None,
            })
            .collect();
        let policies = earlier
            .policies
            .diff(&self.policies)
            .map(|item| match item {
                DiffItem::Add(id, _)
                | DiffItem::Remove(id, _)
                | DiffItem::Update { new: (id, _), .. } => Arc::clone(id),
            })
            .collect();
        // A few dozen agents at most: the diff is cheap, and shared nodes are skipped anyway.
        let agents =
            earlier.settings != self.settings || earlier.agents.diff(&self.agents).next().is_some();
        Some(ViewChanges {
            users: users.into_iter().collect(),
            groups,
            policies,
            agents,
        })
    }

    /// The ids of the users added, changed or removed between `earlier` and this view. Visits
    /// only the parts of the maps the two do not share, so it costs in proportion to the change
    /// when `earlier` is an ancestor of this view.
    pub fn users_changed_since(&self, earlier: &View) -> Vec<Id> {
        earlier
            .users
            .diff(&self.users)
            .map(|item| match item {
                imbl::ordmap::DiffItem::Add(id, _)
                | imbl::ordmap::DiffItem::Remove(id, _)
                | imbl::ordmap::DiffItem::Update { new: (id, _), .. } => Arc::clone(id),
            })
            .collect()
    }

    /// Every registered agent, by id.
    pub fn agents(&self) -> impl ExactSizeIterator<Item = &Arc<Agent>> + '_ {
        self.agents.values()
    }

    pub fn agent(&self, id: &str) -> Option<&Arc<Agent>> {
        self.agents.get(id)
    }

    /// The agent `name` names, exactly: by id, else by alias.
    pub fn agent_named(&self, name: &str) -> Option<&Arc<Agent>> {
        self.agents.get(name).or_else(|| {
            self.agent_aliases
                .get(name)
                .and_then(|id| self.agents.get(id))
        })
    }

    /// The organisation's settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Every user, by id.
    pub fn users(&self) -> impl ExactSizeIterator<Item = &Arc<User>> + '_ {
        self.users.values()
    }

    /// Users in id order with the id the view keys them by, for indexes that keep ids: sharing
    /// the view's string instead of copying it (tens of megabytes at a million users).
    pub fn users_with_ids(&self) -> impl ExactSizeIterator<Item = (&Id, &Arc<User>)> + '_ {
        self.users.iter()
    }

    /// Users in `order` (descending if asked), starting strictly after `after`.
    pub fn users_from<'v>(
        &'v self,
        order: UserOrder,
        descending: bool,
        after: Option<&UserKey>,
    ) -> impl Iterator<Item = &'v Arc<User>> + 'v {
        self.user_ids_from(order, descending, after)
            .filter_map(|(_, id)| self.users.get(id))
    }

    /// Like [`View::users_from`], but yields each user's lower-cased primary email and id
    /// without looking the user up: a search can filter on the email first.
    pub fn user_ids_from<'v>(
        &'v self,
        order: UserOrder,
        descending: bool,
        after: Option<&UserKey>,
    ) -> Box<dyn Iterator<Item = (&'v str, &'v Id)> + 'v> {
        let email = |k: &UserKey| Arc::from(k.email.as_str());
        let id = |k: &UserKey| Arc::from(k.id.as_str());
        match order {
            UserOrder::Email => {
                let key = after.map(|k| (email(k), id(k)));
                Box::new(ranged(&self.users_by_email, key, descending).map(|(e, i)| (&**e, i)))
            }
            UserOrder::Created => {
                // The email rides along in the key but is no part of the order: the cursor
                // excludes its user whatever their email is now. `""` sorts before every
                // email, and `id\0` right after `id` (ids never hold a NUL).
                let set = &self.users_by_created;
                let iter: Box<dyn Iterator<Item = &(Timestamp, Id, Arc<str>)>> =
                    match (after, descending) {
                        (None, false) => Box::new(set.iter()),
                        (None, true) => Box::new(set.iter().rev()),
                        (Some(k), false) => {
                            let next: Id = Arc::from(format!("{}\0", k.id));
                            let from = (k.created, next, Arc::from(""));
                            Box::new(set.range((Bound::Included(from), Bound::Unbounded)))
                        }
                        (Some(k), true) => {
                            let to = (k.created, id(k), Arc::from(""));
                            Box::new(set.range((Bound::Unbounded, Bound::Excluded(to))).rev())
                        }
                    };
                Box::new(iter.map(|(_, i, e)| (&**e, i)))
            }
            UserOrder::Mfa => {
                let key = after.map(|k| (k.mfa, email(k), id(k)));
                Box::new(ranged(&self.users_by_mfa, key, descending).map(|(_, e, i)| (&**e, i)))
            }
        }
    }

    pub fn group(&self, id: &str) -> Option<&GroupEntry> {
        self.groups.get(id)
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = &GroupEntry> + '_ {
        self.groups.values()
    }

    /// Groups in `order` (descending if asked), starting strictly after `after`.
    pub fn groups_from<'v>(
        &'v self,
        order: GroupOrder,
        descending: bool,
        after: Option<&GroupKey>,
    ) -> Box<dyn Iterator<Item = &'v GroupEntry> + 'v> {
        let group = move |id: &Id| self.groups.get(id);
        match order {
            GroupOrder::Name => {
                let key = after.map(|k| (Arc::from(k.name.as_str()), Arc::from(k.id.as_str())));
                Box::new(
                    ranged(&self.groups_by_name, key, descending)
                        .filter_map(move |(_, id)| group(id)),
                )
            }
            GroupOrder::Size => {
                let key = after.map(|k| (k.size, Arc::from(k.id.as_str())));
                Box::new(
                    ranged(&self.groups_by_size, key, descending)
                        .filter_map(move |(_, id)| group(id)),
                )
            }
        }
    }

    /// The members of a group, by user id: `(user id, joined)`.
    pub fn members_of<'v>(&'v self, group_id: &str) -> impl Iterator<Item = (&'v Id, Joined)> + 'v {
        self.members_after(group_id, None)
    }

    /// The members of a group whose user id sorts strictly after `after` (all of them for
    /// `None`), by user id. The map is searched for the start, not walked to it, so the next
    /// page of a 100k-member group costs what the first does.
    pub fn members_after<'v>(
        &'v self,
        group_id: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'v Id, Joined)> + 'v {
        let group_id: Id = Arc::from(group_id);
        let start = match after {
            Some(user_id) => Bound::Excluded((Arc::clone(&group_id), Arc::from(user_id))),
            None => Bound::Included((Arc::clone(&group_id), Arc::from(""))),
        };
        self.members
            .range((start, Bound::Unbounded))
            .take_while(move |((g, _), _)| *g == group_id)
            .map(|((_, u), joined)| (u, *joined))
    }

    pub fn membership(&self, group_id: &str, user_id: &str) -> Option<Joined> {
        self.members
            .get(&(Arc::from(group_id), Arc::from(user_id)))
            .copied()
    }

    /// The groups a user belongs to, by group id: `(group id, joined)`.
    pub fn groups_of<'v>(&'v self, user_id: &str) -> impl Iterator<Item = (&'v Id, Joined)> + 'v {
        let user_id: Id = Arc::from(user_id);
        let start: (Id, Id) = (Arc::clone(&user_id), Arc::from(""));
        self.user_groups
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(u, _)| *u == user_id)
            .filter_map(move |(u, g)| {
                let joined = self.members.get(&(Arc::clone(g), Arc::clone(u)))?;
                Some((g, *joined))
            })
    }

    /// Every membership as `(group id, user id)`, by group.
    pub fn memberships(&self) -> impl ExactSizeIterator<Item = (&Id, &Id)> + '_ {
        self.members.keys().map(|(g, u)| (g, u))
    }

    pub fn membership_count(&self) -> usize {
        self.members.len()
    }

    pub fn policy(&self, id: &str) -> Option<&Arc<Policy>> {
        self.policies.get(id)
    }

    /// Every policy, by id.
    pub fn policies(&self) -> impl ExactSizeIterator<Item = &Arc<Policy>> + '_ {
        self.policies.values()
    }
}

/// `login` as a shared string: the email's allocation when it is the email (the usual case:
/// a user name is most often the primary email), so a million users hold it once.
fn shared(login: String, email: &Arc<str>) -> Arc<str> {
    if *login == **email {
        Arc::clone(email)
    } else {
        Arc::from(login)
    }
}

/// A set of `items`, its leaves packed full (see [`packed`]).
fn sorted_set<A: Ord + Clone>(mut items: Vec<A>) -> OrdSet<A> {
    items.sort_unstable();
    let mut set = OrdSet::new();
    packed(items, |item| {
        set.insert(item);
    });
    set
}

/// A map of `entries`, sorted by key (of entries with equal keys one is kept), its leaves
/// packed full.
fn packed_map<K: Ord + Clone, V: Clone>(entries: Vec<(K, V)>) -> OrdMap<K, V> {
    let mut map = OrdMap::new();
    packed(entries, |(k, v)| {
        map.insert(k, v);
    });
    map
}

/// Inserts `items` (sorted) so that the B-tree's leaves end up full. Inserting
/// in order alone splits each full leaf in two and never comes back to the left half, so
/// every leaf stays half empty and the tree allocates twice the slots it uses (imbl's
/// nodes are fixed arrays of 16). Inserting every other item first leaves the same half-full
/// leaves, and the items in between then fill each one to the brim without a split: the
/// same tree content in half the leaves (`view_memory` measures it).
fn packed<T>(items: Vec<T>, mut insert: impl FnMut(T)) {
    let mut between = Vec::with_capacity(items.len() / 2);
    for (i, item) in items.into_iter().enumerate() {
        if i % 2 == 0 {
            insert(item);
        } else {
            between.push(item);
        }
    }
    for item in between {
        insert(item);
    }
}

/// The groups' half of [`View::from_model`]: groups, memberships and their orders.
fn groups_half(
    groups: Vec<Group>,
    memberships: Vec<Membership>,
    interned: &std::collections::HashSet<Id>,
) -> View {
    let mut half = View::default();
    let mut members: Vec<((Id, Id), Joined)> = Vec::with_capacity(memberships.len());
    let group_ids: std::collections::HashSet<Id> =
        groups.iter().map(|g| Arc::from(g.id.as_str())).collect();
    for m in &memberships {
        let group_id = group_ids
            .get(m.group_id.as_str())
            .cloned()
            .unwrap_or_else(|| Arc::from(m.group_id.as_str()));
        let user_id = interned
            .get(m.user_id.as_str())
            .cloned()
            .unwrap_or_else(|| Arc::from(m.user_id.as_str()));
        let joined = Joined {
            at: m.joined_at,
            source: m.source,
        };
        members.push(((group_id, user_id), joined));
    }
    members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // A repeated membership counts once, as inserting it twice would.
    members.dedup_by(|b, a| a.0 == b.0);
    let mut sizes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for ((group_id, _), _) in &members {
        *sizes.entry(&**group_id).or_default() += 1;
    }
    let mut by_name = Vec::with_capacity(groups.len());
    let mut by_size = Vec::with_capacity(groups.len());
    let mut by_external = Vec::new();
    let mut entries: Vec<(Id, GroupEntry)> = Vec::with_capacity(groups.len());
    for group in groups {
        let id = group_ids
            .get(group.id.as_str())
            .cloned()
            .unwrap_or_else(|| Arc::from(group.id.as_str()));
        let size = sizes.get(group.id.as_str()).copied().unwrap_or(0);
        by_name.push((
            Arc::from(group.display_name.to_lowercase()),
            Arc::clone(&id),
        ));
        by_size.push((size, Arc::clone(&id)));
        if let Some(external) = &group.external_id {
            by_external.push((Arc::from(external.as_str()), Arc::clone(&id)));
        }
        entries.push((
            id,
            GroupEntry {
                group: Arc::new(group),
                members: size,
            },
        ));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    half.groups = packed_map(entries);
    half.groups_by_name = sorted_set(by_name);
    half.groups_by_size = sorted_set(by_size);
    half.groups_by_external = sorted_set(by_external);
    half.user_groups = sorted_set(
        members
            .iter()
            .map(|((g, u), _)| (Arc::clone(u), Arc::clone(g)))
            .collect(),
    );
    half.members = packed_map(members);
    half
}

/// The elements of `set` strictly after `after` in the given direction.
fn ranged<A: Ord + Clone>(
    set: &OrdSet<A>,
    after: Option<A>,
    descending: bool,
) -> Box<dyn Iterator<Item = &A> + '_> {
    match (after, descending) {
        (None, false) => Box::new(set.iter()),
        (None, true) => Box::new(set.iter().rev()),
        (Some(after), false) => Box::new(set.range((Bound::Excluded(after), Bound::Unbounded))),
        (Some(after), true) => {
            Box::new(set.range((Bound::Unbounded, Bound::Excluded(after))).rev())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pdp::{ManagedBy, MembershipSource};

    fn model() -> Model {
        let users = (0..60)
            .map(|i| User {
                id: format!("u{:02}", (i * 37) % 60),
                user_name: format!("Name{}@x.com", i % 7),
                emails: vec![format!("{}@Ex.com", ["b", "A", "c"][i % 3])],
                external_id: (i % 4 != 0).then(|| format!("ext{}", i % 9)),
                created_at: Timestamp((i % 5) as i64),
                mfa: [Mfa::Enabled, Mfa::Disabled, Mfa::Unknown][i % 3],
                ..User::default()
            })
            .collect();
        let groups = (0..8)
            .map(|i| Group {
                id: format!("g{}", (i * 3) % 8),
                display_name: ["Eng", "ops", "eng"][i % 3].into(),
                external_id: (i % 2 == 0).then(|| format!("gx{i}")),
                managed_by: ManagedBy::External,
                ..Group::default()
            })
            .collect();
        let memberships = (0..150)
            .map(|i| Membership {
                // g8 does not exist: its memberships count for no group.
                group_id: format!("g{}", (i * 7) % 9),
                user_id: format!("u{:02}", (i * 11) % 60),
                joined_at: Timestamp(i as i64),
                source: MembershipSource::Idp,
            })
            .collect();
        Model {
            agents: Vec::new(),
            settings: Default::default(),
            revision: 9,
            users,
            groups,
            memberships,
            policies: Vec::new(),
        }
    }

    /// The bulk build equals inserting every record one by one.
    #[test]
    fn the_bulk_build_matches_record_by_record_inserts() {
        let model = model();
        let bulk = View::from_model(model.clone());
        let mut one_by_one = View {
            revision: model.revision,
            ..View::default()
        };
        let mut seen = std::collections::HashSet::new();
        for m in &model.memberships {
            assert!(
                seen.insert((&m.group_id, &m.user_id)),
                "no repeats in a store model"
            );
        }
        for user in model.users {
            one_by_one.put_user(user);
        }
        for group in model.groups {
            one_by_one.put_group(group);
        }
        for m in model.memberships {
            one_by_one.put_member(m);
        }
        assert_eq!(bulk.users, one_by_one.users);
        assert_eq!(bulk.users_by_email, one_by_one.users_by_email);
        assert_eq!(bulk.users_by_created, one_by_one.users_by_created);
        assert_eq!(bulk.users_by_mfa, one_by_one.users_by_mfa);
        assert_eq!(bulk.users_by_login, one_by_one.users_by_login);
        assert_eq!(bulk.users_by_external, one_by_one.users_by_external);
        assert_eq!(bulk.groups, one_by_one.groups);
        assert_eq!(bulk.groups_by_name, one_by_one.groups_by_name);
        assert_eq!(bulk.groups_by_size, one_by_one.groups_by_size);
        assert_eq!(bulk.groups_by_external, one_by_one.groups_by_external);
        assert_eq!(bulk.members, one_by_one.members);
        assert_eq!(bulk.user_groups, one_by_one.user_groups);
        assert!(bulk.groups.values().any(|g| g.members > 0));
    }

    /// Starting after any member (or after a user id that is no member, or past the last)
    /// gives exactly the group's members that sort after it, and none of a neighbouring group.
    #[test]
    fn members_after_starts_strictly_after_the_key() {
        let view = View::from_model(model());
        for group in ["g0", "g3", "g7", "g-none"] {
            let all: Vec<Id> = view.members_of(group).map(|(u, _)| Arc::clone(u)).collect();
            let mut starts: Vec<String> = all.iter().map(|u| u.to_string()).collect();
            starts.extend(["".into(), "u".into(), "u05x".into(), "z".into()]);
            for after in starts {
                let expected: Vec<&Id> = all.iter().filter(|u| ***u > *after).collect();
                let got: Vec<&Id> = view
                    .members_after(group, Some(&after))
                    .map(|(u, _)| u)
                    .collect();
                assert_eq!(got, expected, "{group} after {after:?}");
            }
        }
        assert!(view.members_of("g0").count() > 1);
    }

    /// An alias moved from one agent to another in one change names the new agent, whichever
    /// of the two writes the change applies first; a deleted agent's aliases name nobody.
    #[test]
    fn agent_aliases_follow_their_agent() {
        let agent = |id: &str, aliases: &[&str]| Agent {
            id: id.into(),
            aliases: aliases.iter().map(|&a| a.to_owned()).collect(),
            ..Agent::default()
        };
        for b_first in [false, true] {
            let mut view = View::default();
            view.apply(1, vec![Update::Agent("a".into(), Some(agent("a", &["x"])))]);
            let mut moves = vec![
                Update::Agent("a".into(), Some(agent("a", &[]))),
                Update::Agent("b".into(), Some(agent("b", &["x"]))),
            ];
            if b_first {
                moves.reverse();
            }
            view.apply(2, moves);
            assert_eq!(view.agent_named("x").unwrap().id, "b", "b first: {b_first}");
            view.apply(3, vec![Update::Agent("b".into(), None)]);
            assert!(view.agent_named("x").is_none());
            assert_eq!(view.agent_named("a").unwrap().id, "a");
        }
    }

    proptest::proptest! {
        /// The admin API, the SCIM service provider and the console resolve a reference
        /// through the view; decisions through the snapshot. Both follow the one rule, so on
        /// any directory (ids, external ids, emails and user names colliding in every way)
        /// they name the same user, or agree that the key is ambiguous or unknown.
        #[test]
        fn the_view_resolves_references_as_decisions_do(
            users in proptest::collection::vec((0..4usize, 0..4usize, 0..4usize), 0..8),
            key in (0..6usize, 0..9usize),
        ) {
            let email = |i: usize| format!("user{i}@example.com");
            let model = Model {
                revision: 1,
                users: users
                    .iter()
                    .enumerate()
                    .map(|(i, &(name, external, mail))| User {
                        id: format!("u{i}"),
                        user_name: match name {
                            0 => email(i),
                            1 => email(i + 1).to_uppercase(),
                            2 => format!("u{}", i + 1),
                            _ => format!("ｕｓｅｒ{i}@example.com"),
                        },
                        external_id: match external {
                            0 => None,
                            1 => Some(email(i + 2)),
                            2 => Some(format!("u{}", i + 1)),
                            _ => Some(format!("ext-{}", i % 3)),
                        },
                        emails: match mail {
                            0 => vec![email(i)],
                            1 => vec!["shared@example.com".into()],
                            2 => vec![email(i), email(i + 1)],
                            _ => vec![],
                        },
                        ..User::default()
                    })
                    .collect(),
                policies: vec![Policy {
                    id: "p".into(),
                    connector: "c".into(),
                    scope: pdp::Scope { all_users: true, ..Default::default() },
                    action: pdp::Action::Allow,
                    ..Policy::default()
                }],
                ..Model::default()
            };
            let snapshot = pdp::Snapshot::build(&model);
            let view = View::from_model(model);
            let (kind, i) = key;
            let key = match kind {
                0 => format!("u{i}"),
                1 => email(i),
                2 => email(i).to_uppercase(),
                3 => format!("ext-{i}"),
                4 => "Shared@Example.com".to_string(),
                _ => format!("ＵＳＥＲ{i}@example.com"),
            };
            let decision = snapshot.decide(&pdp::Request { context: Default::default(),
                user: &key,
                agent: "a",
                connector: "c",
                tool: "t",
                attributes: &pdp::NoAttributes,
            });
            match view.resolve_user(&key) {
                Resolved::User(user) => proptest::prop_assert_eq!(decision.user_id, Some(&*user.id)),
                Resolved::Ambiguous => proptest::prop_assert_eq!(decision.reason, pdp::Reason::AmbiguousUser),
                Resolved::Unknown => proptest::prop_assert_eq!(decision.reason, pdp::Reason::UnknownUser),
            }
        }
    }
}

/// What each part of a [`View`] of a million users costs: resident memory (`VmRSS`) grown by
/// building the view, then by building a copy of each index the way the bulk build does (the
/// copies share the strings, so each shows its tree alone; a first round takes up what the
/// model freed, the second is the one to read). Run by hand in release on a store on disk (one `portcullis import --data-dir` or
/// `at_scale_import_and_load` wrote): `STORE_SCALE_DIR=<dir> cargo test --release -p
/// portcullis-store --lib view_memory -- --ignored --nocapture`.
#[cfg(test)]
mod memory {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rss_mib() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024.0
    }

    #[test]
    #[ignore = "a measurement at 1M users: run by hand in release"]
    fn view_memory() {
        let dir = std::env::var("STORE_SCALE_DIR").expect("STORE_SCALE_DIR: a store to measure");
        let model = crate::Store::open(&dir).unwrap().load().unwrap();
        let (users, memberships) = (model.users.len(), model.memberships.len());
        let before = rss_mib();
        let started = std::time::Instant::now();
        let view = View::from_model(model);
        let took = started.elapsed();
        eprintln!(
            "{users} users, {memberships} memberships: the model then the view {:+.0} MiB RSS, built in {took:?}",
            rss_mib() - before
        );
        // The first round takes up what the model freed; the second is the one to read.
        let mut copies: Vec<Box<dyn std::any::Any>> = Vec::new();
        for round in ["first round (reuses freed memory)", "second round"] {
            eprintln!("{round}:");
            macro_rules! tree {
                ($field:ident, map) => {
                    tree!($field, packed_map, |(k, v): (&_, &_)| (
                        k.clone(),
                        v.clone()
                    ))
                };
                ($field:ident, set) => {
                    tree!($field, sorted_set, |i: &_| Clone::clone(i))
                };
                ($field:ident, $build:expr, $own:expr) => {
                    let before = rss_mib();
                    let started = std::time::Instant::now();
                    let items: Vec<_> = view.$field.iter().map($own).collect();
                    let copy = $build(items);
                    let took = started.elapsed();
                    eprintln!(
                        "{:>20}: {:>9} entries, {:>7.1} MiB, built in {took:?}",
                        stringify!($field),
                        copy.len(),
                        rss_mib() - before
                    );
                    copies.push(Box::new(copy));
                };
            }
            tree!(users, map);
            tree!(users_by_email, set);
            tree!(users_by_created, set);
            tree!(users_by_mfa, set);
            tree!(users_by_login, set);
            tree!(users_by_external, set);
            tree!(groups, map);
            tree!(groups_by_name, set);
            tree!(groups_by_size, set);
            tree!(members, map);
            tree!(user_groups, set);
        }
        assert_eq!(copies.len(), 22);
    }
}
