//! The decision rule written as plainly as possible, scanning the whole model: the oracle that
//! the indexed [`Snapshot::decide`](crate::Snapshot::decide) is tested against, and what the
//! workload generator computes expected answers with. Never used to serve.

use crate::decide::{Decision, Reason, Request};
use crate::expression::{Expression, Input, UserFacts};
use crate::identity::normalize;
use crate::model::{Action, Agent, Agents, Model, Policy, Scope, Unregistered, User};

/// Decides `request` against `model` by brute force, following DESIGN.md's rule literally.
pub fn decide_reference<'m>(model: &'m Model, request: &Request<'_>) -> Decision<'m> {
    // 1. The user.
    let user = match find_user(model, request.user) {
        Found::One(user) => user,
        Found::Several => return Decision::deny(Reason::AmbiguousUser),
        Found::None => return Decision::deny(Reason::UnknownUser),
    };
    let id = Some(user.id.as_str());
    // 2. Their status.
    if user.lock.is_some() {
        return Decision::deny(Reason::UserLocked).for_user(id);
    }
    if !user.active {
        return Decision::deny(Reason::UserInactive).for_user(id);
    }
    // 3. The agent.
    let agent = find_agent(model, request.agent);
    match agent {
        None if model.settings.unregistered_agents == Unregistered::Deny => {
            return Decision::deny(Reason::UnknownAgent).for_user(id);
        }
        Some(agent) if !agent.enabled => {
            return Decision::deny(Reason::AgentDisabled).for_user(id);
        }
        Some(agent) if !scope_covers(model, &agent.scope, user) => {
            return Decision::deny(Reason::AgentNotAllowed).for_user(id);
        }
        _ => {}
    }
    // 4. The candidates.
    let candidates: Vec<&Policy> = model
        .policies
        .iter()
        .filter(|p| p.enabled)
        .filter(|p| p.connector == request.connector)
        .filter(|p| p.tools.covers(request.tool))
        .filter(|p| scope_covers(model, &p.scope, user))
        .filter(|p| match (&p.agents, agent) {
            (Agents::All, _) => true,
            (Agents::Only(_), None) => false,
            (Agents::Only(ids), Some(agent)) => ids.contains(&agent.id),
        })
        .filter(|p| p.conditions.iter().all(|c| c.holds(request.attributes)))
        .filter(|p| expression_holds(model, p, user, request))
        .collect();
    // 5. A met Step up counts as an Allow.
    let met = |p: &Policy| {
        p.action == Action::StepUp
            && p.step_up.as_ref().is_some_and(|s| {
                !s.is_empty() && s.met_by(request.context.authentication, request.context.now)
            })
    };
    let effective = |p: &Policy| if met(p) { Action::Allow } else { p.action };
    // 6. The most restrictive wins, the lowest id among those.
    let Some(strictest) = candidates.iter().map(|p| effective(p)).max() else {
        return Decision::deny(Reason::NoMatchingPolicy).for_user(id);
    };
    let Some(deciding) = candidates
        .iter()
        .filter(|p| effective(p) == strictest)
        .min_by(|a, b| a.id.cmp(&b.id))
    else {
        return Decision::deny(Reason::NoMatchingPolicy).for_user(id);
    };
    let reason = if met(deciding) {
        Reason::StepUpMet
    } else {
        Reason::Policy
    };
    // 7. An approval for exactly this call lets a Require approval answer through.
    if strictest == Action::RequireApproval
        && let Some(grant) = request.context.grant
    {
        let agent_name = agent.map_or(request.agent, |a| a.id.as_str());
        let digest = crate::approval::arguments_digest(request.context.arguments);
        if grant.user_id == user.id
            && grant.agent == agent_name
            && grant.connector == request.connector
            && grant.tool == request.tool
            && grant.arguments_digest.is_none_or(|d| d == digest)
        {
            return Decision {
                action: Action::Allow,
                reason: Reason::Approved,
                policy_id: Some(deciding.id.as_str()),
                user_id: id,
                step_up: None,
                approval_flow: deciding.approval_flow_id.as_deref(),
            };
        }
    }
    Decision {
        action: strictest,
        reason,
        policy_id: Some(deciding.id.as_str()),
        user_id: id,
        step_up: deciding
            .step_up
            .as_ref()
            .filter(|_| strictest == Action::StepUp),
        approval_flow: deciding
            .approval_flow_id
            .as_deref()
            .filter(|_| strictest == Action::RequireApproval),
    }
}

enum Found<'m> {
    None,
    One(&'m User),
    Several,
}

/// The user with `key` as id (the first, were ids repeated); else every user whose external id
/// is `key` or one of whose emails or user name is `key` once both are normalized: one such
/// user, or several.
fn find_user<'m>(model: &'m Model, key: &str) -> Found<'m> {
    if let Some(user) = model.users.iter().find(|u| u.id == key) {
        return Found::One(user);
    }
    let key_login = normalize(key);
    let mut named = model.users.iter().filter(|u| {
        u.external_id.as_deref() == Some(key)
            || u.emails
                .iter()
                .chain([&u.user_name])
                .any(|e| !e.is_empty() && normalize(e) == key_login)
    });
    match (named.next(), named.next()) {
        (None, _) => Found::None,
        (Some(user), None) => Found::One(user),
        (Some(_), Some(_)) => Found::Several,
    }
}

/// The agent whose id or one of whose aliases is exactly `name` (the empty name is never
/// registered).
fn find_agent<'m>(model: &'m Model, name: &str) -> Option<&'m Agent> {
    if name.is_empty() {
        return None;
    }
    model
        .agents
        .iter()
        .find(|a| a.id == name || a.aliases.iter().any(|alias| alias == name))
}

fn scope_covers(model: &Model, scope: &Scope, user: &User) -> bool {
    let group_exists = |id: &str| model.groups.iter().any(|g| g.id == id);
    scope.all_users
        || scope.users.contains(&user.id)
        || model.memberships.iter().any(|m| {
            m.user_id == user.id && scope.groups.contains(&m.group_id) && group_exists(&m.group_id)
        })
}

/// Whether the policy's CEL condition holds (true without one; an expression that does not
/// compile or evaluate, or gives no boolean, does not hold).
fn expression_holds(model: &Model, policy: &Policy, user: &User, request: &Request<'_>) -> bool {
    let Some(source) = &policy.expression else {
        return true;
    };
    let Ok(expression) = Expression::compile(source) else {
        return false;
    };
    let mut groups: Vec<&str> = model
        .memberships
        .iter()
        .filter(|m| m.user_id == user.id && model.groups.iter().any(|g| g.id == m.group_id))
        .map(|m| m.group_id.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let input = Input {
        request,
        user: UserFacts {
            id: &user.id,
            email: user.email(),
            groups: &groups,
            mfa: user.mfa,
        },
    };
    expression.evaluate(&input) == Ok(true)
}
