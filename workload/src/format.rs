//! One Rust type per line of each workload file, serialized with exactly the format's key order,
//! and the mapping between these lines and [`pdp::Model`].
//!
//! The line types only serialize: reading goes through [`crate::read`], which validates every
//! field and reports `file:line: field: problem`.

use crate::{Error, Result};
use pdp::{
    Action, Agent, Agents, ApprovalFlow, ApprovalStep, Approver, Authentication, GrantMode, Group,
    Lock, ManagedBy, Membership, MembershipSource, Mfa, Model, Policy, Reason, Role, Scope,
    Settings, StepUp, Timestamp, Tools, Unregistered, User,
};
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// One line of `users.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserLine {
    pub id: String,
    pub email: String,
    /// The display name.
    pub name: String,
    /// When the user was provisioned; written as RFC 3339 in UTC.
    #[serde(serialize_with = "ser_timestamp")]
    pub created: Timestamp,
    pub active: bool,
    pub locked: bool,
    /// `None` when the identity provider does not say (written as `null`).
    pub mfa: Option<bool>,
    /// The user's manager, by user id (read as an id or an email of `users.jsonl`); not
    /// written when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

/// One line of `groups.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLine {
    pub id: String,
    pub name: String,
    /// Written as `admin` / `read_only`.
    pub roles: Vec<Role>,
    /// User ids.
    pub members: Vec<String>,
}

/// One line of `policies.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyLine {
    pub id: String,
    pub name: String,
    pub connector: String,
    /// Tool names, or `["*"]` for every tool of the connector.
    pub tools: Vec<String>,
    pub scope: ScopeLine,
    /// Agent ids, or `["*"]` for every agent; `None` (not written) means every agent too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    #[serde(serialize_with = "ser_action")]
    pub action: Action,
    /// What a STEP_UP policy requires for the step-up to count as met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUpLine>,
    /// The approval flow of a REQUIRE_APPROVAL policy: an id of `approval_flows.jsonl` or
    /// `builtin-admins`; none: the organisation's default flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_flow: Option<String>,
    /// A CEL condition (Portcullis's extension of the format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    pub enabled: bool,
}

/// The `step_up` object of a policy line; absent parts are not written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StepUpLine {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr_values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

impl From<&StepUp> for StepUpLine {
    fn from(step_up: &StepUp) -> Self {
        StepUpLine {
            acr_values: step_up.acr_values.clone(),
            amr_values: step_up.amr_values.clone(),
            max_age: step_up.max_age,
        }
    }
}

impl From<StepUpLine> for StepUp {
    fn from(line: StepUpLine) -> Self {
        StepUp {
            acr_values: line.acr_values,
            amr_values: line.amr_values,
            max_age: line.max_age,
        }
    }
}

/// One line of `approval_flows.jsonl`: who approves what a REQUIRE_APPROVAL policy holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowLine {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub steps: Vec<FlowStepLine>,
    /// How long a request may stay pending, in seconds; not written: 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_ttl_s: Option<u64>,
    /// `once` or `window`.
    pub grant: String,
    /// With `window`: how long after the approval calls are allowed, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    pub any_arguments: bool,
}

/// One step of a flow line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowStepLine {
    /// `user:<id or email>`, `group:<id>`, `manager` or `admins`.
    pub approvers: Vec<String>,
    pub min_approvals: u32,
    /// Seconds at this step before the request escalates; not written: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// An approver as the format writes it: `user:<ref>`, `group:<id>`, `manager`, `admins`.
pub fn parse_approver(text: &str) -> Option<Approver> {
    match text.split_once(':') {
        Some(("user", user)) if !user.is_empty() => Some(Approver::User(user.to_owned())),
        Some(("group", group)) if !group.is_empty() => Some(Approver::Group(group.to_owned())),
        None if text == "manager" => Some(Approver::Manager),
        None if text == "admins" => Some(Approver::Admins),
        _ => None,
    }
}

/// The inverse of [`parse_approver`].
pub fn approver_name(approver: &Approver) -> String {
    match approver {
        Approver::User(id) => format!("user:{id}"),
        Approver::Group(id) => format!("group:{id}"),
        Approver::Manager => "manager".to_owned(),
        Approver::Admins => "admins".to_owned(),
    }
}

