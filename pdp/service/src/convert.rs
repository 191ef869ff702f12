//! Between the wire types and `pdp`, at the edge: requests are validated here, once.

use crate::{Error, Result};
use pdp::{Action, Outcome, Reason};
use portcullis_proto::v1 as pb;

/// The longest user, agent, connector or tool name accepted; anything longer is a client bug.
const MAX_NAME_LEN: usize = pdp::identity::MAX_KEY_LEN;

/// Checks a `CheckRequest` and borrows it as a `pdp::Request`. `path` prefixes field names in
/// errors (`checks[3].`), so a caller knows which entry of a batch was wrong.
pub(crate) fn request<'a>(check: &'a pb::CheckRequest, path: &str) -> Result<pdp::Request<'a>> {
    // Destructured whole, so a new field cannot be silently ignored.
    let pb::CheckRequest {
        user,
        agent,
        connector,
        tool,
        attributes,
        min_revision: _,
        explain: _,
    } = check;
    required(user, path, "user")?;
    bounded(agent, path, "agent")?;
    required(connector, path, "connector")?;
    required(tool, path, "tool")?;
    Ok(pdp::Request {
        user,
        agent,
        connector,
        tool,
        attributes,
    })
}

pub(crate) fn required(value: &str, path: &str, field: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(
            format!("{path}{field}"),
            "must not be empty",
        ));
    }
    bounded(value, path, field)
}

pub(crate) fn bounded(value: &str, path: &str, field: &str) -> Result<()> {
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            format!("{path}{field}"),
            format!("is {} bytes long, the limit is {MAX_NAME_LEN}", value.len()),
        ));
    }
    Ok(())
}

pub(crate) fn action(action: Action) -> pb::Decision {
    match action {
        Action::Allow => pb::Decision::Allow,
        Action::StepUp => pb::Decision::StepUp,
        Action::RequireApproval => pb::Decision::RequireApproval,
        Action::Deny => pb::Decision::Deny,
    }
}

pub(crate) fn reason(reason: Reason) -> pb::Reason {
    match reason {
        Reason::Policy => pb::Reason::Policy,
        Reason::NoMatchingPolicy => pb::Reason::NoMatchingPolicy,
        Reason::UserLocked => pb::Reason::UserLocked,
        Reason::UserInactive => pb::Reason::UserInactive,
        Reason::UnknownUser => pb::Reason::UnknownUser,
        Reason::AmbiguousUser => pb::Reason::AmbiguousUser,
    }
}

pub(crate) fn outcome(outcome: Outcome) -> pb::MatchOutcome {
    match outcome {
        Outcome::Matched => pb::MatchOutcome::Matched,
        Outcome::Disabled => pb::MatchOutcome::Disabled,
        Outcome::ToolNotCovered => pb::MatchOutcome::ToolNotCovered,
        Outcome::ScopeNotCovered => pb::MatchOutcome::ScopeNotCovered,
        Outcome::ConditionFailed => pb::MatchOutcome::ConditionFailed,
        Outcome::UserDenied => pb::MatchOutcome::UserDenied,
    }
}

pub(crate) fn policy_match(m: &pdp::PolicyMatch<'_>) -> pb::PolicyMatch {
    pb::PolicyMatch {
        policy_id: m.policy_id.to_owned(),
        policy_name: m.policy_name.to_owned(),
        action: action(m.action).into(),
        matched: m.outcome == Outcome::Matched,
        deciding: m.deciding,
        outcome: outcome(m.outcome).into(),
    }
}

pub(crate) fn allowed_tool(t: &pdp::AllowedTool<'_>) -> pb::AllowedTool {
    pb::AllowedTool {
        connector: t.connector.to_owned(),
        tool: t.tool.to_owned(),
        decision: action(t.action).into(),
        policy_id: t.policy_id.to_owned(),
    }
}
