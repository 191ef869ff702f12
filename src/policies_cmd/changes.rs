//! What applying a directory would change, computed from the server's policies (and agents,
//! flows, roles and settings, for the files the directory has), field by field.

use super::files::{ExportFile, PolicyDoc, Version};
use super::sections::{GroupRolesDoc, SettingsDoc};
use portcullis_proto::v1 as pb;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

/// Most conflicts [`conflicts`] names.
const MAX_NAMED: usize = 10;

#[derive(Debug)]
pub enum Change {
    Create(PolicyDoc),
    /// The policy's id and name, then each changed field: its name, the server's value and
    /// the directory's (as JSON, `null` when absent).
    Update {
        id: String,
        name: String,
        fields: Vec<(String, String, String)>,
    },
    Delete(PolicyDoc),
    /// A record of another file: its kind (`agent`, `approval flow`, `roles of group`,
    /// `settings`), what happens to it, its id and name, and for an update the changed fields.
    Other {
        kind: &'static str,
        verb: Verb,
        id: String,
        name: String,
        fields: Vec<(String, String, String)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Delete,
}

/// A record of another file, as JSON, by id (empty: one to create).
pub struct Item {
    pub id: String,
    pub name: String,
    pub value: serde_json::Value,
}

/// The changes from `server` to `local` for one kind, in the directory's order, deletions
/// last. With `absent` set, a record missing on one side is that value there (a group without
/// roles), so only updates come out.
pub fn between_items(
    kind: &'static str,
    local: &[Item],
    server: &[Item],
    absent: Option<&serde_json::Value>,
) -> Vec<Change> {
    let by_id: BTreeMap<&str, &Item> = server.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    let update = |id: &str, name: &str, old: &serde_json::Value, new: &serde_json::Value| {
        let fields = value_fields(old, new);
        (!fields.is_empty()).then(|| Change::Other {
            kind,
            verb: Verb::Update,
            id: id.to_owned(),
            name: name.to_owned(),
            fields,
        })
    };
    for item in local {
        seen.insert(item.id.as_str());
        match (item.id.is_empty(), by_id.get(item.id.as_str()), absent) {
            (false, Some(old), _) => {
                let name = if old.name.is_empty() {
                    &item.name
                } else {
                    &old.name
                };
                changes.extend(update(&item.id, name, &old.value, &item.value));
            }
            (false, None, Some(absent)) => {
                changes.extend(update(&item.id, &item.name, absent, &item.value));
            }
            _ => changes.push(Change::Other {
                kind,
                verb: Verb::Create,
                id: item.id.clone(),
                name: item.name.clone(),
                fields: Vec::new(),
            }),
        }
    }
    for old in server {
        if seen.contains(old.id.as_str()) {
            continue;
        }
        match absent {
            Some(absent) => changes.extend(update(&old.id, &old.name, &old.value, absent)),
            None => changes.push(Change::Other {
                kind,
                verb: Verb::Delete,
                id: old.id.clone(),
                name: old.name.clone(),
                fields: Vec::new(),
            }),
        }
    }
    changes
}

/// The changes, in the directory's order, deletions last.
pub fn between(local: &[PolicyDoc], server: &[pb::Policy]) -> anyhow::Result<Vec<Change>> {
    let server: BTreeMap<&str, PolicyDoc> = server
        .iter()
        .map(|p| (p.id.as_str(), PolicyDoc::from_wire(p)))
        .collect();
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    for (i, doc) in local.iter().enumerate() {
        if doc.id.is_empty() {
            changes.push(Change::Create(doc.clone()));
            continue;
        }
        if !seen.insert(doc.id.as_str()) {
            anyhow::bail!("policies[{i}].id: `{}` is listed twice", doc.id);
        }
        let Some(old) = server.get(doc.id.as_str()) else {
            anyhow::bail!(
                "policies[{i}].id: the server has no policy `{}`: leave `id` out to create a \
                 new one",
                doc.id
            );
        };
        let fields = fields(old, doc);
        if !fields.is_empty() {
            changes.push(Change::Update {
                id: doc.id.clone(),
                name: doc.name.clone(),
                fields,
            });
        }
    }
    for (id, old) in &server {
        if !seen.contains(id) {
            changes.push(Change::Delete(old.clone()));
        }
    }
    Ok(changes)
}

/// The top-level fields that differ, in the file's field order.
fn fields(old: &PolicyDoc, new: &PolicyDoc) -> Vec<(String, String, String)> {
    match (serde_json::to_value(old), serde_json::to_value(new)) {
        (Ok(old), Ok(new)) => value_fields(&old, &new),
        _ => Vec::new(),
    }
}

/// The top-level fields of two JSON objects that differ, in `new`'s field order.
fn value_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<(String, String, String)> {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (old, new) else {
        return Vec::new();
    };
    let mut names: Vec<&String> = new.keys().collect();
    names.extend(old.keys().filter(|k| !new.contains_key(*k)));
    let show =
        |v: Option<&serde_json::Value>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
    names
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| (k.clone(), show(old.get(k)), show(new.get(k))))
        .collect()
}

