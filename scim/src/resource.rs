//! What users and groups share as SCIM resources: `meta` and its version, references between
//! them, reading values of the loose types IdPs send, and the audit log's view of a record.

use crate::schema::Resource;
use crate::{ScimError, clock, http, json};
use pdp::{ManagedBy, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value, json};
use store::View;

/// A reference to another resource: a user's group, a group's member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub id: String,
    pub display: String,
}

/// The groups a user belongs to that SCIM shows (those the identity provider manages).
pub fn user_groups(view: &View, user_id: &str) -> Vec<Ref> {
    view.groups_of(user_id)
        .filter_map(|(group_id, _)| view.group(group_id))
        .filter(|entry| entry.group.managed_by == ManagedBy::External)
        .map(|entry| Ref {
            id: entry.group.id.clone(),
            display: entry.group.display_name.clone(),
        })
        .collect()
}

/// The members of a group, by user id.
pub fn group_members(view: &View, group_id: &str) -> Vec<Ref> {
    view.members_of(group_id)
        .map(|(user_id, _)| Ref {
            id: user_id.to_string(),
            display: view
                .user(user_id)
                .map(|u| u.display_name.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// References to users by id, displayed with the view's names.
pub fn users_by_id(view: &View, ids: &[String]) -> Vec<Ref> {
    ids.iter()
        .map(|id| Ref {
            id: id.clone(),
            display: view
                .user(id)
                .map(|u| u.display_name.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// `[{"value": id, "display": name}]`, or nothing when empty.
pub fn refs(object: &mut Map<String, Value>, key: &str, refs: &[Ref]) {
    json::remove(object, key);
    if !refs.is_empty() {
        let items = refs
            .iter()
            .map(|r| json!({"value": r.id, "display": r.display}))
            .collect();
        object.insert(key.to_owned(), Value::Array(items));
    }
}

/// Completes a resource: `id`, then `meta` with the version (a hash of everything else; the
/// `$ref`s, which depend on the host the client called, are added after it), then the `$ref`s
/// of its references (a user's `groups`, a group's `members`).
pub fn finish(
    mut doc: Map<String, Value>,
    resource: Resource,
    id: &str,
    created: Timestamp,
    modified: Timestamp,
    base: &str,
) -> Value {
    let (refs_key, ref_endpoint) = match resource {
        Resource::User => ("groups", Resource::Group.endpoint()),
        Resource::Group => ("members", Resource::User.endpoint()),
    };
    json::remove(&mut doc, "id");
    json::remove(&mut doc, "meta");
    doc.insert("id".into(), Value::String(id.to_owned()));
    let version = http::version(&doc);
    if let Some(Value::Array(items)) = doc.get_mut(refs_key) {
        for item in items {
            if let Some(object) = item.as_object_mut()
                && let Some(value) = object.get("value").and_then(Value::as_str)
            {
                let reference = format!("{base}/{ref_endpoint}/{value}");
                object.insert("$ref".into(), Value::String(reference));
            }
        }
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": resource.name(),
            "created": clock::rfc3339(created),
            "lastModified": clock::rfc3339(modified),
            "location": format!("{base}/{}/{id}", resource.endpoint()),
            "version": version,
        }),
    );
    Value::Object(doc)
}

/// The version (`meta.version`) of a finished resource.
pub fn version_of(resource: &Value) -> &str {
    json::get(resource, "meta")
        .and_then(|m| json::get(m, "version"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A string attribute: absent, null and `""` are `None`; another type is 400 `invalidValue`.
pub fn string(object: &Value, key: &str, field: &str) -> crate::Result<Option<String>> {
    match json::get(object, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "`{field}` must be a string, not {}",
            kind(other)
        ))),
    }
}

/// A boolean attribute: `true`/`false`, or those words as strings in any case (Entra sends
/// `"False"`); absent and null are `None`.
pub fn boolean(value: Option<&Value>, field: &str) -> crate::Result<Option<bool>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(ScimError::invalid_value(format!(
            "`{field}` must be a boolean, not {other}"
        ))),
    }
}

/// The values of a multi-valued attribute: an array (a lone object counts as one value);
/// absent and null are none.
pub fn items<'v>(object: &'v Value, key: &str, field: &str) -> crate::Result<Vec<&'v Value>> {
    match json::get(object, key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().collect()),
        Some(item @ Value::Object(_)) => Ok(vec![item]),
        Some(other) => Err(ScimError::invalid_value(format!(
            "`{field}` must be an array, not {}",
            kind(other)
        ))),
    }
}

/// What JSON type `value` is, as an error message names it: `a string`, `null`…
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A request body as the stored document starts: an object without what the server assigns
/// (`id`, `meta`).
pub fn object(body: Value) -> crate::Result<Map<String, Value>> {
    let Value::Object(mut doc) = body else {
        return Err(ScimError::invalid_syntax(
            "the resource must be a JSON object",
        ));
    };
    json::remove(&mut doc, "id");
    json::remove(&mut doc, "meta");
    Ok(doc)
}

/// Makes `schemas` list every extension whose attributes the document has, and no longer list
/// the `known` extensions it does not have (a PATCH adds and removes extension attributes, and
/// leaves `schemas` to the server). Other URNs listed (Entra's extra group schemas) stay.
pub fn sync_schemas(doc: &mut Map<String, Value>, core: &str, known: &[&str]) {
    let mut schemas: Vec<Value> = match json::remove(doc, "schemas") {
        Some(Value::Array(schemas)) => schemas,
        _ => vec![Value::String(core.to_owned())],
    };
    let present = |urn: &str| json::field(doc, urn).is_some_and(Value::is_object);
    schemas.retain(|s| {
        s.as_str()
            .is_none_or(|urn| !known.iter().any(|k| k.eq_ignore_ascii_case(urn)) || present(urn))
    });
    for (key, value) in doc.iter() {
        let listed = schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(key)));
        if value.is_object()
            && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
            && !listed
        {
            schemas.push(Value::String(key.clone()));
        }
    }
    doc.insert("schemas".into(), Value::Array(schemas));
}

