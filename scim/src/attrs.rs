//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5 and §3.9): which attributes an answer
//! carries. Comma-separated paths, in any case, with sub-attributes (`name.givenName`,
//! `emails.value`) and extension attributes by their full URN
//! (`urn:…:enterprise:2.0:User:manager`). `id`, `schemas` and `meta.resourceType` are always
//! returned.

use crate::http::Ctx;
use crate::json;
use crate::schema::Resource;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Lower-cased paths; `None`: every attribute.
    include: Option<Vec<String>>,
    exclude: Vec<String>,
    core: String,
}

fn paths(text: &str) -> Vec<String> {
    text.split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

impl Projection {
    pub fn from_ctx(ctx: &Ctx, resource: Resource) -> Projection {
        Projection {
            include: ctx.param("attributes").map(paths).filter(|p| !p.is_empty()),
            exclude: ctx
                .param("excludedattributes")
                .map(paths)
                .unwrap_or_default(),
            core: resource.core_schema().to_lowercase(),
        }
    }

    /// A path without the core schema's URN prefix: `urn:…:core:2.0:user:username` → `username`.
    fn relative<'p>(&self, path: &'p str) -> &'p str {
        path.strip_prefix(self.core.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or(path)
    }

    /// The path as segments against `doc`'s top-level names: the first is a top-level name
    /// (lower-cased; an extension's URN for its attributes), then sub-attributes.
    fn segments(&self, doc: &Map<String, Value>, path: &str) -> Vec<String> {
        let path = self.relative(path);
        if path.starts_with("urn:") {
            // The longest top-level name (an extension URN) the path starts with.
            let extension = doc
                .keys()
                .map(|k| k.to_lowercase())
                .filter(|k| {
                    path == k.as_str()
                        || path
                            .strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.starts_with(':'))
                })
                .max_by_key(String::len);
            if let Some(extension) = extension {
                let rest = &path[extension.len()..];
                let mut segments = vec![extension.clone()];
                if let Some(rest) = rest.strip_prefix(':') {
                    segments.extend(rest.split('.').map(str::to_owned));
                }
                return segments;
            }
            return vec![path.to_owned()];
        }
        path.split('.').map(str::to_owned).collect()
    }

    /// `resource` as the answer shows it.
    pub fn apply(&self, resource: &Value) -> Value {
        let Value::Object(doc) = resource else {
            return resource.clone();
        };
        if self.include.is_none() && self.exclude.is_empty() {
            return resource.clone();
        }
        let mut out = match &self.include {
            Some(include) => {
                let paths: Vec<Vec<String>> =
                    include.iter().map(|p| self.segments(doc, p)).collect();
                let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
                match included(resource, &refs) {
                    Value::Object(out) => out,
                    _ => Map::new(),
                }
            }
            None => doc.clone(),
        };
        for path in &self.exclude {
            let segments = self.segments(doc, path);
            excluded(&mut out, &segments);
        }
        // Always returned.
        for key in ["id", "schemas"] {
            if let Some(value) = json::get(resource, key) {
                json::set(&mut out, key, value.clone());
            }
        }
        if let Some(kind) = json::get(resource, "meta").and_then(|m| json::get(m, "resourceType")) {
            json::with_object(&mut out, "meta", |meta| {
                json::set(meta, "resourceType", kind.clone());
            });
        }
        Value::Object(out)
    }
}

/// The parts of `value` the paths name (each path relative to `value`).
fn included(value: &Value, paths: &[&[String]]) -> Value {
    match value {
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                let lower = key.to_lowercase();
                let under: Vec<&[String]> = paths
                    .iter()
                    .filter_map(|p| match p.split_first() {
                        Some((first, rest)) if *first == lower => Some(rest),
                        _ => None,
                    })
                    .collect();
                if under.is_empty() {
                    continue;
                }
                if under.iter().any(|rest| rest.is_empty()) {
                    out.insert(key.clone(), value.clone());
                } else {
                    let part = included(value, &under);
                    if !is_empty(&part) {
                        out.insert(key.clone(), part);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| included(item, paths))
                .filter(|part| !is_empty(part))
                .collect(),
        ),
        // A sub-attribute of a simple value names nothing.
        _ => Value::Null,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Removes what `path` names from `object`.
fn excluded(object: &mut Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        json::remove(object, first);
        return;
    }
    let key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(first))
        .cloned();
    let Some(key) = key else {
        return;
    };
    let mut emptied = false;
    if let Some(value) = object.get_mut(&key) {
        match value {
            Value::Object(inner) => {
                excluded(inner, rest);
                emptied = inner.is_empty();
            }
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::Object(inner) = item {
                        excluded(inner, rest);
                    }
                }
                items.retain(|item| !is_empty(item));
                emptied = items.is_empty();
            }
            _ => {}
        }
    }
    if emptied {
        object.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projection(include: Option<&str>, exclude: Option<&str>) -> Projection {
        Projection {
            include: include.map(paths),
            exclude: exclude.map(paths).unwrap_or_default(),
            core: crate::schema::USER.to_lowercase(),
        }
    }

    fn user() -> Value {
        json!({
            "schemas": [crate::schema::USER, crate::schema::ENTERPRISE_USER],
            "id": "u1",
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            "active": true,
            crate::schema::ENTERPRISE_USER: {"department": "Math", "manager": {"value": "u2"}},
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        })
    }

    #[test]
    fn includes_and_always_returns_id_schemas_and_resource_type() {
        let shown = projection(Some("UserName,name.givenName,emails.value"), None).apply(&user());
        assert_eq!(
            shown,
            json!({
                "schemas": [crate::schema::USER, crate::schema::ENTERPRISE_USER],
                "id": "u1",
                "userName": "ada@example.com",
                "name": {"givenName": "Ada"},
                "emails": [{"value": "ada@example.com"}],
                "meta": {"resourceType": "User"}
            })
        );
        let urn = format!("{}:department", crate::schema::ENTERPRISE_USER);
        let shown = projection(Some(&urn), None).apply(&user());
        assert_eq!(
            shown[crate::schema::ENTERPRISE_USER],
            json!({"department": "Math"})
        );
        let core = format!("{}:userName", crate::schema::USER);
        let shown = projection(Some(&core), None).apply(&user());
        assert_eq!(shown["userName"], json!("ada@example.com"));
    }

    #[test]
    fn excludes() {
        let shown = projection(None, Some("emails, name.familyName,meta,id")).apply(&user());
        assert!(shown.get("emails").is_none());
        assert_eq!(shown["name"], json!({"givenName": "Ada"}));
        assert_eq!(shown["meta"], json!({"resourceType": "User"}));
        assert_eq!(shown["id"], json!("u1"));
    }
}