impl FlowLine {
    /// The flow as the model holds it, stamped `now`; `None` if an approver or the grant does
    /// not parse (the reader refuses such lines).
    pub fn to_flow(&self, now: Timestamp) -> Option<ApprovalFlow> {
        let grant = match (self.grant.as_str(), self.window_s) {
            ("once", None) => GrantMode::Once,
            ("window", Some(seconds)) => GrantMode::Window { seconds },
            _ => return None,
        };
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            steps.push(ApprovalStep {
                approvers: step
                    .approvers
                    .iter()
                    .map(|a| parse_approver(a))
                    .collect::<Option<Vec<_>>>()?,
                min_approvals: step.min_approvals,
                timeout_secs: step.timeout_s,
            });
        }
        Some(ApprovalFlow {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            steps,
            request_ttl_secs: self
                .request_ttl_s
                .unwrap_or(pdp::approval::DEFAULT_REQUEST_TTL_SECS),
            grant,
            any_arguments: self.any_arguments,
            created_at: now,
            updated_at: now,
        })
    }
}

/// One line of `agents.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentLine {
    pub id: String,
    /// The display name.
    pub name: String,
    pub vendor: String,
    pub aliases: Vec<String>,
    pub enabled: bool,
    /// Whom the agent may act for, like a policy's scope.
    pub scope: ScopeLine,
}

/// `settings.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SettingsFile {
    #[serde(serialize_with = "ser_unregistered")]
    pub unregistered_agents: Unregistered,
}

/// The `authentication` object of a request line: what a gateway read from the user's token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AuthenticationLine {
    pub acr: String,
    pub amr: Vec<String>,
    /// Seconds since the user authenticated; a replayer sends `auth_time = now - auth_age_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_age_s: Option<u64>,
}

impl AuthenticationLine {
    /// The authentication as a decision at `now` sees it.
    pub fn at(&self, now: Timestamp) -> Authentication {
        Authentication {
            acr: self.acr.clone(),
            amr: self.amr.clone(),
            auth_time: self.auth_age_s.map(|age| {
                let age_ms = i64::try_from(age).unwrap_or(i64::MAX).saturating_mul(1000);
                Timestamp(now.0.saturating_sub(age_ms))
            }),
        }
    }
}

/// The `scope` object of a policy line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScopeLine {
    pub all_users: bool,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// One line of `requests.jsonl`: a decision request and its expected answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestLine {
    pub id: String,
    /// A user id (exact) or an email (case-insensitive).
    pub user: String,
    pub agent: String,
    pub connector: String,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationLine>,
    /// The tool call's arguments (Portcullis's extension of the format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<pdp::Arguments>,
    /// How the generator built the request (see [`crate::generate::Kind`]); never affects the
    /// decision.
    pub kind: String,
    pub expected: Expected,
}

