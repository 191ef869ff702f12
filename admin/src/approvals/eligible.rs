//! Who may approve a request at its current step.
//!
//! Read from the directory as it is now (the view), not as it was when the request was made:
//! someone who left the approving group, or was locked, can no longer approve; someone who
//! joined can. The requester never approves their own request, and approvals count distinct
//! people.

use pdp::identity::Resolved;
use pdp::{ApprovalRequest, Approver, Role, UserStatus};
use std::collections::BTreeSet;
use store::View;

/// The most approvers a request lists as awaited (the rest are eligible all the same).
pub const MAX_AWAITING: usize = 100;

/// Why someone may not approve (or deny) a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotPending,
    Requester,
    NotActive,
    NotAnApprover,
    AlreadyApproved,
}

impl Refusal {
    pub fn message(&self, request: &ApprovalRequest, user_id: &str) -> String {
        match self {
            Refusal::NotPending => format!(
                "approval request `{}` is {}, not pending",
                request.id,
                request.state.name()
            ),
            Refusal::Requester => format!(
                "user `{user_id}` made approval request `{}`: nobody approves their own request",
                request.id
            ),
            Refusal::NotActive => format!("user `{user_id}` is locked or inactive"),
            Refusal::NotAnApprover => format!(
                "user `{user_id}` is not an approver of step {} of approval request `{}`",
                request.step, request.id
            ),
            Refusal::AlreadyApproved => format!(
                "user `{user_id}` already approved approval request `{}`",
                request.id
            ),
        }
    }
}

/// Whether `user_id` may approve or deny `request` now.
pub fn check(view: &View, request: &ApprovalRequest, user_id: &str) -> Result<(), Refusal> {
    if request.state != pdp::RequestState::Pending {
        return Err(Refusal::NotPending);
    }
    if user_id == request.user_id {
        return Err(Refusal::Requester);
    }
    match view.user(user_id).map(|u| u.status()) {
        Some(UserStatus::Active) => {}
        _ => return Err(Refusal::NotActive),
    }
    if !named(view, request, user_id) {
        return Err(Refusal::NotAnApprover);
    }
    if request.approvals.iter().any(|a| a.user_id == user_id) {
        return Err(Refusal::AlreadyApproved);
    }
    Ok(())
}

/// Whether the current step's approvers name `user_id` (status aside).
fn named(view: &View, request: &ApprovalRequest, user_id: &str) -> bool {
    let Some(step) = request.flow.steps.get(request.step as usize) else {
        return false;
    };
    step.approvers.iter().any(|approver| match approver {
        Approver::User(id) => id == user_id,
        Approver::Group(group) => view.membership(group, user_id).is_some(),
        Approver::Manager => manager(view, &request.user_id).as_deref() == Some(user_id),
        Approver::Admins => view.groups_of(user_id).any(|(group, _)| {
            view.group(group)
                .is_some_and(|g| g.group.roles.contains(&Role::Admin))
        }),
    })
}

/// The id of the requester's manager, if their `manager` names exactly one user.
fn manager(view: &View, user_id: &str) -> Option<String> {
    let reference = view.user(user_id)?.manager.clone()?;
    match view.resolve_user(&reference) {
        Resolved::User(user) => Some(user.id.clone()),
        _ => None,
    }
}

/// Who may still approve at the current step, by id (at most [`MAX_AWAITING`]).
pub fn awaiting(view: &View, request: &ApprovalRequest) -> Vec<String> {
    let Some(step) = request.flow.steps.get(request.step as usize) else {
        return Vec::new();
    };
    if request.state != pdp::RequestState::Pending {
        return Vec::new();
    }
    let mut people: BTreeSet<String> = BTreeSet::new();
    for approver in &step.approvers {
        match approver {
            Approver::User(id) => {
                people.insert(id.clone());
            }
            Approver::Group(group) => {
                people.extend(
                    view.members_of(group)
                        .take(MAX_AWAITING * 4)
                        .map(|(id, _)| id.to_string()),
                );
            }
            Approver::Manager => people.extend(manager(view, &request.user_id)),
            Approver::Admins => {
                for entry in view.groups() {
                    if entry.group.roles.contains(&Role::Admin) {
                        people.extend(
                            view.members_of(&entry.group.id)
                                .take(MAX_AWAITING * 4)
                                .map(|(id, _)| id.to_string()),
                        );
                    }
                }
            }
        }
        if people.len() > MAX_AWAITING * 4 {
            break;
        }
    }
    people
        .into_iter()
        .filter(|id| check(view, request, id).is_ok())
        .take(MAX_AWAITING)
        .collect()
}

/// Approvals the current step still needs.
pub fn needed(request: &ApprovalRequest) -> u32 {
    let Some(step) = request.flow.steps.get(request.step as usize) else {
        return 0;
    };
    let have = request
        .approvals
        .iter()
        .filter(|a| a.step == request.step)
        .count();
    step.min_approvals
        .saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
}
