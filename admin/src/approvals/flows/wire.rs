//! Flows between the model and the wire.

use super::check::{MAX_APPROVERS, MAX_STEPS};
use crate::convert::timestamp;
use crate::{Error, Result};
use pdp::{ApprovalFlow, ApprovalStep, Approver, GrantMode};
use portcullis_proto::v1 as pb;

fn duration(secs: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A wire duration in whole seconds (ranges are [`check_flow`]'s to check).
fn secs_from(field: &str, d: prost_types::Duration) -> Result<u64> {
    let d =
        std::time::Duration::try_from(d).map_err(|_| Error::invalid(field, "must be positive"))?;
    if d.subsec_nanos() != 0 {
        return Err(Error::invalid(field, "must be whole seconds"));
    }
    Ok(d.as_secs())
}

/// A flow as the wire shows it.
pub fn flow(f: &ApprovalFlow) -> pb::ApprovalFlow {
    let (grant_mode, window) = match f.grant {
        GrantMode::Once => (pb::GrantMode::Once, None),
        GrantMode::Window { seconds } => (pb::GrantMode::Window, Some(duration(seconds))),
    };
    pb::ApprovalFlow {
        id: f.id.clone(),
        name: f.name.clone(),
        description: f.description.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| pb::ApprovalStep {
                approvers: s.approvers.iter().map(approver).collect(),
                min_approvals: s.min_approvals,
                timeout: s.timeout_secs.map(duration),
            })
            .collect(),
        request_ttl: Some(duration(f.request_ttl_secs)),
        grant_mode: grant_mode.into(),
        window,
        any_arguments: f.any_arguments,
        created_at: Some(timestamp(f.created_at)),
        updated_at: Some(timestamp(f.updated_at)),
    }
}

fn approver(a: &Approver) -> pb::Approver {
    use pb::approver::Approver as A;
    pb::Approver {
        approver: Some(match a {
            Approver::User(id) => A::UserId(id.clone()),
            Approver::Group(id) => A::GroupId(id.clone()),
            Approver::Manager => A::Manager(true),
            Approver::Admins => A::Admins(true),
        }),
    }
}

/// A wire flow as the model holds it, unchecked but for its shape: `id`, `created_at` and
/// `updated_at` are not taken from the wire; an absent TTL is the default (24 h); the grant
/// mode and the window agree.
pub fn flow_from(wire: pb::ApprovalFlow) -> Result<ApprovalFlow> {
    let pb::ApprovalFlow {
        id: _,
        name,
        description,
        steps,
        request_ttl,
        grant_mode,
        window,
        any_arguments,
        created_at: _,
        updated_at: _,
    } = wire;
    // Bounded before converting, so a huge list costs nothing.
    if steps.len() > MAX_STEPS {
        return Err(Error::invalid(
            "flow.steps",
            format!("{} steps, the limit is {MAX_STEPS}", steps.len()),
        ));
    }
    let grant = match (pb::GrantMode::try_from(grant_mode), window) {
        (Ok(pb::GrantMode::Unspecified | pb::GrantMode::Once), None) => GrantMode::Once,
        (Ok(pb::GrantMode::Window), Some(window)) => GrantMode::Window {
            seconds: secs_from("flow.window", window)?,
        },
        (Ok(pb::GrantMode::Window), None) => {
            return Err(Error::invalid(
                "flow.window",
                "GRANT_MODE_WINDOW needs a window",
            ));
        }
        (Ok(_), Some(_)) => {
            return Err(Error::invalid(
                "flow.window",
                "only a GRANT_MODE_WINDOW flow has a window",
            ));
        }
        (Err(_), _) => {
            return Err(Error::invalid(
                "flow.grant_mode",
                format!("unknown value {grant_mode}"),
            ));
        }
    };
    let mut model_steps = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let pb::ApprovalStep {
            approvers,
            min_approvals,
            timeout,
        } = step;
        if approvers.len() > MAX_APPROVERS {
            return Err(Error::invalid(
                format!("flow.steps[{i}].approvers"),
                format!(
                    "{} approvers, the limit is {MAX_APPROVERS}",
                    approvers.len()
                ),
            ));
        }
        let approvers = approvers
            .into_iter()
            .enumerate()
            .map(|(j, a)| approver_from(&format!("flow.steps[{i}].approvers[{j}]"), a))
            .collect::<Result<Vec<_>>>()?;
        model_steps.push(ApprovalStep {
            approvers,
            min_approvals,
            timeout_secs: timeout
                .map(|t| secs_from(&format!("flow.steps[{i}].timeout"), t))
                .transpose()?,
        });
    }
    Ok(ApprovalFlow {
        id: String::new(),
        name,
        description,
        steps: model_steps,
        request_ttl_secs: match request_ttl {
            Some(ttl) => secs_from("flow.request_ttl", ttl)?,
            None => pdp::approval::DEFAULT_REQUEST_TTL_SECS,
        },
        grant,
        any_arguments,
        ..ApprovalFlow::default()
    })
}

fn approver_from(field: &str, wire: pb::Approver) -> Result<Approver> {
    use pb::approver::Approver as A;
    match wire.approver {
        Some(A::UserId(id)) => {
            if id.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{field}.user_id"),
                    "must not be empty",
                ));
            }
            crate::text::bounded(&format!("{field}.user_id"), &id)?;
            Ok(Approver::User(id))
        }
        Some(A::GroupId(id)) => {
            if id.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{field}.group_id"),
                    "must not be empty",
                ));
            }
            crate::text::bounded(&format!("{field}.group_id"), &id)?;
            Ok(Approver::Group(id))
        }
        Some(A::Manager(true)) => Ok(Approver::Manager),
        Some(A::Admins(true)) => Ok(Approver::Admins),
        Some(A::Manager(false) | A::Admins(false)) => Err(Error::invalid(
            field,
            "`manager` and `admins` are set to true when chosen",
        )),
        None => Err(Error::invalid(field, "names no approver")),
    }
}
