//! Freshness under concurrent writes: clients hammer Check over real gRPC while one writer lands
//! a random sequence of changes through `live::Live` on a real sled store. Every answer must be
//! exactly what `pdp::decide_reference` says on the model at the revision the answer names, that
//! revision must be one the store really had, no client may see revisions go backwards, and no
//! answer may predate a write acknowledged before it was asked.
//!
//! The writer is the only writer, so the view it reads right after a write returns is the model
//! at that write's revision: recording it after each write gives the oracle every revision a
//! client can be answered from.

use live::Live;
use pb::decision_service_client::DecisionServiceClient;
use pdp::{
    Action, Condition, Group, Lock, ManagedBy, Membership, MembershipSource, Mfa, Model, Operator,
    Policy, Reason, Request, Role, Scope, Timestamp, Tools, User,
};
use pdp_service::DecisionService;
use portcullis_proto::v1 as pb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tonic::transport::Channel;

const SEED: u64 = 0x5eed_f00d;
const USERS: usize = 300;
const GROUPS: usize = 12;
const POLICIES: usize = 30;
/// Ids of users and groups that policies name before they exist, created during the run.
const FUTURE_USERS: usize = 40;
const FUTURE_GROUPS: usize = 6;
const WRITES: usize = 200;
const CLIENTS: u64 = 4;
/// Each client keeps going until the writer is done and it has sent at least this many.
const MIN_CHECKS: usize = 500;
/// Pending changes past which the publisher builds a new base in the background.
const FOLD_AT: usize = 12;
/// Every this many writes, the writer asks about every key there is, in BatchChecks.
const SWEEP_EVERY: usize = 40;

/// `zoom` starts with no policy; `unknown` never gets one.
const CONNECTORS: [&str; 6] = ["github", "slack", "jira", "drive", "zoom", "unknown"];
/// `export` is covered only by all-tools policies.
const TOOLS: [&str; 5] = ["read", "write", "delete", "admin", "export"];
const ENVS: [Option<&str>; 3] = [None, Some("prod"), Some("dev")];

