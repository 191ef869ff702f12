//! SCIM PATCH (RFC 7644 §3.5.2) on a resource's JSON, with the dialects real IdPs send.
//!
//! [`parse`] reads a PatchOp body; [`apply`] runs its operations in order on a clone of the
//! document and stores the result only if every one succeeded (all or nothing).
//!
//! Semantics (RFC 7644 §3.5.2.1–3), with the choices made where the RFC is silent:
//! - `add` with a path: a single-valued attribute is set; a multi-valued one gets the values
//!   appended, except a value equal to an existing one (complex values: the same `value`
//!   sub-attribute), whose other sub-attributes are merged into the existing value instead; a
//!   complex attribute is merged. `add` of `null` changes nothing. Without a path, `value` is an
//!   object whose attributes are each added that way.
//! - `replace` with a path replaces the attribute; a complex single-valued attribute (`name`, an
//!   extension object, `manager`) has the given sub-attributes replaced and the others kept
//!   (RFC 7644 §3.5.2.3); `null` or `[]` unassigns. Without a path, each attribute of `value` is
//!   replaced that way.
//! - `remove` needs a path (`noTarget` otherwise). It unassigns the attribute, the values a
//!   filter selects, or a sub-attribute; with a `value` on a multi-valued attribute (Entra:
//!   `"path":"members","value":[{"value":"id"}]`) only the given values go (compared like `add`
//!   compares). Removing what is not there (an absent attribute, a filter matching nothing)
//!   succeeds and changes nothing, so IdP retries are harmless.
//! - A value filter path (`emails[type eq "work"].value`) acts on the matching values; when none
//!   matches, `add`/`replace` of `attr[type eq "X"].sub` creates the value `{"type":"X","sub":…}`
//!   (Entra), any other `add`/`replace` fails with `noTarget`.
//! - A sub-attribute path on a multi-valued attribute without a filter (`emails.display`) acts on
//!   every value (`noTarget` for `add`/`replace` when there is none).
//! - Setting `primary` to true on values of a multi-valued attribute sets it to false on the
//!   others (RFC 7643 §2.4).
//! - Attribute names match existing keys case-insensitively; a created attribute is spelled as in
//!   the request. Null sub-attributes of added values are dropped (`"$ref": null` from Entra).
//! - Schema-URN paths (`urn:…:enterprise:2.0:User:department`) act inside the extension object,
//!   created when needed and dropped when emptied; a path that is a whole extension URN acts on
//!   the extension object. Without a path, a `value` key may also be a URN-qualified or dotted
//!   path (`"urn:…:User:department": "x"`, `"name.givenName": "x"`).
//! - Dialects: `op` in any case (`"Replace"`); the strings `"true"`/`"false"` in any case are
//!   booleans for `active`, the Portcullis extension's `mfaEnabled` and `primary`; the enterprise
//!   `manager` given as a bare id is `{"value": id}` (an empty string unassigns it).
//! - `id`, `meta`, `schemas` and `groups` are read-only: an operation that changes them fails
//!   with `mutability` (one that leaves them as they are, like Okta's rename carrying the `id`,
//!   passes). The caller sets `meta` and `schemas` itself after patching.
//! - Runs of adds to one multi-valued attribute (`emails`, `members`…, with a plain path) and
//!   runs of `members` removals (by value array or by `members[value eq "…"]`) are applied
//!   together with hashed look-ups, so a request adding 10,000 members or emails one operation
//!   at a time costs linear time, not quadratic. [`apply_within`] also bounds the values an
//!   attribute may reach after each operation, so no operation works on more than that.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::filter::{self, CompareOp, Expr, Filter, eq_ci, get_ci, to_lower};
use crate::path::{self, ENTERPRISE_USER, PORTCULLIS_USER, Path};
use crate::resource;
use crate::{Result, ScimError};

/// The `schemas` entry of a PatchOp request.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Top-level attributes no PATCH may change.
const READ_ONLY: &[&str] = &["id", "meta", "schemas", "groups"];

/// Multi-valued attributes of the core schemas.
const MULTI_VALUED: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "groups",
    "members",
    "schemas",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => "replace",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<Path>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body: `schemas` must contain
/// `urn:ietf:params:scim:api:messages:2.0:PatchOp` (else `invalidSyntax`), `Operations` a
/// non-empty array; `op` case-insensitive; `path` optional (an empty one is none) but required
/// by `remove` (`noTarget`); `value` required by `add` and `replace` (`invalidValue`). Paths are
/// within the default [`filter::Bounds`].
pub fn parse(body: &Value) -> Result<Vec<Operation>> {
    parse_within(body, filter::Bounds::default())
}

/// [`parse`] with paths within `bounds` (the server's filter settings).
pub fn parse_within(body: &Value, bounds: filter::Bounds) -> Result<Vec<Operation>> {
    let Some(body) = body.as_object() else {
        return Err(ScimError::invalid_syntax(
            "a PatchOp request body is a JSON object",
        ));
    };
    let is_patch = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case(PATCH_OP))
        });
    if !is_patch {
        return Err(ScimError::invalid_syntax(format!(
            "`schemas` must contain \"{PATCH_OP}\""
        )));
    }
    let operations = match get_ci(body, "Operations") {
        Some(Value::Array(operations)) if !operations.is_empty() => operations,
        Some(Value::Array(_)) => {
            return Err(ScimError::invalid_syntax("`Operations` is empty"));
        }
        Some(_) => {
            return Err(ScimError::invalid_syntax("`Operations` must be an array"));
        }
        None => return Err(ScimError::invalid_syntax("missing `Operations`")),
    };
    operations
        .iter()
        .enumerate()
        .map(|(i, operation)| {
            parse_operation(operation, bounds).map_err(|mut e| {
                e.detail = format!("Operations[{i}]: {}", e.detail);
                e
            })
        })
        .collect()
}

fn parse_operation(operation: &Value, bounds: filter::Bounds) -> Result<Operation> {
    let Some(operation) = operation.as_object() else {
        return Err(ScimError::invalid_syntax("an operation is a JSON object"));
    };
    let op = match get_ci(operation, "op") {
        Some(Value::String(op)) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(other) => {
            return Err(ScimError::invalid_syntax(format!(
                "unknown op {other}: expected \"add\", \"remove\" or \"replace\""
            )));
        }
        None => return Err(ScimError::invalid_syntax("missing `op`")),
    };
    let path = match get_ci(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(path::parse_within(text, bounds)?),
        Some(other) => {
            return Err(ScimError::invalid_path(format!(
                "`path` must be a string, not {other}"
            )));
        }
    };
    let value = get_ci(operation, "value").cloned();
    match op {
        Op::Add | Op::Replace if value.is_none() => {
            Err(ScimError::invalid_value(format!("`{op}` needs a `value`")))
        }
        Op::Remove if path.is_none() => Err(ScimError::no_target("`remove` needs a `path`")),
        _ => Ok(Operation { op, path, value }),
    }
}

/// Applies the operations in order to `resource`, all or nothing: on error `resource` is as it
/// was, and the detail names the failing operation (`Operations[2] (replace …): …`).
pub fn apply(resource: &mut Value, operations: &[Operation]) -> Result<()> {
    apply_within(resource, operations, usize::MAX)
}

/// [`apply`], refusing (`invalidValue`) an operation after which an attribute holds more than
/// `max_values` values (top-level arrays and arrays of top-level objects; a group's `members`
/// are bounded by the changes a request makes instead). Checked after every operation, so no
/// operation works on more than `max_values` values plus what it adds itself.
pub fn apply_within(
    resource: &mut Value,
    operations: &[Operation],
    max_values: usize,
) -> Result<()> {
    if !resource.is_object() {
        return Err(ScimError::internal(
            "PATCH of a document that is not an object",
        ));
    }
    let mut doc = resource.clone();
    let mut i = 0;
    while i < operations.len() {
        let run = &operations[i..];
        let n = run_len(run);
        let result = if n > 1 {
            apply_run(&mut doc, &run[..n], max_values)
        } else {
            apply_operation(&mut doc, &run[0])
                .and_then(|()| check_counts(&doc, max_values))
                .map_err(|e| (0, e))
        };
        result
            .and_then(|()| check_read_only(resource, &doc).map_err(|e| (0, e)))
            .map_err(|(at, e)| {
                let at = at.min(n.saturating_sub(1));
                locate(e, i + at, &run[at])
            })?;
        i += n.max(1);
    }
    *resource = doc;
    Ok(())
}

/// References the server renders into a document (a group's `members`, a user's `groups`):
/// not bounded by the values bound (members are bounded by the changes a request makes; groups
/// are read-only and never stored).
const REFERENCES: &[&str] = &["members", "groups"];

