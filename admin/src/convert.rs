//! Between the model and the wire: timestamps, enums, users, groups, policies, tokens.

use crate::{Error, Result};
use pdp::{
    Action, Group, ManagedBy, MembershipSource, Mfa, Operator, Policy, Role, Timestamp, Tools,
    User, UserStatus,
};
use portcullis_proto::v1 as pb;
use store::ApiToken;

pub(crate) fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.div_euclid(1000),
        nanos: (t.0.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn from_timestamp(field: &str, t: &prost_types::Timestamp) -> Result<Timestamp> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "nanos must be in 0..1e9"));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .map(Timestamp)
        .ok_or_else(|| Error::invalid(field, "out of range"))
}

pub(crate) fn status(s: UserStatus) -> pb::UserStatus {
    match s {
        UserStatus::Active => pb::UserStatus::Active,
        UserStatus::Inactive => pb::UserStatus::Inactive,
        UserStatus::Locked => pb::UserStatus::Locked,
    }
}

pub(crate) fn mfa(m: Mfa) -> pb::MfaStatus {
    match m {
        Mfa::Enabled => pb::MfaStatus::Enabled,
        Mfa::Disabled => pb::MfaStatus::Disabled,
        Mfa::Unknown => pb::MfaStatus::NotConfigured,
    }
}

pub(crate) fn role(r: Role) -> pb::Role {
    match r {
        Role::Admin => pb::Role::Admin,
        Role::ReadOnly => pb::Role::ReadOnly,
    }
}

/// A role from the wire; `field` names it in the error.
pub(crate) fn role_from(field: &str, value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::ReadOnly) => Ok(Role::ReadOnly),
        Ok(pb::Role::Unspecified) => Err(Error::invalid(field, "a role must be specified")),
        Err(_) => Err(Error::invalid(field, format!("unknown role {value}"))),
    }
}

