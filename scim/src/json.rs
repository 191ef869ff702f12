//! SCIM attribute names are case-insensitive (RFC 7643 §2.1): object access that ignores case.

use serde_json::{Map, Value};

/// The value of `key` in `value` if it is an object, matching the name ignoring case (an exact
/// match first).
pub fn get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    field(value.as_object()?, key)
}

/// The value of `key` in `object`, matching the name ignoring case (an exact match first).
pub fn field<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The name `key` has in `object`, ignoring case.
fn name_in(object: &Map<String, Value>, key: &str) -> Option<String> {
    if object.contains_key(key) {
        return Some(key.to_owned());
    }
    object.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Removes every spelling of `key`; returns the first removed.
pub fn remove(object: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let mut first = None;
    while let Some(name) = name_in(object, key) {
        let removed = object.remove(&name);
        if first.is_none() {
            first = removed;
        }
    }
    first
}

/// Sets `key` (spelled as given), replacing every other spelling of it.
pub fn set(object: &mut Map<String, Value>, key: &str, value: Value) {
    remove(object, key);
    object.insert(key.to_owned(), value);
}

/// Runs `change` on the object at `key` (an empty one if missing or not an object), then puts
/// it back under `key` as spelled here, or drops it if it ended up empty.
pub fn with_object<R>(
    object: &mut Map<String, Value>,
    key: &str,
    change: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    let mut inner = match remove(object, key) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    };
    let out = change(&mut inner);
    if !inner.is_empty() {
        object.insert(key.to_owned(), Value::Object(inner));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ignores_case() {
        let mut v = json!({"UserName": "a", "active": true});
        assert_eq!(get(&v, "userName"), Some(&json!("a")));
        let object = v.as_object_mut().unwrap();
        set(object, "userName", json!("b"));
        assert_eq!(
            Value::Object(object.clone()),
            json!({"userName": "b", "active": true})
        );
        assert_eq!(remove(object, "ACTIVE"), Some(json!(true)));
        with_object(object, "name", |name| {
            name.insert("givenName".into(), json!("G"))
        });
        assert_eq!(get(&v, "name"), Some(&json!({"givenName": "G"})));
    }
}