/// A record as the audit log keeps it.
pub fn audit_json<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// Deletes the user or group `id` (`record`, as the audit log shows it before), drops it from
/// every policy scope in the same transaction, auditing each policy it changes, and audits the
/// deletion as `user.delete` or `group.delete`, its detail `"<what>; named by no policy"` or
/// `"<what>; removed from policies …"`.
pub(crate) fn delete<T: Serialize>(
    tx: &mut store::Tx<'_, '_>,
    caller: &crate::auth::Caller,
    resource: Resource,
    id: &str,
    record: &T,
    what: String,
) -> crate::Result<()> {
    let group = resource == Resource::Group;
    let (kind, action) = if group {
        tx.delete_group(id)?;
        ("group", "group.delete")
    } else {
        tx.delete_user(id)?;
        ("user", "user.delete")
    };
    let mut cleaned: Vec<String> = Vec::new();
    for (policy, after) in tx.remove_from_scopes(group, id, crate::clock::now())? {
        let mut event = caller.event("policy.update", "policy", &after.id);
        event.detail = format!("{kind} `{id}` deleted");
        event.before = audit_json(&policy);
        event.after = audit_json(&after);
        tx.audit(event)?;
        cleaned.push(after.id);
    }
    let mut event = caller.event(action, kind, id);
    event.detail = if cleaned.is_empty() {
        format!("{what}; named by no policy")
    } else {
        format!("{what}; removed from policies {}", listed(&cleaned, 20))
    };
    event.before = audit_json(record);
    tx.audit(event)?;
    Ok(())
}

/// `` `a`, `b` `` and at most `shown` of them, then how many more.
pub fn listed(ids: &[String], shown: usize) -> String {
    let mut out = ids
        .iter()
        .take(shown)
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > shown {
        out.push_str(&format!(" and {} more", ids.len() - shown));
    }
    out
}
