//! Expected answers for requests against a workload, computed with [`pdp::decide_reference`]
//! (the plain brute-force rule) on a small sub-model per request.
//!
//! `decide_reference` scans the whole model, which is far too slow at a million users and
//! hundreds of thousands of requests. So each request gets a sub-model holding exactly what the
//! rule can look at, and the rule runs on that:
//!
//! - **users**: the first user (in file order) whose id equals the request's key, and the first
//!   whose email equals it ignoring case, in file order. The rule resolves a key by id, then by
//!   external id (the format has none), then by email or user name (both the email here),
//!   taking the first match of each step; both firsts are present and in the same relative
//!   order, so the same user is found, or none when the full model has none.
//! - **memberships** of those users, and **groups** they name: the scope check looks only at
//!   memberships whose user id is the found user's, and at whether their group exists. Every
//!   membership comes from a line of `groups.jsonl`, so its group exists. (This assumes unique
//!   user and group ids, which [`crate::read_dir`] enforces and the generator guarantees.)
//! - **policies** of the request's connector, in file order: the rule keeps only policies whose
//!   connector equals the request's, so the others cannot be candidates, and the deciding id is
//!   the minimum over candidates, which does not depend on order.
//! - **agents** and the **setting**, all of them in every sub-model (there are few): the agent
//!   gate and the policies' selectors read them. An agent's scope looks at the found user's
//!   memberships and groups, which are there.
//!
//! Requests are decided at [`DECIDE_AT`], with `auth_time = DECIDE_AT − auth_age_s`, the way a
//! replayer sends them at its own clock.
//!
//! The sub-model's users, groups, memberships and policies are mapped from the lines by the same
//! functions the reader uses ([`crate::format`]), so the answers are those of the model that
//! [`crate::read_dir`] builds from the written files.

use crate::format::{
    AgentLine, Expected, GroupLine, PolicyLine, RequestLine, UserLine, membership,
};
use pdp::{Model, NoAttributes, Settings, Timestamp};
use std::collections::HashMap;

/// Indexes over a workload's lines for assembling per-request sub-models. Immutable; each
/// thread answering requests uses its own [`Scratch`].
#[derive(Debug)]
pub struct Oracle<'a> {
    users: &'a [UserLine],
    groups: &'a [GroupLine],
    /// Exact user id → first user with it.
    by_id: HashMap<&'a str, u32>,
    /// Lower-cased non-empty email → first user with it.
    by_email: HashMap<String, u32>,
    /// Invariant: user `u`'s groups are `user_groups[group_start[u]..group_start[u + 1]]`,
    /// in `groups.jsonl` order.
    group_start: Vec<u32>,
    user_groups: Vec<u32>,
    /// Connector name → index in a [`Scratch`]'s models; the last model has no policies and
    /// serves every connector no policy names.
    connectors: HashMap<&'a str, usize>,
    /// The policies of each connector, in file order, as models with nothing else in them.
    templates: Vec<Model>,
}

/// Per-thread working space: one model per connector holding its policies, into which a
/// request's users, groups and memberships are put and then cleared.
#[derive(Debug)]
pub struct Scratch {
    models: Vec<Model>,
}

/// Decisions never look at the model's timestamps, so the sub-models are stamped with the
/// epoch.
const NOW: Timestamp = Timestamp(0);

/// The clock the oracle decides at (2026-01-01T00:00:00Z): answers depend on the time only
/// through `auth_age_s`, which is relative to it.
pub const DECIDE_AT: Timestamp = Timestamp(1_767_225_600_000);

impl<'a> Oracle<'a> {
    pub fn new(users: &'a [UserLine], groups: &'a [GroupLine], policies: &'a [PolicyLine]) -> Self {
        let mut by_id: HashMap<&str, u32> = HashMap::with_capacity(users.len());
        let mut by_email: HashMap<String, u32> = HashMap::with_capacity(users.len());
        for (idx, user) in users.iter().enumerate() {
            let idx = idx as u32;
            by_id.entry(user.id.as_str()).or_insert(idx);
            if !user.email.is_empty() {
                by_email.entry(user.email.to_lowercase()).or_insert(idx);
            }
        }

        // Each user's groups, by counting sort of (user, group) pairs.
        let mut group_start = vec![0u32; users.len() + 1];
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for member in &group.members {
                if let Some(&u) = by_id.get(member.as_str()) {
                    pairs.push((u, g as u32));
                    group_start[u as usize + 1] += 1;
                }
            }
        }
        for u in 0..users.len() {
            group_start[u + 1] += group_start[u];
        }
        let mut next = group_start.clone();
        let mut user_groups = vec![0u32; pairs.len()];
        for (u, g) in pairs {
            let slot = &mut next[u as usize];
            user_groups[*slot as usize] = g;
            *slot += 1;
        }

