//! Between the model and the stream's messages: what a decision reads of a user, and policies as
//! the store's own JSON.

use crate::{Error, Result};
use pdp::{
    Agent, ApprovalFlow, ApprovalRequest, GrantMode, Lock, Mfa, Policy, RequestState, Settings,
    Timestamp, User,
};
use portcullis_proto::v1 as pb;

/// A user as the stream carries them: what decisions read, without groups (the caller adds
/// them, by index in a snapshot and by id in a change).
pub(crate) fn user(user: &User) -> pb::DirectoryUser {
    let email_is_user_name = user.emails.len() == 1 && user.emails[0] == user.user_name;
    pb::DirectoryUser {
        id: user.id.clone(),
        external_id: user.external_id.clone(),
        user_name: user.user_name.clone(),
        emails: if email_is_user_name {
            Vec::new()
        } else {
            user.emails.clone()
        },
        email_is_user_name,
        inactive: !user.active,
        locked: user.lock.is_some(),
        group_indexes: Vec::new(),
        group_ids: Vec::new(),
        mfa: match user.mfa {
            Mfa::Unknown => 0,
            Mfa::Enabled => 1,
            Mfa::Disabled => 2,
        },
    }
}

/// The user a stream record describes, with what decisions read filled in and the rest left
/// at defaults; its groups stay in the record.
pub(crate) fn user_from(record: &pb::DirectoryUser) -> Result<User> {
    if record.id.is_empty() {
        return Err(Error::Stream("a user record without an id".into()));
    }
    let emails = if record.email_is_user_name {
        vec![record.user_name.clone()]
    } else {
        record.emails.clone()
    };
    Ok(User {
        id: record.id.clone(),
        external_id: record.external_id.clone(),
        user_name: record.user_name.clone(),
        emails,
        active: !record.inactive,
        mfa: match record.mfa {
            1 => Mfa::Enabled,
            2 => Mfa::Disabled,
            _ => Mfa::Unknown,
        },
        // Only whether: who locked them, when and why stay with the control plane.
        lock: record.locked.then(|| Lock {
            at: Timestamp(0),
            by: String::new(),
            reason: String::new(),
        }),
        ..User::default()
    })
}

/// A policy as the store encodes it, so every field arrives exactly as written.
pub(crate) fn policy(policy: &Policy) -> Vec<u8> {
    // A policy is plain data: serializing it to JSON cannot fail.
    serde_json::to_vec(policy).unwrap_or_default()
}

/// The agent registry and the settings, whole, as the store encodes them.
pub(crate) fn registry<'a>(
    agents: impl Iterator<Item = &'a Agent>,
    settings: &Settings,
) -> pb::Registry {
    pb::Registry {
        // Plain data: serializing cannot fail.
        agents: agents
            .map(|a| serde_json::to_vec(a).unwrap_or_default())
            .collect(),
        settings: serde_json::to_vec(settings).unwrap_or_default(),
    }
}

pub(crate) fn registry_from(record: &pb::Registry) -> Result<(Vec<Agent>, Settings)> {
    let mut agents = Vec::with_capacity(record.agents.len());
    for bytes in &record.agents {
        let agent: Agent = serde_json::from_slice(bytes)
            .map_err(|e| Error::Stream(format!("an agent record does not decode: {e}")))?;
        if agent.id.is_empty() {
            return Err(Error::Stream("an agent record without an id".into()));
        }
        agents.push(agent);
    }
    let settings = if record.settings.is_empty() {
        Settings::default()
    } else {
        serde_json::from_slice(&record.settings)
            .map_err(|e| Error::Stream(format!("the settings do not decode: {e}")))?
    };
    Ok((agents, settings))
}

/// An approved request's grant as the stream carries it: what a decision compares and how long
/// it lasts. Only usable grants travel, so it is never used yet.
pub(crate) fn grant(request: &ApprovalRequest) -> pb::ApprovalGrant {
    let (grant_mode, window_seconds) = match request.flow.grant {
        GrantMode::Once => (pb::GrantMode::Once, 0),
        GrantMode::Window { seconds } => (pb::GrantMode::Window, seconds),
    };
    pb::ApprovalGrant {
        id: request.id.clone(),
        user_id: request.user_id.clone(),
        agent: request.agent.clone(),
        connector: request.connector.clone(),
        tool: request.tool.clone(),
        arguments_digest: request.arguments_digest.clone(),
        grant_mode: grant_mode.into(),
        window_seconds,
        any_arguments: request.flow.any_arguments,
        approved_until_ms: request.approved_until.map_or(0, |t| t.0),
    }
}

