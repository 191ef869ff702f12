//! The decision rule written as plainly as possible, scanning the whole model: the oracle that
//! the indexed [`Snapshot::decide`](crate::Snapshot::decide) is tested against, and what the
//! workload generator computes expected answers with. Never used to serve.

use crate::decide::{Decision, Reason, Request};
use crate::identity::normalize;
use crate::model::{Model, Policy, User};

/// Decides `request` against `model` by brute force, following DESIGN.md's rule literally.
pub fn decide_reference<'m>(model: &'m Model, request: &Request<'_>) -> Decision<'m> {
    let user = match find_user(model, request.user) {
        Found::One(user) => user,
        Found::Several => return Decision::deny(Reason::AmbiguousUser),
        Found::None => return Decision::deny(Reason::UnknownUser),
    };
    let id = Some(user.id.as_str());
    if user.lock.is_some() {
        return Decision::deny(Reason::UserLocked).for_user(id);
    }
    if !user.active {
        return Decision::deny(Reason::UserInactive).for_user(id);
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
        return Decision::deny(Reason::NoMatchingPolicy).for_user(id);
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
        user_id: id,
        step_up: None,
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