        let mut connectors: HashMap<&'a str, usize> = HashMap::new();
        let mut templates: Vec<Model> = Vec::new();
        for policy in policies {
            let next = templates.len();
            let idx = *connectors.entry(policy.connector.as_str()).or_insert(next);
            if idx == next {
                templates.push(Model::default());
            }
            templates[idx].policies.push(policy.to_policy(NOW));
        }
        templates.push(Model::default());

        Oracle {
            users,
            groups,
            by_id,
            by_email,
            group_start,
            user_groups,
            connectors,
            templates,
        }
    }

    /// Adds an agent registry and the organisation setting to every sub-model.
    pub fn with_agents(mut self, agents: &[AgentLine], settings: Settings) -> Self {
        let agents: Vec<pdp::Agent> = agents.iter().map(|a| a.to_agent(NOW)).collect();
        for template in &mut self.templates {
            template.agents.clone_from(&agents);
            template.settings = settings;
        }
        self
    }

    /// Working space for [`Oracle::expected`].
    pub fn scratch(&self) -> Scratch {
        Scratch {
            models: self.templates.clone(),
        }
    }

    /// The expected answer to `request` (its `kind` and `expected` are ignored).
    pub fn expected(&self, scratch: &mut Scratch, request: &RequestLine) -> Expected {
        let connector = self
            .connectors
            .get(request.connector.as_str())
            .copied()
            .unwrap_or(self.templates.len() - 1);
        let authentication = authentication(request);
        let Some(model) = scratch.models.get_mut(connector) else {
            return Expected::from(pdp::decide_reference(
                &Model::default(),
                &pdp_request(request, authentication.as_ref(), DECIDE_AT),
            ));
        };

        let by_id = self.by_id.get(request.user.as_str()).copied();
        let by_email = self.by_email.get(&request.user.to_lowercase()).copied();
        let mut found: Vec<u32> = by_id.into_iter().chain(by_email).collect();
        found.sort_unstable();
        found.dedup();
        for &u in &found {
            let user = &self.users[u as usize];
            model.users.push(user.to_user(NOW));
            let (start, end) = (
                self.group_start[u as usize] as usize,
                self.group_start[u as usize + 1] as usize,
            );
            for &g in &self.user_groups[start..end] {
                let group = &self.groups[g as usize];
                model.memberships.push(membership(&group.id, &user.id, NOW));
                if !model.groups.iter().any(|have| have.id == group.id) {
                    model.groups.push(group.to_group(NOW));
                }
            }
        }

        let expected = Expected::from(pdp::decide_reference(
            model,
            &pdp_request(request, authentication.as_ref(), DECIDE_AT),
        ));
        model.users.clear();
        model.groups.clear();
        model.memberships.clear();
        expected
    }

    /// Sets `expected` on every request, splitting the work across the machine's cores. The
    /// answers do not depend on the split.
    pub fn fill_expected(&self, requests: &mut [RequestLine]) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = requests.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for part in requests.chunks_mut(chunk) {
                scope.spawn(move || {
                    let mut scratch = self.scratch();
                    for request in part {
                        request.expected = self.expected(&mut scratch, request);
                    }
                });
            }
        });
    }
}

/// The request's authentication as a decision at [`DECIDE_AT`] sees it.
pub fn authentication(request: &RequestLine) -> Option<pdp::Authentication> {
    request.authentication.as_ref().map(|a| a.at(DECIDE_AT))
}

/// The request as `pdp` takes it, decided at `now`; `authentication` is
/// [`authentication`]'s (at the same `now`).
pub fn pdp_request<'a>(
    request: &'a RequestLine,
    authentication: Option<&'a pdp::Authentication>,
    now: Timestamp,
) -> pdp::Request<'a> {
    pdp::Request {
        context: pdp::Context {
            authentication,
            arguments: request.arguments.as_ref(),
            now,
            grant: None,
        },
        user: &request.user,
        agent: &request.agent,
        connector: &request.connector,
        tool: &request.tool,
        attributes: &NoAttributes,
    }
}
