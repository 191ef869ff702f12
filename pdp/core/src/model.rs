//! The directory and policy model: what the store persists and a snapshot is built from.
//!
//! Plain data with public fields. Invariants that need the whole model (unique ids, existing
//! references) are the store's to keep; the snapshot tolerates their absence (a policy naming a
//! missing user or group matches nobody).

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall clock now, in milliseconds since the Unix epoch (0 if the clock is set before
    /// it).
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// As RFC 3339 in UTC (`2026-01-02T03:04:05.678Z`; the fraction only when there is one),
    /// or `None` outside the years RFC 3339 can write (0000 to 9999). The one place times are
    /// written so.
    pub fn rfc3339(self) -> Option<String> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()?
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    }
}

/// Everything a snapshot is built from, as of one store revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The store revision this model was read at.
    pub revision: u64,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub memberships: Vec<Membership>,
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub agents: Vec<Agent>,
    #[serde(default)]
    pub settings: Settings,
}

/// An AI agent that acts for users: what gateways name in a request's `agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Agent {
    /// The name gateways send (`claude`, `chatgpt`, an in-house agent's name); exact.
    pub id: String,
    pub display_name: String,
    /// Free text: who makes it.
    pub vendor: String,
    /// Other names the same agent arrives under (OAuth client ids, name variants); exact, and
    /// unique across agents' ids and aliases.
    pub aliases: Vec<String>,
    /// False: the org-wide kill switch is thrown, every request through it is denied.
    pub enabled: bool,
    /// Whom the agent may act for.
    pub scope: Scope,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            id: String::new(),
            display_name: String::new(),
            vendor: String::new(),
            aliases: Vec::new(),
            enabled: true,
            scope: Scope {
                all_users: true,
                ..Scope::default()
            },
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

/// Organisation-wide settings that decisions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub unregistered_agents: Unregistered,
}

/// What happens to a request from an agent no registered agent's id or alias names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unregistered {
    /// It goes on to the policies, matching only those for all agents (the default, so that
    /// deployments without a registry answer as before).
    #[default]
    Allow,
    /// Denied with `UnknownAgent`.
    Deny,
}

