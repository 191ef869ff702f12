//! SCIM attribute paths (RFC 7644 §3.10 and the PATCH `path` grammar of §3.5.2).
//!
//! ```text
//! PATH      = attrPath / valuePath [subAttr]
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! valuePath = attrPath "[" valFilter "]"
//! subAttr   = "." ATTRNAME
//! ```
//!
//! A schema URN prefix is everything up to the last `:` before the attribute name
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value` is the URN
//! `urn:…:enterprise:2.0:User`, the attribute `manager` and the sub-attribute `value`). Attributes
//! qualified by a core schema URN (`urn:ietf:params:scim:schemas:core:2.0:User:userName`) live at
//! the top of the document, like unqualified ones; attributes of an extension live in the object
//! stored under the extension's URN. Attribute names are matched case-insensitively everywhere;
//! the paths keep the spelling they were given (used when an attribute is created).
//!
//! Besides the RFC's `ALPHA *(ALPHA / DIGIT / "-" / "_")`, an attribute name may start with `$`
//! (`members.$ref`).

use std::fmt;

use crate::filter::{self, Filter};
use crate::{Result, ScimError};

/// Longest path accepted by default, in bytes. A path may hold a value filter, so the server's
/// filter bounds ([`filter::Bounds`], `scim-max-filter-bytes` and `scim-max-filter-depth`)
/// bound it too.
pub const MAX_PATH_LEN: usize = filter::MAX_FILTER_LEN;

/// The prefix shared by the core schemas (`…:core:2.0:User`, `…:core:2.0:Group`).
pub const CORE_SCHEMA_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Portcullis' own User extension (`mfaEnabled`).
pub const PORTCULLIS_USER: &str =
    "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User";

/// An attribute path without a value filter: optional schema URN, attribute, optional
/// sub-attribute. What filters compare (`name.familyName eq "x"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attribute: String,
    pub sub_attribute: Option<String>,
}

/// A parsed attribute path: optional schema URN, attribute, optional value filter, optional
/// sub-attribute (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub urn: Option<String>,
    pub attribute: String,
    pub filter: Option<Filter>,
    pub sub_attribute: Option<String>,
}

/// Parses a PATCH path (or an `attributes=` entry) within the default [`filter::Bounds`]:
/// `invalidPath` on errors.
pub fn parse(text: &str) -> Result<Path> {
    parse_within(text, filter::Bounds::default())
}

/// [`parse`] within `bounds` (the server's filter settings).
pub fn parse_within(text: &str, bounds: filter::Bounds) -> Result<Path> {
    parse_path(text, bounds)
        .map_err(|why| ScimError::invalid_path(format!("invalid path `{text}`: {why}")))
}

fn parse_path(text: &str, bounds: filter::Bounds) -> std::result::Result<Path, String> {
    if text.len() > bounds.max_bytes {
        return Err(format!(
            "longer than {} bytes (`scim-max-filter-bytes`)",
            bounds.max_bytes
        ));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty path".into());
    }
    let Some(open) = trimmed.find('[') else {
        let attr = parse_attr_path(trimmed)?;
        return Ok(Path {
            urn: attr.urn,
            attribute: attr.attribute,
            filter: None,
            sub_attribute: attr.sub_attribute,
        });
    };
    let head = &trimmed[..open];
    if head.trim().is_empty() {
        return Err("missing attribute name before `[`".into());
    }
    let attr = parse_attr_path(head)?;
    if attr.sub_attribute.is_some() {
        return Err(format!(
            "a value filter applies to an attribute, not to the sub-attribute `{}`",
            attr
        ));
    }
    let (filter, end) = filter::parse_value_filter(trimmed, open + 1, bounds.max_depth)?;
    let rest = &trimmed[end..];
    let sub_attribute = if rest.is_empty() {
        None
    } else if let Some(sub) = rest.strip_prefix('.') {
        check_name(sub)?;
        Some(sub.to_string())
    } else {
        return Err(format!(
            "unexpected `{rest}` after `]`: only `.subAttribute` may follow a value filter"
        ));
    };
    Ok(Path {
        urn: attr.urn,
        attribute: attr.attribute,
        filter: Some(filter),
        sub_attribute,
    })
}