/// What changed since the export among records of one kind, by `(id, name, updated_at)`.
pub fn changed_since(
    kind: &str,
    base: &[Version],
    server: &[(String, String, i64)],
    out: &mut Vec<String>,
) {
    let base: BTreeMap<&str, i64> = base
        .iter()
        .map(|v| (v.id.as_str(), v.updated_at_ms))
        .collect();
    let mut present = HashSet::new();
    for (id, name, at) in server {
        present.insert(id.as_str());
        match base.get(id.as_str()) {
            None => out.push(format!("{kind} `{id}` ({name}) was created")),
            Some(then) if then != at => out.push(format!("{kind} `{id}` ({name}) was changed")),
            Some(_) => {}
        }
    }
    for id in base.keys() {
        if !present.contains(id) {
            out.push(format!("{kind} `{id}` was deleted"));
        }
    }
}

/// What changed on the server since the export, if anything, as people read it: the policies,
/// and the other kinds in `sections` (those the directory has files for).
pub fn conflicts(
    base: &ExportFile,
    server: &pb::ExportPoliciesResponse,
    sections: &super::Sections,
) -> Option<String> {
    let mut out = Vec::new();
    let stamp = |id: &str, name: &str, at: Option<&prost_types::Timestamp>| {
        (id.to_owned(), name.to_owned(), super::millis(at))
    };
    let policies: Vec<_> = server
        .policies
        .iter()
        .map(|p| stamp(&p.id, &p.name, p.updated_at.as_ref()))
        .collect();
    changed_since("policy", &base.policies, &policies, &mut out);
    if sections.agents.is_some()
        && let Some(then) = &base.agents
    {
        let now: Vec<_> = server
            .agents
            .iter()
            .map(|a| stamp(&a.id, &a.display_name, a.updated_at.as_ref()))
            .collect();
        changed_since("agent", then, &now, &mut out);
    }
    if sections.flows.is_some()
        && let Some(then) = &base.approval_flows
    {
        let now: Vec<_> = server
            .approval_flows
            .iter()
            .map(|f| stamp(&f.id, &f.name, f.updated_at.as_ref()))
            .collect();
        changed_since("approval flow", then, &now, &mut out);
    }
    if sections.roles.is_some()
        && let Some(then) = &base.group_roles
    {
        let now: Vec<GroupRolesDoc> = server
            .group_roles
            .iter()
            .map(GroupRolesDoc::from_wire)
            .collect();
        for group in &now {
            if then
                .iter()
                .all(|t| t.group_id != group.group_id || t.roles != group.roles)
            {
                out.push(format!(
                    "the roles of group `{}` ({}) were changed",
                    group.group_id, group.name
                ));
            }
        }
        for group in then {
            if now.iter().all(|n| n.group_id != group.group_id) {
                out.push(format!("group `{}` no longer holds a role", group.group_id));
            }
        }
    }
    if sections.settings.is_some()
        && let Some(then) = &base.settings
    {
        let now =
            SettingsDoc::from_wire(server.settings.as_ref(), &server.default_approval_flow_id);
        if now.unregistered_agents != then.unregistered_agents {
            out.push("the settings were changed".to_owned());
        }
        if now.default_approval_flow_id != then.default_approval_flow_id {
            out.push("the default approval flow was changed".to_owned());
        }
    }
    if out.is_empty() {
        return None;
    }
    let more = out.len().saturating_sub(MAX_NAMED);
    out.truncate(MAX_NAMED);
    let mut text = out.join("; ");
    if more > 0 {
        let _ = write!(text, " (and {more} more)");
    }
    Some(text)
}

