//! The files an export writes and apply reads: `policies.json`, the policies as a team edits
//! them (sorted by name, then id; no timestamps, so a diff shows only real changes), and
//! `export.json`, what the server had when exported (its revision, each policy's id and
//! `updated_at`): the base apply checks the server against.

use anyhow::Context;
use portcullis_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const POLICIES: &str = "policies.json";
pub const EXPORT: &str = "export.json";
/// Largest file read, in bytes.
const MAX_FILE: u64 = 64 << 20;

/// `policies.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesFile {
    pub policies: Vec<PolicyDoc>,
}

/// One policy as the file keeps it. Field order is the file's; optional parts are left out
/// when unset so files stay short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Absent for a policy to create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub connector: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_tools: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    pub scope: ScopeDoc,
    /// `allow`, `step-up`, `require-approval` or `deny`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_flow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionDoc>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Absent: every agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUpDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDoc {
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_users: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionDoc {
    pub attribute: String,
    /// `in` or `not_in`.
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpDoc {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr_values: Vec<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// `export.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    /// The server's store revision the export read.
    pub revision: u64,
    /// Every policy the server had, by id, with its `updated_at` in milliseconds since the
    /// Unix epoch.
    pub policies: Vec<Version>,
    /// Every agent, likewise (absent in an export older than agents.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<Version>>,
    /// Every stored approval flow, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_flows: Option<Vec<Version>>,
    /// The groups holding a role, with their roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_roles: Option<Vec<super::sections::GroupRolesDoc>>,
    /// The settings and the default flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<super::sections::SettingsDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub id: String,
    pub updated_at_ms: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

const ACTIONS: [(&str, pb::PolicyAction); 4] = [
    ("allow", pb::PolicyAction::Allow),
    ("step-up", pb::PolicyAction::StepUp),
    ("require-approval", pb::PolicyAction::RequireApproval),
    ("deny", pb::PolicyAction::Deny),
];

impl PolicyDoc {
    /// What the server stores for what a person may write two ways: an empty flow id or
    /// expression is none, a `max_age` of 0 is none. Without this, `diff` would show a change
    /// that `apply` does not make.
    pub fn normalize(&mut self) {
        if self.approval_flow_id.as_deref() == Some("") {
            self.approval_flow_id = None;
        }
        if self.expression.as_deref() == Some("") {
            self.expression = None;
        }
        if let Some(step_up) = &mut self.step_up
            && step_up.max_age == Some(0)
        {
            step_up.max_age = None;
        }
    }

    pub fn from_wire(p: &pb::Policy) -> PolicyDoc {
        let scope = p.scope.clone().unwrap_or_default();
        PolicyDoc {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            connector: p.connector.clone(),
            all_tools: p.all_tools,
            tools: p.tools.clone(),
            scope: ScopeDoc {
                all_users: scope.all_users,
                user_ids: scope.user_ids,
                group_ids: scope.group_ids,
            },
            action: ACTIONS
                .iter()
                .find(|(_, a)| *a == p.action())
                .map_or("unspecified", |(name, _)| name)
                .to_owned(),
            approval_flow_id: Some(p.approval_flow_id.clone()).filter(|f| !f.is_empty()),
            conditions: p
                .conditions
                .iter()
                .map(|c| ConditionDoc {
                    attribute: c.attribute.clone(),
                    operator: c.operator.clone(),
                    values: c.values.clone(),
                })
                .collect(),
            enabled: p.enabled,
            agents: p.agents.as_ref().map(|a| a.agent_ids.clone()),
            step_up: p.step_up.as_ref().map(|s| StepUpDoc {
                acr_values: s.acr_values.clone(),
                amr_values: s.amr_values.clone(),
                max_age: (s.max_age > 0).then_some(s.max_age),
            }),
            expression: Some(p.expression.clone()).filter(|e| !e.is_empty()),
        }
    }

    /// The wire policy; `index` names the entry in errors.
    pub fn to_wire(&self, index: usize) -> anyhow::Result<pb::Policy> {
        let action = ACTIONS
            .iter()
            .find(|(name, _)| *name == self.action)
            .map(|(_, a)| *a)
            .with_context(|| {
                format!(
                    "{POLICIES}: policies[{index}].action: `{}` is not one of allow, step-up, \
                     require-approval, deny",
                    self.action
                )
            })?;
        Ok(pb::Policy {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            connector: self.connector.clone(),
            all_tools: self.all_tools,
            tools: self.tools.clone(),
            scope: Some(pb::PolicyScope {
                all_users: self.scope.all_users,
                user_ids: self.scope.user_ids.clone(),
                group_ids: self.scope.group_ids.clone(),
            }),
            action: action.into(),
            approval_flow_id: self.approval_flow_id.clone().unwrap_or_default(),
            conditions: self
                .conditions
                .iter()
                .map(|c| pb::PolicyCondition {
                    attribute: c.attribute.clone(),
                    operator: c.operator.clone(),
                    values: c.values.clone(),
                })
                .collect(),
            enabled: self.enabled,
            created_at: None,
            updated_at: None,
            agents: self.agents.as_ref().map(|ids| pb::PolicyAgents {
                agent_ids: ids.clone(),
            }),
            step_up: self.step_up.as_ref().map(|s| pb::StepUpRequirement {
                acr_values: s.acr_values.clone(),
                amr_values: s.amr_values.clone(),
                max_age: s.max_age.unwrap_or(0),
            }),
            expression: self.expression.clone().unwrap_or_default(),
        })
    }
}

impl PolicyDoc {
    /// The policy as the decision engine holds it, for deciding offline (`policies test
    /// --offline`). A policy without an id (one to create) is named `new-<index>`. Not
    /// validated: `apply` is where the server's rules hold.
    pub fn to_model(&self, index: usize) -> anyhow::Result<pdp::Policy> {
        use pdp::{Action, Agents, Condition, Operator, Scope, StepUp, Tools};
        let wire = self.to_wire(index)?;
        let action = match wire.action() {
            pb::PolicyAction::Allow => Action::Allow,
            pb::PolicyAction::StepUp => Action::StepUp,
            pb::PolicyAction::RequireApproval => Action::RequireApproval,
            pb::PolicyAction::Deny | pb::PolicyAction::Unspecified => Action::Deny,
        };
        let conditions = self
            .conditions
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let operator = match c.operator.as_str() {
                    "in" => Operator::In,
                    "not_in" => Operator::NotIn,
                    other => anyhow::bail!(
                        "{POLICIES}: policies[{index}].conditions[{j}].operator: `{other}` is \
                         not `in` or `not_in`"
                    ),
                };
                Ok(Condition {
                    attribute: c.attribute.clone(),
                    operator,
                    values: c.values.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(pdp::Policy {
            id: if self.id.is_empty() {
                format!("new-{index}")
            } else {
                self.id.clone()
            },
            name: self.name.clone(),
            description: self.description.clone(),
            connector: self.connector.clone(),
            tools: if self.all_tools {
                Tools::All
            } else {
                Tools::Only(self.tools.clone())
            },
            scope: Scope {
                all_users: self.scope.all_users,
                users: self.scope.user_ids.clone(),
                groups: self.scope.group_ids.clone(),
            },
            action,
            agents: self.agents.clone().map_or(Agents::All, Agents::Only),
            step_up: self.step_up.as_ref().map(|s| StepUp {
                acr_values: s.acr_values.clone(),
                amr_values: s.amr_values.clone(),
                max_age: s.max_age,
            }),
            approval_flow_id: self.approval_flow_id.clone(),
            conditions,
            expression: self.expression.clone(),
            enabled: self.enabled,
            ..pdp::Policy::default()
        })
    }
}

/// Sorts for a stable file: by name ignoring case, then id.
pub fn sort(policies: &mut [PolicyDoc]) {
    policies.sort_by(|a, b| (a.name.to_lowercase(), &a.id).cmp(&(b.name.to_lowercase(), &b.id)));
}

/// Reads and parses a JSON file of at most [`MAX_FILE`] bytes.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE {
        anyhow::bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{} does not parse", path.display()))
}

/// Reads a YAML file (JSON is YAML too) of at most [`MAX_FILE`] bytes, through JSON values so
/// one set of serde types reads both.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} (UTF-8 text)", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        anyhow::bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    refuse_aliases(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} does not parse: {e}", path.display()))?;
    let [doc] = docs.as_slice() else {
        anyhow::bail!("{} must hold exactly one YAML document", path.display());
    };
    let value =
        yaml_to_json(doc, 0).with_context(|| format!("{} does not parse", path.display()))?;
    serde_json::from_value(value).with_context(|| format!("{} does not parse", path.display()))
}

/// The loader copies what an alias names, so a few lines of nested aliases can expand into
/// billions of nodes: a case file has no need of them, and one that uses them is refused before
/// it is loaded.
fn refuse_aliases(text: &str) -> anyhow::Result<()> {
    struct Aliases(bool);
    impl yaml_rust2::parser::EventReceiver for Aliases {
        fn on_event(&mut self, event: yaml_rust2::parser::Event) {
            if matches!(event, yaml_rust2::parser::Event::Alias(_)) {
                self.0 = true;
            }
        }
    }
    let mut aliases = Aliases(false);
    yaml_rust2::parser::Parser::new_from_str(text)
        .load(&mut aliases, true)
        .map_err(|e| anyhow::anyhow!("does not parse: {e}"))?;
    if aliases.0 {
        anyhow::bail!("YAML aliases (`*name`) are not supported: write the value out");
    }
    Ok(())
}

/// Deepest nesting a YAML file may have.
const MAX_DEPTH: usize = 64;

fn yaml_to_json(yaml: &yaml_rust2::Yaml, depth: usize) -> anyhow::Result<serde_json::Value> {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    if depth > MAX_DEPTH {
        anyhow::bail!("nested deeper than {MAX_DEPTH} levels");
    }
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => {
            let f: f64 = r
                .parse()
                .with_context(|| format!("`{r}` is not a number"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .with_context(|| format!("`{r}` is not a finite number"))?
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| yaml_to_json(item, depth + 1))
                .collect::<anyhow::Result<_>>()?,
        ),
        Yaml::Hash(hash) => {
            let mut object = serde_json::Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => anyhow::bail!("a key must be a string, not {other:?}"),
                };
                object.insert(key, yaml_to_json(value, depth + 1)?);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) => anyhow::bail!("aliases are not supported"),
        Yaml::BadValue => anyhow::bail!("a value does not parse"),
    })
}

/// Writes pretty JSON with a final newline, through a temporary file renamed into place so a
/// crash never leaves half a file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