/// Parses `[urn:]attribute[.subAttribute]` (no value filter). The error is a detail, without
/// the `scimType`, for the caller to wrap.
pub(crate) fn parse_attr_path(text: &str) -> std::result::Result<AttrPath, String> {
    let (urn, rest) = if has_prefix_ci(text, "urn:") {
        let colon = text.rfind(':').unwrap_or_default();
        let (urn, rest) = (&text[..colon], &text[colon + 1..]);
        if urn.len() <= "urn:".len() {
            return Err(format!("`{text}`: missing schema URN or attribute name"));
        }
        if rest.is_empty() {
            return Err(format!(
                "missing attribute name after the schema URN `{urn}`"
            ));
        }
        (Some(urn.to_string()), rest)
    } else if text.contains(':') {
        return Err(format!(
            "`{text}`: only a schema URN (`urn:…:attribute`) may contain `:`"
        ));
    } else {
        (None, text)
    };
    let mut parts = rest.split('.');
    let attribute = parts.next().unwrap_or_default();
    let sub_attribute = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "`{text}`: at most one sub-attribute (`attribute.subAttribute`)"
        ));
    }
    check_name(attribute)?;
    if let Some(sub) = sub_attribute {
        check_name(sub)?;
    }
    Ok(AttrPath {
        urn,
        attribute: attribute.to_string(),
        sub_attribute: sub_attribute.map(str::to_string),
    })
}

/// `ATTRNAME = ALPHA *(ALPHA / DIGIT / "-" / "_")`, or `$` and such a tail (`$ref`).
fn check_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '$' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else if name.is_empty() {
        Err("missing attribute name".into())
    } else {
        Err(format!(
            "invalid attribute name `{name}` (a letter, then letters, digits, `-` or `_`)"
        ))
    }
}

fn has_prefix_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Whether `urn` names a core schema (whose attributes live at the top of the document).
pub fn is_core_schema(urn: &str) -> bool {
    has_prefix_ci(urn, CORE_SCHEMA_PREFIX)
}

fn lower_key(urn: Option<&str>, attribute: &str, sub: Option<&str>) -> String {
    let mut key = String::new();
    if let Some(urn) = urn.filter(|u| !is_core_schema(u)) {
        key.push_str(urn);
        key.push(':');
    }
    key.push_str(attribute);
    if let Some(sub) = sub {
        key.push('.');
        key.push_str(sub);
    }
    key.to_lowercase()
}

impl AttrPath {
    /// An unqualified path.
    pub fn new(attribute: impl Into<String>, sub_attribute: Option<&str>) -> AttrPath {
        AttrPath {
            urn: None,
            attribute: attribute.into(),
            sub_attribute: sub_attribute.map(str::to_string),
        }
    }

    /// The extension URN the attribute lives under, if any (not a core schema URN).
    pub fn extension(&self) -> Option<&str> {
        self.urn.as_deref().filter(|u| !is_core_schema(u))
    }

    /// The lower-cased path: `name.familyname`, `urn:…:2.0:user:department` (a core schema
    /// URN is dropped: `urn:…:core:2.0:User:userName` is `username`).
    pub fn key(&self) -> String {
        lower_key(
            self.urn.as_deref(),
            &self.attribute,
            self.sub_attribute.as_deref(),
        )
    }

    /// The name the path finally reads: the sub-attribute, else the attribute.
    pub fn leaf(&self) -> &str {
        self.sub_attribute.as_deref().unwrap_or(&self.attribute)
    }
}

