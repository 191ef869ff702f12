//! The checks a flow must pass before it is stored: bounds, approvers that exist, and steps
//! whose approvers can give their `min_approvals`.

use crate::{Error, Result, users};
use pdp::identity::Resolved;
use pdp::{ApprovalFlow, ApprovalStep, Approver, GrantMode, Role};
use std::collections::HashSet;
use store::View;

/// Longest flow name, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest flow description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most steps one flow may have.
pub const MAX_STEPS: usize = 10;
/// Most approvers one step may list.
pub const MAX_APPROVERS: usize = 100;
/// Longest request TTL, step timeout or grant window: 30 days, in seconds.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 60 * 60;

/// Checks a flow as it would be stored, against `view`, and returns it with every user
/// approver resolved to the user's id. Errors name the wire field at fault (`flow.name`,
/// `flow.steps[1].approvers[0].user_id`, …): INVALID_ARGUMENT for a malformed flow, NOT_FOUND
/// for a user or group that does not exist, FAILED_PRECONDITION for an ambiguous user
/// reference. Shared by the admin API and anyone else writing flows.
pub fn check_flow(view: &View, flow: &ApprovalFlow) -> Result<ApprovalFlow> {
    let ApprovalFlow {
        id: _,
        name,
        description,
        steps,
        request_ttl_secs,
        grant,
        any_arguments: _,
        created_at: _,
        updated_at: _,
    } = flow;
    if name.trim().is_empty() {
        return Err(Error::invalid("flow.name", "must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(Error::invalid(
            "flow.name",
            format!("{} bytes, the limit is {MAX_NAME}", name.len()),
        ));
    }
    if description.len() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "flow.description",
            format!(
                "{} bytes, the limit is {MAX_DESCRIPTION}",
                description.len()
            ),
        ));
    }
    if steps.is_empty() {
        return Err(Error::invalid(
            "flow.steps",
            "a flow needs at least one step",
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(Error::invalid(
            "flow.steps",
            format!("{} steps, the limit is {MAX_STEPS}", steps.len()),
        ));
    }
    check_secs("flow.request_ttl", *request_ttl_secs)?;
    if let GrantMode::Window { seconds } = grant {
        check_secs("flow.window", *seconds)?;
    }
    let mut out = flow.clone();
    for (i, step) in steps.iter().enumerate() {
        out.steps[i] = check_step(view, i, step)?;
    }
    Ok(out)
}

/// A duration of a flow: at least a second, at most [`MAX_DURATION_SECS`].
fn check_secs(field: &str, secs: u64) -> Result<()> {
    if secs == 0 {
        return Err(Error::invalid(field, "must be positive"));
    }
    if secs > MAX_DURATION_SECS {
        return Err(Error::invalid(
            field,
            format!("{secs}s, the limit is 30 days ({MAX_DURATION_SECS}s)"),
        ));
    }
    Ok(())
}

fn check_step(view: &View, i: usize, step: &ApprovalStep) -> Result<ApprovalStep> {
    let ApprovalStep {
        approvers,
        min_approvals,
        timeout_secs,
    } = step;
    let field = format!("flow.steps[{i}]");
    if approvers.is_empty() {
        return Err(Error::invalid(
            format!("{field}.approvers"),
            "a step needs at least one approver",
        ));
    }
    if approvers.len() > MAX_APPROVERS {
        return Err(Error::invalid(
            format!("{field}.approvers"),
            format!(
                "{} approvers, the limit is {MAX_APPROVERS}",
                approvers.len()
            ),
        ));
    }
    if let Some(timeout) = timeout_secs {
        check_secs(&format!("{field}.timeout"), *timeout)?;
    }
    let mut resolved = Vec::with_capacity(approvers.len());
    for (j, approver) in approvers.iter().enumerate() {
        let at = format!("{field}.approvers[{j}]");
        let approver = match approver {
            Approver::User(reference) => {
                Approver::User(resolve_user(view, &format!("{at}.user_id"), reference)?)
            }
            Approver::Group(id) => {
                if view.group(id).is_none() {
                    return Err(Error::NotFoundAt {
                        field: format!("{at}.group_id"),
                        kind: "group",
                        id: id.clone(),
                    });
                }
                Approver::Group(id.clone())
            }
            Approver::Manager => Approver::Manager,
            Approver::Admins => Approver::Admins,
        };
        if resolved.contains(&approver) {
            return Err(Error::invalid(at, "this approver is listed twice"));
        }
        resolved.push(approver);
    }
    if *min_approvals == 0 {
        return Err(Error::invalid(
            format!("{field}.min_approvals"),
            "must be at least 1",
        ));
    }
    let possible = possible_approvers(view, &resolved, *min_approvals as usize);
    if possible < *min_approvals as usize {
        return Err(Error::invalid(
            format!("{field}.min_approvals"),
            format!(
                "{min_approvals} approvals needed, but the step's approvers are at most \
                 {possible} people"
            ),
        ));
    }
    Ok(ApprovalStep {
        approvers: resolved,
        min_approvals: *min_approvals,
        timeout_secs: *timeout_secs,
    })
}

/// How many distinct people could approve at a step (counting only up to `enough`): listed
/// users, members of listed groups and of groups holding the Admin role, and one for the
/// requester's manager (who may be one of the others: an approximation that never refuses a
/// step that could be satisfied).
fn possible_approvers(view: &View, approvers: &[Approver], enough: usize) -> usize {
    let manager = usize::from(approvers.contains(&Approver::Manager));
    let mut people: HashSet<&str> = HashSet::new();
    let mut groups: Vec<&str> = Vec::new();
    for approver in approvers {
        match approver {
            Approver::User(id) => {
                people.insert(id);
            }
            Approver::Group(id) => groups.push(id),
            Approver::Admins => groups.extend(
                view.groups()
                    .filter(|g| g.group.roles.contains(&Role::Admin))
                    .map(|g| g.group.id.as_str()),
            ),
            Approver::Manager => {}
        }
    }
    for group in groups {
        for (user, _) in view.members_of(group) {
            if people.len() + manager >= enough {
                return people.len() + manager;
            }
            people.insert(user);
        }
    }
    people.len() + manager
}

fn resolve_user(view: &View, field: &str, reference: &str) -> Result<String> {
    match view.resolve_user(reference) {
        Resolved::User(user) => Ok(user.id.clone()),
        Resolved::Unknown => Err(Error::NotFoundAt {
            field: field.to_owned(),
            kind: "user",
            id: reference.to_owned(),
        }),
        // The same message (and the same users named) as every other user reference.
        Resolved::Ambiguous => users::resolve(view, field, reference).map(|u| u.id.clone()),
    }
}