/// The `expected` object of a request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    #[serde(serialize_with = "ser_action")]
    pub decision: Action,
    #[serde(serialize_with = "ser_reason")]
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Policy`] or [`Reason::StepUpMet`].
    pub policy_id: Option<String>,
}

impl From<pdp::Decision<'_>> for Expected {
    fn from(decision: pdp::Decision<'_>) -> Self {
        Expected {
            decision: decision.action,
            reason: decision.reason,
            policy_id: decision.policy_id.map(str::to_owned),
        }
    }
}

/// The data files of a workload directory, in file order (`manifest.json` is separate:
/// see [`crate::Manifest`]). `agents.jsonl` is written when there are agents, `settings.json`
/// when `settings` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Files {
    pub agents: Vec<AgentLine>,
    pub settings: Option<SettingsFile>,
    pub users: Vec<UserLine>,
    pub groups: Vec<GroupLine>,
    pub policies: Vec<PolicyLine>,
    pub requests: Vec<RequestLine>,
    /// `approval_flows.jsonl`, written when there are flows.
    pub flows: Vec<FlowLine>,
}

// ---- names ---------------------------------------------------------------------------------

/// `ALLOW`, `STEP_UP`, `REQUIRE_APPROVAL` or `DENY`.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "ALLOW",
        Action::StepUp => "STEP_UP",
        Action::RequireApproval => "REQUIRE_APPROVAL",
        Action::Deny => "DENY",
    }
}

/// The inverse of [`action_name`], also taking the older spellings: any case, `-` or a space
/// for `_`, and the gRPC names (`POLICY_ACTION_STEP_UP`, `DECISION_DENY`): `step-up`, `Deny`.
pub fn parse_action(name: &str) -> Option<Action> {
    let name = canonical(name, &["POLICY_ACTION_", "DECISION_"]);
    Action::ALL.into_iter().find(|&a| action_name(a) == name)
}

/// `name` in the one spelling: upper case, words joined by `_`, without a gRPC prefix.
fn canonical(name: &str, prefixes: &[&str]) -> String {
    let upper: String = name
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    prefixes
        .iter()
        .find_map(|prefix| upper.strip_prefix(prefix))
        .map_or_else(|| upper.clone(), str::to_owned)
}

const REASONS: [Reason; 11] = [
    Reason::Policy,
    Reason::NoMatchingPolicy,
    Reason::UserLocked,
    Reason::UserInactive,
    Reason::UnknownUser,
    Reason::AmbiguousUser,
    Reason::UnknownAgent,
    Reason::AgentDisabled,
    Reason::AgentNotAllowed,
    Reason::StepUpMet,
    Reason::Approved,
];

/// `POLICY`, `NO_MATCHING_POLICY`, `USER_LOCKED`, `USER_INACTIVE`, `UNKNOWN_USER`,
/// `AMBIGUOUS_USER`, `UNKNOWN_AGENT`, `AGENT_DISABLED`, `AGENT_NOT_ALLOWED`, `STEP_UP_MET` or `APPROVED`.
pub fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Policy => "POLICY",
        Reason::NoMatchingPolicy => "NO_MATCHING_POLICY",
        Reason::UserLocked => "USER_LOCKED",
        Reason::UserInactive => "USER_INACTIVE",
        Reason::UnknownUser => "UNKNOWN_USER",
        Reason::AmbiguousUser => "AMBIGUOUS_USER",
        Reason::UnknownAgent => "UNKNOWN_AGENT",
        Reason::AgentDisabled => "AGENT_DISABLED",
        Reason::AgentNotAllowed => "AGENT_NOT_ALLOWED",
        Reason::StepUpMet => "STEP_UP_MET",
        Reason::Approved => "APPROVED",
    }
}

/// The inverse of [`reason_name`], also taking the older spellings as [`parse_action`] does
/// (`no-matching-policy`, `REASON_USER_LOCKED`).
pub fn parse_reason(name: &str) -> Option<Reason> {
    let name = canonical(name, &["REASON_"]);
    REASONS.into_iter().find(|&r| reason_name(r) == name)
}

/// `admin` or `read_only`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::ReadOnly => "read_only",
    }
}

/// The inverse of [`role_name`]; exact and case-sensitive.
pub fn parse_role(name: &str) -> Option<Role> {
    [Role::Admin, Role::ReadOnly]
        .into_iter()
        .find(|&r| role_name(r) == name)
}

/// Parses an RFC 3339 timestamp with any offset into UTC milliseconds (sub-millisecond digits
/// are truncated towards the past).
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(millis).ok().map(Timestamp)
}

/// Formats as RFC 3339 in UTC: `2026-01-05T12:34:56Z`, with `.mmm` only when the milliseconds
/// are not zero. `None` outside the years 0000 to 9999, which RFC 3339 cannot express.
pub fn format_timestamp(at: Timestamp) -> Option<String> {
    let at_utc = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000).ok()?;
    if !(0..=9999).contains(&at_utc.year()) {
        return None;
    }
    let text = if at.0.rem_euclid(1000) == 0 {
        at_utc.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
    } else {
        at_utc.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
    };
    text.ok()
}

fn ser_timestamp<S: Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    match format_timestamp(*at) {
        Some(text) => s.serialize_str(&text),
        None => Err(serde::ser::Error::custom(format!(
            "timestamp `{}` is outside the years 0000 to 9999",
            at.0
        ))),
    }
}

fn ser_action<S: Serializer>(action: &Action, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(action_name(*action))
}

/// `ALLOW` or `DENY`.
pub fn unregistered_name(value: Unregistered) -> &'static str {
    match value {
        Unregistered::Allow => "ALLOW",
        Unregistered::Deny => "DENY",
    }
}

/// The inverse of [`unregistered_name`]; exact and case-sensitive.
pub fn parse_unregistered(name: &str) -> Option<Unregistered> {
    [Unregistered::Allow, Unregistered::Deny]
        .into_iter()
        .find(|&u| unregistered_name(u) == name)
}

fn ser_unregistered<S: Serializer>(value: &Unregistered, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(unregistered_name(*value))
}

fn ser_reason<S: Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reason_name(*reason))
}

// ---- lines → model ------------------------------------------------------------------------

/// Who [`UserLine::into_user`] says locked a user that the import finds locked.
pub const IMPORT_LOCKED_BY: &str = "import";
/// Why [`UserLine::into_user`] says a user is locked.
pub const IMPORT_LOCK_REASON: &str = "locked in the imported directory";

impl UserLine {
    /// The user as the model holds it; `now` stamps the lock of a locked user.
    pub fn into_user(self, now: Timestamp) -> User {
        User {
            id: self.id,
            external_id: None,
            user_name: self.email.clone(),
            emails: vec![self.email],
            display_name: self.name,
            given_name: None,
            family_name: None,
            avatar_url: None,
            active: self.active,
            lock: self.locked.then(|| Lock {
                at: now,
                by: IMPORT_LOCKED_BY.to_owned(),
                reason: IMPORT_LOCK_REASON.to_owned(),
            }),
            mfa: Mfa::from(self.mfa),
            manager: self.manager,
            created_at: self.created,
            updated_at: self.created,
        }
    }

    pub fn to_user(&self, now: Timestamp) -> User {
        self.clone().into_user(now)
    }
}

/// The membership a group line's member becomes.
pub fn membership(group_id: &str, user_id: &str, now: Timestamp) -> Membership {
    Membership {
        group_id: group_id.to_owned(),
        user_id: user_id.to_owned(),
        joined_at: now,
        source: MembershipSource::Idp,
    }
}

impl GroupLine {
    /// The group without its members (those become [`membership`]s), stamped `now`.
    pub fn to_group(&self, now: Timestamp) -> Group {
        let mut roles: Vec<Role> = Vec::with_capacity(self.roles.len());
        for &role in &self.roles {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Group {
            id: self.id.clone(),
            external_id: None,
            display_name: self.name.clone(),
            description: String::new(),
            roles,
            managed_by: ManagedBy::External,
            created_at: now,
            updated_at: now,
        }
    }
}

impl PolicyLine {
    /// The policy as the model holds it, stamped `now`. A tool list containing `*` covers
    /// every tool.
    pub fn into_policy(self, now: Timestamp) -> Policy {
        let tools = if self.tools.iter().any(|t| t == "*") {
            Tools::All
        } else {
            Tools::Only(self.tools)
        };
        let agents = match self.agents {
            Some(ids) if !ids.iter().any(|a| a == "*") => Agents::Only(ids),
            _ => Agents::All,
        };
        Policy {
            agents,
            step_up: self.step_up.map(StepUp::from),
            expression: self.expression,
            id: self.id,
            name: self.name,
            description: String::new(),
            connector: self.connector,
            tools,
            scope: Scope {
                all_users: self.scope.all_users,
                users: self.scope.users,
                groups: self.scope.groups,
            },
            action: self.action,
            approval_flow_id: self.approval_flow,
            conditions: Vec::new(),
            enabled: self.enabled,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn to_policy(&self, now: Timestamp) -> Policy {
        self.clone().into_policy(now)
    }
}

impl AgentLine {
    /// The agent as the model holds it, stamped `now`.
    pub fn to_agent(&self, now: Timestamp) -> Agent {
        Agent {
            id: self.id.clone(),
            display_name: self.name.clone(),
            vendor: self.vendor.clone(),
            aliases: self.aliases.clone(),
            enabled: self.enabled,
            scope: Scope {
                all_users: self.scope.all_users,
                users: self.scope.users.clone(),
                groups: self.scope.groups.clone(),
            },
            created_at: now,
            updated_at: now,
        }
    }
}

impl Files {
    /// The model these files describe, exactly as [`crate::read_dir`] builds it: agents and
    /// the setting, users, then groups with one membership per member in file order, then
    /// policies.
    pub fn to_model(&self, now: Timestamp) -> Model {
        let mut model = Model {
            agents: self.agents.iter().map(|a| a.to_agent(now)).collect(),
            settings: Settings {
                unregistered_agents: self
                    .settings
                    .map(|s| s.unregistered_agents)
                    .unwrap_or_default(),
            },
            revision: 0,
            users: self.users.iter().map(|u| u.to_user(now)).collect(),
            groups: Vec::with_capacity(self.groups.len()),
            memberships: Vec::new(),
            policies: self.policies.iter().map(|p| p.to_policy(now)).collect(),
        };
        for group in &self.groups {
            model.groups.push(group.to_group(now));
            model.memberships.extend(
                group
                    .members
                    .iter()
                    .map(|member| membership(&group.id, member, now)),
            );
        }
        model
    }

    /// The approval flows these files describe, stamped `now`, in file order.
    pub fn to_flows(&self, now: Timestamp) -> Vec<ApprovalFlow> {
        self.flows.iter().filter_map(|f| f.to_flow(now)).collect()
    }

    /// Exports a model, each file sorted by id, with no requests. `settings.json` is written
    /// when the model has agents or a non-default setting; a policy's agent selector only when
    /// it lists agents.
    ///
    /// Lossy where the format has no field: external ids, given and family names, avatars,
    /// secondary emails, lock details, group descriptions and ownership, policy descriptions,
    /// approval flows (and the flows policies name) and all timestamps but `created`. Memberships naming a user or group the
    /// model lacks are dropped, since the reader rejects them. Fails on what would change a
    /// decision if dropped (policy conditions) or that the reader would reject (an empty tool
    /// or agent list, an empty step-up requirement, a creation time outside the years 0000 to
    /// 9999). A step-up requirement on a policy that is not STEP_UP is never read: dropped.
    pub fn from_model(model: &Model) -> Result<Files> {
        let mut users = Vec::with_capacity(model.users.len());
        for user in &model.users {
            if format_timestamp(user.created_at).is_none() {
                return Err(export_error(
                    "user",
                    &user.id,
                    format!(
                        "created_at `{}` is outside the years 0000 to 9999",
                        user.created_at.0
                    ),
                ));
            }
            users.push(UserLine {
                id: user.id.clone(),
                email: user.emails.first().unwrap_or(&user.user_name).to_owned(),
                name: user.display_name.clone(),
                created: user.created_at,
                active: user.active,
                locked: user.lock.is_some(),
                mfa: match user.mfa {
                    Mfa::Enabled => Some(true),
                    Mfa::Disabled => Some(false),
                    Mfa::Unknown => None,
                },
                manager: user.manager.clone(),
            });
        }
        users.sort_by(|a, b| a.id.cmp(&b.id));

        let user_ids: std::collections::HashSet<&str> =
            model.users.iter().map(|u| u.id.as_str()).collect();
        let mut members: HashMap<&str, Vec<String>> = HashMap::new();
        for m in &model.memberships {
            if user_ids.contains(m.user_id.as_str()) {
                members
                    .entry(m.group_id.as_str())
                    .or_default()
                    .push(m.user_id.clone());
            }
        }
        let mut groups = Vec::with_capacity(model.groups.len());
        for group in &model.groups {
            let mut group_members = members.remove(group.id.as_str()).unwrap_or_default();
            group_members.sort();
            group_members.dedup();
            groups.push(GroupLine {
                id: group.id.clone(),
                name: group.display_name.clone(),
                roles: group.roles.clone(),
                members: group_members,
            });
        }
        groups.sort_by(|a, b| a.id.cmp(&b.id));

        let mut policies = Vec::with_capacity(model.policies.len());
        for policy in &model.policies {
            if !policy.conditions.is_empty() {
                return Err(export_error(
                    "policy",
                    &policy.id,
                    "conditions cannot be expressed in the workload format".to_owned(),
                ));
            }
            let tools = match &policy.tools {
                Tools::All => vec!["*".to_owned()],
                Tools::Only(tools) if tools.is_empty() => {
                    return Err(export_error(
                        "policy",
                        &policy.id,
                        "an empty tool list cannot be expressed in the workload format".to_owned(),
                    ));
                }
                Tools::Only(tools) => tools.clone(),
            };
            if policy.agents == Agents::Only(Vec::new()) {
                return Err(export_error(
                    "policy",
                    &policy.id,
                    "an empty agent list cannot be expressed in the workload format".to_owned(),
                ));
            }
            // A requirement on another action is never read (dropped); an empty one on a
            // STEP_UP policy would be met by any authentication, which the format cannot say.
            let step_up = match &policy.step_up {
                Some(step_up) if policy.action == Action::StepUp => {
                    if step_up.is_empty() {
                        return Err(export_error(
                            "policy",
                            &policy.id,
                            "an empty step-up requirement cannot be expressed in the workload \
                             format"
                                .to_owned(),
                        ));
                    }
                    Some(StepUpLine::from(step_up))
                }
                _ => None,
            };
            policies.push(PolicyLine {
                id: policy.id.clone(),
                name: policy.name.clone(),
                connector: policy.connector.clone(),
                tools,
                scope: ScopeLine {
                    all_users: policy.scope.all_users,
                    users: policy.scope.users.clone(),
                    groups: policy.scope.groups.clone(),
                },
                agents: match &policy.agents {
                    Agents::All => None,
                    Agents::Only(ids) => Some(ids.clone()),
                },
                action: policy.action,
                step_up,
                // Flows are not in the model, so neither is what a policy's id would name.
                approval_flow: None,
                expression: policy.expression.clone(),
                enabled: policy.enabled,
            });
        }
        policies.sort_by(|a, b| a.id.cmp(&b.id));

        let mut agents: Vec<AgentLine> = model
            .agents
            .iter()
            .map(|agent| AgentLine {
                id: agent.id.clone(),
                name: agent.display_name.clone(),
                vendor: agent.vendor.clone(),
                aliases: agent.aliases.clone(),
                enabled: agent.enabled,
                scope: ScopeLine {
                    all_users: agent.scope.all_users,
                    users: agent.scope.users.clone(),
                    groups: agent.scope.groups.clone(),
                },
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        let settings =
            (!agents.is_empty() || model.settings != Settings::default()).then_some(SettingsFile {
                unregistered_agents: model.settings.unregistered_agents,
            });

        Ok(Files {
            agents,
            settings,
            users,
            groups,
            policies,
            requests: Vec::new(),
            flows: Vec::new(),
        })
    }
}

fn export_error(what: &'static str, id: &str, problem: String) -> Error {
    Error::Export {
        what,
        id: id.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(parse_action(action_name(action)), Some(action));
        }
        for reason in REASONS {
            assert_eq!(parse_reason(reason_name(reason)), Some(reason));
        }
        for role in [Role::Admin, Role::ReadOnly] {
            assert_eq!(parse_role(role_name(role)), Some(role));
        }
        assert_eq!(parse_role("Admin"), None);
    }

    #[test]
    fn older_spellings_are_still_read() {
        for (name, action) in [
            ("allow", Action::Allow),
            ("step-up", Action::StepUp),
            ("Step up", Action::StepUp),
            ("require_approval", Action::RequireApproval),
            ("POLICY_ACTION_DENY", Action::Deny),
            ("DECISION_STEP_UP", Action::StepUp),
        ] {
            assert_eq!(parse_action(name), Some(action), "{name}");
        }
        for (name, reason) in [
            ("policy", Reason::Policy),
            ("no-matching-policy", Reason::NoMatchingPolicy),
            ("REASON_USER_LOCKED", Reason::UserLocked),
        ] {
            assert_eq!(parse_reason(name), Some(reason), "{name}");
        }
        assert_eq!(parse_action("permit"), None);
        assert_eq!(parse_action("POLICY_ACTION_UNSPECIFIED"), None);
        assert_eq!(parse_reason("REASON_"), None);
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2026-01-05T12:34:56Z").unwrap();
        assert_eq!(t, Timestamp(1_767_616_496_000));
        assert_eq!(format_timestamp(t).unwrap(), "2026-01-05T12:34:56Z");
        // Offsets are normalised to UTC.
        assert_eq!(parse_timestamp("2026-01-05T14:34:56+02:00"), Some(t));
        // Milliseconds survive; finer digits are truncated.
        let t = parse_timestamp("2026-01-05T12:34:56.1239Z").unwrap();
        assert_eq!(t, Timestamp(1_767_616_496_123));
        assert_eq!(format_timestamp(t).unwrap(), "2026-01-05T12:34:56.123Z");
        // Before the epoch, truncation still goes towards the past.
        let t = parse_timestamp("1969-12-31T23:59:59.9995Z").unwrap();
        assert_eq!(t, Timestamp(-1));
        assert_eq!(format_timestamp(t).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_timestamp("2026-01-05"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(format_timestamp(Timestamp(i64::MAX)), None);
    }

    #[test]
    fn lines_serialize_in_format_order() {
        let user = UserLine {
            id: "u0000042".into(),
            email: "user42@example.com".into(),
            name: "Edsger Allen".into(),
            created: parse_timestamp("2026-01-05T12:34:56Z").unwrap(),
            active: true,
            locked: false,
            mfa: Some(true),
            manager: None,
        };
        assert_eq!(
            serde_json::to_string(&user).unwrap(),
            r#"{"id":"u0000042","email":"user42@example.com","name":"Edsger Allen","created":"2026-01-05T12:34:56Z","active":true,"locked":false,"mfa":true}"#
        );
        let group = GroupLine {
            id: "g00017".into(),
            name: "eng-admin-17".into(),
            roles: vec![Role::ReadOnly],
            members: vec!["u0000003".into(), "u0000042".into()],
        };
        assert_eq!(
            serde_json::to_string(&group).unwrap(),
            r#"{"id":"g00017","name":"eng-admin-17","roles":["read_only"],"members":["u0000003","u0000042"]}"#
        );
        let policy = PolicyLine {
            id: "pol-000123".into(),
            name: "allow github 2 tools".into(),
            connector: "github".into(),
            tools: vec!["create_issue".into(), "list_repo".into()],
            scope: ScopeLine {
                all_users: false,
                users: vec!["u0000042".into()],
                groups: vec!["g00017".into()],
            },
            agents: None,
            action: Action::StepUp,
            step_up: None,
            approval_flow: None,
            expression: None,
            enabled: true,
        };
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"id":"pol-000123","name":"allow github 2 tools","connector":"github","tools":["create_issue","list_repo"],"scope":{"all_users":false,"users":["u0000042"],"groups":["g00017"]},"action":"STEP_UP","enabled":true}"#
        );
        let request = RequestLine {
            id: "r0000007".into(),
            user: "u0000042".into(),
            agent: "agent-00003".into(),
            connector: "github".into(),
            tool: "create_issue".into(),
            authentication: None,
            arguments: None,
            kind: "targeted".into(),
            expected: Expected {
                decision: Action::StepUp,
                reason: Reason::Policy,
                policy_id: Some("pol-000123".into()),
            },
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"id":"r0000007","user":"u0000042","agent":"agent-00003","connector":"github","tool":"create_issue","kind":"targeted","expected":{"decision":"STEP_UP","reason":"POLICY","policy_id":"pol-000123"}}"#
        );
    }

    #[test]
    fn flow_lines_serialize_in_format_order_and_become_flows() {
        let flow = FlowLine {
            id: "flow-deploys".into(),
            name: "Deploys".into(),
            description: String::new(),
            steps: vec![
                FlowStepLine {
                    approvers: vec!["manager".into()],
                    min_approvals: 1,
                    timeout_s: Some(1800),
                },
                FlowStepLine {
                    approvers: vec!["group:g00017".into(), "user:u0000042".into()],
                    min_approvals: 2,
                    timeout_s: None,
                },
            ],
            request_ttl_s: None,
            grant: "window".into(),
            window_s: Some(3600),
            any_arguments: false,
        };
        assert_eq!(
            serde_json::to_string(&flow).unwrap(),
            r#"{"id":"flow-deploys","name":"Deploys","steps":[{"approvers":["manager"],"min_approvals":1,"timeout_s":1800},{"approvers":["group:g00017","user:u0000042"],"min_approvals":2}],"grant":"window","window_s":3600,"any_arguments":false}"#
        );
        let model = flow.to_flow(Timestamp(5)).unwrap();
        assert_eq!(model.grant, GrantMode::Window { seconds: 3600 });
        assert_eq!(
            model.request_ttl_secs,
            pdp::approval::DEFAULT_REQUEST_TTL_SECS
        );
        assert_eq!(
            model.steps[1].approvers,
            [
                Approver::Group("g00017".into()),
                Approver::User("u0000042".into())
            ]
        );
        for approver in &model.steps[1].approvers {
            assert_eq!(
                parse_approver(&approver_name(approver)).as_ref(),
                Some(approver)
            );
        }
        for bad in ["boss", "user:", "group", "Manager", "team:x"] {
            assert_eq!(parse_approver(bad), None, "{bad}");
        }
    }

    #[test]
    fn wildcard_anywhere_covers_all_tools() {
        let line = PolicyLine {
            id: "p".into(),
            name: String::new(),
            connector: "c".into(),
            tools: vec!["a".into(), "*".into()],
            scope: ScopeLine::default(),
            agents: None,
            action: Action::Allow,
            step_up: None,
            approval_flow: None,
            expression: None,
            enabled: true,
        };
        assert_eq!(line.into_policy(Timestamp(0)).tools, Tools::All);
    }
}