impl Path {
    /// The extension URN the attribute lives under, if any (not a core schema URN).
    pub fn extension(&self) -> Option<&str> {
        self.urn.as_deref().filter(|u| !is_core_schema(u))
    }

    /// The lower-cased path without its filter: `emails.value`, `urn:…:2.0:user:manager`.
    pub fn key(&self) -> String {
        lower_key(
            self.urn.as_deref(),
            &self.attribute,
            self.sub_attribute.as_deref(),
        )
    }

    /// The path without its filter.
    pub fn attr_path(&self) -> AttrPath {
        AttrPath {
            urn: self.urn.clone(),
            attribute: self.attribute.clone(),
            sub_attribute: self.sub_attribute.clone(),
        }
    }

    /// When the path (URN and attribute, nothing else) spells a whole schema URN, e.g.
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`, which the grammar cannot tell
    /// from the attribute `User` of a schema `urn:…:2.0`: that URN. `known` are the extension URNs
    /// the caller serves (compared case-insensitively); the two Portcullis serves are always known.
    pub fn as_schema_urn<'a>(&self, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
        let urn = self.urn.as_deref()?;
        if self.filter.is_some() || self.sub_attribute.is_some() {
            return None;
        }
        let full = format!("{urn}:{}", self.attribute);
        let is_known = [ENTERPRISE_USER, PORTCULLIS_USER]
            .into_iter()
            .chain(known)
            .any(|k| k.eq_ignore_ascii_case(&full));
        is_known.then_some(full)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attribute)?;
        if let Some(sub) = &self.sub_attribute {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attribute)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attribute {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Path {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> ScimError {
        match parse(text) {
            Ok(path) => panic!("{text} parsed as {path:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn simple_attribute() {
        let path = p("userName");
        assert_eq!(path.urn, None);
        assert_eq!(path.attribute, "userName");
        assert!(path.filter.is_none());
        assert_eq!(path.sub_attribute, None);
        assert_eq!(path.key(), "username");
        assert_eq!(p("  active ").attribute, "active");
    }

    #[test]
    fn sub_attribute() {
        let path = p("name.familyName");
        assert_eq!(path.attribute, "name");
        assert_eq!(path.sub_attribute.as_deref(), Some("familyName"));
        assert_eq!(path.key(), "name.familyname");
        assert_eq!(p("members.$ref").sub_attribute.as_deref(), Some("$ref"));
        assert_eq!(p("meta.lastModified").key(), "meta.lastmodified");
    }

    #[test]
    fn urn_qualified() {
        let path = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department");
        assert_eq!(path.urn.as_deref(), Some(ENTERPRISE_USER));
        assert_eq!(path.attribute, "department");
        assert_eq!(path.extension(), Some(ENTERPRISE_USER));
        assert_eq!(
            path.key(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department"
        );

        let path = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(path.urn.as_deref(), Some(ENTERPRISE_USER));
        assert_eq!(path.attribute, "manager");
        assert_eq!(path.sub_attribute.as_deref(), Some("value"));

        let path = p("urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User:mfaEnabled");
        assert_eq!(path.urn.as_deref(), Some(PORTCULLIS_USER));
        assert_eq!(path.attribute, "mfaEnabled");
    }

    #[test]
    fn core_urn_is_top_level() {
        let path = p("urn:ietf:params:scim:schemas:core:2.0:User:userName");
        assert_eq!(
            path.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(path.extension(), None);
        assert_eq!(path.key(), "username");
        let path = p("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:Group:displayName");
        assert_eq!(path.extension(), None);
        assert_eq!(path.key(), "displayname");
    }

    #[test]
    fn whole_extension_urn() {
        let path = p(ENTERPRISE_USER);
        assert_eq!(path.attribute, "User");
        assert_eq!(path.as_schema_urn([]), Some(ENTERPRISE_USER.to_string()));
        let path = p(&ENTERPRISE_USER.to_lowercase());
        assert_eq!(path.as_schema_urn([]), Some(ENTERPRISE_USER.to_lowercase()));
        assert_eq!(p("urn:example:ext:1.0:Thing").as_schema_urn([]), None);
        assert_eq!(
            p("urn:example:ext:1.0:Thing").as_schema_urn(["urn:example:ext:1.0:thing"]),
            Some("urn:example:ext:1.0:Thing".to_string())
        );
        let department = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department");
        assert_eq!(department.as_schema_urn([]), None);
    }

    #[test]
    fn value_filter_path() {
        let path = p(r#"emails[type eq "work"].value"#);
        assert_eq!(path.attribute, "emails");
        assert_eq!(path.sub_attribute.as_deref(), Some("value"));
        let filter = path.filter.as_ref().unwrap();
        assert!(filter.matches(&json!({"type": "work", "value": "a@example.com"})));
        assert!(filter.matches(&json!({"type": "WORK"})));
        assert!(!filter.matches(&json!({"type": "home"})));
        assert_eq!(path.to_string(), r#"emails[type eq "work"].value"#);

        let path = p(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#);
        assert_eq!(path.attribute, "members");
        assert_eq!(path.sub_attribute, None);
        assert!(
            path.filter
                .unwrap()
                .matches(&json!({"value": "2819c223-7f76-453a-919d-413861904646"}))
        );

        let path = p(r#"addresses[type eq "work" and primary eq true].streetAddress"#);
        assert_eq!(path.sub_attribute.as_deref(), Some("streetAddress"));
        let filter = path.filter.unwrap();
        assert!(filter.matches(&json!({"type": "work", "primary": true})));
        assert!(!filter.matches(&json!({"type": "work", "primary": false})));
    }

    #[test]
    fn value_filter_with_brackets_in_strings() {
        let path = p(r#"emails[value eq "a]b[c"].display"#);
        assert_eq!(path.sub_attribute.as_deref(), Some("display"));
        assert!(path.filter.unwrap().matches(&json!({"value": "A]B[C"})));
    }

    #[test]
    fn urn_value_filter() {
        let path = p(r#"urn:example:ext:1.0:User:badges[kind eq "gold"].label"#);
        assert_eq!(path.urn.as_deref(), Some("urn:example:ext:1.0:User"));
        assert_eq!(path.attribute, "badges");
        assert_eq!(path.sub_attribute.as_deref(), Some("label"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "userName",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "a\"b"]"#,
        ] {
            assert_eq!(p(text).to_string(), text);
            assert_eq!(p(&p(text).to_string()), p(text));
        }
    }

    #[test]
    fn errors() {
        for (text, needle) in [
            ("", "empty path"),
            ("   ", "empty path"),
            ("a.b.c", "at most one sub-attribute"),
            ("emails[type eq \"work\"", "`]`"),
            ("emails[type eq \"work\"]value", "after `]`"),
            ("emails[type eq \"work\"].", "missing attribute name"),
            ("emails[type eq \"work\"].a.b", "invalid attribute name"),
            ("name.givenName[type eq \"x\"]", "not to the sub-attribute"),
            ("[type eq \"x\"]", "missing attribute name"),
            ("emails[]", "expression"),
            ("emails[type xx \"work\"]", "unknown operator `xx`"),
            ("emails[types[x eq 1]]", "nested"),
            ("1abc", "invalid attribute name"),
            ("user name", "invalid attribute name"),
            ("foo:bar", "schema URN"),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:",
                "missing attribute",
            ),
            ("urn:", "missing"),
            ("name..x", "at most one sub-attribute"),
            ("name.", "missing attribute name"),
        ] {
            let e = err(text);
            assert_eq!(e.scim_type, Some("invalidPath"), "{text}");
            assert_eq!(e.status, 400);
            assert!(e.detail.contains(needle), "{text}: {}", e.detail);
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert!(err(&long).detail.contains("longer than"));
    }
}
