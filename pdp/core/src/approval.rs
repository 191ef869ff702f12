//! Approval flows and approval requests: what a `RequireApproval` answer turns into, and the
//! grant that lets the retried call through.
//!
//! Plain data, like [`crate::model`]. The state machine (who may approve, escalation, expiry)
//! lives in the `approvals` crate; the one thing the decision rule needs is a [`Grant`]: an
//! approved request, already checked usable by its caller, that turns a `RequireApproval`
//! answer for exactly the approved call into an Allow ([`crate::Reason::Approved`]).
//!
//! A grant is bound to the call's arguments by the SHA-256 digest of their RFC 8785 (JSON
//! Canonicalization Scheme) form ([`arguments_digest`]): the same JSON object, whatever its
//! key order or number spelling, has one digest.

use crate::decide::Arguments;
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

/// The id of the flow used when neither the deciding policy nor the organisation names one:
/// one approval by any member of a group holding the Admin role, requests pending at most an
/// hour, one call per approval.
pub const BUILTIN_FLOW_ID: &str = "builtin-admins";

/// How long a request may stay pending when a flow does not say: 24 hours.
pub const DEFAULT_REQUEST_TTL_SECS: u64 = 24 * 60 * 60;

/// Who approves what a `RequireApproval` policy holds back, in how many steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalFlow {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Taken in order: a request starts at the first; a step that times out escalates to the
    /// next (after the last, the request expires). At least one.
    pub steps: Vec<ApprovalStep>,
    /// How long a request may stay pending, in seconds, whatever its steps.
    pub request_ttl_secs: u64,
    /// What an approval grants.
    pub grant: GrantMode,
    /// The grant covers any arguments of the tool, not only the approved ones.
    pub any_arguments: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Default for ApprovalFlow {
    fn default() -> Self {
        ApprovalFlow {
            id: String::new(),
            name: String::new(),
            description: String::new(),
            steps: Vec::new(),
            request_ttl_secs: DEFAULT_REQUEST_TTL_SECS,
            grant: GrantMode::Once,
            any_arguments: false,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

impl ApprovalFlow {
    /// The built-in flow ([`BUILTIN_FLOW_ID`]).
    pub fn builtin() -> ApprovalFlow {
        ApprovalFlow {
            id: BUILTIN_FLOW_ID.to_owned(),
            name: "Administrators".to_owned(),
            description: "One approval by any member of a group holding the Admin role.".to_owned(),
            steps: vec![ApprovalStep {
                approvers: vec![Approver::Admins],
                min_approvals: 1,
                timeout_secs: None,
            }],
            request_ttl_secs: 60 * 60,
            grant: GrantMode::Once,
            any_arguments: false,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

/// One step of a flow: who may approve at it, and how many of them must.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalStep {
    /// At least one.
    pub approvers: Vec<Approver>,
    /// Distinct eligible people who must approve; at least 1.
    pub min_approvals: u32,
    /// After this many seconds at this step, the request escalates to the next step (or
    /// expires, at the last). `None`: only the request's TTL ends it.
    pub timeout_secs: Option<u64>,
}

/// Who may approve at a step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approver {
    /// This user (by id).
    User(String),
    /// Any member of this group (by id).
    Group(String),
    /// The requester's manager (the user their `manager` names).
    Manager,
    /// Any member of a group holding the Admin role.
    Admins,
}

/// What an approval grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantMode {
    /// One allowed call.
    #[default]
    Once,
    /// Any number of calls for this many seconds after the approval.
    Window { seconds: u64 },
}

/// The states of an approval request, named as the OpenID AuthZEN access request draft names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl RequestState {
    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        self != RequestState::Pending && self != RequestState::Approved
    }

    pub fn name(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
        }
    }
}

/// A request for approval of one call, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalRequest {
    pub id: String,
    /// The gateway's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// The user the call is for, by id (resolved when the request was made).
    pub user_id: String,
    /// The agent as the decision saw it: a registered agent's id, or the name an unregistered
    /// agent arrived under.
    pub agent: String,
    pub connector: String,
    pub tool: String,
    /// Lowercase hex SHA-256 of the arguments' RFC 8785 form ([`arguments_digest`]).
    pub arguments_digest: String,
    /// The arguments as sent, for approvers to read.
    pub arguments: Arguments,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The agent's free-text reason for the call.
    pub justification: String,
    /// The policy whose `RequireApproval` answer the request is for.
    pub policy_id: String,
    /// The flow as it stood when the request was made: later edits do not change the rules a
    /// request is judged by.
    pub flow: ApprovalFlow,
    pub state: RequestState,
    /// The step awaiting approvals (an index into `flow.steps`).
    pub step: u32,
    /// When the current step began.
    pub step_started_at: Timestamp,
    pub approvals: Vec<Approval>,
    /// The denial, if one ended the request.
    pub denial: Option<Approval>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Pending requests expire at this time.
    pub expires_at: Timestamp,
    /// When approved: the grant lasts until then (a `once` grant too, until used).
    pub approved_until: Option<Timestamp>,
    /// A `once` grant was used by this decision.
    pub used_by: Option<String>,
    /// Who cancelled, or why the request ended without a person (`expired`).
    pub ended_by: Option<String>,
}

