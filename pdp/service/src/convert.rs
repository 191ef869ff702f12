//! Between the wire types and `pdp`, at the edge: requests are validated here, once.

use crate::{Error, Result};
use pdp::{Action, Outcome, Reason};
use portcullis_proto::v1 as pb;

/// The longest user, agent, connector or tool name accepted; anything longer is a client bug.
const MAX_NAME_LEN: usize = pdp::identity::MAX_KEY_LEN;

/// The most `amr` values a request's authentication may carry.
const MAX_AMR: usize = 32;

/// The most request attributes (`attributes`) one check may carry by default. Keys and values
/// are bounded as names are.
pub const MAX_ATTRIBUTES: usize = 64;

/// The largest tool-call `arguments` one check may carry by default, encoded: conditions read
/// them and approvals digest them (canonical JSON) on every check, so they stay small.
pub const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;

/// The bounds of a check's `attributes` and `arguments` (`serve`'s and `sidecar`'s
/// `check-max-…` settings); errors name the setting to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckBounds {
    /// The most `attributes` entries (`check-max-attributes`).
    pub max_attributes: usize,
    /// The longest key or value of `attributes`, in bytes (`check-max-attribute-bytes`).
    pub max_attribute_bytes: usize,
    /// The largest `arguments`, encoded, in bytes (`check-max-arguments-bytes`).
    pub max_arguments_bytes: usize,
}

impl Default for CheckBounds {
    fn default() -> CheckBounds {
        CheckBounds {
            max_attributes: MAX_ATTRIBUTES,
            max_attribute_bytes: MAX_NAME_LEN,
            max_arguments_bytes: MAX_ARGUMENTS_BYTES,
        }
    }
}

impl CheckBounds {
    /// A request's attributes within bounds; `path` prefixes field names.
    pub fn attributes(
        &self,
        attributes: &std::collections::HashMap<String, String>,
        path: &str,
    ) -> Result<()> {
        if attributes.len() > self.max_attributes {
            return Err(Error::invalid(
                format!("{path}attributes"),
                format!(
                    "{} attributes, the limit is {} (`check-max-attributes`)",
                    attributes.len(),
                    self.max_attributes
                ),
            ));
        }
        let long = |value: &str, field: &str| {
            if value.len() > self.max_attribute_bytes {
                return Err(Error::invalid(
                    format!("{path}{field}"),
                    format!(
                        "is {} bytes long, the limit is {} (`check-max-attribute-bytes`)",
                        value.len(),
                        self.max_attribute_bytes
                    ),
                ));
            }
            Ok(())
        };
        for (key, value) in attributes {
            long(key, "attributes")?;
            long(value, &format!("attributes[{key}]"))?;
        }
        Ok(())
    }

