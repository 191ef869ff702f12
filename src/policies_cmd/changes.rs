//! What applying a directory would change, computed from the server's policies, field by field.

use super::files::{ExportFile, PolicyDoc};
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
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
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

/// What changed on the server since the export, if anything, as people read it.
pub fn conflicts(base: &ExportFile, server: &[pb::Policy]) -> Option<String> {
    let base: BTreeMap<&str, i64> = base
        .policies
        .iter()
        .map(|v| (v.id.as_str(), v.updated_at_ms))
        .collect();
    let mut out = Vec::new();
    let mut present = HashSet::new();
    for p in server {
        present.insert(p.id.as_str());
        match base.get(p.id.as_str()) {
            None => out.push(format!("policy `{}` ({}) was created", p.id, p.name)),
            Some(at) if *at != super::millis(p.updated_at.as_ref()) => {
                out.push(format!("policy `{}` ({}) was changed", p.id, p.name));
            }
            Some(_) => {}
        }
    }
    for id in base.keys() {
        if !present.contains(id) {
            out.push(format!("policy `{id}` was deleted"));
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
        }
    }
    if changes.is_empty() {
        out.push_str("no changes: the server has exactly these policies\n");
    } else {
        let _ = writeln!(
            out,
            "{} changes: {created} to create, {updated} to update, {deleted} to delete",
            changes.len()
        );
    }
    out
}