/// For people: one line per created or deleted policy, one per changed field, then a count.
pub fn render(changes: &[Change]) -> String {
    let mut out = String::new();
    let (mut created, mut updated, mut deleted) = (0, 0, 0);
    for change in changes {
        match change {
            Change::Create(doc) => {
                created += 1;
                let _ = writeln!(
                    out,
                    "+ create {:?} ({}, {})",
                    doc.name, doc.connector, doc.action
                );
            }
            Change::Update { id, name, fields } => {
                updated += 1;
                let _ = writeln!(out, "~ update {id} {name:?}");
                for (field, old, new) in fields {
                    let _ = writeln!(out, "    {field}: {old} -> {new}");
                }
            }
            Change::Delete(doc) => {
                deleted += 1;
                let _ = writeln!(out, "- delete {} {:?}", doc.id, doc.name);
            }
            Change::Other {
                kind,
                verb,
                id,
                name,
                fields,
            } => {
                let (sign, word) = match verb {
                    Verb::Create => {
                        created += 1;
                        ("+", "create")
                    }
                    Verb::Update => {
                        updated += 1;
                        ("~", "update")
                    }
                    Verb::Delete => {
                        deleted += 1;
                        ("-", "delete")
                    }
                };
                let id = if id.is_empty() || id == kind {
                    String::new()
                } else {
                    format!(" {id}")
                };
                let name = if name.is_empty() {
                    String::new()
                } else {
                    format!(" {name:?}")
                };
                let _ = writeln!(out, "{sign} {word} {kind}{id}{name}");
                for (field, old, new) in fields {
                    let _ = writeln!(out, "    {field}: {old} -> {new}");
                }
            }
        }
    }
    if changes.is_empty() {
        out.push_str("no changes: the server has exactly what the directory holds\n");
    } else {
        let _ = writeln!(
            out,
            "{} changes: {created} to create, {updated} to update, {deleted} to delete",
            changes.len()
        );
    }
    out
}

/// For scripts (`diff --json`): each change with its kind, id, name and changed fields (the
/// server's value and the directory's, as JSON), and the counts `render` ends with.
pub fn to_json(changes: &[Change]) -> serde_json::Value {
    use serde_json::{Value, json};
    // The fields hold JSON text; a value that is not (none today) is kept as a string.
    let parsed = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::from(text));
    let fields = |fields: &[(String, String, String)]| -> Vec<Value> {
        fields
            .iter()
            .map(|(field, old, new)| {
                json!({ "field": field, "server": parsed(old), "directory": parsed(new) })
            })
            .collect()
    };
    let (mut created, mut updated, mut deleted) = (0, 0, 0);
    let mut out = Vec::new();
    for change in changes {
        let (verb, kind, id, name, changed) = match change {
            Change::Create(doc) => (Verb::Create, "policy", &doc.id, &doc.name, Vec::new()),
            Change::Update {
                id,
                name,
                fields: f,
            } => (Verb::Update, "policy", id, name, fields(f)),
            Change::Delete(doc) => (Verb::Delete, "policy", &doc.id, &doc.name, Vec::new()),
            Change::Other {
                kind,
                verb,
                id,
                name,
                fields: f,
            } => (*verb, *kind, id, name, fields(f)),
        };
        let word = match verb {
            Verb::Create => {
                created += 1;
                "create"
            }
            Verb::Update => {
                updated += 1;
                "update"
            }
            Verb::Delete => {
                deleted += 1;
                "delete"
            }
        };
        out.push(json!({
            "change": word,
            "kind": kind,
            "id": id,
            "name": name,
            "fields": changed,
        }));
    }
    json!({
        "changes": out,
        "created": created,
        "updated": updated,
        "deleted": deleted,
    })
}