    /// A tool call's arguments within bounds (encoded); `path` prefixes field names.
    pub fn arguments(&self, arguments: &prost_types::Struct, path: &str) -> Result<()> {
        let size = prost::Message::encoded_len(arguments);
        if size > self.max_arguments_bytes {
            return Err(Error::invalid(
                format!("{path}arguments"),
                format!(
                    "are {size} bytes encoded, the limit is {} (`check-max-arguments-bytes`)",
                    self.max_arguments_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// What a `CheckRequest` carries that `pdp` takes as its own types: converted once, then
/// borrowed by the [`pdp::Request`].
#[derive(Debug, Default)]
pub(crate) struct Owned {
    authentication: Option<pdp::Authentication>,
    arguments: Option<pdp::Arguments>,
}

/// Checks a `CheckRequest` and borrows it (and what [`owned`] made of it) as a `pdp::Request`
/// decided at `now`. `path` prefixes field names in errors (`checks[3].`), so a caller knows
/// which entry of a batch was wrong.
pub(crate) fn request<'a>(
    check: &'a pb::CheckRequest,
    owned: &'a Owned,
    now: pdp::Timestamp,
    path: &str,
    bounds: &CheckBounds,
) -> Result<pdp::Request<'a>> {
    // Destructured whole, so a new field cannot be silently ignored.
    let pb::CheckRequest {
        user,
        agent,
        connector,
        tool,
        attributes,
        min_revision: _,
        explain: _,
        authentication: _,
        arguments: _,
        approval_id,
    } = check;
    bounded(approval_id, path, "approval_id")?;
    bounds.attributes(attributes, path)?;
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
        context: pdp::Context {
            authentication: owned.authentication.as_ref(),
            arguments: owned.arguments.as_ref(),
            now,
            grant: None,
        },
    })
}

impl Owned {
    /// The request's arguments, as JSON.
    pub(crate) fn arguments(&self) -> Option<&pdp::Arguments> {
        self.arguments.as_ref()
    }
}

/// Converts a request's authentication and arguments (checked: bounded strings, a valid
/// time).
pub(crate) fn owned(check: &pb::CheckRequest, path: &str, bounds: &CheckBounds) -> Result<Owned> {
    let authentication = check
        .authentication
        .as_ref()
        .map(|a| authentication(a, path))
        .transpose()?;
    if let Some(arguments) = &check.arguments {
        bounds.arguments(arguments, path)?;
    }
    let arguments = check.arguments.as_ref().map(|s| object(&s.fields));
    Ok(Owned {
        authentication,
        arguments,
    })
}

/// A request's authentication, checked (bounded strings, at most [`MAX_AMR`] methods, a valid
/// time); `path` prefixes field names in errors. What Check and a request for approval take.
pub fn authentication(
    authentication: &pb::Authentication,
    path: &str,
) -> Result<pdp::Authentication> {
    let pb::Authentication {
        acr,
        amr,
        auth_time,
    } = authentication;
    bounded(acr, path, "authentication.acr")?;
    if amr.len() > MAX_AMR {
        return Err(Error::invalid(
            format!("{path}authentication.amr"),
            format!("{} values, the limit is {MAX_AMR}", amr.len()),
        ));
    }
    for (i, method) in amr.iter().enumerate() {
        bounded(method, path, &format!("authentication.amr[{i}]"))?;
    }
    let auth_time = match auth_time {
        None => None,
        Some(t) => Some(timestamp(t).ok_or_else(|| {
            Error::invalid(
                format!("{path}authentication.auth_time"),
                "is not a valid time",
            )
        })?),
    };
    Ok(pdp::Authentication {
        acr: acr.clone(),
        amr: amr.clone(),
        auth_time,
    })
}

/// A protobuf timestamp in milliseconds since the epoch, if it is a valid one.
fn timestamp(t: &prost_types::Timestamp) -> Option<pdp::Timestamp> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    let ms = t
        .seconds
        .checked_mul(1000)?
        .checked_add(i64::from(t.nanos / 1_000_000))?;
    Some(pdp::Timestamp(ms))
}

/// A protobuf `Struct` as a JSON object: a tool call's arguments as `pdp` takes them. A number
/// that is not finite becomes `null` (JSON has none).
pub fn struct_to_json(value: &prost_types::Struct) -> pdp::Arguments {
    object(&value.fields)
}

/// A JSON value as a protobuf `Value` (for showing a request's arguments).
pub fn json_to_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        // Protobuf numbers are doubles: large integers lose precision, as in any JSON mapping.
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`: a tool call's arguments as a `CheckRequest` carries
/// them (the `check` CLI, the console's "test this policy", the workload replay).
pub fn json_to_struct(object: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// A protobuf `Struct`'s fields as a JSON object (prost bounds its nesting when decoding).
fn object(
    fields: &std::collections::BTreeMap<String, prost_types::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    fields.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

fn json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(object(&s.fields)),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(json).collect()),
    }
}

/// What a Step up answer carries: the requirement and an RFC 9470 challenge for the gateway
/// to return as `WWW-Authenticate`.
pub(crate) fn step_up(requirement: &pdp::StepUp) -> (pb::StepUpRequirement, String) {
    let mut challenge = String::from("Bearer error=\"insufficient_user_authentication\"");
    let mut wanted = Vec::new();
    if !requirement.acr_values.is_empty() {
        wanted.push(format!("acr one of {}", requirement.acr_values.join(", ")));
    }
    if !requirement.amr_values.is_empty() {
        wanted.push(format!("amr all of {}", requirement.amr_values.join(", ")));
    }
    if let Some(max_age) = requirement.max_age {
        wanted.push(format!("authenticated within {max_age} s"));
    }
    let description = if wanted.is_empty() {
        "a stronger authentication is required".to_owned()
    } else {
        format!(
            "a stronger authentication is required: {}",
            wanted.join("; ")
        )
    };
    challenge.push_str(&format!(", error_description=\"{}\"", quoted(&description)));
    if !requirement.acr_values.is_empty() {
        let acr = requirement.acr_values.join(" ");
        challenge.push_str(&format!(", acr_values=\"{}\"", quoted(&acr)));
    }
    if let Some(max_age) = requirement.max_age {
        challenge.push_str(&format!(", max_age={max_age}"));
    }
    let wire = pb::StepUpRequirement {
        acr_values: requirement.acr_values.clone(),
        amr_values: requirement.amr_values.clone(),
        max_age: requirement.max_age.unwrap_or(0),
    };
    (wire, challenge)
}

/// A value for a quoted-string of an HTTP auth parameter (RFC 9110): quotes and backslashes
/// escaped, control characters left out.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

/// Refuses a name longer than decisions take ([`pdp::identity::MAX_KEY_LEN`] bytes).
pub fn bounded(value: &str, path: &str, field: &str) -> Result<()> {
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
        Reason::UnknownAgent => pb::Reason::UnknownAgent,
        Reason::AgentDisabled => pb::Reason::AgentDisabled,
        Reason::AgentNotAllowed => pb::Reason::AgentNotAllowed,
        Reason::StepUpMet => pb::Reason::StepUpMet,
        Reason::Approved => pb::Reason::Approved,
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
        Outcome::AgentNotCovered => pb::MatchOutcome::AgentNotCovered,
        Outcome::ConditionError => pb::MatchOutcome::ConditionError,
        Outcome::StepUpMet => pb::MatchOutcome::StepUpMet,
    }
}

pub(crate) fn policy_match(m: &pdp::PolicyMatch<'_>) -> pb::PolicyMatch {
    pb::PolicyMatch {
        policy_id: m.policy_id.to_owned(),
        policy_name: m.policy_name.to_owned(),
        action: action(m.action).into(),
        matched: matches!(m.outcome, Outcome::Matched | Outcome::StepUpMet),
        deciding: m.deciding,
        outcome: outcome(m.outcome).into(),
        detail: m.detail.clone().unwrap_or_default(),
    }
}

pub(crate) fn allowed_tool(t: &pdp::AllowedTool<'_>) -> pb::AllowedTool {
    pb::AllowedTool {
        connector: t.connector.to_owned(),
        tool: t.tool.to_owned(),
        decision: action(t.action).into(),
        policy_id: t.policy_id.to_owned(),
        conditional: t.conditional,
    }
}
