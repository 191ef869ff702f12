//! Every bound on what one SCIM request may write, in one place, checked in one place.
//!
//! A SCIM write is computed outside the store's write lock, but it is still stored, kept in
//! memory and sent to every sidecar: an unbounded attribute costs memory on each of them, and a
//! user name longer than the decision API accepts could never be checked. So every document
//! a write would store passes [`Limits::check_user`] or [`Limits::check_group`] (called where
//! the write is prepared: `users::prepare_write`, `groups::prepare_write`), and a PATCH passes
//! [`Limits::check_operations`] before it is even parsed. Errors are 400 `invalidValue` naming
//! the attribute and the limit (`tooMany` for too many operations).
//!
//! The counts and the sizes of bodies, documents, filters and paths are settings
//! (`--scim-max-…`); the lengths of strings are fixed: identifiers match the decision API's bound
//! on a user reference ([`pdp::identity::MAX_KEY_LEN`]).

use crate::{Result, ScimError, json};
use serde_json::{Map, Value};

/// Longest identifier, in bytes: `userName`, `externalId` (users and groups) and each email
/// `value`, the keys a decision request may name a user by.
pub const MAX_IDENTIFIER: usize = pdp::identity::MAX_KEY_LEN;

/// Longest other string anywhere in a document, in bytes (`displayName`, name parts, titles,
/// URLs, extension attributes…).
pub const MAX_STRING: usize = 2048;

/// The bounds of SCIM writes (`portcullis serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
#[group(id = "scim_limits")]
pub struct Limits {
    /// The most operations one SCIM PATCH may carry (400 `tooMany` beyond).
    #[arg(
        long = "scim-max-operations",
        env = "PORTCULLIS_SCIM_MAX_OPERATIONS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub scim_max_operations: u32,
    /// The most values of any multi-valued attribute of a SCIM user or group document
    /// (`emails`, `phoneNumbers`, …; a group's `members` have their own bound), 400
    /// `invalidValue` beyond.
    #[arg(
        long = "scim-max-values",
        env = "PORTCULLIS_SCIM_MAX_VALUES",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub scim_max_values: u32,
    /// The most group memberships one SCIM request may add and remove together (a POST's or
    /// PUT's `members`, a PATCH's member operations), 400 `invalidValue` beyond: each is a
    /// write while the store's write lock is held. Bigger groups are built in several PATCHes.
    #[arg(
        long = "scim-max-member-changes",
        env = "PORTCULLIS_SCIM_MAX_MEMBER_CHANGES",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub scim_max_member_changes: u32,
    /// The largest stored SCIM document of one user or group, in bytes of JSON (without a
    /// group's members), 400 `invalidValue` beyond.
    #[arg(
        long = "scim-max-document-bytes",
        env = "PORTCULLIS_SCIM_MAX_DOCUMENT_BYTES",
        default_value_t = 256 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..)
    )]
    pub scim_max_document_bytes: u32,
    /// The largest SCIM request body, in bytes, 413 beyond (in the RFC 7644 error form).
    #[arg(
        long = "scim-max-body-bytes",
        env = "PORTCULLIS_SCIM_MAX_BODY_BYTES",
        default_value_t = 4 * 1024 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..)
    )]
    pub scim_max_body_bytes: u32,
    /// The longest SCIM filter (`filter=`) or PATCH `path`, in bytes, 400 `invalidFilter` /
    /// `invalidPath` beyond.
    #[arg(
        long = "scim-max-filter-bytes",
        env = "PORTCULLIS_SCIM_MAX_FILTER_BYTES",
        default_value_t = crate::filter::MAX_FILTER_LEN as u32,
        value_parser = clap::value_parser!(u32).range(64..=1024 * 1024)
    )]
    pub scim_max_filter_bytes: u32,
    /// The deepest nesting of parentheses, `not ( )` and value filters `[ ]` in a SCIM filter
    /// or PATCH `path`, 400 `invalidFilter` / `invalidPath` beyond. The parser recurses once per
    /// level, hence the ceiling.
    #[arg(
        long = "scim-max-filter-depth",
        env = "PORTCULLIS_SCIM_MAX_FILTER_DEPTH",
        default_value_t = crate::filter::MAX_DEPTH as u32,
        value_parser = clap::value_parser!(u32).range(1..=128)
    )]
    pub scim_max_filter_depth: u32,
    /// The deepest nesting of a request body (`json-max-depth`, a setting of its own: AuthZEN
    /// bodies keep to it too), 400 `invalidSyntax` beyond.
    #[arg(skip = pdp_service::json_depth::DEFAULT_JSON_DEPTH as u32)]
    pub json_max_depth: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            scim_max_operations: 1_000,
            scim_max_values: 1_000,
            scim_max_member_changes: 10_000,
            scim_max_document_bytes: 256 * 1024,
            scim_max_body_bytes: 4 * 1024 * 1024,
            scim_max_filter_bytes: crate::filter::MAX_FILTER_LEN as u32,
            scim_max_filter_depth: crate::filter::MAX_DEPTH as u32,
            json_max_depth: pdp_service::json_depth::DEFAULT_JSON_DEPTH as u32,
        }
    }
}