/// The approved request a grant record describes, with what decisions read filled in (its
/// flow holds only the grant mode and `any_arguments`) and the rest left at defaults. `None`
/// for a grant mode this build does not know (from a newer control plane): such a grant is not
/// honoured here, which fails closed, and the rest of the stream still applies.
pub(crate) fn grant_from(record: &pb::ApprovalGrant) -> Result<Option<ApprovalRequest>> {
    if record.id.is_empty() {
        return Err(Error::Stream("an approval grant without an id".into()));
    }
    if record.approved_until_ms <= 0 {
        return Err(Error::Stream(format!(
            "approval grant `{}` has no end",
            record.id
        )));
    }
    let grant = match pb::GrantMode::try_from(record.grant_mode) {
        Ok(pb::GrantMode::Window) => GrantMode::Window {
            seconds: record.window_seconds,
        },
        Ok(pb::GrantMode::Once | pb::GrantMode::Unspecified) => GrantMode::Once,
        Err(_) => return Ok(None),
    };
    Ok(Some(ApprovalRequest {
        id: record.id.clone(),
        user_id: record.user_id.clone(),
        agent: record.agent.clone(),
        connector: record.connector.clone(),
        tool: record.tool.clone(),
        arguments_digest: record.arguments_digest.clone(),
        flow: ApprovalFlow {
            grant,
            any_arguments: record.any_arguments,
            ..ApprovalFlow::default()
        },
        state: RequestState::Approved,
        approved_until: Some(Timestamp(record.approved_until_ms)),
        ..ApprovalRequest::default()
    }))
}

/// A pending request's call.
pub(crate) fn pending(request: &ApprovalRequest) -> pb::PendingApproval {
    pb::PendingApproval {
        id: request.id.clone(),
        user_id: request.user_id.clone(),
        agent: request.agent.clone(),
        connector: request.connector.clone(),
        tool: request.tool.clone(),
        arguments_digest: request.arguments_digest.clone(),
    }
}

pub(crate) fn policy_from(bytes: &[u8]) -> Result<Policy> {
    let policy: Policy = serde_json::from_slice(bytes)
        .map_err(|e| Error::Stream(format!("a policy record does not decode: {e}")))?;
    if policy.id.is_empty() {
        return Err(Error::Stream("a policy record without an id".into()));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pdp::{Action, Mfa, Scope, Tools};

    #[test]
    fn a_user_keeps_what_decisions_read() {
        let full = User {
            id: "u1".into(),
            external_id: Some("okta-1".into()),
            user_name: "Ada@Example.com".into(),
            emails: vec!["Ada@Example.com".into()],
            display_name: "Ada".into(),
            active: false,
            lock: Some(Lock {
                at: Timestamp(5),
                by: "admin".into(),
                reason: "incident".into(),
            }),
            mfa: Mfa::Enabled,
            ..User::default()
        };
        let record = user(&full);
        assert!(record.email_is_user_name && record.emails.is_empty());
        let back = user_from(&record).unwrap();
        assert_eq!(
            (&back.id, &back.external_id, &back.user_name, &back.emails),
            (&full.id, &full.external_id, &full.user_name, &full.emails)
        );
        assert_eq!((back.active, back.lock.is_some()), (false, true));
        assert_eq!(back.logins(), full.logins());
        // Nothing else travels but MFA, which conditions read.
        assert!(back.display_name.is_empty());
        assert_eq!(back.mfa, Mfa::Enabled);

        let several = User {
            emails: vec!["b@x.com".into(), "c@x.com".into()],
            external_id: None,
            ..full
        };
        let back = user_from(&user(&several)).unwrap();
        assert_eq!((back.emails, back.external_id), (several.emails, None));
    }

    #[test]
    fn a_policy_travels_whole() {
        let p = Policy {
            id: "p1".into(),
            name: "all of github".into(),
            connector: "github".into(),
            tools: Tools::Only(vec!["merge".into()]),
            scope: Scope {
                all_users: false,
                users: vec!["u1".into()],
                groups: vec!["g1".into()],
            },
            action: Action::StepUp,
            ..Policy::default()
        };
        assert_eq!(policy_from(&policy(&p)).unwrap(), p);
        assert!(policy_from(b"{").is_err());
    }

    #[test]
    fn a_grant_keeps_what_decisions_read() {
        let approved = ApprovalRequest {
            id: "apr_1".into(),
            user_id: "u1".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "deploy".into(),
            arguments_digest: "d".into(),
            justification: "ship it".into(),
            flow: ApprovalFlow {
                grant: GrantMode::Window { seconds: 600 },
                any_arguments: true,
                ..ApprovalFlow::builtin()
            },
            state: RequestState::Approved,
            approved_until: Some(Timestamp(5_000)),
            ..ApprovalRequest::default()
        };
        let back = grant_from(&grant(&approved)).unwrap().unwrap();
        // The same grant, at every moment.
        for now in [0, 4_999, 5_000] {
            assert_eq!(back.grant(Timestamp(now)), approved.grant(Timestamp(now)));
        }
        assert_eq!(back.flow.grant, approved.flow.grant);
        // Nothing else travels.
        assert!(back.justification.is_empty() && back.flow.steps.is_empty());

        let once = ApprovalRequest {
            flow: ApprovalFlow::builtin(),
            ..approved.clone()
        };
        let back = grant_from(&grant(&once)).unwrap().unwrap();
        assert_eq!(back.flow.grant, GrantMode::Once);
        assert!(!back.flow.any_arguments);

        let mut unknown = grant(&once);
        unknown.grant_mode = 99;
        assert_eq!(grant_from(&unknown).unwrap(), None);
        let endless = pb::ApprovalGrant {
            approved_until_ms: 0,
            ..grant(&once)
        };
        assert!(grant_from(&endless).is_err());
    }
}