/// SplitMix64: deterministic, and the root package's tests have no RNG crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `n` distinct items.
    fn some<T: Clone>(&mut self, items: &[T], n: usize) -> Vec<T> {
        let mut picked: Vec<usize> = (0..n.min(items.len()))
            .map(|_| self.below(items.len()))
            .collect();
        picked.sort_unstable();
        picked.dedup();
        picked.into_iter().map(|i| items[i].clone()).collect()
    }

    /// `key`, or `key` with some letters upper-cased: lookups by email and user name ignore
    /// case, by id and external id do not.
    fn vary_case(&mut self, key: &str) -> String {
        if self.chance(50) {
            return key.to_owned();
        }
        key.chars()
            .map(|c| {
                if self.chance(40) {
                    c.to_uppercase().collect::<String>()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
}

fn at(step: usize) -> Timestamp {
    Timestamp(1_700_000_000_000 + step as i64 * 1000)
}

fn lock(step: usize) -> Lock {
    Lock {
        at: at(step),
        by: "u-000".into(),
        reason: "suspicious activity".into(),
    }
}

/// A seeded user; some keys are long (not stored inline), mixed-case or non-ASCII, some users
/// have no external id, a login other than their email, a second email (one that is another
/// user's primary), or no email at all.
fn seed_user(i: usize) -> User {
    let email = match i % 11 {
        0 => format!("firstname.lastname.number{i}@engineering.example.com"),
        3 => format!("User{i}@Example.com"),
        7 => format!("Ünal{i}@example.com"),
        _ => format!("user{i}@example.com"),
    };
    let mut emails = vec![email.clone()];
    if i.is_multiple_of(13) {
        emails.push(format!("alias{i}@example.org"));
    }
    if i % 29 == 1 {
        emails.push(format!("user{}@example.com", i + 1));
    }
    if i.is_multiple_of(17) {
        emails.clear();
    }
    User {
        id: format!("u-{i:03}"),
        external_id: (!i.is_multiple_of(7)).then(|| format!("ext-{i:03}")),
        user_name: if i.is_multiple_of(5) {
            format!("login{i}")
        } else {
            email
        },
        emails,
        display_name: format!("User {i}"),
        active: !i.is_multiple_of(19),
        lock: (i.is_multiple_of(23)).then(|| lock(0)),
        mfa: Mfa::Enabled,
        manager: None,
        created_at: at(0),
        updated_at: at(0),
        ..User::default()
    }
}

fn new_group(id: &str, step: usize) -> Group {
    Group {
        id: id.into(),
        display_name: format!("Group {id}"),
        roles: if id.ends_with('0') {
            vec![Role::ReadOnly]
        } else {
            Vec::new()
        },
        managed_by: ManagedBy::External,
        created_at: at(step),
        updated_at: at(step),
        ..Group::default()
    }
}

fn membership(group_id: &str, user_id: &str, step: usize) -> Membership {
    Membership {
        group_id: group_id.into(),
        user_id: user_id.into(),
        joined_at: at(step),
        source: MembershipSource::Idp,
    }
}

/// Every key a user can be looked up by.
fn keys_of(user: &User) -> Vec<String> {
    let mut keys = vec![user.id.clone(), user.user_name.clone()];
    keys.extend(user.external_id.clone());
    keys.extend(user.emails.iter().cloned());
    keys.retain(|k| !k.is_empty());
    keys
}

/// One record-level step of a transaction.
#[derive(Debug, Clone)]
enum Plan {
    PutUser(User),
    DeleteUser { id: String, clean: bool },
    PutGroup(Group),
    DeleteGroup { id: String, clean: bool },
    AddMembers { group: String, users: Vec<String> },
    RemoveMembers { group: String, users: Vec<String> },
    PutPolicy(Policy),
    DeletePolicy(String),
}

fn apply(plans: &[Plan], now: Timestamp, tx: &mut store::Tx<'_, '_>) -> store::Result<()> {
    for plan in plans {
        match plan {
            Plan::PutUser(user) => tx.put_user(user)?,
            Plan::DeleteUser { id, clean } => {
                tx.delete_user(id)?;
                if *clean {
                    tx.remove_from_scopes(false, id, now)?;
                }
            }
            Plan::PutGroup(group) => tx.put_group(group)?,
            Plan::DeleteGroup { id, clean } => {
                tx.delete_group(id)?;
                if *clean {
                    tx.remove_from_scopes(true, id, now)?;
                }
            }
            Plan::AddMembers { group, users } => {
                let members: Vec<Membership> =
                    users.iter().map(|u| membership(group, u, 1)).collect();
                tx.add_members(group, &members)?;
            }
            Plan::RemoveMembers { group, users } => {
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                tx.remove_members(group, &users)?;
            }
            Plan::PutPolicy(policy) => tx.put_policy(policy)?,
            Plan::DeletePolicy(id) => tx.delete_policy(id)?,
        }
    }
    Ok(())
}

/// What the writer knows: the model at the last revision, and the ids still to come.
struct World {
    rng: Rng,
    model: Model,
    /// Created in order; ids are never reused, even once deleted.
    future_users: Vec<String>,
    created_users: usize,
    future_groups: Vec<String>,
    created_groups: usize,
    fresh: usize,
}

impl World {
    fn new() -> World {
        let mut rng = Rng(SEED);
        // New ids sort between seeded ones, so a new user can win or lose a key clash.
        let future_users: Vec<String> = (0..FUTURE_USERS)
            .map(|k| format!("u-{:03}-n{k}", rng.below(USERS)))
            .collect();
        let future_groups: Vec<String> = (0..FUTURE_GROUPS)
            .map(|k| format!("g-{:02}-n{k}", rng.below(GROUPS)))
            .collect();
        let users: Vec<User> = (0..USERS).map(seed_user).collect();
        let groups: Vec<Group> = (0..GROUPS)
            .map(|g| new_group(&format!("g-{g:02}"), 0))
            .collect();
        let mut memberships = Vec::new();
        for user in &users {
            let n = rng.below(4);
            for g in rng.some(&groups, n) {
                memberships.push(membership(&g.id, &user.id, 0));
            }
        }
        let mut world = World {
            rng,
            model: Model {
                agents: Vec::new(),
                settings: Default::default(),
                revision: 0,
                users,
                groups,
                memberships,
                policies: Vec::new(),
            },
            future_users,
            created_users: 0,
            future_groups,
            created_groups: 0,
            fresh: 0,
        };
        world.model.policies = (0..POLICIES)
            .map(|p| world.random_policy(format!("p-{p:02}"), 0))
            .collect();
        world
    }

    fn user_ids(&self) -> Vec<String> {
        self.model.users.iter().map(|u| u.id.clone()).collect()
    }

    fn group_ids(&self) -> Vec<String> {
        self.model.groups.iter().map(|g| g.id.clone()).collect()
    }

    fn members_of(&self, group: &str) -> Vec<String> {
        self.model
            .memberships
            .iter()
            .filter(|m| m.group_id == group)
            .map(|m| m.user_id.clone())
            .collect()
    }

    fn fresh(&mut self) -> usize {
        self.fresh += 1;
        self.fresh
    }

    /// A policy over random connectors, tools, scopes (naming users and groups that exist or
    /// will), actions and conditions.
    fn random_policy(&mut self, id: String, step: usize) -> Policy {
        let rng = &mut self.rng;
        // The first policy of a connector comes with a write.
        let connectors = if step == 0 {
            &CONNECTORS[..4]
        } else {
            &CONNECTORS[..5]
        };
        let connector = rng.pick(connectors).to_string();
        let tools = if rng.chance(30) {
            Tools::All
        } else {
            let n = 1 + rng.below(3);
            Tools::Only(
                rng.some(&TOOLS[..4], n)
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
            )
        };
        let mut scope = Scope {
            all_users: rng.chance(15),
            ..Scope::default()
        };
        if !scope.all_users {
            let users: Vec<String> = self.model.users.iter().map(|u| u.id.clone()).collect();
            let n = rng.below(5);
            scope.users = rng.some(&users, n);
            if rng.chance(30) {
                scope.users.push(rng.pick(&self.future_users).clone());
            }
            let groups: Vec<String> = self.model.groups.iter().map(|g| g.id.clone()).collect();
            let n = rng.below(4);
            scope.groups = rng.some(&groups, n);
            if rng.chance(40) {
                scope.groups.push(rng.pick(&self.future_groups).clone());
            }
        }
        let conditions = if rng.chance(15) {
            vec![Condition {
                attribute: "env".into(),
                operator: if rng.chance(50) {
                    Operator::In
                } else {
                    Operator::NotIn
                },
                values: vec!["prod".into()],
            }]
        } else {
            Vec::new()
        };
        Policy {
            name: format!("policy {id}"),
            id,
            connector,
            tools,
            scope,
            action: *rng.pick(&Action::ALL),
            conditions,
            enabled: rng.chance(85),
            created_at: at(step),
            updated_at: at(step),
            ..Policy::default()
        }
    }

    /// A new policy, with an id that sorts among the others'.
    fn new_policy(&mut self, step: usize) -> Policy {
        let id = format!("p-{:02}-{step}", self.rng.below(POLICIES + 5));
        self.random_policy(id, step)
    }

    /// A user whose status flips, or whose display name only changes.
    fn status_change(&mut self, user: &User, step: usize) -> User {
        let mut user = user.clone();
        match self.rng.below(5) {
            0 | 1 => {
                user.lock = if user.lock.is_some() {
                    None
                } else {
                    Some(lock(step))
                }
            }
            2 | 3 => user.active = !user.active,
            _ => user.display_name = format!("Renamed {step}"),
        }
        user.updated_at = at(step);
        user
    }

    /// Users to add to `group` (not already in it) and members to take out.
    fn membership_change(&mut self, group: &str) -> Vec<Plan> {
        let members = self.members_of(group);
        let outsiders: Vec<String> = self
            .user_ids()
            .into_iter()
            .filter(|u| !members.contains(u))
            .collect();
        let n = 1 + self.rng.below(4);
        let add = self.rng.some(&outsiders, n);
        let n = self.rng.below(3);
        let remove = self.rng.some(&members, n);
        let mut plans = Vec::new();
        if !add.is_empty() {
            plans.push(Plan::AddMembers {
                group: group.into(),
                users: add,
            });
        }
        if !remove.is_empty() {
            plans.push(Plan::RemoveMembers {
                group: group.into(),
                users: remove,
            });
        }
        plans
    }

    /// A user with changed keys: a fresh or another user's email (in any case), user name or
    /// external id, no email at all, or another user's id as an email.
    fn key_change(&mut self, user: &User, step: usize) -> User {
        let mut user = user.clone();
        let others = &self.model.users;
        let other = others[self.rng.below(others.len())].clone();
        let fresh = self.fresh();
        match self.rng.below(7) {
            0 => {
                let email = format!("changed{fresh}@example.com");
                match user.emails.first_mut() {
                    Some(first) => *first = email,
                    None => user.emails.push(email),
                }
            }
            1 => user.emails = vec![self.rng.vary_case(other.email())],
            2 => user.user_name = format!("renamed{fresh}"),
            3 => user.user_name = other.email().to_uppercase(),
            4 => {
                user.external_id = match self.rng.below(3) {
                    0 => None,
                    1 => Some(format!("ext-changed-{fresh}")),
                    _ => other.external_id.clone(),
                }
            }
            5 => user.emails.clear(),
            _ => user.emails.push(other.id.clone()),
        }
        user.updated_at = at(step);
        user
    }

    /// A new user: one of the ids policies name, a fresh or clashing email.
    fn new_user(&mut self, step: usize) -> Option<User> {
        let id = self.future_users.get(self.created_users)?.clone();
        self.created_users += 1;
        let fresh = self.fresh();
        let other = self.model.users[self.rng.below(self.model.users.len())].clone();
        let email = if self.rng.chance(35) {
            self.rng.vary_case(other.email())
        } else {
            format!("new{fresh}@example.com")
        };
        let external_id = if self.rng.chance(20) {
            other.external_id.clone()
        } else {
            Some(format!("ext-new-{fresh}"))
        };
        Some(User {
            external_id,
            user_name: email.clone(),
            emails: vec![email],
            display_name: format!("New {id}"),
            active: self.rng.chance(85),
            id,
            mfa: Mfa::Unknown,
            manager: None,
            created_at: at(step),
            updated_at: at(step),
            ..User::default()
        })
    }

    /// The users a change can affect, by every key they had or will have, and the connectors of
    /// the policies it changes.
    fn touched(&self, plans: &[Plan]) -> (Vec<String>, Vec<&'static str>) {
        let before = |id: &str| {
            self.model
                .users
                .iter()
                .filter(|u| u.id == id)
                .flat_map(keys_of)
                .collect::<Vec<_>>()
        };
        let scoped = |policy: &Policy| {
            let mut ids = policy.scope.users.clone();
            for group in &policy.scope.groups {
                ids.extend(self.members_of(group));
            }
            ids
        };
        let old_policy = |id: &str| self.model.policies.iter().find(|p| p.id == id);
        let connector = |name: &str| CONNECTORS.iter().copied().find(|c| *c == name);
        let naming = |group: &str| {
            self.model
                .policies
                .iter()
                .filter(|p| p.scope.groups.iter().any(|g| g == group))
                .filter_map(|p| connector(&p.connector))
                .collect::<Vec<_>>()
        };
        let (mut keys, mut connectors) = (Vec::new(), Vec::new());
        for plan in plans {
            match plan {
                Plan::PutUser(user) => {
                    keys.extend(before(&user.id));
                    keys.extend(keys_of(user));
                }
                Plan::DeleteUser { id, .. } => keys.extend(before(id)),
                Plan::AddMembers { users, .. } | Plan::RemoveMembers { users, .. } => {
                    keys.extend(users.iter().cloned());
                }
                Plan::PutGroup(group) => connectors.extend(naming(&group.id)),
                Plan::DeleteGroup { id, .. } => {
                    keys.extend(self.members_of(id));
                    connectors.extend(naming(id));
                }
                Plan::PutPolicy(policy) => {
                    keys.extend(scoped(policy));
                    connectors.extend(connector(&policy.connector));
                    if let Some(old) = old_policy(&policy.id) {
                        keys.extend(scoped(old));
                        connectors.extend(connector(&old.connector));
                    }
                }
                Plan::DeletePolicy(id) => {
                    if let Some(old) = old_policy(id) {
                        keys.extend(scoped(old));
                        connectors.extend(connector(&old.connector));
                    }
                }
            }
        }
        (keys, connectors)
    }

    /// The steps of the next transaction. Status and membership changes dominate so that runs of
    /// them build on the last full snapshot for a while.
    fn next_plans(&mut self, step: usize) -> Vec<Plan> {
        let users = self.model.users.clone();
        let roll = self.rng.below(100);
        let random_user = |rng: &mut Rng| users[rng.below(users.len())].clone();
        match roll {
            0..=27 => {
                let user = random_user(&mut self.rng);
                vec![Plan::PutUser(self.status_change(&user, step))]
            }
            28..=44 => {
                let group = self.rng.pick(&self.group_ids()).clone();
                self.membership_change(&group)
            }
            45..=51 => {
                // Several users' statuses and a group's members in one revision.
                let n = 2 + self.rng.below(3);
                let chosen = self.rng.some(&users, n);
                let mut plans: Vec<Plan> = chosen
                    .iter()
                    .map(|u| Plan::PutUser(self.status_change(u, step)))
                    .collect();
                let group = self.rng.pick(&self.group_ids()).clone();
                plans.extend(self.membership_change(&group));
                plans
            }
            52..=57 => match self.new_user(step) {
                Some(user) => vec![Plan::PutUser(user)],
                None => vec![Plan::PutUser(self.status_change(&users[0], step))],
            },
            // Never so many deletes that nothing is left to change.
            58..=61 if users.len() > USERS / 2 => vec![Plan::DeleteUser {
                id: random_user(&mut self.rng).id,
                clean: self.rng.chance(50),
            }],
            62..=64 => {
                let Some(id) = self.future_groups.get(self.created_groups).cloned() else {
                    let existing = self.group_ids();
                    return vec![Plan::PutGroup(new_group(&existing[0], step))];
                };
                self.created_groups += 1;
                let n = self.rng.below(12);
                let members = self.rng.some(&self.user_ids(), n);
                let mut plans = vec![Plan::PutGroup(new_group(&id, step))];
                if !members.is_empty() {
                    plans.push(Plan::AddMembers {
                        group: id,
                        users: members,
                    });
                }
                plans
            }
            65..=66 if self.model.groups.len() > GROUPS / 2 => vec![Plan::DeleteGroup {
                id: self.rng.pick(&self.group_ids()).clone(),
                clean: self.rng.chance(50),
            }],
            67..=74 => {
                let user = random_user(&mut self.rng);
                vec![Plan::PutUser(self.key_change(&user, step))]
            }
            75..=80 => vec![Plan::PutPolicy(self.new_policy(step))],
            81..=86 => {
                let old = self.rng.pick(&self.model.policies).clone();
                let mut new = self.random_policy(old.id.clone(), step);
                // Keep some of it, so updates are sometimes small.
                if self.rng.chance(50) {
                    new.connector = old.connector.clone();
                    new.scope = old.scope.clone();
                }
                new.created_at = old.created_at;
                vec![Plan::PutPolicy(new)]
            }
            87..=89 if self.model.policies.len() > POLICIES / 2 => vec![Plan::DeletePolicy(
                self.rng.pick(&self.model.policies).id.clone(),
            )],
            90..=92 => {
                let mut policy = self.rng.pick(&self.model.policies).clone();
                policy.enabled = !policy.enabled;
                policy.updated_at = at(step);
                vec![Plan::PutPolicy(policy)]
            }
            93..=96 => {
                // Every kind of change in one revision: one user's keys, another's status, a
                // group's members and a policy.
                let chosen = self.rng.some(&users, 2);
                let mut plans = Vec::new();
                if let [renamed, other] = chosen.as_slice() {
                    plans.push(Plan::PutUser(self.key_change(renamed, step)));
                    plans.push(Plan::PutUser(self.status_change(other, step)));
                }
                let group = self.rng.pick(&self.group_ids()).clone();
                plans.extend(self.membership_change(&group));
                plans.push(Plan::PutPolicy(self.new_policy(step)));
                plans
            }
            // Changes nothing (or was not to delete): the write returns the current revision.
            _ => {
                let group = self.rng.pick(&self.group_ids()).clone();
                let members = self.members_of(&group);
                let outsider = users
                    .iter()
                    .find(|u| !members.contains(&u.id))
                    .map_or_else(|| "u-none".to_owned(), |u| u.id.clone());
                vec![Plan::RemoveMembers {
                    group,
                    users: vec![outsider],
                }]
            }
        }
    }
}

/// One answer, with what was asked and the newest revision acknowledged before asking.
#[derive(Debug, Clone)]
struct Answer {
    who: String,
    user: String,
    connector: &'static str,
    tool: &'static str,
    env: Option<&'static str>,
    acknowledged: u64,
    min_revision: u64,
    decision: pb::Decision,
    reason: pb::Reason,
    policy_id: String,
    revision: u64,
}

fn request(
    user: &str,
    connector: &str,
    tool: &str,
    env: Option<&str>,
    min_revision: u64,
) -> pb::CheckRequest {
    pb::CheckRequest {
        authentication: None,
        arguments: None,
        user: user.into(),
        agent: "claude".into(),
        connector: connector.into(),
        tool: tool.into(),
        attributes: env
            .map(|e| HashMap::from([("env".to_owned(), e.to_owned())]))
            .unwrap_or_default(),
        min_revision,
        explain: false,
        approval_id: String::new(),
    }
}

fn answer(
    who: &str,
    check: &pb::CheckRequest,
    connector: &'static str,
    tool: &'static str,
    env: Option<&'static str>,
    acknowledged: u64,
    response: &pb::CheckResponse,
) -> Answer {
    Answer {
        who: who.into(),
        user: check.user.clone(),
        connector,
        tool,
        env,
        acknowledged,
        min_revision: check.min_revision,
        decision: response.decision(),
        reason: response.reason(),
        policy_id: response.policy_id.clone(),
        revision: response.revision,
    }
}

/// What the reference says, as the wire would carry it.
fn expected(model: &Model, a: &Answer) -> (pb::Decision, pb::Reason, String) {
    let attributes: BTreeMap<String, String> = a
        .env
        .map(|e| BTreeMap::from([("env".to_owned(), e.to_owned())]))
        .unwrap_or_default();
    let decision = pdp::decide_reference(
        model,
        &Request {
            context: Default::default(),
            user: &a.user,
            agent: "claude",
            connector: a.connector,
            tool: a.tool,
            attributes: &attributes,
        },
    );
    let action = match decision.action {
        Action::Allow => pb::Decision::Allow,
        Action::StepUp => pb::Decision::StepUp,
        Action::RequireApproval => pb::Decision::RequireApproval,
        Action::Deny => pb::Decision::Deny,
    };
    let reason = match decision.reason {
        Reason::Policy => pb::Reason::Policy,
        Reason::NoMatchingPolicy => pb::Reason::NoMatchingPolicy,
        Reason::UserLocked => pb::Reason::UserLocked,
        Reason::UserInactive => pb::Reason::UserInactive,
        Reason::UnknownUser => pb::Reason::UnknownUser,
        Reason::AmbiguousUser => pb::Reason::AmbiguousUser,
        Reason::UnknownAgent => pb::Reason::UnknownAgent,
        Reason::AgentDisabled => pb::Reason::AgentDisabled,
        Reason::AgentNotAllowed => pb::Reason::AgentNotAllowed,
        Reason::StepUpMet => pb::Reason::StepUpMet,
        Reason::Approved => pb::Reason::Approved,
    };
    (action, reason, decision.policy_id.unwrap_or("").to_owned())
}

/// Shared between the writer and the clients.
struct Shared {
    /// Every key any user had, has or will have (ids named before they exist included).
    keys: RwLock<Vec<String>>,
    /// The newest revision a write was acknowledged at.
    acknowledged: AtomicU64,
    writer_done: AtomicBool,
}

impl Shared {
    fn add_keys(&self, keys: impl IntoIterator<Item = String>) {
        self.keys.write().unwrap().extend(keys);
    }

    /// Every key, once each.
    fn all_keys(&self) -> Vec<String> {
        let keys: BTreeSet<String> = self.keys.read().unwrap().iter().cloned().collect();
        keys.into_iter().collect()
    }

    fn random_key(&self, rng: &mut Rng) -> String {
        if rng.chance(5) {
            return format!("nobody{}@example.com", rng.below(10));
        }
        let keys = self.keys.read().unwrap();
        let key = keys[rng.below(keys.len())].clone();
        drop(keys);
        rng.vary_case(&key)
    }
}

async fn client(
    n: u64,
    mut decisions: DecisionServiceClient<Channel>,
    shared: Arc<Shared>,
) -> Vec<Answer> {
    let mut rng = Rng(1000 + n);
    let who = format!("client {n}");
    let mut answers = Vec::new();
    while !shared.writer_done.load(Ordering::SeqCst) || answers.len() < MIN_CHECKS {
        let user = shared.random_key(&mut rng);
        let connector = *rng.pick(&CONNECTORS);
        let tool = *rng.pick(&TOOLS);
        let env = *rng.pick(&ENVS);
        let acknowledged = shared.acknowledged.load(Ordering::SeqCst);
        let min_revision = if rng.chance(25) { acknowledged } else { 0 };
        let check = request(&user, connector, tool, env, min_revision);
        let response = decisions
            .check(check.clone())
            .await
            .unwrap_or_else(|s| panic!("{who}: Check {check:?} failed: {s}"))
            .into_inner();
        answers.push(answer(
            &who,
            &check,
            connector,
            tool,
            env,
            acknowledged,
            &response,
        ));
    }
    answers
}

/// Runs the writes; returns the model at every revision it saw and the writer's own answers.
async fn writer(
    live: Live,
    mut world: World,
    mut decisions: DecisionServiceClient<Channel>,
    shared: Arc<Shared>,
) -> (BTreeMap<u64, Arc<Model>>, Vec<Answer>) {
    let mut models = BTreeMap::new();
    let mut answers = Vec::new();
    let record = |models: &mut BTreeMap<u64, Arc<Model>>, world: &mut World, revision: u64| {
        let view = live.view().unwrap();
        assert_eq!(view.revision(), revision, "the only writer's view");
        let model = view.to_model();
        world.model = model.clone();
        models.insert(revision, Arc::new(model));
    };
    let initial = live.view().unwrap().revision();
    record(&mut models, &mut world, initial);

    let mut step = 1;
    while step <= WRITES {
        // Now and then several transactions commit before the publisher is asked for the last
        // one, so one publish covers them all, as when writes land during a build.
        let burst = if world.rng.chance(12) {
            2 + world.rng.below(3)
        } else {
            1
        };
        let mut touched: Vec<String> = Vec::new();
        let mut connectors: Vec<&'static str> = Vec::new();
        let mut revision = 0;
        for i in 0..burst {
            let plans = world.next_plans(step);
            let (keys, policy_connectors) = world.touched(&plans);
            touched.extend(keys);
            connectors.extend(policy_connectors);
            for plan in &plans {
                if let Plan::PutUser(user) = plan {
                    shared.add_keys(keys_of(user));
                }
            }
            let now = at(step);
            let (committed, ()) = if burst == 1 {
                live.write(move |tx| apply(&plans, now, tx).map_err(live::Error::from))
                    .await
                    .unwrap_or_else(|e: live::Error| panic!("write {step} failed: {e}"))
            } else {
                let store = live.store().clone();
                tokio::task::spawn_blocking(move || store.transact(|tx| apply(&plans, now, tx)))
                    .await
                    .unwrap()
                    .unwrap_or_else(|e: store::Error| panic!("write {step} ({i}) failed: {e}"))
            };
            record(&mut models, &mut world, committed);
            revision = committed;
            step += 1;
        }
        if burst > 1 {
            live.published(revision).await.unwrap();
        }
        shared.acknowledged.fetch_max(revision, Ordering::SeqCst);

        // Acknowledged means decided on: with or without asking for it.
        let key = if touched.is_empty() {
            shared.random_key(&mut world.rng)
        } else {
            world.rng.pick(&touched).clone()
        };
        let connector = *world.rng.pick(&CONNECTORS[..4]);
        let tool = *world.rng.pick(&TOOLS);
        let min_revision = if step % 2 == 0 { revision } else { 0 };
        let check = request(&key, connector, tool, None, min_revision);
        let response = decisions.check(check.clone()).await.unwrap().into_inner();
        assert!(
            response.revision >= revision,
            "a Check after the write acknowledged at {revision} answered from {}",
            response.revision
        );
        answers.push(answer(
            "writer", &check, connector, tool, None, revision, &response,
        ));

        // What the change touched, old keys and new, where a wrong answer is likeliest; and some
        // keys at random, as policy and group changes reach users no plan names.
        for _ in 0..20 {
            touched.push(shared.random_key(&mut world.rng));
        }
        touched.sort_unstable();
        touched.dedup();
        for _ in 0..2 {
            answers.extend(
                sweep(
                    &mut decisions,
                    &touched,
                    &connectors,
                    &mut world.rng,
                    revision,
                )
                .await,
            );
        }
        if step / SWEEP_EVERY != (step - burst) / SWEEP_EVERY {
            let keys = shared.all_keys();
            answers.extend(sweep(&mut decisions, &keys, &[], &mut world.rng, revision).await);
        }
    }
    shared.writer_done.store(true, Ordering::SeqCst);
    let last = shared.acknowledged.load(Ordering::SeqCst);
    let keys = shared.all_keys();
    answers.extend(sweep(&mut decisions, &keys, &[], &mut world.rng, last).await);
    (models, answers)
}

/// Each of `keys` once, with a random request (for one of `likely` connectors half the time, if
/// any), in BatchChecks at `revision`.
async fn sweep(
    decisions: &mut DecisionServiceClient<Channel>,
    keys: &[String],
    likely: &[&'static str],
    rng: &mut Rng,
    revision: u64,
) -> Vec<Answer> {
    let asked: Vec<(String, &'static str, &'static str, Option<&'static str>)> = keys
        .iter()
        .map(|k| {
            let user = rng.vary_case(k);
            let connectors = if !likely.is_empty() && rng.chance(50) {
                likely
            } else {
                &CONNECTORS[..]
            };
            (
                user,
                *rng.pick(connectors),
                *rng.pick(&TOOLS),
                *rng.pick(&ENVS),
            )
        })
        .collect();
    let mut answers = Vec::new();
    for chunk in asked.chunks(1000) {
        let checks: Vec<pb::CheckRequest> = chunk
            .iter()
            .map(|(u, c, t, e)| request(u, c, t, *e, revision))
            .collect();
        let results = decisions
            .batch_check(pb::BatchCheckRequest {
                checks: checks.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(results.len(), checks.len());
        for ((check, (_, c, t, e)), response) in checks.iter().zip(chunk).zip(&results) {
            assert_eq!(
                response.revision, results[0].revision,
                "one batch, one snapshot"
            );
            answers.push(answer("sweep", check, c, t, *e, revision, response));
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_match_the_reference_at_their_revision() {
    let started = Instant::now();
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    store.import(&world.model).unwrap();
    // Fold often, so background builds race with the changes applied over them.
    let settings = live::Settings { fold_at: FOLD_AT };
    let live = tokio::task::spawn_blocking(move || Live::start_with(store, settings).unwrap())
        .await
        .unwrap();

    let (listener, addr) = test_support::loopback().await;
    let server = tonic::transport::Server::builder()
        .add_service(DecisionService::new(live.engine().clone()).into_server());
    // Without TCP_NODELAY a multi-segment BatchCheck answer waits out the peer's delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move { server.serve_with_incoming(incoming).await.unwrap() });
    // One connection each, so clients do not queue behind one another's streams.
    let connect = || async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        DecisionServiceClient::new(channel)
    };

    let mut keys: Vec<String> = world.model.users.iter().flat_map(keys_of).collect();
    keys.extend(world.future_users.iter().cloned());
    keys.push("u-999".into());
    let shared = Arc::new(Shared {
        keys: RwLock::new(keys),
        acknowledged: AtomicU64::new(live.engine().revision()),
        writer_done: AtomicBool::new(false),
    });
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        clients.push(tokio::spawn(client(
            n,
            connect().await,
            Arc::clone(&shared),
        )));
    }
    let (models, mut answers) =
        writer(live.clone(), world, connect().await, Arc::clone(&shared)).await;
    let written = started.elapsed();
    let mut checks = 0;
    for (n, handle) in clients.into_iter().enumerate() {
        let client_answers = handle.await.unwrap();
        checks += client_answers.len();
        for pair in client_answers.windows(2) {
            assert!(
                pair[1].revision >= pair[0].revision,
                "client {n} saw revision {} after {}",
                pair[1].revision,
                pair[0].revision
            );
        }
        answers.extend(client_answers);
    }

    let distinct: BTreeSet<u64> = answers.iter().map(|a| a.revision).collect();
    let mut mismatches = Vec::new();
    for a in &answers {
        assert!(
            a.revision >= a.acknowledged && a.revision >= a.min_revision,
            "answered from revision {} after {} was acknowledged (min_revision {}): {a:?}",
            a.revision,
            a.acknowledged,
            a.min_revision
        );
        let Some(model) = models.get(&a.revision) else {
            panic!(
                "answered from revision {}, which the store never had (it had {:?}): {a:?}",
                a.revision,
                models.keys().collect::<Vec<_>>()
            );
        };
        let want = expected(model, a);
        let got = (a.decision, a.reason, a.policy_id.clone());
        if got != want {
            mismatches.push(format!(
                "{} asked ({:?}, {}, {}, env {:?}) at revision {}: got {got:?}, the reference says {want:?}",
                a.who, a.user, a.connector, a.tool, a.env, a.revision
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from the reference; the first:\n{}",
        mismatches.len(),
        answers.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    assert!(live.folds() > 0, "no background build replaced the base");
    // The run must have raced: clients saw many revisions, not only the first and last.
    assert!(
        distinct.len() > 20,
        "answers came from only {} revisions",
        distinct.len()
    );
    println!(
        "{} revisions, {} folds, {} client checks, {} answers from {} revisions checked; writes {:.1} s, total {:.1} s",
        models.len(),
        live.folds(),
        checks,
        answers.len(),
        distinct.len(),
        written.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
