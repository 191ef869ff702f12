//! The decision rule written as plainly as possible, scanning the whole model: the oracle that
//! the indexed [`Snapshot::decide`](crate::Snapshot::decide) is tested against, and what the
//! workload generator computes expected answers with. Never used to serve.

use crate::decide::{Decision, Reason, Request};
use crate::model::{Model, Policy, User};

/// Decides `request` against `model` by brute force, following DESIGN.md's rule literally.
pub fn decide_reference<'m>(model: &'m Model, request: &Request<'_>) -> Decision<'m> {
    let Some(user) = find_user(model, request.user) else {
        return Decision::deny(Reason::UnknownUser);
    };
    if user.lock.is_some() {
        return Decision::deny(Reason::UserLocked);
    }
    if !user.active {
        return Decision::deny(Reason::UserInactive);
    }
    let candidates: Vec<&Policy> = model
        .policies
        .iter()
        .filter(|p| p.enabled)
        .filter(|p| p.connector == request.connector)
        .filter(|p| p.tools.covers(request.tool))
        .filter(|p| scope_covers(model, p, user))
        .filter(|p| p.conditions.iter().all(|c| c.holds(request.attributes)))
        .collect();
    let Some(strictest) = candidates.iter().map(|p| p.action).max() else {
        return Decision::deny(Reason::NoMatchingPolicy);
    };
    let deciding = candidates
        .iter()
        .filter(|p| p.action == strictest)
        .map(|p| p.id.as_str())
        .min();
    Decision {
        action: strictest,
        reason: Reason::Policy,
        policy_id: deciding,
    }
}

/// By id, then by external id, then by email or user name ignoring case; the first user in
/// model order wins each step.
fn find_user<'m>(model: &'m Model, key: &str) -> Option<&'m User> {
    let by_id = model.users.iter().find(|u| u.id == key);
    let by_external_id = || {
        model
            .users
            .iter()
            .find(|u| u.external_id.as_deref() == Some(key))
    };
    let by_email = || {
        let key = key.to_lowercase();
        model.users.iter().find(|u| {
            u.emails
                .iter()
                .chain([&u.user_name])
                .any(|e| !e.is_empty() && e.to_lowercase() == key)
        })
    };
    by_id.or_else(by_external_id).or_else(by_email)
}

fn scope_covers(model: &Model, policy: &Policy, user: &User) -> bool {
    let group_exists = |id: &str| model.groups.iter().any(|g| g.id == id);
    policy.scope.all_users
        || policy.scope.users.contains(&user.id)
        || model.memberships.iter().any(|m| {
            m.user_id == user.id
                && policy.scope.groups.contains(&m.group_id)
                && group_exists(&m.group_id)
        })
}