/// Roles from the wire, sorted and without repeats.
pub(crate) fn roles_from(field: &str, values: &[i32]) -> Result<Vec<Role>> {
    let mut roles = values
        .iter()
        .enumerate()
        .map(|(i, &v)| role_from(&format!("{field}[{i}]"), v))
        .collect::<Result<Vec<_>>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

pub(crate) fn roles(roles: &[Role]) -> Vec<i32> {
    roles.iter().map(|&r| role(r).into()).collect()
}

pub(crate) fn managed_by(m: ManagedBy) -> pb::ManagedBy {
    match m {
        ManagedBy::External => pb::ManagedBy::External,
        ManagedBy::Local => pb::ManagedBy::Local,
    }
}

pub(crate) fn source(s: MembershipSource) -> pb::MembershipSource {
    match s {
        MembershipSource::Idp => pb::MembershipSource::Idp,
        MembershipSource::Local => pb::MembershipSource::Local,
    }
}

pub(crate) fn action(a: Action) -> pb::PolicyAction {
    match a {
        Action::Allow => pb::PolicyAction::Allow,
        Action::StepUp => pb::PolicyAction::StepUp,
        Action::RequireApproval => pb::PolicyAction::RequireApproval,
        Action::Deny => pb::PolicyAction::Deny,
    }
}

/// An action from the wire; unspecified is `None`.
pub(crate) fn action_from(field: &str, value: i32) -> Result<Option<Action>> {
    match pb::PolicyAction::try_from(value) {
        Ok(pb::PolicyAction::Unspecified) => Ok(None),
        Ok(pb::PolicyAction::Allow) => Ok(Some(Action::Allow)),
        Ok(pb::PolicyAction::StepUp) => Ok(Some(Action::StepUp)),
        Ok(pb::PolicyAction::RequireApproval) => Ok(Some(Action::RequireApproval)),
        Ok(pb::PolicyAction::Deny) => Ok(Some(Action::Deny)),
        Err(_) => Err(Error::invalid(field, format!("unknown action {value}"))),
    }
}

/// Twelve colors that read well behind white initials.
const PALETTE: [&str; 12] = [
    "#e57373", "#f06292", "#ba68c8", "#9575cd", "#7986cb", "#64b5f6", "#4db6ac", "#81c784",
    "#dce775", "#ffb74d", "#ff8a65", "#a1887f",
];

/// The avatar every console draws for a user: the picture, else initials on a color chosen by
/// FNV-1a of the id (fixed, so it never changes between versions or consoles).
pub(crate) fn avatar(user: &User) -> pb::Avatar {
    let mut hash: u32 = 0x811c_9dc5;
    for b in user.id.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let name = if user.display_name.trim().is_empty() {
        user.email()
    } else {
        user.display_name.as_str()
    };
    let initials: String = name
        .split(|c: char| c.is_whitespace() || c == '.' || c == '@' || c == '_' || c == '-')
        .filter_map(|word| word.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    pb::Avatar {
        url: user.avatar_url.clone().unwrap_or_default(),
        initials,
        color: PALETTE[hash as usize % PALETTE.len()].to_owned(),
    }
}

pub(crate) fn user_row(user: &User) -> pb::UserRow {
    pb::UserRow {
        id: user.id.clone(),
        display_name: user.display_name.clone(),
        email: user.email().to_owned(),
        status: status(user.status()).into(),
        mfa: mfa(user.mfa).into(),
        created_at: Some(timestamp(user.created_at)),
        avatar: Some(avatar(user)),
    }
}

pub(crate) fn user(user: &User) -> pb::User {
    pb::User {
        id: user.id.clone(),
        external_id: user.external_id.clone().unwrap_or_default(),
        user_name: user.user_name.clone(),
        emails: user.emails.clone(),
        display_name: user.display_name.clone(),
        given_name: user.given_name.clone().unwrap_or_default(),
        family_name: user.family_name.clone().unwrap_or_default(),
        avatar: Some(avatar(user)),
        active: user.active,
        status: status(user.status()).into(),
        mfa: mfa(user.mfa).into(),
        lock: user.lock.as_ref().map(|lock| pb::UserLock {
            locked_at: Some(timestamp(lock.at)),
            locked_by: lock.by.clone(),
            reason: lock.reason.clone(),
        }),
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
        manager_id: user.manager.clone().unwrap_or_default(),
    }
}

pub(crate) fn group(group: &Group, user_count: usize) -> pb::Group {
    pb::Group {
        id: group.id.clone(),
        external_id: group.external_id.clone().unwrap_or_default(),
        name: group.display_name.clone(),
        description: group.description.clone(),
        roles: roles(&group.roles),
        managed_by: managed_by(group.managed_by).into(),
        user_count: user_count as u64,
        created_at: Some(timestamp(group.created_at)),
        updated_at: Some(timestamp(group.updated_at)),
    }
}

pub(crate) fn policy(p: &Policy) -> pb::Policy {
    pb::Policy {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        connector: p.connector.clone(),
        all_tools: matches!(p.tools, Tools::All),
        tools: match &p.tools {
            Tools::All => Vec::new(),
            Tools::Only(tools) => tools.clone(),
        },
        scope: Some(pb::PolicyScope {
            all_users: p.scope.all_users,
            user_ids: p.scope.users.clone(),
            group_ids: p.scope.groups.clone(),
        }),
        action: action(p.action).into(),
        approval_flow_id: p.approval_flow_id.clone().unwrap_or_default(),
        conditions: p
            .conditions
            .iter()
            .map(|c| pb::PolicyCondition {
                attribute: c.attribute.clone(),
                operator: match c.operator {
                    Operator::In => "in".into(),
                    Operator::NotIn => "not_in".into(),
                },
                values: c.values.clone(),
            })
            .collect(),
        enabled: p.enabled,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        agents: match &p.agents {
            pdp::Agents::All => None,
            pdp::Agents::Only(ids) => Some(pb::PolicyAgents {
                agent_ids: ids.clone(),
            }),
        },
        step_up: p.step_up.as_ref().map(|s| pb::StepUpRequirement {
            acr_values: s.acr_values.clone(),
            amr_values: s.amr_values.clone(),
            max_age: s.max_age.unwrap_or(0),
        }),
        expression: p.expression.clone().unwrap_or_default(),
    }
}

pub(crate) fn policy_row(p: &Policy) -> pb::PolicyRow {
    pb::PolicyRow {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        connector: p.connector.clone(),
        all_users: p.scope.all_users,
        user_count: p.scope.users.len() as u32,
        group_count: p.scope.groups.len() as u32,
        all_tools: matches!(p.tools, Tools::All),
        tool_count: match &p.tools {
            Tools::All => 0,
            Tools::Only(tools) => tools.len() as u32,
        },
        action: action(p.action).into(),
        enabled: p.enabled,
        tools: match &p.tools {
            Tools::All => Vec::new(),
            Tools::Only(tools) => tools.clone(),
        },
        agents: match &p.agents {
            pdp::Agents::All => None,
            pdp::Agents::Only(ids) => Some(pb::PolicyAgents {
                agent_ids: ids.clone(),
            }),
        },
    }
}

pub(crate) fn token(t: &ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        id: t.id.clone(),
        name: t.name.clone(),
        user_id: t.user_id.clone(),
        role: t.role.map_or(pb::Role::Unspecified, role).into(),
        created_at: Some(timestamp(t.created_at)),
        created_by: t.created_by.clone(),
        expires_at: t.expires_at.map(timestamp),
        revoked_at: t.revoked_at.map(timestamp),
    }
}
