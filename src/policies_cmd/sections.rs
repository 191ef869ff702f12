//! The files beyond the policies: `agents.json` (the agent registry), `approval_flows.json` (the
//! stored approval flows), `roles.json` (the groups holding admin-API roles) and
//! `settings.json` (the unregistered-agents setting and the default approval flow). Each is
//! optional: absent, apply leaves that part of the server alone; present, the server's whole set
//! becomes the file's. Export writes one only when the server has something for it.
//!
//! Flows are kept in the model's own JSON form (what the store keeps), through the admin
//! crate's model↔wire conversions, without their timestamps.

use super::files::{self, ScopeDoc};
use anyhow::Context;
use portcullis_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

pub const AGENTS: &str = "agents.json";
pub const FLOWS: &str = "approval_flows.json";
pub const ROLES: &str = "roles.json";
pub const SETTINGS: &str = "settings.json";

/// `agents.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    pub agents: Vec<AgentDoc>,
}

/// One agent as the file keeps it, without timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDoc {
    pub id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The kill switch: shown, but changed only with `portcullis admin agents enable|disable`.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub scope: ScopeDoc,
}

fn yes() -> bool {
    true
}

impl AgentDoc {
    pub fn from_wire(a: &pb::Agent) -> AgentDoc {
        let scope = a.scope.clone().unwrap_or_default();
        AgentDoc {
            id: a.id.clone(),
            display_name: a.display_name.clone(),
            vendor: a.vendor.clone(),
            aliases: a.aliases.clone(),
            enabled: a.enabled,
            scope: ScopeDoc {
                all_users: scope.all_users,
                user_ids: scope.user_ids,
                group_ids: scope.group_ids,
            },
        }
    }

    pub fn to_wire(&self) -> pb::Agent {
        pb::Agent {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            vendor: self.vendor.clone(),
            aliases: self.aliases.clone(),
            enabled: self.enabled,
            scope: Some(pb::PolicyScope {
                all_users: self.scope.all_users,
                user_ids: self.scope.user_ids.clone(),
                group_ids: self.scope.group_ids.clone(),
            }),
            created_at: None,
            updated_at: None,
        }
    }
}

/// `approval_flows.json`: each flow as the model's JSON (`pdp::ApprovalFlow`), without
/// `created_at` and `updated_at`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsFile {
    pub approval_flows: Vec<Value>,
}

/// The server's flow as the file keeps it.
pub fn flow_doc(wire: &pb::ApprovalFlow) -> anyhow::Result<Value> {
    let mut flow = admin::approvals::flows::flow_from(wire.clone())
        .map_err(|e| anyhow::anyhow!("the server sent a flow that does not read back: {e}"))?;
    // `flow_from` leaves the id to the caller.
    flow.id = wire.id.clone();
    let mut value = serde_json::to_value(&flow)?;
    if let Value::Object(fields) = &mut value {
        fields.remove("created_at");
        fields.remove("updated_at");
        if flow.id.is_empty() {
            fields.remove("id");
        }
    }
    Ok(value)
}

/// A flow of the file, read as the model reads it (unknown fields refused, naming them), and
/// as the file would keep it again (defaults filled in), so a diff compares like with like.
pub fn read_flow(i: usize, value: &Value) -> anyhow::Result<(pb::ApprovalFlow, Value)> {
    let at = format!("{FLOWS}: approval_flows[{i}]");
    let known = serde_json::to_value(pdp::ApprovalFlow::default())?;
    let step_known = serde_json::to_value(pdp::ApprovalStep::default())?;
    unknown(&at, value, &known)?;
    if let Some(steps) = value.get("steps").and_then(Value::as_array) {
        for (j, step) in steps.iter().enumerate() {
            unknown(&format!("{at}.steps[{j}]"), step, &step_known)?;
        }
    }
    for stamp in ["created_at", "updated_at"] {
        if value.get(stamp).is_some() {
            anyhow::bail!("{at}.{stamp}: the server keeps it; leave it out");
        }
    }
    let flow: pdp::ApprovalFlow =
        serde_json::from_value(value.clone()).with_context(|| format!("{at} does not parse"))?;
    let wire = admin::approvals::flows::flow(&flow);
    let doc = flow_doc(&wire)?;
    Ok((wire, doc))
}