/// Refuses a document with an attribute holding more than `max` values: top-level arrays and
/// arrays in top-level objects (extensions), except [`REFERENCES`].
fn check_counts(doc: &Value, max: usize) -> Result<()> {
    let Some(root) = doc.as_object() else {
        return Ok(());
    };
    for (key, value) in root {
        match value {
            Value::Array(items)
                if items.len() > max && !REFERENCES.iter().any(|r| eq_ci(r, key)) =>
            {
                return Err(crate::limits::too_many_values(key, items.len(), max));
            }
            Value::Object(inner) => {
                for (sub, value) in inner {
                    if let Value::Array(items) = value
                        && items.len() > max
                    {
                        let name = format!("{key}.{sub}");
                        return Err(crate::limits::too_many_values(&name, items.len(), max));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn locate(mut error: ScimError, index: usize, operation: &Operation) -> ScimError {
    error.detail = match &operation.path {
        Some(path) => format!(
            "Operations[{index}] ({} {path}): {}",
            operation.op, error.detail
        ),
        None => format!("Operations[{index}] ({}): {}", operation.op, error.detail),
    };
    error
}

fn check_read_only(before: &Value, after: &Value) -> Result<()> {
    for name in READ_ONLY {
        let old = before.as_object().and_then(|o| get_ci(o, name));
        let new = after.as_object().and_then(|o| get_ci(o, name));
        if old != new {
            return Err(ScimError::mutability(format!(
                "`{name}` is read-only: it cannot be changed by PATCH"
            )));
        }
    }
    Ok(())
}

/// Where an attribute lives, for the dialect coercions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Root,
    Enterprise,
    Portcullis,
    Extension,
    /// Inside a complex attribute or a value of a multi-valued one.
    Nested,
}

fn has_urn_prefix(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn extension_scope(urn: &str) -> Scope {
    if urn.eq_ignore_ascii_case(ENTERPRISE_USER) {
        Scope::Enterprise
    } else if urn.eq_ignore_ascii_case(PORTCULLIS_USER) {
        Scope::Portcullis
    } else {
        Scope::Extension
    }
}

fn child_scope(scope: Scope, key: &str) -> Scope {
    if scope == Scope::Root && has_urn_prefix(key) {
        extension_scope(key)
    } else {
        Scope::Nested
    }
}

fn is_multi_valued(scope: Scope, name: &str) -> bool {
    scope == Scope::Root && MULTI_VALUED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

fn bool_string(value: Value) -> Value {
    match value {
        Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        other => other,
    }
}

/// The IdP dialects: boolean strings, `manager` as a bare id.
fn coerce(scope: Scope, name: &str, value: Value) -> Value {
    match scope {
        Scope::Root if name.eq_ignore_ascii_case("active") => bool_string(value),
        Scope::Portcullis if name.eq_ignore_ascii_case("mfaEnabled") => bool_string(value),
        Scope::Enterprise if name.eq_ignore_ascii_case("manager") => match value {
            Value::String(id) if id.is_empty() => Value::Null,
            Value::String(id) => serde_json::json!({ "value": id }),
            other => other,
        },
        Scope::Nested if name.eq_ignore_ascii_case("primary") => bool_string(value),
        _ => value,
    }
}

/// `name`'s key in `map`: exactly, else case-insensitively.
fn find_key(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| eq_ci(k, name)).cloned()
}

/// `name`'s key in `map`, forgetting a null value (unassigned, RFC 7643 §2.5).
fn find_assigned(map: &mut Map<String, Value>, name: &str) -> Option<String> {
    let key = find_key(map, name)?;
    if map.get(&key).is_some_and(Value::is_null) {
        map.remove(&key);
        return None;
    }
    Some(key)
}

fn required(value: Option<&Value>, op: Op) -> Result<Value> {
    value
        .cloned()
        .ok_or_else(|| ScimError::invalid_value(format!("`{op}` needs a `value`")))
}

// ---------------------------------------------------------------------------------------------
// Values of multi-valued attributes

/// What makes two values the same: the `value` sub-attribute of a complex value, else the whole.
fn identity(value: &Value) -> String {
    match value.as_object().and_then(|o| get_ci(o, "value")) {
        Some(inner) if !inner.is_null() => format!("v:{inner}"),
        _ => format!("j:{value}"),
    }
}

/// A value about to be stored: no null sub-attributes, `primary` as a boolean.
fn normalize_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = coerce(Scope::Nested, &k, v);
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// Where each value of a multi-valued attribute is, by [`identity`].
fn index_of(values: &[Value]) -> HashMap<String, usize> {
    let mut index = HashMap::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        index.entry(identity(value)).or_insert(i);
    }
    index
}

/// Appends `items` to `values`; one equal to an existing value (or to an earlier item) is merged
/// into it instead. Returns the indices of the values added or merged into.
fn append(values: &mut Vec<Value>, items: Vec<Value>) -> Vec<usize> {
    let mut index = index_of(values);
    append_indexed(values, &mut index, items)
}

/// [`append`] with `index` ([`index_of`] `values`) kept up to date, so a run of operations on
/// one attribute hashes each value once: linear in the values, not quadratic.
fn append_indexed(
    values: &mut Vec<Value>,
    index: &mut HashMap<String, usize>,
    items: Vec<Value>,
) -> Vec<usize> {
    let mut touched = Vec::new();
    for item in items {
        let item = normalize_value(item);
        if item.is_null() {
            continue;
        }
        let id = identity(&item);
        match index.get(&id) {
            Some(&i) => {
                if let (Some(Value::Object(existing)), Value::Object(new)) =
                    (values.get_mut(i), item)
                {
                    for (k, v) in new {
                        let key = find_key(existing, &k).unwrap_or(k);
                        existing.insert(key, v);
                    }
                }
                touched.push(i);
            }
            None => {
                index.insert(id, values.len());
                touched.push(values.len());
                values.push(item);
            }
        }
    }
    touched
}

fn is_primary(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|o| get_ci(o, "primary"))
        .is_some_and(|p| *p == Value::Bool(true))
}

fn clear_primary(value: &mut Value) {
    if let Value::Object(map) = value
        && let Some(key) = find_key(map, "primary")
    {
        map.insert(key, Value::Bool(false));
    }
}

/// When a touched value is now `primary`, no other value is.
fn enforce_primary(values: &mut [Value], touched: &[usize]) {
    if !touched
        .iter()
        .any(|&i| values.get(i).is_some_and(is_primary))
    {
        return;
    }
    let touched: HashSet<usize> = touched.iter().copied().collect();
    for (i, value) in values.iter_mut().enumerate() {
        if touched.contains(&i) || !is_primary(value) {
            continue;
        }
        clear_primary(value);
    }
}

/// The identities `remove` with a `value` takes away. A bare string also names the complex
/// value whose `value` it is.
fn removal_set(given: &Value) -> HashSet<String> {
    let mut set = HashSet::new();
    let items: &[Value] = match given {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    };
    for item in items {
        if item.is_string() {
            set.insert(format!("v:{item}"));
        }
        set.insert(identity(item));
    }
    set
}

// ---------------------------------------------------------------------------------------------
// add / replace / remove of one attribute in one object

/// The value `name` gets when it is created (or overwritten) with `value`: objects are built
/// sub-attribute by sub-attribute, arrays de-duplicated; `None` when that leaves nothing.
fn fresh(scope: Scope, name: &str, value: Value) -> Result<Option<Value>> {
    let multi = is_multi_valued(scope, name);
    match value {
        Value::Null => Ok(None),
        Value::Object(values) if !multi => {
            let mut created = Map::new();
            let child = child_scope(scope, name);
            for (k, v) in values {
                add_attr(&mut created, child, &k, v)?;
            }
            Ok((!created.is_empty()).then_some(Value::Object(created)))
        }
        Value::Array(_) => {
            let mut values = Vec::new();
            let touched = append(&mut values, into_items(value));
            enforce_primary(&mut values, &touched);
            Ok((!values.is_empty()).then_some(Value::Array(values)))
        }
        value if multi => {
            let mut values = Vec::new();
            append(&mut values, vec![value]);
            Ok((!values.is_empty()).then_some(Value::Array(values)))
        }
        value => Ok(Some(value)),
    }
}

fn add_attr(map: &mut Map<String, Value>, scope: Scope, name: &str, value: Value) -> Result<()> {
    let value = coerce(scope, name, value);
    if value.is_null() {
        return Ok(());
    }
    let Some(key) = find_assigned(map, name) else {
        if let Some(value) = fresh(scope, name, value)? {
            map.insert(name.to_string(), value);
        }
        return Ok(());
    };
    let child = child_scope(scope, &key);
    match (map.get_mut(&key), value) {
        (Some(Value::Array(values)), value) => {
            let touched = append(values, into_items(value));
            enforce_primary(values, &touched);
        }
        (Some(Value::Object(existing)), Value::Object(values)) if !is_multi_valued(scope, name) => {
            for (k, v) in values {
                add_attr(existing, child, &k, v)?;
            }
        }
        (Some(slot), value) => {
            if let Some(value) = fresh(scope, name, value)? {
                *slot = value;
            }
        }
        (None, _) => {}
    }
    Ok(())
}

fn replace_attr(
    map: &mut Map<String, Value>,
    scope: Scope,
    name: &str,
    value: Value,
) -> Result<()> {
    let value = coerce(scope, name, value);
    let Some(key) = find_assigned(map, name) else {
        if let Some(value) = fresh(scope, name, value)? {
            map.insert(name.to_string(), value);
        }
        return Ok(());
    };
    let merge = !is_multi_valued(scope, name)
        && value.is_object()
        && map.get(&key).is_some_and(Value::is_object);
    if merge {
        let child = child_scope(scope, &key);
        if let (Some(Value::Object(existing)), Value::Object(values)) = (map.get_mut(&key), value) {
            for (k, v) in values {
                replace_attr(existing, child, &k, v)?;
            }
            if !existing.is_empty() {
                return Ok(());
            }
        }
        map.remove(&key);
        return Ok(());
    }
    match fresh(scope, name, value)? {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
    Ok(())
}

fn remove_attr(map: &mut Map<String, Value>, name: &str, value: Option<&Value>) {
    let Some(key) = find_key(map, name) else {
        return;
    };
    if let (Some(given), Some(Value::Array(values))) =
        (value.filter(|v| !v.is_null()), map.get_mut(&key))
    {
        let gone = removal_set(given);
        values.retain(|v| !gone.contains(&identity(v)));
        if !values.is_empty() {
            return;
        }
    }
    map.remove(&key);
}

fn attr_op(
    map: &mut Map<String, Value>,
    scope: Scope,
    op: Op,
    name: &str,
    value: Option<&Value>,
) -> Result<()> {
    match op {
        Op::Add => add_attr(map, scope, name, required(value, op)?),
        Op::Replace => replace_attr(map, scope, name, required(value, op)?),
        Op::Remove => {
            remove_attr(map, name, value);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

fn apply_operation(doc: &mut Value, operation: &Operation) -> Result<()> {
    let Some(root) = doc.as_object_mut() else {
        return Err(ScimError::internal(
            "PATCH of a document that is not an object",
        ));
    };
    match &operation.path {
        Some(path) => apply_path(root, operation.op, path, operation.value.as_ref()),
        None => apply_without_path(root, operation.op, operation.value.as_ref()),
    }
}

fn apply_without_path(root: &mut Map<String, Value>, op: Op, value: Option<&Value>) -> Result<()> {
    if op == Op::Remove {
        return Err(ScimError::no_target("`remove` needs a `path`"));
    }
    match required(value, op)? {
        Value::Object(values) => {
            for (key, value) in values {
                apply_root_key(root, op, &key, value)?;
            }
            Ok(())
        }
        other => Err(ScimError::invalid_value(format!(
            "`{op}` without a `path` needs an object value (the attributes to {op}), not {}",
            resource::kind(&other)
        ))),
    }
}

/// The extension URNs a document carries (its `urn:` keys and `schemas` entries).
fn schema_urns(root: &Map<String, Value>) -> Vec<String> {
    let mut urns: Vec<String> = root
        .iter()
        .filter(|(k, v)| has_urn_prefix(k) && v.is_object())
        .map(|(k, _)| k.clone())
        .collect();
    if let Some(Value::Array(schemas)) = get_ci(root, "schemas") {
        urns.extend(schemas.iter().filter_map(Value::as_str).map(str::to_string));
    }
    urns
}

fn is_schema_key(root: &Map<String, Value>, key: &str) -> bool {
    has_urn_prefix(key)
        && ([
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            ENTERPRISE_USER,
            PORTCULLIS_USER,
        ]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(key))
            || schema_urns(root)
                .iter()
                .any(|u| u.eq_ignore_ascii_case(key)))
}

/// One attribute of a path-less `add`/`replace`.
fn apply_root_key(root: &mut Map<String, Value>, op: Op, key: &str, value: Value) -> Result<()> {
    if is_schema_key(root, key) {
        if path::is_core_schema(key) {
            return match value {
                Value::Object(values) => {
                    for (k, v) in values {
                        apply_root_key(root, op, &k, v)?;
                    }
                    Ok(())
                }
                other => Err(ScimError::invalid_value(format!(
                    "`{key}` must be an object, not {}",
                    resource::kind(&other)
                ))),
            };
        }
        return attr_op(root, Scope::Root, op, key, Some(&value));
    }
    if key.contains(':') || key.contains('.') {
        let path = path::parse(key)?;
        return apply_path(root, op, &path, Some(&value));
    }
    attr_op(root, Scope::Root, op, key, Some(&value))
}

fn apply_path(
    root: &mut Map<String, Value>,
    op: Op,
    path: &Path,
    value: Option<&Value>,
) -> Result<()> {
    if path.urn.is_some()
        && let Some(urn) = path.as_schema_urn(schema_urns(root).iter().map(String::as_str))
    {
        if path::is_core_schema(&urn) {
            if op == Op::Remove {
                return Err(ScimError::invalid_path(format!(
                    "`{urn}` is the resource itself: remove its attributes one by one"
                )));
            }
            return apply_without_path(root, op, value);
        }
        return attr_op(root, Scope::Root, op, &urn, value);
    }
    let Some(urn) = path.extension() else {
        return apply_in(root, Scope::Root, op, path, value);
    };
    let key = match find_assigned(root, urn) {
        Some(key) => key,
        None if op == Op::Remove => return Ok(()),
        None => {
            root.insert(urn.to_string(), Value::Object(Map::new()));
            urn.to_string()
        }
    };
    let Some(Value::Object(extension)) = root.get_mut(&key) else {
        return Err(ScimError::invalid_path(format!(
            "`{key}` is not an object of extension attributes"
        )));
    };
    apply_in(extension, extension_scope(urn), op, path, value)?;
    if extension.is_empty() {
        root.remove(&key);
    }
    Ok(())
}

/// `path` (its URN resolved) in `map`.
fn apply_in(
    map: &mut Map<String, Value>,
    scope: Scope,
    op: Op,
    path: &Path,
    value: Option<&Value>,
) -> Result<()> {
    let name = path.attribute.as_str();
    match (&path.filter, path.sub_attribute.as_deref()) {
        (None, None) => attr_op(map, scope, op, name, value),
        (None, Some(sub)) => apply_sub(map, scope, op, name, sub, value),
        (Some(filter), sub) => apply_filtered(map, op, name, filter, sub, value),
    }
}

/// `attr.sub`: in a complex attribute, or in every value of a multi-valued one.
fn apply_sub(
    map: &mut Map<String, Value>,
    scope: Scope,
    op: Op,
    name: &str,
    sub: &str,
    value: Option<&Value>,
) -> Result<()> {
    let Some(key) = find_assigned(map, name) else {
        if op == Op::Remove {
            return Ok(());
        }
        if is_multi_valued(scope, name) {
            return Err(ScimError::no_target(format!(
                "`{name}` has no values to set `{sub}` on"
            )));
        }
        let mut created = Map::new();
        attr_op(&mut created, child_scope(scope, name), op, sub, value)?;
        if !created.is_empty() {
            map.insert(name.to_string(), Value::Object(created));
        }
        return Ok(());
    };
    let child = child_scope(scope, &key);
    match map.get_mut(&key) {
        Some(Value::Object(existing)) => {
            attr_op(existing, child, op, sub, value)?;
            if existing.is_empty() {
                map.remove(&key);
            }
            Ok(())
        }
        Some(Value::Array(values)) => {
            if values.is_empty() && op != Op::Remove {
                return Err(ScimError::no_target(format!(
                    "`{key}` has no values to set `{sub}` on"
                )));
            }
            for item in values.iter_mut() {
                if let Value::Object(item) = item {
                    attr_op(item, Scope::Nested, op, sub, value)?;
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_path(format!(
            "`{key}` is not complex: it has no sub-attribute `{sub}`"
        ))),
    }
}

/// `attr[type eq "X"]`: the type.
fn type_equality(filter: &Filter) -> Option<&str> {
    match filter.expr() {
        Expr::Compare {
            attr,
            op: CompareOp::Eq,
            value: Value::String(kind),
        } if attr.urn.is_none()
            && attr.sub_attribute.is_none()
            && attr.attribute.eq_ignore_ascii_case("type") =>
        {
            Some(kind)
        }
        _ => None,
    }
}

/// `attr[filter]` or `attr[filter].sub`.
fn apply_filtered(
    map: &mut Map<String, Value>,
    op: Op,
    name: &str,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<()> {
    let key = find_assigned(map, name);
    let mut empty = Vec::new();
    let values = match key.as_ref().and_then(|k| map.get_mut(k)) {
        None => &mut empty,
        Some(Value::Array(values)) => values,
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "`{name}` is not multi-valued: a value filter selects values of a multi-valued \
                 attribute"
            )));
        }
    };
    let matched: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_object() && filter.matches(v))
        .map(|(i, _)| i)
        .collect();

    if op == Op::Remove {
        if matched.is_empty() {
            return Ok(());
        }
        match sub {
            None => {
                let gone: HashSet<usize> = matched.into_iter().collect();
                let mut i = 0;
                values.retain(|_| {
                    i += 1;
                    !gone.contains(&(i - 1))
                });
            }
            Some(sub) => {
                for &i in &matched {
                    if let Some(Value::Object(item)) = values.get_mut(i) {
                        remove_attr(item, sub, None);
                    }
                }
            }
        }
        if values.is_empty()
            && let Some(key) = key
        {
            map.remove(&key);
        }
        return Ok(());
    }

    let value = required(value, op)?;
    if matched.is_empty() {
        // Entra: `emails[type eq "work"].value` for a type not there yet creates that value.
        if let (Some(kind), Some(sub)) = (type_equality(filter), sub) {
            let mut item = Map::new();
            attr_op(&mut item, Scope::Nested, op, sub, Some(&value))?;
            if item.is_empty() {
                return Ok(());
            }
            if find_key(&item, "type").is_none() {
                item.insert("type".into(), Value::String(kind.to_string()));
            }
            values.push(Value::Object(item));
            let touched = [values.len() - 1];
            enforce_primary(values, &touched);
            if key.is_none() {
                map.insert(name.to_string(), Value::Array(empty));
            }
            return Ok(());
        }
        return Err(ScimError::no_target(format!(
            "no value of `{name}` matches `{filter}`"
        )));
    }

    for &i in &matched {
        let Some(item) = values.get_mut(i) else {
            continue;
        };
        match (sub, item) {
            (Some(sub), Value::Object(item)) => {
                attr_op(item, Scope::Nested, op, sub, Some(&value))?;
            }
            (None, Value::Object(item)) if op == Op::Add => match &value {
                Value::Object(values) => {
                    for (k, v) in values {
                        add_attr(item, Scope::Nested, k, v.clone())?;
                    }
                }
                other => {
                    return Err(ScimError::invalid_value(format!(
                        "`add` to `{name}[{filter}]` needs an object value, not {}",
                        resource::kind(other)
                    )));
                }
            },
            (None, item) => {
                let replacement = match &value {
                    Value::Array(items) if items.len() == 1 => items.first().cloned(),
                    Value::Object(_) => Some(value.clone()),
                    _ => None,
                };
                let Some(replacement @ Value::Object(_)) = replacement else {
                    return Err(ScimError::invalid_value(format!(
                        "`replace` of `{name}[{filter}]` needs an object value, not {}",
                        resource::kind(&value)
                    )));
                };
                *item = normalize_value(replacement);
            }
            (Some(_), _) => {}
        }
    }
    enforce_primary(values, &matched);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Runs of operations on one multi-valued attribute, applied together

/// What a run of operations does: add values to multi-valued attributes, or remove members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Add,
    RemoveMembers,
}

/// Whether `name` is a multi-valued attribute at the top of the document that a PATCH may add
/// to.
fn addable(name: &str) -> bool {
    is_multi_valued(Scope::Root, name) && !READ_ONLY.iter().any(|r| eq_ci(r, name))
}

/// What an `add` puts into multi-valued attributes, as (attribute, value) pairs, if that is all
/// it does: `"path": "emails"`, or no path and a value whose every key is such an attribute.
fn multi_valued_adds(operation: &Operation) -> Option<Vec<(&str, &Value)>> {
    if operation.op != Op::Add {
        return None;
    }
    let value = operation.value.as_ref().filter(|v| !v.is_null())?;
    match &operation.path {
        Some(path) => {
            let plain = path.urn.is_none()
                && path.filter.is_none()
                && path.sub_attribute.is_none()
                && path.extension().is_none();
            (plain && addable(&path.attribute)).then(|| vec![(path.attribute.as_str(), value)])
        }
        None => {
            let values = value.as_object().filter(|v| !v.is_empty())?;
            values
                .iter()
                .map(|(k, v)| addable(k).then_some((k.as_str(), v)))
                .collect()
        }
    }
}

/// Whether `operation` can join a run, and of which kind.
fn run_kind(operation: &Operation) -> Option<RunKind> {
    if multi_valued_adds(operation).is_some() {
        return Some(RunKind::Add);
    }
    let path = operation.path.as_ref()?;
    if path.extension().is_some()
        || path.sub_attribute.is_some()
        || !path.attribute.eq_ignore_ascii_case("members")
    {
        return None;
    }
    match (operation.op, &path.filter, &operation.value) {
        (Op::Remove, None, Some(value)) if !value.is_null() => Some(RunKind::RemoveMembers),
        (Op::Remove, Some(filter), _) if value_equality(filter).is_some() => {
            Some(RunKind::RemoveMembers)
        }
        _ => None,
    }
}

/// `[value eq "x"]`: x.
fn value_equality(filter: &Filter) -> Option<&str> {
    match filter.expr() {
        Expr::Compare {
            attr,
            op: CompareOp::Eq,
            value: Value::String(value),
        } if attr.urn.is_none()
            && attr.sub_attribute.is_none()
            && attr.attribute.eq_ignore_ascii_case("value") =>
        {
            Some(value)
        }
        _ => None,
    }
}

/// How many operations from the start of `operations` form a run of the same kind (1 when the
/// first cannot start one).
fn run_len(operations: &[Operation]) -> usize {
    let Some(kind) = operations.first().and_then(run_kind) else {
        return 1;
    };
    operations
        .iter()
        .take_while(|operation| run_kind(operation) == Some(kind))
        .count()
}

/// A run from [`run_len`]: the same result as one by one. An error comes with the position in
/// the run of the operation that failed.
fn apply_run(
    doc: &mut Value,
    run: &[Operation],
    max_values: usize,
) -> std::result::Result<(), (usize, ScimError)> {
    match run.first().and_then(run_kind) {
        Some(RunKind::Add) => apply_add_run(doc, run, max_values),
        _ => apply_members_run(doc, run).map_err(|e| (0, e)),
    }
}

/// One attribute a run of adds works on: where each value is, and which are primary.
struct Indexed {
    key: String,
    /// Made by this run: dropped again if it ends up empty.
    created: bool,
    index: HashMap<String, usize>,
    primaries: BTreeSet<usize>,
}

/// A run of adds to multi-valued attributes: each value hashed once (an index per attribute
/// kept across the run), `primary` kept unique from the set of primary values, so the run
/// costs linear time in the values. IdPs send one operation per email or member; quadratic
/// work on 60,000 of them held every write up for minutes.
fn apply_add_run(
    doc: &mut Value,
    run: &[Operation],
    max_values: usize,
) -> std::result::Result<(), (usize, ScimError)> {
    let Some(root) = doc.as_object_mut() else {
        return Err((
            0,
            ScimError::internal("PATCH of a document that is not an object"),
        ));
    };
    let adds: Vec<Vec<(&str, &Value)>> = run
        .iter()
        .map(|operation| multi_valued_adds(operation).unwrap_or_default())
        .collect();
    // An attribute stored as something else than an array (a stored document may hold
    // anything) is left to the operations one by one.
    let odd = adds.iter().flatten().any(|(name, _)| {
        find_key(root, name)
            .and_then(|key| root.get(&key))
            .is_some_and(|v| !v.is_null() && !v.is_array())
    });
    if odd {
        for (at, operation) in run.iter().enumerate() {
            apply_operation(doc, operation)
                .and_then(|()| check_counts(doc, max_values))
                .map_err(|e| (at, e))?;
        }
        return Ok(());
    }
    let mut attributes: HashMap<String, Indexed> = HashMap::new();
    for (at, pairs) in adds.into_iter().enumerate() {
        for (name, value) in pairs {
            let lower = to_lower(name);
            if !attributes.contains_key(&lower) {
                let (key, created) = match find_assigned(root, name) {
                    Some(key) => (key, false),
                    None => {
                        root.insert(name.to_string(), Value::Array(Vec::new()));
                        (name.to_string(), true)
                    }
                };
                let values = match root.get(&key) {
                    Some(Value::Array(values)) => values.as_slice(),
                    _ => &[],
                };
                let primaries = values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| is_primary(v))
                    .map(|(i, _)| i)
                    .collect();
                let index = index_of(values);
                let indexed = Indexed {
                    key,
                    created,
                    index,
                    primaries,
                };
                attributes.insert(lower.clone(), indexed);
            }
            let Some(indexed) = attributes.get_mut(&lower) else {
                continue;
            };
            let Some(Value::Array(values)) = root.get_mut(&indexed.key) else {
                continue;
            };
            let touched = append_indexed(values, &mut indexed.index, into_items(value.clone()));
            let primaries = &mut indexed.primaries;
            for &i in &touched {
                if values.get(i).is_some_and(is_primary) {
                    primaries.insert(i);
                } else {
                    primaries.remove(&i);
                }
            }
            // What `enforce_primary` does, from the primary values alone.
            if touched.iter().any(|i| primaries.contains(i)) {
                let keep: HashSet<usize> = touched.iter().copied().collect();
                let cleared: Vec<usize> = primaries
                    .iter()
                    .copied()
                    .filter(|i| !keep.contains(i))
                    .collect();
                for i in cleared {
                    if let Some(value) = values.get_mut(i) {
                        clear_primary(value);
                    }
                    primaries.remove(&i);
                }
            }
            if values.len() > max_values && !REFERENCES.iter().any(|r| eq_ci(r, &indexed.key)) {
                let error = crate::limits::too_many_values(&indexed.key, values.len(), max_values);
                return Err((at, error));
            }
        }
    }
    for indexed in attributes.values().filter(|a| a.created) {
        if root
            .get(&indexed.key)
            .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
        {
            root.remove(&indexed.key);
        }
    }
    Ok(())
}

/// A run of member removals: the same result as one by one, in one pass over the members.
fn apply_members_run(doc: &mut Value, run: &[Operation]) -> Result<()> {
    let Some(root) = doc.as_object_mut() else {
        return Err(ScimError::internal(
            "PATCH of a document that is not an object",
        ));
    };
    let key = find_assigned(root, "members");
    if !matches!(
        key.as_ref().and_then(|k| root.get(k)),
        None | Some(Value::Array(_))
    ) {
        for operation in run {
            apply_operation(doc, operation)?;
        }
        return Ok(());
    }
    let Some(key) = key else {
        return Ok(());
    };
    let mut exact: HashSet<String> = HashSet::new();
    let mut by_value: HashSet<String> = HashSet::new();
    let mut filters: Vec<&Filter> = Vec::new();
    for operation in run {
        match (&operation.path, &operation.value) {
            (
                Some(Path {
                    filter: Some(filter),
                    ..
                }),
                _,
            ) => {
                if let Some(value) = value_equality(filter) {
                    by_value.insert(to_lower(value));
                }
                filters.push(filter);
            }
            (_, Some(value)) => exact.extend(removal_set(value)),
            _ => {}
        }
    }
    let Some(Value::Array(members)) = root.get_mut(&key) else {
        return Ok(());
    };
    members.retain(|member| {
        if exact.contains(&identity(member)) {
            return false;
        }
        let Value::Object(fields) = member else {
            return true;
        };
        match get_ci(fields, "value") {
            Some(Value::String(value)) => !by_value.contains(&to_lower(value)),
            // Not a string: what each filter says.
            Some(_) => !filters.iter().any(|f| f.matches(member)),
            None => true,
        }
    });
    if members.is_empty() {
        root.remove(&key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User"
            ],
            "id": "u0000042",
            "externalId": "00uAbC123",
            "userName": "feifei.kay42@example.com",
            "name": {"givenName": "Feifei", "familyName": "Kay", "formatted": "Feifei Kay"},
            "displayName": "Feifei Kay",
            "emails": [
                {"value": "feifei.kay42@example.com", "type": "work", "primary": true},
                {"value": "fk@home.example.org", "type": "home"}
            ],
            "active": true,
            "title": "Staff Engineer",
            "groups": [{"value": "g0000001", "display": "Engineering"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "E-1001",
                "department": "Platform",
                "manager": {"value": "u0000007"}
            },
            "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User": {"mfaEnabled": true},
            "meta": {
                "resourceType": "User",
                "created": "2026-01-01T00:00:00Z",
                "lastModified": "2026-01-01T00:00:00Z",
                "version": "W/\"1\"",
                "location": "https://portcullis.example.com/scim/v2/Users/u0000042"
            }
        })
    }

    fn group(members: usize) -> Value {
        let members: Vec<Value> = (0..members)
            .map(|i| json!({"value": format!("u{i:07}"), "display": format!("User {i}")}))
            .collect();
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g0000001",
            "externalId": "okta-grp-1",
            "displayName": "Engineering",
            "members": members,
            "meta": {"resourceType": "Group", "created": "2026-01-01T00:00:00Z",
                     "lastModified": "2026-01-01T00:00:00Z", "version": "W/\"1\""}
        })
    }

    fn body(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": operations})
    }

    /// Parses and applies a full request body to `doc`.
    fn patch(doc: &Value, request: Value) -> Result<Value> {
        let operations = parse(&request)?;
        let mut out = doc.clone();
        let before = out.clone();
        match apply(&mut out, &operations) {
            Ok(()) => Ok(out),
            Err(e) => {
                assert_eq!(out, before, "a failed PATCH left the document changed");
                Err(e)
            }
        }
    }

    fn ok(doc: &Value, operations: Value) -> Value {
        patch(doc, body(operations)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The test user after the one operation `op` of `value` at `path`.
    fn user_after(op: &str, path: &str, value: Value) -> Value {
        ok(&user(), json!([{"op": op, "path": path, "value": value}]))
    }

    fn fails(doc: &Value, operations: Value) -> ScimError {
        match patch(doc, body(operations)) {
            Ok(out) => panic!("expected an error, got {out}"),
            Err(e) => e,
        }
    }

    /// The error of the one operation `op` of `value` at `path` on the test user.
    fn user_refuses(op: &str, path: &str, value: Value) -> ScimError {
        fails(&user(), json!([{"op": op, "path": path, "value": value}]))
    }

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const PCL: &str = "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User";

    // --- parse -----------------------------------------------------------------------------

    #[test]
    fn parse_ops_any_case_and_optional_path() {
        let ops = parse(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Add", "path": "title", "value": "x"},
                {"op": "REPLACE", "value": {"active": false}},
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "replace", "path": "", "value": {"title": "y"}}
            ]
        }))
        .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0].op, Op::Add);
        assert_eq!(ops[0].path.as_ref().unwrap().attribute, "title");
        assert_eq!(ops[1].op, Op::Replace);
        assert!(ops[1].path.is_none());
        assert_eq!(ops[1].value, Some(json!({"active": false})));
        assert_eq!(ops[2].op, Op::Remove);
        assert!(ops[2].path.as_ref().unwrap().filter.is_some());
        assert!(ops[3].path.is_none());
        // A lower-case `operations` key is accepted too.
        let ops = parse(
            &json!({"schemas": [PATCH_OP], "operations": [{"op": "remove", "path": "title"}]}),
        );
        assert_eq!(ops.unwrap().len(), 1);
        assert_eq!(Op::Replace.to_string(), "replace");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (json!([]), "invalidSyntax", "JSON object"),
            (
                json!({"Operations": [{"op": "add", "path": "a", "value": 1}]}),
                "invalidSyntax",
                "`schemas`",
            ),
            (
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "Operations": [{"op": "add", "path": "a", "value": 1}]}),
                "invalidSyntax",
                "PatchOp",
            ),
            (
                json!({"schemas": [PATCH_OP]}),
                "invalidSyntax",
                "missing `Operations`",
            ),
            (
                json!({"schemas": [PATCH_OP], "Operations": []}),
                "invalidSyntax",
                "empty",
            ),
            (
                json!({"schemas": [PATCH_OP], "Operations": {}}),
                "invalidSyntax",
                "array",
            ),
            (
                body(json!(["add"])),
                "invalidSyntax",
                "Operations[0]: an operation is a JSON object",
            ),
            (
                body(json!([{"path": "a", "value": 1}])),
                "invalidSyntax",
                "missing `op`",
            ),
            (
                body(json!([{"op": "move", "path": "a"}])),
                "invalidSyntax",
                "unknown op \"move\"",
            ),
            (
                body(json!([{"op": 1, "path": "a"}])),
                "invalidSyntax",
                "unknown op 1",
            ),
            (
                body(json!([{"op": "add", "path": "a"}])),
                "invalidValue",
                "`add` needs a `value`",
            ),
            (
                body(
                    json!([{"op": "add", "path": "a", "value": 1}, {"op": "Replace", "path": "a"}]),
                ),
                "invalidValue",
                "Operations[1]: `replace` needs a `value`",
            ),
            (
                body(json!([{"op": "remove"}])),
                "noTarget",
                "`remove` needs a `path`",
            ),
            (
                body(json!([{"op": "remove", "path": ""}])),
                "noTarget",
                "needs a `path`",
            ),
            (
                body(json!([{"op": "remove", "path": "a[b eq"}])),
                "invalidPath",
                "invalid path",
            ),
            (
                body(json!([{"op": "remove", "path": 7}])),
                "invalidPath",
                "must be a string",
            ),
        ];
        for (request, scim_type, needle) in cases {
            let e = parse(&request).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(scim_type), "{request}: {e}");
            assert!(e.detail.contains(needle), "{request}: {}", e.detail);
        }
    }

    // --- add -------------------------------------------------------------------------------

    #[test]
    fn add_single_valued_sets() {
        let out = user_after("add", "nickName", json!("FK"));
        assert_eq!(out["nickName"], "FK");
        let out = user_after("add", "title", json!("CTO"));
        assert_eq!(out["title"], "CTO");
        // Add of null changes nothing.
        let out = user_after("add", "title", json!(null));
        assert_eq!(out, user());
    }

    #[test]
    fn add_multi_valued_appends_without_duplicates() {
        let out = ok(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [
                {"value": "fk@other.example.net", "type": "other"},
                {"value": "fk@home.example.org", "type": "home"}
            ]}]),
        );
        let emails = out["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3);
        assert_eq!(emails[2]["value"], "fk@other.example.net");
        // A single value (not an array) is appended too.
        let out = user_after("add", "emails", json!({"value": "x@y.z"}));
        assert_eq!(out["emails"].as_array().unwrap().len(), 3);
        // Creating a multi-valued attribute from one value makes an array.
        let out = user_after(
            "add",
            "phoneNumbers",
            json!({"value": "+1 555", "type": "work"}),
        );
        assert_eq!(
            out["phoneNumbers"],
            json!([{"value": "+1 555", "type": "work"}])
        );
        // The same value again merges its sub-attributes instead of duplicating.
        let out = user_after(
            "add",
            "emails",
            json!([{"value": "fk@home.example.org", "display": "Home"}]),
        );
        assert_eq!(out["emails"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["emails"][1],
            json!({"value": "fk@home.example.org", "type": "home", "display": "Home"})
        );
        // Duplicates within one request collapse too.
        let out = ok(
            &group(0),
            json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "a"}, {"value": "b"}]}]),
        );
        assert_eq!(out["members"], json!([{"value": "a"}, {"value": "b"}]));
    }

    #[test]
    fn add_primary_clears_the_other_primary() {
        let out = user_after(
            "add",
            "emails",
            json!([{"value": "new@example.com", "type": "work", "primary": "True"}]),
        );
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][2]["primary"], true);
    }

    #[test]
    fn add_complex_merges() {
        let out = user_after(
            "add",
            "name",
            json!({"middleName": "Q", "familyName": "Kay-Li", "honorificPrefix": null}),
        );
        assert_eq!(
            out["name"],
            json!({"givenName": "Feifei", "familyName": "Kay-Li", "formatted": "Feifei Kay", "middleName": "Q"})
        );
        let out = user_after("add", "name.familyName", json!("Li"));
        assert_eq!(out["name"]["familyName"], "Li");
        assert_eq!(out["name"]["givenName"], "Feifei");
        let mut bare = user();
        bare.as_object_mut().unwrap().remove("name");
        let out = ok(
            &bare,
            json!([{"op": "add", "path": "name.givenName", "value": "Ada"}]),
        );
        assert_eq!(out["name"], json!({"givenName": "Ada"}));
    }

    #[test]
    fn add_with_value_filter_sets_sub_attribute() {
        let out = user_after("add", "emails[type eq \"home\"].display", json!("Home"));
        assert_eq!(out["emails"][1]["display"], "Home");
        assert!(out["emails"][0].get("display").is_none());
        // Merge an object into the matching values.
        let out = user_after("add", "emails[type eq \"home\"]", json!({"display": "H"}));
        assert_eq!(out["emails"][1]["display"], "H");
        assert_eq!(out["emails"][1]["value"], "fk@home.example.org");
    }

    #[test]
    fn add_without_path() {
        let out = ok(
            &user(),
            json!([{"op": "add", "value": {
                "nickName": "FK",
                "emails": [{"value": "x@y.z", "type": "other"}],
                "name": {"middleName": "Q"},
                ENT: {"costCenter": "CC-9", "manager": "u0000009"},
                PCL: {"mfaEnabled": "false"}
            }}]),
        );
        assert_eq!(out["nickName"], "FK");
        assert_eq!(out["emails"].as_array().unwrap().len(), 3);
        assert_eq!(out["name"]["middleName"], "Q");
        assert_eq!(out["name"]["givenName"], "Feifei");
        assert_eq!(
            out[ENT],
            json!({"employeeNumber": "E-1001", "department": "Platform", "costCenter": "CC-9",
                   "manager": {"value": "u0000009"}})
        );
        assert_eq!(out[PCL]["mfaEnabled"], false);
    }

    #[test]
    fn add_without_path_qualified_and_dotted_keys() {
        let out = ok(
            &user(),
            json!([{"op": "Add", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division": "R&D",
                "name.honorificSuffix": "PhD",
                "urn:ietf:params:scim:schemas:core:2.0:User:nickName": "FK",
                "urn:ietf:params:scim:schemas:core:2.0:User": {"title": "CTO"}
            }}]),
        );
        assert_eq!(out[ENT]["division"], "R&D");
        assert_eq!(out["name"]["honorificSuffix"], "PhD");
        assert_eq!(out["nickName"], "FK");
        assert_eq!(out["title"], "CTO");
    }

    #[test]
    fn add_without_path_needs_an_object() {
        let e = fails(&user(), json!([{"op": "add", "value": "x"}]));
        assert_eq!(e.scim_type, Some("invalidValue"));
        assert!(e.detail.contains("Operations[0] (add)"), "{}", e.detail);
        assert!(e.detail.contains("object"), "{}", e.detail);
    }

    // --- replace ---------------------------------------------------------------------------

    #[test]
    fn replace_with_path() {
        let out = user_after("replace", "displayName", json!("F. Kay"));
        assert_eq!(out["displayName"], "F. Kay");
        let out = user_after("replace", "name.familyName", json!("Li"));
        assert_eq!(out["name"]["familyName"], "Li");
        // A complex attribute keeps the sub-attributes not given (RFC 7644 §3.5.2.3).
        let out = user_after(
            "replace",
            "name",
            json!({"givenName": "Fei", "formatted": null}),
        );
        assert_eq!(
            out["name"],
            json!({"givenName": "Fei", "familyName": "Kay"})
        );
        // A multi-valued attribute is replaced whole.
        let out = user_after(
            "replace",
            "emails",
            json!([{"value": "only@example.com", "primary": true}]),
        );
        assert_eq!(
            out["emails"],
            json!([{"value": "only@example.com", "primary": true}])
        );
        // null or [] unassigns.
        let out = user_after("replace", "title", json!(null));
        assert!(out.get("title").is_none());
        let out = user_after("replace", "emails", json!([]));
        assert!(out.get("emails").is_none());
        // Absent: created.
        let out = user_after("replace", "nickName", json!("FK"));
        assert_eq!(out["nickName"], "FK");
    }

    #[test]
    fn replace_with_value_filter() {
        let out = user_after(
            "replace",
            "emails[type eq \"work\"].value",
            json!("new@example.com"),
        );
        assert_eq!(out["emails"][0]["value"], "new@example.com");
        assert_eq!(out["emails"][1]["value"], "fk@home.example.org");
        // The whole matching value.
        let out = user_after(
            "replace",
            "emails[type eq \"home\"]",
            json!({"value": "h@example.org", "type": "home"}),
        );
        assert_eq!(
            out["emails"][1],
            json!({"value": "h@example.org", "type": "home"})
        );
        // Making one primary demotes the other.
        let out = user_after("replace", "emails[type eq \"home\"].primary", json!(true));
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][1]["primary"], true);
        // Filter matching nothing (not a `type eq` filter): noTarget.
        let e = user_refuses(
            "replace",
            "emails[value eq \"nobody@example.com\"].type",
            json!("x"),
        );
        assert_eq!(e.scim_type, Some("noTarget"));
        assert!(
            e.detail.contains("no value of `emails` matches"),
            "{}",
            e.detail
        );
        let e = user_refuses(
            "replace",
            "emails[type eq \"other\"]",
            json!({"value": "x"}),
        );
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = user_refuses("add", "emails[primary eq false].display", json!("x"));
        assert_eq!(e.scim_type, Some("noTarget"));
        // A value filter on a single-valued attribute.
        let e = user_refuses(
            "replace",
            "name[givenName eq \"Feifei\"].familyName",
            json!("x"),
        );
        assert_eq!(e.scim_type, Some("invalidPath"));
    }

    #[test]
    fn entra_type_filter_creates_the_value() {
        let out = user_after(
            "Replace",
            "emails[type eq \"other\"].value",
            json!("o@example.com"),
        );
        assert_eq!(
            out["emails"][2],
            json!({"type": "other", "value": "o@example.com"})
        );
        let out = user_after(
            "Add",
            "phoneNumbers[type eq \"mobile\"].value",
            json!("+1 555 0100"),
        );
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555 0100"}])
        );
        // Primary on the new value demotes the others.
        let out = user_after("Add", "emails[type eq \"other\"].primary", json!("True"));
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][2], json!({"type": "other", "primary": true}));
    }

    #[test]
    fn replace_without_path() {
        let out = ok(
            &user(),
            json!([{"op": "replace", "value": {
                "displayName": "F. Kay",
                "name": {"familyName": "Li"},
                "title": null,
                ENT: {"department": "Research"}
            }}]),
        );
        assert_eq!(out["displayName"], "F. Kay");
        assert_eq!(out["name"]["familyName"], "Li");
        assert_eq!(out["name"]["givenName"], "Feifei");
        assert!(out.get("title").is_none());
        assert_eq!(out[ENT]["department"], "Research");
        assert_eq!(out[ENT]["employeeNumber"], "E-1001");
    }

    #[test]
    fn sub_attribute_of_every_value() {
        let out = user_after("replace", "emails.display", json!("E"));
        assert_eq!(out["emails"][0]["display"], "E");
        assert_eq!(out["emails"][1]["display"], "E");
        let out = ok(&user(), json!([{"op": "remove", "path": "emails.primary"}]));
        assert!(out["emails"][0].get("primary").is_none());
        let e = user_refuses("add", "photos.value", json!("x"));
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = user_refuses("add", "title.x", json!("x"));
        assert_eq!(e.scim_type, Some("invalidPath"));
    }

    // --- remove ----------------------------------------------------------------------------

    #[test]
    fn remove() {
        let out = ok(&user(), json!([{"op": "remove", "path": "title"}]));
        assert!(out.get("title").is_none());
        let out = ok(&user(), json!([{"op": "remove", "path": "emails"}]));
        assert!(out.get("emails").is_none());
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert_eq!(out["emails"].as_array().unwrap().len(), 1);
        assert_eq!(out["emails"][0]["type"], "work");
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        );
        assert_eq!(
            out["emails"][0],
            json!({"value": "feifei.kay42@example.com", "type": "work"})
        );
        let out = ok(&user(), json!([{"op": "remove", "path": "name.formatted"}]));
        assert_eq!(
            out["name"],
            json!({"givenName": "Feifei", "familyName": "Kay"})
        );
        // The last value or sub-attribute gone: the attribute goes.
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": "emails[value ew \"example.com\" or type eq \"home\"]"}]),
        );
        assert!(out.get("emails").is_none());
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.familyName"},
                   {"op": "remove", "path": "name.formatted"}]),
        );
        assert!(out.get("name").is_none());
        // Nothing to remove: nothing happens.
        assert_eq!(
            ok(&user(), json!([{"op": "remove", "path": "nickName"}])),
            user()
        );
        assert_eq!(
            ok(
                &user(),
                json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])
            ),
            user()
        );
        assert_eq!(
            ok(
                &user(),
                json!([{"op": "remove", "path": "name.middleName"}])
            ),
            user()
        );
        assert_eq!(
            ok(
                &user(),
                json!([{"op": "remove", "path": format!("{ENT}:costCenter")}])
            ),
            user()
        );
    }

    #[test]
    fn remove_needs_a_path() {
        let operations = [Operation {
            op: Op::Remove,
            path: None,
            value: None,
        }];
        let mut doc = user();
        let e = apply(&mut doc, &operations).unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
        assert_eq!(doc, user());
    }

    #[test]
    fn remove_members_by_value() {
        let out = ok(
            &group(4),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "u0000001"}, {"value": "u0000003"}, {"value": "nobody"}]}]),
        );
        let left: Vec<&str> = out["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect();
        assert_eq!(left, ["u0000000", "u0000002"]);
        // Bare ids are understood too.
        let out = ok(
            &group(2),
            json!([{"op": "remove", "path": "members", "value": ["u0000000"]}]),
        );
        assert_eq!(out["members"].as_array().unwrap().len(), 1);
        // Without a value, all of them.
        let out = ok(&group(4), json!([{"op": "remove", "path": "members"}]));
        assert!(out.get("members").is_none());
    }

    // --- URN paths, case, dialects ---------------------------------------------------------

    #[test]
    fn urn_paths() {
        let out = user_after("replace", &format!("{ENT}:department"), json!("Research"));
        assert_eq!(out[ENT]["department"], "Research");
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": format!("{ENT}:department")}]),
        );
        assert!(out[ENT].get("department").is_none());
        let out = user_after("add", &format!("{ENT}:manager.displayName"), json!("Grace"));
        assert_eq!(
            out[ENT]["manager"],
            json!({"value": "u0000007", "displayName": "Grace"})
        );
        // Creating the extension object; dropping it when emptied.
        let mut bare = user();
        bare.as_object_mut().unwrap().remove(ENT);
        let out = ok(
            &bare,
            json!([{"op": "add", "path": format!("{ENT}:department"), "value": "Ops"}]),
        );
        assert_eq!(out[ENT], json!({"department": "Ops"}));
        let out = ok(
            &user(),
            json!([{"op": "remove", "path": format!("{PCL}:mfaEnabled")}]),
        );
        assert!(out.get(PCL).is_none());
        // URN in another case matches the existing key.
        let out = user_after(
            "replace",
            &format!("{}:DEPARTMENT", ENT.to_uppercase()),
            json!("R"),
        );
        assert_eq!(out[ENT]["department"], "R");
        assert_eq!(
            out.as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with("urn:"))
                .count(),
            2
        );
        // A core schema URN is the top level.
        let out = user_after(
            "replace",
            "urn:ietf:params:scim:schemas:core:2.0:User:title",
            json!("CTO"),
        );
        assert_eq!(out["title"], "CTO");
    }

    #[test]
    fn whole_extension_path() {
        let out = ok(
            &user(),
            json!([{"op": "add", "path": ENT, "value": {"costCenter": "CC", "manager": "u9"}}]),
        );
        assert_eq!(out[ENT]["costCenter"], "CC");
        assert_eq!(out[ENT]["department"], "Platform");
        assert_eq!(out[ENT]["manager"], json!({"value": "u9"}));
        let out = ok(
            &user(),
            json!([{"op": "replace", "path": ENT, "value": {"department": "R"}}]),
        );
        assert_eq!(out[ENT]["department"], "R");
        assert_eq!(out[ENT]["employeeNumber"], "E-1001");
        let out = ok(&user(), json!([{"op": "remove", "path": ENT}]));
        assert!(out.get(ENT).is_none());
        let out = user_after(
            "replace",
            "urn:ietf:params:scim:schemas:core:2.0:User",
            json!({"title": "T"}),
        );
        assert_eq!(out["title"], "T");
    }

    #[test]
    fn attribute_names_are_case_insensitive() {
        let out = user_after("replace", "DISPLAYNAME", json!("X"));
        assert_eq!(out["displayName"], "X");
        assert!(out.get("DISPLAYNAME").is_none());
        let out = user_after("replace", "Name.FamilyName", json!("Li"));
        assert_eq!(out["name"]["familyName"], "Li");
        assert!(out["name"].get("FamilyName").is_none());
        let out = ok(
            &user(),
            json!([{"op": "replace", "value": {"Active": false, "TITLE": "T"}}]),
        );
        assert_eq!(out["active"], false);
        assert_eq!(out["title"], "T");
        assert!(out.get("Active").is_none());
        // Created attributes keep the spelling given.
        let out = user_after("add", "nickName", json!("N"));
        assert_eq!(out["nickName"], "N");
        let out = user_after("replace", "EMAILS[TYPE EQ \"WORK\"].VALUE", json!("w@x.y"));
        assert_eq!(out["emails"][0]["value"], "w@x.y");
    }

    #[test]
    fn boolean_strings() {
        let out = user_after("Replace", "active", json!("False"));
        assert_eq!(out["active"], false);
        let out = user_after("Replace", "active", json!("TRUE"));
        assert_eq!(out["active"], true);
        let out = ok(
            &user(),
            json!([{"op": "Replace", "value": {"active": "false"}}]),
        );
        assert_eq!(out["active"], false);
        let out = user_after("Replace", &format!("{PCL}:mfaEnabled"), json!("False"));
        assert_eq!(out[PCL]["mfaEnabled"], false);
        let out = ok(
            &user(),
            json!([{"op": "Add", "value": {format!("{PCL}:mfaEnabled"): "false"}}]),
        );
        assert_eq!(out[PCL]["mfaEnabled"], false);
        // Other strings stay strings.
        let out = user_after("Replace", "title", json!("true"));
        assert_eq!(out["title"], "true");
        let out = user_after("Replace", "active", json!("yes"));
        assert_eq!(out["active"], "yes");
    }

    #[test]
    fn manager_as_a_bare_id() {
        let out = user_after("Add", &format!("{ENT}:manager"), json!("u0000009"));
        assert_eq!(out[ENT]["manager"], json!({"value": "u0000009"}));
        let out = user_after(
            "Replace",
            &format!("{ENT}:manager"),
            json!({"value": "u0000010"}),
        );
        assert_eq!(out[ENT]["manager"], json!({"value": "u0000010"}));
        let out = user_after("Replace", &format!("{ENT}:manager"), json!(""));
        assert!(out[ENT].get("manager").is_none());
        let out = ok(
            &user(),
            json!([{"op": "Remove", "path": format!("{ENT}:manager")}]),
        );
        assert!(out[ENT].get("manager").is_none());
    }

    // --- read-only attributes, all or nothing ----------------------------------------------

    #[test]
    fn read_only_attributes() {
        for operations in [
            json!([{"op": "replace", "path": "id", "value": "u9"}]),
            json!([{"op": "replace", "value": {"id": "u9"}}]),
            json!([{"op": "remove", "path": "id"}]),
            json!([{"op": "remove", "path": "meta"}]),
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2030-01-01T00:00:00Z"}]),
            json!([{"op": "add", "value": {"meta": {"version": "W/\"9\""}}}]),
            json!([{"op": "add", "path": "schemas", "value": ["urn:example:x"]}]),
            json!([{"op": "replace", "path": "schemas", "value": []}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g2"}]}]),
            json!([{"op": "remove", "path": "groups"}]),
            json!([{"op": "replace", "path": "ID", "value": "u9"}]),
        ] {
            let e = fails(&user(), operations.clone());
            assert_eq!(e.scim_type, Some("mutability"), "{operations}: {e}");
            assert!(e.detail.contains("read-only"), "{}", e.detail);
        }
        // Unchanged read-only values pass (Okta's rename carries the id).
        let out = ok(
            &user(),
            json!([{"op": "replace", "value": {"id": "u0000042", "displayName": "X"}}]),
        );
        assert_eq!(out["displayName"], "X");
        let e = fails(
            &group(1),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g2"}]}]),
        );
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn all_or_nothing() {
        let e = fails(
            &user(),
            json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "add", "path": "emails", "value": [{"value": "new@example.com"}]},
                {"op": "replace", "path": "emails[type eq \"home\" and value eq \"x\"].value", "value": "y"},
                {"op": "replace", "path": "title", "value": "never"}
            ]),
        );
        assert_eq!(e.scim_type, Some("noTarget"));
        assert!(
            e.detail.starts_with("Operations[2] (replace emails["),
            "{}",
            e.detail
        );
        let e = fails(
            &user(),
            json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "remove", "path": "title"},
                {"op": "replace", "path": "id", "value": "other"}
            ]),
        );
        assert_eq!(e.scim_type, Some("mutability"));
        assert!(
            e.detail.starts_with("Operations[2] (replace id): `id`"),
            "{}",
            e.detail
        );
        // And the same on `apply` directly: the caller's value is untouched.
        let operations = parse(&body(json!([
            {"op": "remove", "path": "title"},
            {"op": "remove", "path": "meta"}
        ])))
        .unwrap();
        let mut doc = user();
        assert!(apply(&mut doc, &operations).is_err());
        assert_eq!(doc, user());
    }

    #[test]
    fn operations_apply_in_order() {
        let out = ok(
            &user(),
            json!([
                {"op": "remove", "path": "title"},
                {"op": "add", "path": "title", "value": "A"},
                {"op": "replace", "path": "title", "value": "B"}
            ]),
        );
        assert_eq!(out["title"], "B");
    }

    // --- the exact requests IdPs send ------------------------------------------------------

    #[test]
    fn entra_requests() {
        let doc = user();
        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {
                        "op": "Replace",
                        "path": "emails[type eq \"work\"].value",
                        "value": "updatedEmail@microsoft.com"
                    },
                    {
                        "op": "Replace",
                        "path": "name.familyName",
                        "value": "updatedFamilyName"
                    }
                ]
            }),
        )
        .unwrap();
        assert_eq!(out["emails"][0]["value"], "updatedEmail@microsoft.com");
        assert_eq!(out["name"]["familyName"], "updatedFamilyName");

        let out = patch(
            &doc,
            json!({
                "Operations": [
                    {
                        "op": "Replace",
                        "path": "active",
                        "value": "False"
                    }
                ],
                "schemas": [
                    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
                ]
            }),
        )
        .unwrap();
        assert_eq!(out["active"], false);

        let out = patch(&doc, json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {
                    "op": "Add",
                    "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                    "value": "2819c223-7f76-453a-919d-413861904646"
                }
            ]
        }))
        .unwrap();
        assert_eq!(
            out[ENT]["manager"],
            json!({"value": "2819c223-7f76-453a-919d-413861904646"})
        );

        let out = patch(&doc, json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"},
                {"op": "Replace", "path": "displayName", "value": "Updated Name"},
                {"op": "Add", "path": "externalId", "value": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"},
                {"op": "Add", "path": "title", "value": "Manager"},
                {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 425 555 0100"},
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Microsoft Way"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Finance"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "E-2002"},
                {"op": "Replace", "path": "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User:mfaEnabled", "value": "False"}
            ]
        }))
        .unwrap();
        assert_eq!(
            out["userName"],
            "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
        );
        assert_eq!(out["externalId"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "work", "value": "+1 425 555 0100"}])
        );
        assert_eq!(
            out["addresses"],
            json!([{"type": "work", "streetAddress": "1 Microsoft Way"}])
        );
        assert_eq!(out[ENT]["department"], "Finance");
        assert_eq!(out[ENT]["employeeNumber"], "E-2002");
        assert_eq!(out[PCL]["mfaEnabled"], false);

        // Groups: add and remove members, rename.
        let doc = group(2);
        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {
                        "op": "Add",
                        "path": "members",
                        "value": [
                            {
                                "$ref": null,
                                "value": "f648f8d5ea4e4cd38e9c"
                            }
                        ]
                    }
                ]
            }),
        )
        .unwrap();
        assert_eq!(out["members"].as_array().unwrap().len(), 3);
        assert_eq!(out["members"][2], json!({"value": "f648f8d5ea4e4cd38e9c"}));

        let out = patch(
            &out,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {
                        "op": "Remove",
                        "path": "members",
                        "value": [
                            {
                                "$ref": null,
                                "value": "f648f8d5ea4e4cd38e9c"
                            }
                        ]
                    }
                ]
            }),
        )
        .unwrap();
        assert_eq!(out, doc);

        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {
                        "op": "Replace",
                        "path": "displayName",
                        "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
                    }
                ]
            }),
        )
        .unwrap();
        assert_eq!(
            out["displayName"],
            "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
        );
    }

    #[test]
    fn okta_requests() {
        let out = patch(
            &user(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "replace",
                    "value": {
                        "active": false
                    }
                }]
            }),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        let mut expected = user();
        expected["active"] = json!(false);
        assert_eq!(out, expected);

        let doc = group(1);
        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "replace",
                    "value": {
                        "id": "g0000001",
                        "displayName": "Test SCIMv2"
                    }
                }]
            }),
        )
        .unwrap();
        assert_eq!(out["displayName"], "Test SCIMv2");

        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "add",
                    "path": "members",
                    "value": [{
                        "value": "23a35c27-23d3-4c03-b4c5-6443c09e7173",
                        "display": "test.user@okta.local"
                    }]
                }]
            }),
        )
        .unwrap();
        assert_eq!(
            out["members"][1]["value"],
            "23a35c27-23d3-4c03-b4c5-6443c09e7173"
        );

        let out = patch(
            &out,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "remove",
                    "path": "members[value eq \"23a35c27-23d3-4c03-b4c5-6443c09e7173\"]"
                }]
            }),
        )
        .unwrap();
        assert_eq!(out, doc);

        let out = patch(
            &doc,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "replace",
                    "path": "members",
                    "value": [
                        {"value": "00u1", "display": "one@okta.local"},
                        {"value": "00u2", "display": "two@okta.local"},
                        {"value": "00u1", "display": "one@okta.local"}
                    ]
                }]
            }),
        )
        .unwrap();
        assert_eq!(
            out["members"],
            json!([{"value": "00u1", "display": "one@okta.local"}, {"value": "00u2", "display": "two@okta.local"}])
        );
    }

    // --- large member batches --------------------------------------------------------------

    /// Applies the operations one request at a time: what a run must be equivalent to.
    fn one_by_one(doc: &Value, operations: &[Operation]) -> Value {
        let mut doc = doc.clone();
        for operation in operations {
            apply(&mut doc, std::slice::from_ref(operation)).unwrap();
        }
        doc
    }

    #[test]
    fn large_member_batches() {
        let started = std::time::Instant::now();
        let doc = group(10_000);
        // Okta: one op adding 10,000 members, half of them already there.
        let added: Vec<Value> = (5_000..15_000)
            .map(|i| json!({"value": format!("u{i:07}")}))
            .collect();
        let out = ok(
            &doc,
            json!([{"op": "add", "path": "members", "value": added}]),
        );
        assert_eq!(out["members"].as_array().unwrap().len(), 15_000);
        // Entra: remove 5,000 by value.
        let removed: Vec<Value> = (0..5_000)
            .map(|i| json!({"value": format!("u{i:07}")}))
            .collect();
        let out = ok(
            &out,
            json!([{"op": "Remove", "path": "members", "value": removed}]),
        );
        assert_eq!(out["members"].as_array().unwrap().len(), 10_000);
        assert_eq!(out["members"][0]["value"], "u0005000");
        // 10,000 single-member operations in one request.
        let operations: Vec<Value> = (5_000..15_000)
            .map(|i| json!({"op": "remove", "path": format!("members[value eq \"U{i:07}\"]")}))
            .collect();
        let out = ok(&out, Value::Array(operations));
        assert!(out.get("members").is_none());
        let operations: Vec<Value> = (0..10_000)
            .map(|i| json!({"op": "add", "path": "members", "value": [{"value": format!("n{i}")}]}))
            .collect();
        let out = ok(&doc, Value::Array(operations));
        assert_eq!(out["members"].as_array().unwrap().len(), 20_000);
        // Quadratic work would take minutes here.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn member_runs_match_one_by_one() {
        let doc = group(6);
        let request = body(json!([
            {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "u0000001", "display": "One"}]},
            {"op": "add", "path": "members", "value": [{"value": "b"}, {"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"U0000002\"]"},
            {"op": "remove", "path": "members", "value": [{"value": "a"}, "u0000003"]},
            {"op": "remove", "path": "members[value eq \"nobody\"]"},
            {"op": "remove", "path": "members[value eq \"b\"]"},
            {"op": "add", "path": "members", "value": [{"value": "c", "$ref": null}]},
            {"op": "remove", "path": "members[display eq \"User 4\"]"},
            {"op": "replace", "path": "displayName", "value": "X"}
        ]));
        let operations = parse(&request).unwrap();
        assert_eq!(run_len(&operations), 2);
        assert_eq!(run_len(&operations[2..]), 4);
        assert_eq!(run_len(&operations[7..]), 1);
        let mut together = doc.clone();
        apply(&mut together, &operations).unwrap();
        assert_eq!(together, one_by_one(&doc, &operations));
        let values: Vec<&str> = together["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["u0000000", "u0000001", "u0000005", "c"]);
        assert_eq!(together["members"][1]["display"], "One");

        // Removing every member in a run drops the attribute, then adding recreates it.
        let operations = parse(&body(json!([
            {"op": "remove", "path": "members", "value": [{"value": "u0000000"}]},
            {"op": "remove", "path": "members[value eq \"u0000001\"]"},
            {"op": "add", "path": "members", "value": [{"value": "z"}]}
        ])))
        .unwrap();
        let mut together = group(2);
        apply(&mut together, &operations).unwrap();
        assert_eq!(together, one_by_one(&group(2), &operations));
        assert_eq!(together["members"], json!([{"value": "z"}]));
    }

    #[test]
    fn add_runs_match_one_by_one() {
        let mut doc = user();
        doc["phoneNumbers"] = json!([]);
        let request = body(json!([
            {"op": "add", "path": "emails", "value": [{"value": "a@x.io", "primary": true}]},
            {"op": "add", "value": {"phoneNumbers": [{"value": "1", "primary": "True"}],
                                    "Emails": {"value": "b@x.io", "type": "home"}}},
            {"op": "add", "path": "emails", "value": {"value": "a@x.io", "type": "work", "display": null}},
            {"op": "add", "path": "ims", "value": "ada@chat"},
            {"op": "add", "path": "emails", "value": [{"value": "c@x.io", "primary": true},
                                                      {"value": "d@x.io", "primary": true}]},
            {"op": "add", "path": "phoneNumbers", "value": [null]},
            {"op": "add", "path": "photos", "value": [null]},
            {"op": "add", "path": "emails", "value": [{"value": "feifei.kay42@example.com", "primary": true}]},
            {"op": "add", "path": "emails[type eq \"home\"].display", "value": "Home"},
            {"op": "add", "path": "emails", "value": [{"value": "e@x.io"}]},
            {"op": "add", "path": "groups", "value": [{"value": "g"}]}
        ]));
        let operations = parse(&request).unwrap();
        assert_eq!(run_len(&operations), 8);
        assert_eq!(run_len(&operations[8..]), 1);
        assert_eq!(run_len(&operations[9..]), 1);
        let ok_part = &operations[..10];
        let mut together = doc.clone();
        apply(&mut together, ok_part).unwrap();
        assert_eq!(together, one_by_one(&doc, ok_part));
        let primaries: Vec<&str> = together["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == json!(true))
            .map(|e| e["value"].as_str().unwrap())
            .collect();
        assert_eq!(primaries, ["feifei.kay42@example.com"]);
        assert_eq!(
            together["phoneNumbers"],
            json!([{"value": "1", "primary": true}])
        );
        assert!(together.get("photos").is_none());
        // `groups` is read-only: it never joins a run, and fails on its own.
        let e = apply(&mut together, &operations).unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
        assert!(e.detail.starts_with("Operations[10]"), "{}", e.detail);
    }

    #[test]
    fn add_runs_are_bounded_per_operation() {
        let operations: Vec<Operation> = (0..5)
            .map(|i| Operation {
                op: Op::Add,
                path: Some(path::parse("emails").unwrap()),
                value: Some(json!([{"value": format!("{i}@x.io")}])),
            })
            .collect();
        let mut doc = json!({"emails": [{"value": "a@x.io"}]});
        let e = apply_within(&mut doc, &operations, 4).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
        assert!(e.detail.starts_with("Operations[3]"), "{}", e.detail);
        assert!(e.detail.contains("`emails` has 5 values"), "{}", e.detail);
        assert_eq!(doc, json!({"emails": [{"value": "a@x.io"}]}));
        // Not in a run: the same bound.
        let mut doc = json!({"emails": [{"value": "a@x.io"}]});
        let e = apply_within(&mut doc, &operations[..1], 1).unwrap_err();
        assert!(e.detail.contains("`emails` has 2 values"), "{}", e.detail);
        // A user's groups and a group's members are not values the bound counts.
        let mut doc = json!({"groups": [{"value": "g1"}, {"value": "g2"}, {"value": "g3"}],
                             "members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}]});
        let members = Operation {
            op: Op::Add,
            path: Some(path::parse("members").unwrap()),
            value: Some(json!([{"value": "u4"}])),
        };
        let title = Operation {
            op: Op::Replace,
            path: Some(path::parse("title").unwrap()),
            value: Some(json!("x")),
        };
        apply_within(&mut doc, &[members.clone(), members, title], 2).unwrap();
        assert_eq!(doc["members"].as_array().unwrap().len(), 4);
    }

    /// 100,000 operations adding one email each (path or no path): one hashed index per
    /// attribute for the whole run, so this is linear (it took minutes when quadratic).
    #[test]
    fn hundred_thousand_single_value_adds() {
        let with_path: Vec<Operation> = (0..100_000)
            .map(|i| Operation {
                op: Op::Add,
                path: Some(path::parse("emails").unwrap()),
                value: Some(json!([{"value": format!("{i}@x.io"), "type": "work"}])),
            })
            .collect();
        assert_eq!(run_len(&with_path), 100_000);
        let mut doc = user();
        apply(&mut doc, &with_path).unwrap();
        assert_eq!(doc["emails"].as_array().unwrap().len(), 100_002);
        let without_path: Vec<Operation> = (0..100_000)
            .map(|i| Operation {
                op: Op::Add,
                path: None,
                value: Some(json!({"emails": [{"value": format!("{}@x.io", i % 50_000)}]})),
            })
            .collect();
        assert_eq!(run_len(&without_path), 100_000);
        let mut doc = user();
        apply(&mut doc, &without_path).unwrap();
        assert_eq!(doc["emails"].as_array().unwrap().len(), 50_002);
    }
}