/// Attributes of a user that are identifiers: top-level names, matched ignoring case.
const USER_IDENTIFIERS: &[&str] = &["userName", "externalId"];

impl Limits {
    /// `tooMany` when a PatchOp body lists more operations than allowed; anything else is left
    /// to the parser.
    pub fn check_operations(&self, body: &Value) -> Result<()> {
        let count = json::get(body, "Operations")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if count > self.scim_max_operations as usize {
            return Err(ScimError::bad_request(
                "tooMany",
                format!(
                    "{count} operations in one PATCH; the limit is {} (send them in several \
                     requests)",
                    self.scim_max_operations
                ),
            ));
        }
        Ok(())
    }

    /// How long and deep a filter or a PATCH path may be.
    pub fn filter_bounds(&self) -> crate::filter::Bounds {
        crate::filter::Bounds {
            max_bytes: self.scim_max_filter_bytes as usize,
            max_depth: self.scim_max_filter_depth as usize,
        }
    }

    /// The most values a multi-valued attribute may hold.
    pub fn max_values(&self) -> usize {
        self.scim_max_values as usize
    }

    /// A user's document as it would be stored: identifiers, strings, values and size.
    pub fn check_user(&self, doc: &Map<String, Value>) -> Result<()> {
        for key in USER_IDENTIFIERS {
            if let Some(Value::String(s)) = json::field(doc, key) {
                identifier(key, s)?;
            }
        }
        let emails = match json::field(doc, "emails") {
            Some(Value::Array(emails)) => emails.as_slice(),
            // A lone value counts as one (`resource::items`).
            Some(email @ Value::Object(_)) => std::slice::from_ref(email),
            _ => &[],
        };
        for (i, email) in emails.iter().enumerate() {
            let value = match email {
                Value::String(s) => Some(s),
                Value::Object(o) => match json::field(o, "value") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                },
                _ => None,
            };
            if let Some(value) = value {
                identifier(&format!("emails[{i}].value"), value)?;
            }
        }
        self.check_document(doc)
    }

    /// A group's document as it would be stored (without members), and how many memberships
    /// the write adds and removes.
    pub fn check_group(&self, doc: &Map<String, Value>, member_changes: usize) -> Result<()> {
        if let Some(Value::String(s)) = json::field(doc, "externalId") {
            identifier("externalId", s)?;
        }
        if member_changes > self.scim_max_member_changes as usize {
            return Err(ScimError::invalid_value(format!(
                "`members`: this request adds and removes {member_changes} members; the limit \
                 is {} per request (send them in several PATCHes)",
                self.scim_max_member_changes
            )));
        }
        self.check_document(doc)
    }

    /// Every string and array in `doc`, then its size.
    fn check_document(&self, doc: &Map<String, Value>) -> Result<()> {
        let mut path = Vec::new();
        for (key, value) in doc {
            path.push(Step::Key(key));
            self.walk(value, &mut path)?;
            path.pop();
        }
        let bytes = json_len(doc);
        if bytes > self.scim_max_document_bytes as usize {
            return Err(ScimError::invalid_value(format!(
                "the document is {bytes} bytes of JSON; the limit is {} bytes",
                self.scim_max_document_bytes
            )));
        }
        Ok(())
    }

    fn walk<'v>(&self, value: &'v Value, path: &mut Vec<Step<'v>>) -> Result<()> {
        match value {
            Value::String(s) if s.len() > MAX_STRING => Err(ScimError::invalid_value(format!(
                "`{}` is {} bytes long; the limit is {MAX_STRING} bytes",
                name(path),
                s.len()
            ))),
            Value::Array(items) => {
                if items.len() > self.max_values() {
                    return Err(too_many_values(&name(path), items.len(), self.max_values()));
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.walk(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, value) in map {
                    path.push(Step::Key(key));
                    self.walk(value, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `invalidValue` for an attribute with more values than `max`.
pub fn too_many_values(attribute: &str, count: usize, max: usize) -> ScimError {
    ScimError::invalid_value(format!(
        "`{attribute}` has {count} values; the limit is {max} values per attribute"
    ))
}

fn identifier(attribute: &str, value: &str) -> Result<()> {
    if value.len() > MAX_IDENTIFIER {
        return Err(ScimError::invalid_value(format!(
            "`{attribute}` is {} bytes long; the limit is {MAX_IDENTIFIER} bytes for an \
             identifier (the decision API's bound on a user reference)",
            value.len()
        )));
    }
    Ok(())
}

enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// `emails[2].value`, `urn:…:User.department`.
fn name(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The length of `doc` as compact JSON, without building it.
fn json_len(doc: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Map` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, doc);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn identifiers_strings_values_and_size_are_bounded() {
        let limits = Limits {
            scim_max_values: 3,
            scim_max_document_bytes: 2048,
            ..Limits::default()
        };
        let ok = map(json!({"userName": "a".repeat(1024), "emails": [{"value": "x"}]}));
        assert!(limits.check_user(&ok).is_ok());
        let error = |doc: Value| {
            let e = limits.check_user(&map(doc)).unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")));
            e.detail
        };
        assert!(error(json!({"userName": "a".repeat(1025)})).contains("`userName`"));
        assert!(error(json!({"ExternalID": "a".repeat(1025)})).contains("`externalId`"));
        let detail = error(json!({"emails": ["x", {"value": "a".repeat(1025)}]}));
        assert!(detail.contains("`emails[1].value`"), "{detail}");
        let detail = error(json!({"name": {"givenName": "a".repeat(MAX_STRING + 1)}}));
        assert!(detail.contains("`name.givenName`"), "{detail}");
        let detail = error(json!({"phoneNumbers": [1, 2, 3, 4]}));
        assert!(detail.contains("`phoneNumbers` has 4 values"), "{detail}");
        let detail = error(json!({"a": "a".repeat(1500), "b": "b".repeat(1500)}));
        assert!(detail.contains("limit is 2048 bytes"), "{detail}");
    }

    #[test]
    fn too_many_operations_is_too_many() {
        let limits = Limits {
            scim_max_operations: 2,
            ..Limits::default()
        };
        assert!(
            limits
                .check_operations(&json!({"Operations": [1, 2]}))
                .is_ok()
        );
        let e = limits
            .check_operations(&json!({"operations": [1, 2, 3]}))
            .unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("tooMany")));
    }

    #[test]
    fn member_changes_are_bounded() {
        let limits = Limits {
            scim_max_member_changes: 2,
            ..Limits::default()
        };
        assert!(limits.check_group(&Map::new(), 2).is_ok());
        let e = limits.check_group(&Map::new(), 3).unwrap_err();
        assert!(e.detail.contains("`members`"), "{}", e.detail);
    }
}