/// Refuses a field `known` (the model's, serialized) does not have.
fn unknown(at: &str, value: &Value, known: &Value) -> anyhow::Result<()> {
    let (Value::Object(fields), Value::Object(known)) = (value, known) else {
        anyhow::bail!("{at}: must be an object");
    };
    if let Some(field) = fields.keys().find(|k| !known.contains_key(*k)) {
        anyhow::bail!(
            "{at}: unknown field `{field}`, expected one of {}",
            known
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// `roles.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    pub group_roles: Vec<GroupRolesDoc>,
}

/// A group's roles; `name` is there to read (apply never renames a group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRolesDoc {
    pub group_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `admin`, `read-only`.
    pub roles: Vec<String>,
}

const ROLE_NAMES: [(&str, pb::Role); 2] = [
    ("admin", pb::Role::Admin),
    ("read-only", pb::Role::ReadOnly),
];

fn role_name(value: i32) -> String {
    ROLE_NAMES
        .iter()
        .find(|(_, r)| i32::from(*r) == value)
        .map_or_else(
            || format!("unknown-{value}"),
            |(name, _)| (*name).to_owned(),
        )
}

impl GroupRolesDoc {
    pub fn from_wire(g: &pb::GroupRoles) -> GroupRolesDoc {
        let mut roles: Vec<String> = g.roles.iter().map(|r| role_name(*r)).collect();
        roles.sort();
        GroupRolesDoc {
            group_id: g.group_id.clone(),
            name: g.name.clone(),
            roles,
        }
    }

    pub fn to_wire(&self, field: &str) -> anyhow::Result<pb::GroupRoles> {
        let roles = self
            .roles
            .iter()
            .enumerate()
            .map(|(j, name)| {
                ROLE_NAMES
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, r)| i32::from(*r))
                    .with_context(|| {
                        format!("{field}.roles[{j}]: `{name}` is not `admin` or `read-only`")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(pb::GroupRoles {
            group_id: self.group_id.clone(),
            name: self.name.clone(),
            roles,
        })
    }
}

/// `settings.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsDoc {
    /// `allow` (the default) or `deny`.
    #[serde(default = "allow")]
    pub unregistered_agents: String,
    /// Absent: the built-in flow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_approval_flow_id: String,
}

fn allow() -> String {
    "allow".to_owned()
}

impl SettingsDoc {
    pub fn from_wire(settings: Option<&pb::Settings>, default_flow: &str) -> SettingsDoc {
        let deny =
            settings.is_some_and(|s| s.unregistered_agents() == pb::UnregisteredAgents::Deny);
        SettingsDoc {
            unregistered_agents: if deny { "deny" } else { "allow" }.to_owned(),
            default_approval_flow_id: default_flow.to_owned(),
        }
    }

    /// Whether the server's settings are the defaults (no file is written then).
    pub fn is_default(&self) -> bool {
        *self == SettingsDoc::from_wire(None, "")
    }

    pub fn to_wire(&self) -> anyhow::Result<pb::Settings> {
        let unregistered = match self.unregistered_agents.as_str() {
            "allow" => pb::UnregisteredAgents::Allow,
            "deny" => pb::UnregisteredAgents::Deny,
            other => {
                anyhow::bail!("{SETTINGS}: unregistered_agents: `{other}` is not `allow` or `deny`")
            }
        };
        Ok(pb::Settings {
            unregistered_agents: unregistered.into(),
        })
    }
}

/// Reads `name` in `dir` if it is there.
pub fn read_optional<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    files::read_json(&path).map(Some)
}

/// Writes `name` in `dir` when there is something for it, and removes a stale one otherwise
/// (else an apply of the re-exported directory would bring back what the server dropped).
pub fn write_or_remove<T: Serialize>(
    dir: &Path,
    name: &str,
    value: Option<&T>,
) -> anyhow::Result<()> {
    let path = dir.join(name);
    match value {
        Some(value) => files::write_json(&path, value),
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        },
    }
}

/// The file a server error's field belongs to (`agents[2].scope` → `agents.json`), so the
/// message names the file to fix.
pub fn file_of(message: &str) -> Option<&'static str> {
    [
        ("policies[", files::POLICIES),
        ("agents[", AGENTS),
        ("approval_flows[", FLOWS),
        ("approval_flows:", FLOWS),
        ("group_roles[", ROLES),
        ("group_roles:", ROLES),
        ("settings.", SETTINGS),
    ]
    .iter()
    .find(|(prefix, _)| message.starts_with(prefix))
    .map(|(_, file)| *file)
}