/// A person the identity provider knows; agents act on their behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Server-assigned and stable; never reused.
    pub id: String,
    /// The identity provider's id for this user.
    pub external_id: Option<String>,
    /// The login name (SCIM `userName`); usually the email. Looked up case-insensitively.
    pub user_name: String,
    /// The first is the primary one. Looked up case-insensitively.
    pub emails: Vec<String>,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub avatar_url: Option<String>,
    /// False when the identity provider deactivated the user.
    pub active: bool,
    /// Set by an administrator; the identity provider never clears it.
    pub lock: Option<Lock>,
    pub mfa: Mfa,
    /// The user's manager, as a user reference (the SCIM enterprise extension's
    /// `manager.value`, or the import's `manager`): who approves for them where a flow asks
    /// for "the requester's manager".
    pub manager: Option<String>,
    /// When the user was provisioned.
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Default for User {
    fn default() -> Self {
        User {
            id: String::new(),
            external_id: None,
            user_name: String::new(),
            emails: Vec::new(),
            display_name: String::new(),
            given_name: None,
            family_name: None,
            avatar_url: None,
            active: true,
            lock: None,
            mfa: Mfa::Unknown,
            manager: None,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

impl User {
    /// The email people see: the primary (first) email, else the user name.
    pub fn email(&self) -> &str {
        self.emails.first().unwrap_or(&self.user_name)
    }

    /// The keys a decision finds this user by besides their ids: every email and the user
    /// name, [normalized](crate::identity::normalize), non-empty, without repeats, sorted.
    pub fn logins(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .emails
            .iter()
            .chain(std::iter::once(&self.user_name))
            .filter(|n| !n.is_empty())
            .map(|n| crate::identity::normalize(n).into_owned())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// What people see: Locked beats Inactive beats Active, as in the decision rule.
    pub fn status(&self) -> UserStatus {
        if self.lock.is_some() {
            UserStatus::Locked
        } else if !self.active {
            UserStatus::Inactive
        } else {
            UserStatus::Active
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Inactive,
    Locked,
}

/// Who locked a user, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub at: Timestamp,
    pub by: String,
    pub reason: String,
}

/// Whether the user has multi-factor authentication, as the identity provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mfa {
    Enabled,
    Disabled,
    #[default]
    Unknown,
}

impl From<Option<bool>> for Mfa {
    fn from(value: Option<bool>) -> Self {
        match value {
            Some(true) => Mfa::Enabled,
            Some(false) => Mfa::Disabled,
            None => Mfa::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    /// Server-assigned (or kept from an import) and read-only.
    pub id: String,
    pub external_id: Option<String>,
    pub display_name: String,
    pub description: String,
    /// The admin-API roles every member holds.
    pub roles: Vec<Role>,
    pub managed_by: ManagedBy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A role over the admin API itself; it never affects decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    ReadOnly,
}

/// Where a group is managed: synced groups belong to the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedBy {
    /// Synced from the identity provider, which wins on the next sync.
    #[default]
    External,
    /// Created by an administrator here.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub group_id: String,
    pub user_id: String,
    pub joined_at: Timestamp,
    pub source: MembershipSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipSource {
    #[default]
    Idp,
    Local,
}

/// Grants (or restricts) some tools of one connector to a scope of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    /// A connector name such as `github`; compared exactly.
    pub connector: String,
    pub tools: Tools,
    pub scope: Scope,
    pub action: Action,
    /// Which agents the policy applies to.
    pub agents: Agents,
    /// What a `StepUp` policy requires of the caller's authentication; met, it counts as an
    /// Allow. `None` (or on other actions): never met.
    pub step_up: Option<StepUp>,
    /// Which approval flow handles a `RequireApproval` answer.
    pub approval_flow_id: Option<String>,
    /// All must hold for the policy to apply.
    pub conditions: Vec<Condition>,
    /// A condition in CEL over the request, the user and the time ([`crate::expression`]);
    /// it must hold too. Checked when the policy is written.
    pub expression: Option<String>,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            id: String::new(),
            name: String::new(),
            description: String::new(),
            connector: String::new(),
            tools: Tools::All,
            scope: Scope::default(),
            action: Action::Deny,
            agents: Agents::All,
            step_up: None,
            approval_flow_id: None,
            conditions: Vec::new(),
            expression: None,
            enabled: true,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

/// The tools of its connector a policy covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tools {
    /// Every tool of the connector, including names no policy lists.
    All,
    /// Exactly these tool names; compared exactly.
    Only(Vec<String>),
}

impl Tools {
    pub fn covers(&self, tool: &str) -> bool {
        match self {
            Tools::All => true,
            Tools::Only(tools) => tools.iter().any(|t| t == tool),
        }
    }
}

/// The agents a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agents {
    /// Every agent, registered or not (what a policy without a selector means).
    #[default]
    All,
    /// Exactly these registered agents, by id (a request naming one by an alias is covered).
    Only(Vec<String>),
}

/// What a step-up asks of the user's authentication (the OpenID Connect claims a gateway reads
/// from the user's token). At least one part is set; all set parts must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepUp {
    /// The authentication context class (`acr`) must be one of these.
    pub acr_values: Vec<String>,
    /// Every one of these authentication methods (`amr`) must have been used.
    pub amr_values: Vec<String>,
    /// The user authenticated at most this many seconds ago.
    pub max_age: Option<u64>,
}

impl StepUp {
    /// Whether `authentication`, at time `now`, meets this requirement. No authentication never
    /// does; an authentication time in the future counts as now.
    pub fn met_by(&self, authentication: Option<&Authentication>, now: Timestamp) -> bool {
        let Some(auth) = authentication else {
            return false;
        };
        let acr = self.acr_values.is_empty() || self.acr_values.contains(&auth.acr);
        let amr = self.amr_values.iter().all(|m| auth.amr.contains(m));
        let age = match self.max_age {
            None => true,
            Some(max_age) => auth.auth_time.is_some_and(|at| {
                let age_ms = now.0.saturating_sub(at.0).max(0);
                age_ms / 1000 <= i64::try_from(max_age).unwrap_or(i64::MAX)
            }),
        };
        acr && amr && age
    }

    pub fn is_empty(&self) -> bool {
        self.acr_values.is_empty() && self.amr_values.is_empty() && self.max_age.is_none()
    }
}

/// How the user authenticated, as the gateway read it from their token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Authentication {
    /// The authentication context class reference (`acr`).
    pub acr: String,
    /// The authentication methods references (`amr`).
    pub amr: Vec<String>,
    /// When the user authenticated (`auth_time`).
    pub auth_time: Option<Timestamp>,
}

/// Who a policy applies to: everyone, or the listed users plus the members of the listed groups.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Scope {
    pub all_users: bool,
    /// User ids.
    pub users: Vec<String>,
    /// Group ids.
    pub groups: Vec<String>,
}

/// A policy's action, and the decision it yields. Ordered from least to most restrictive, so
/// the most restrictive of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    StepUp,
    RequireApproval,
    Deny,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Allow,
        Action::StepUp,
        Action::RequireApproval,
        Action::Deny,
    ];
}

/// A test on one request attribute. An absent attribute fails every condition: a policy with
/// conditions applies only when the caller supplies what it tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub attribute: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// The attribute equals one of the values.
    In,
    /// The attribute is present and equals none of the values.
    NotIn,
}

impl Condition {
    pub fn holds(&self, attributes: &dyn Attributes) -> bool {
        match attributes.get(&self.attribute) {
            None => false,
            Some(value) => {
                let listed = self.values.iter().any(|v| v == value);
                match self.operator {
                    Operator::In => listed,
                    Operator::NotIn => !listed,
                }
            }
        }
    }
}

/// Request attributes that conditions test (the AuthZEN "context").
pub trait Attributes {
    fn get(&self, key: &str) -> Option<&str>;
}

impl<S: std::hash::BuildHasher> Attributes for std::collections::HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        std::collections::HashMap::get(self, key).map(String::as_str)
    }
}

impl Attributes for std::collections::BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, key).map(String::as_str)
    }
}

/// No attributes at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAttributes;

impl Attributes for NoAttributes {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::Timestamp;

    #[test]
    fn times_are_written_in_rfc3339_utc_and_out_of_range_is_none() {
        assert_eq!(
            Timestamp(1_767_225_600_123).rfc3339().as_deref(),
            Some("2026-01-01T00:00:00.123Z")
        );
        assert_eq!(
            Timestamp(0).rfc3339().as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        // Year 10000: RFC 3339 has four digits for the year.
        assert_eq!(Timestamp(253_402_300_800_000).rfc3339(), None);
    }
}
