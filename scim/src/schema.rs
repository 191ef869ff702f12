//! The schema URNs this service provider speaks, and the attributes it serves.

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Portcullis's own extension of User: what the IdP says about the user's MFA.
pub const PORTCULLIS_USER: &str =
    "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The top-level attributes of the core User schema (lower-cased), as served.
pub const USER_ATTRIBUTES: &[&str] = &[
    "username",
    "name",
    "displayname",
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    "active",
    "emails",
    "phonenumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509certificates",
];

/// The attributes of the enterprise extension (lower-cased).
pub const ENTERPRISE_ATTRIBUTES: &[&str] = &[
    "employeenumber",
    "costcenter",
    "organization",
    "division",
    "department",
    "manager",
];

/// The attributes of the Portcullis extension (lower-cased).
pub const PORTCULLIS_ATTRIBUTES: &[&str] = &["mfaenabled"];

/// The top-level attributes of the core Group schema (lower-cased).
pub const GROUP_ATTRIBUTES: &[&str] = &["displayname", "members"];

/// Attributes every resource has (lower-cased).
pub const COMMON_ATTRIBUTES: &[&str] = &["id", "externalid", "meta", "schemas"];

/// The sub-attributes of `meta` (lower-cased).
pub const META_ATTRIBUTES: &[&str] = &[
    "resourcetype",
    "created",
    "lastmodified",
    "location",
    "version",
];

/// The kinds of resource served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::User => "User",
            Resource::Group => "Group",
        }
    }

    /// The endpoint under the base URL: `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Resource::User => "Users",
            Resource::Group => "Groups",
        }
    }

    pub fn core_schema(self) -> &'static str {
        match self {
            Resource::User => USER,
            Resource::Group => GROUP,
        }
    }

    /// Whether a filter may name `path` (an attribute path such as `name.givenName`, `meta.lastModified`
    /// or `urn:…:enterprise:2.0:User:manager.value`, in any case): the attribute is one the server
    /// serves. Attributes of extensions the server does not know are kept and served as received,
    /// so any path under an unknown `urn:` is allowed.
    pub fn serves(self, path: &str) -> bool {
        let lower = path.trim().to_lowercase();
        // Value filters (`emails[type eq "work"]`) name their attribute before the bracket.
        let path = lower.split('[').next().unwrap_or_default();
        let known: &[(&str, &[&str])] = match self {
            Resource::User => &[
                (USER, USER_ATTRIBUTES),
                (ENTERPRISE_USER, ENTERPRISE_ATTRIBUTES),
                (PORTCULLIS_USER, PORTCULLIS_ATTRIBUTES),
            ],
            Resource::Group => &[(GROUP, GROUP_ATTRIBUTES)],
        };
        let (attributes, rest): (&[&str], &str) = if path.starts_with("urn:") {
            match known.iter().find_map(|(urn, attributes)| {
                let urn = urn.to_lowercase();
                let rest = path.strip_prefix(urn.as_str())?;
                Some((*attributes, rest))
            }) {
                Some((attributes, rest)) => match rest.strip_prefix(':') {
                    Some(rest) => (attributes, rest),
                    // The extension itself (`…:User` with no attribute) is present or not.
                    None => return rest.is_empty(),
                },
                // Another resource's or an unknown extension.
                None => {
                    let other = [USER, GROUP, ENTERPRISE_USER, PORTCULLIS_USER]
                        .iter()
                        .any(|urn| path.starts_with(&urn.to_lowercase()));
                    return !other;
                }
            }
        } else {
            let own = match self {
                Resource::User => USER_ATTRIBUTES,
                Resource::Group => GROUP_ATTRIBUTES,
            };
            (own, path)
        };
        let mut segments = rest.splitn(2, '.');
        let top = segments.next().unwrap_or_default();
        let sub = segments.next();
        if top == "meta" {
            return sub.is_none_or(|s| META_ATTRIBUTES.contains(&s));
        }
        attributes.contains(&top) || COMMON_ATTRIBUTES.contains(&top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_attributes() {
        assert!(Resource::User.serves("userName"));
        assert!(Resource::User.serves("emails.value"));
        assert!(Resource::User.serves("emails[type eq \"work\"].value"));
        assert!(Resource::User.serves("meta.lastModified"));
        assert!(!Resource::User.serves("meta.nonsense"));
        assert!(
            Resource::User
                .serves("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
        );
        assert!(Resource::User.serves(&format!("{PORTCULLIS_USER}:mfaEnabled")));
        assert!(!Resource::User.serves(&format!("{PORTCULLIS_USER}:shoeSize")));
        assert!(Resource::User.serves("urn:example:custom:2.0:User:badge"));
        assert!(!Resource::User.serves("shoeSize"));
        assert!(!Resource::User.serves("members.value"));
        assert!(Resource::Group.serves("members.value"));
        assert!(Resource::Group.serves("displayName"));
        assert!(!Resource::Group.serves("userName"));
        assert!(!Resource::Group.serves(&format!("{USER}:userName")));
        assert!(Resource::Group.serves(&format!("{GROUP}:displayName")));
    }
}