impl Default for ApprovalRequest {
    fn default() -> Self {
        ApprovalRequest {
            id: String::new(),
            idempotency_key: None,
            user_id: String::new(),
            agent: String::new(),
            connector: String::new(),
            tool: String::new(),
            arguments_digest: String::new(),
            arguments: Arguments::new(),
            attributes: std::collections::BTreeMap::new(),
            justification: String::new(),
            policy_id: String::new(),
            flow: ApprovalFlow::default(),
            state: RequestState::Pending,
            step: 0,
            step_started_at: Timestamp::default(),
            approvals: Vec::new(),
            denial: None,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            expires_at: Timestamp::default(),
            approved_until: None,
            used_by: None,
            ended_by: None,
        }
    }
}

/// One person's approval (or denial) of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Approval {
    /// The approver's user id.
    pub user_id: String,
    /// The step they approved at.
    pub step: u32,
    pub comment: String,
    pub at: Timestamp,
}

impl ApprovalRequest {
    /// The grant this request gives at `now`, if it is approved and still usable: within its
    /// window, and (for a `once` grant) not yet used. Whether it covers a given call is the
    /// decision rule's to say.
    pub fn grant(&self, now: Timestamp) -> Option<Grant<'_>> {
        if self.state != RequestState::Approved || self.used_by.is_some() {
            return None;
        }
        if self.approved_until.is_some_and(|until| now >= until) {
            return None;
        }
        Some(Grant {
            user_id: &self.user_id,
            agent: &self.agent,
            connector: &self.connector,
            tool: &self.tool,
            arguments_digest: (!self.flow.any_arguments).then_some(&*self.arguments_digest),
        })
    }
}

/// A usable approval, as the decision rule sees it: which call it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    pub user_id: &'a str,
    /// A registered agent's id, or an unregistered agent's name.
    pub agent: &'a str,
    pub connector: &'a str,
    pub tool: &'a str,
    /// Lowercase hex SHA-256 of the approved arguments' RFC 8785 form; `None`: any arguments.
    pub arguments_digest: Option<&'a str>,
}

/// The SHA-256 digest of `arguments` in RFC 8785 form, lowercase hex. No arguments digest as
/// the empty object `{}`.
pub fn arguments_digest(arguments: Option<&Arguments>) -> String {
    use sha2::Digest as _;
    let empty = Arguments::new();
    let arguments = arguments.unwrap_or(&empty);
    // Serializing a map of JSON values cannot fail; an empty canonical form would still hash.
    let canonical = serde_json_canonicalizer::to_vec(arguments).unwrap_or_default();
    let digest = sha2::Sha256::digest(&canonical);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: serde_json::Value) -> Arguments {
        match value {
            serde_json::Value::Object(map) => map,
            _ => Arguments::new(),
        }
    }

    #[test]
    fn the_digest_ignores_key_order_and_number_spelling() {
        let a = args(json!({"repo": "acme/api", "count": 1.0, "nested": {"b": 1, "a": [1, 2]}}));
        let b = args(json!({"nested": {"a": [1, 2], "b": 1}, "count": 1, "repo": "acme/api"}));
        assert_eq!(arguments_digest(Some(&a)), arguments_digest(Some(&b)));
        let c = args(json!({"repo": "acme/api", "count": 2}));
        assert_ne!(arguments_digest(Some(&a)), arguments_digest(Some(&c)));
    }

    #[test]
    fn the_digest_is_sha256_of_the_rfc8785_form() {
        // RFC 8785 section 3.2.2's ordering example, reduced: keys sort by UTF-16 code units.
        let a = args(json!({"b": "x", "a": true, "\u{20ac}": null, "1": 1e21}));
        let canonical = serde_json_canonicalizer::to_string(&a).unwrap_or_default();
        assert_eq!(canonical, r#"{"1":1e+21,"a":true,"b":"x","€":null}"#);
        // `{}` hashes to SHA-256("{}").
        assert_eq!(
            arguments_digest(None),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn an_approved_request_grants_until_used_or_past_its_window() {
        let mut request = ApprovalRequest {
            state: RequestState::Approved,
            user_id: "u1".into(),
            arguments_digest: "d".into(),
            approved_until: Some(Timestamp(1_000)),
            ..ApprovalRequest::default()
        };
        let grant = request.grant(Timestamp(999));
        assert_eq!(grant.and_then(|g| g.arguments_digest), Some("d"));
        assert!(request.grant(Timestamp(1_000)).is_none());
        request.flow.any_arguments = true;
        assert_eq!(
            request.grant(Timestamp(0)).map(|g| g.arguments_digest),
            Some(None)
        );
        request.used_by = Some("decision".into());
        assert!(request.grant(Timestamp(0)).is_none());
        request.used_by = None;
        request.state = RequestState::Pending;
        assert!(request.grant(Timestamp(0)).is_none());
    }
}
