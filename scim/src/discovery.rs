//! Discovery (RFC 7644 §4, RFC 7643 §5–7): `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`, describing exactly what this server supports.

use crate::http::{self, Ctx};
use crate::list::MAX_RESULTS;
use crate::schema::{self, Resource};
use crate::{Result, ScimError};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

pub async fn service_provider_config(ctx: Ctx) -> Response {
    let body = json!({
        "schemas": [schema::SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A SCIM connection's token, sent as `Authorization: Bearer <token>`",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", ctx.base),
        },
    });
    http::scim_json(StatusCode::OK, &body)
}

fn resource_type(base: &str, resource: Resource) -> Value {
    let (description, extensions) = match resource {
        Resource::User => (
            "People the identity provider provisions",
            json!([
                {"schema": schema::ENTERPRISE_USER, "required": false},
                {"schema": schema::PORTCULLIS_USER, "required": false},
            ]),
        ),
        Resource::Group => ("Groups of users the identity provider manages", json!([])),
    };
    json!({
        "schemas": [schema::RESOURCE_TYPE],
        "id": resource.name(),
        "name": resource.name(),
        "endpoint": format!("/{}", resource.endpoint()),
        "description": description,
        "schema": resource.core_schema(),
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", resource.name()),
        },
    })
}

fn list(resources: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    });
    http::scim_json(StatusCode::OK, &body)
}

pub async fn resource_types(ctx: Ctx) -> Response {
    list(vec![
        resource_type(&ctx.base, Resource::User),
        resource_type(&ctx.base, Resource::Group),
    ])
}

pub async fn resource_type_by_name(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    let resource = [Resource::User, Resource::Group]
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(&name))
        .ok_or_else(|| ScimError::not_found(format!("resource type `{name}` not found")))?;
    Ok(http::scim_json(
        StatusCode::OK,
        &resource_type(&ctx.base, resource),
    ))
}

pub async fn schemas(ctx: Ctx) -> Response {
    list(
        SCHEMAS
            .iter()
            .map(|(urn, _, _)| schema_resource(&ctx.base, urn))
            .collect(),
    )
}

pub async fn schema_by_id(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let (urn, _, _) = SCHEMAS
        .iter()
        .find(|(urn, _, _)| urn.eq_ignore_ascii_case(&id))
        .ok_or_else(|| ScimError::not_found(format!("schema `{id}` not found")))?;
    Ok(http::scim_json(
        StatusCode::OK,
        &schema_resource(&ctx.base, urn),
    ))
}

/// The schemas served: URN, name, description.
const SCHEMAS: [(&str, &str, &str); 4] = [
    (schema::USER, "User", "User Account"),
    (schema::GROUP, "Group", "Group"),
    (schema::ENTERPRISE_USER, "EnterpriseUser", "Enterprise User"),
    (
        schema::PORTCULLIS_USER,
        "PortcullisUser",
        "What Portcullis needs to know about a user beyond the core schema",
    ),
];

fn schema_resource(base: &str, urn: &str) -> Value {
    let (name, description) = SCHEMAS
        .iter()
        .find(|(u, _, _)| *u == urn)
        .map(|(_, n, d)| (*n, *d))
        .unwrap_or_default();
    let attributes: Vec<Value> = match urn {
        schema::USER => user_attributes(),
        schema::GROUP => group_attributes(),
        schema::ENTERPRISE_USER => enterprise_attributes(),
        _ => vec![
            Attr::new(
                "mfaEnabled",
                "boolean",
                "Whether the user has multi-factor authentication",
            )
            .json(),
        ],
    };
    json!({
        "schemas": [schema::SCHEMA],
        "id": urn,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{urn}"),
        },
    })
}

/// An attribute definition (RFC 7643 §7).
struct Attr {
    name: &'static str,
    kind: &'static str,
    description: &'static str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &'static str,
    returned: &'static str,
    uniqueness: &'static str,
    canonical: &'static [&'static str],
    reference_types: &'static [&'static str],
    sub: Vec<Attr>,
}

impl Attr {
    fn new(name: &'static str, kind: &'static str, description: &'static str) -> Attr {
        Attr {
            name,
            kind,
            description,
            multi: false,
            required: false,
            case_exact: false,
            mutability: "readWrite",
            returned: "default",
            uniqueness: "none",
            canonical: &[],
            reference_types: &[],
            sub: Vec::new(),
        }
    }

    fn string(name: &'static str, description: &'static str) -> Attr {
        Attr::new(name, "string", description)
    }

    fn reference(
        name: &'static str,
        types: &'static [&'static str],
        description: &'static str,
    ) -> Attr {
        Attr {
            reference_types: types,
            case_exact: true,
            ..Attr::new(name, "reference", description)
        }
    }

    fn complex(name: &'static str, description: &'static str, sub: Vec<Attr>) -> Attr {
        Attr {
            sub,
            ..Attr::new(name, "complex", description)
        }
    }

    /// A multi-valued complex attribute with the usual `value`, `display`, `type`, `primary`.
    fn multi_valued(
        name: &'static str,
        description: &'static str,
        value: Attr,
        types: &'static [&'static str],
    ) -> Attr {
        Attr::complex(
            name,
            description,
            vec![
                value,
                Attr::string("display", "A human-readable name, primarily for display"),
                Attr {
                    canonical: types,
                    ..Attr::string("type", "A label indicating the attribute's function")
                },
                Attr::new(
                    "primary",
                    "boolean",
                    "Whether this is the primary value of the attribute",
                ),
            ],
        )
        .multi()
    }

    fn multi(self) -> Attr {
        Attr {
            multi: true,
            ..self
        }
    }

    fn required(self) -> Attr {
        Attr {
            required: true,
            ..self
        }
    }

    fn read_only(self) -> Attr {
        Attr {
            mutability: "readOnly",
            ..self
        }
    }

    fn json(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "type": self.kind,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        });
        if matches!(self.kind, "string" | "reference" | "binary") {
            out["caseExact"] = self.case_exact.into();
            out["uniqueness"] = self.uniqueness.into();
        }
        if !self.canonical.is_empty() {
            out["canonicalValues"] = self.canonical.into();
        }
        if !self.reference_types.is_empty() {
            out["referenceTypes"] = self.reference_types.into();
        }
        if !self.sub.is_empty() {
            out["subAttributes"] = self.sub.iter().map(Attr::json).collect();
        }
        out
    }
}

fn user_attributes() -> Vec<Value> {
    let s = Attr::string;
    let mut user_name = s(
        "userName",
        "Unique identifier for the user, typically used to sign in; unique ignoring case",
    )
    .required();
    user_name.uniqueness = "server";
    let attributes = vec![
        user_name,
        Attr::complex(
            "name",
            "The components of the user's real name",
            vec![
                s("formatted", "The full name, formatted for display"),
                s("familyName", "The family name"),
                s("givenName", "The given name"),
                s("middleName", "The middle name(s)"),
                s("honorificPrefix", "The honorific prefix(es)"),
                s("honorificSuffix", "The honorific suffix(es)"),
            ],
        ),
        s("displayName", "The name of the user, suitable for display"),
        s("nickName", "The casual way to address the user"),
        Attr::reference("profileUrl", &["external"], "The user's online profile"),
        s("title", "The user's title"),
        s(
            "userType",
            "The relationship between the organization and the user",
        ),
        s(
            "preferredLanguage",
            "The user's preferred written or spoken language",
        ),
        s("locale", "The user's default location"),
        s("timezone", "The user's time zone"),
        Attr::new(
            "active",
            "boolean",
            "Whether the user may act: an inactive user's every decision is Deny",
        ),
        Attr::multi_valued(
            "emails",
            "Email addresses; the primary one is the user's email in Portcullis",
            s("value", "The email address"),
            &["work", "home", "other"],
        ),
        Attr::multi_valued(
            "phoneNumbers",
            "Phone numbers",
            s("value", "The phone number"),
            &["work", "home", "mobile", "fax", "pager", "other"],
        ),
        Attr::multi_valued(
            "ims",
            "Instant messaging addresses",
            s("value", "The instant messaging address"),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        ),
        Attr::multi_valued(
            "photos",
            "URLs of photos of the user; the primary one is the user's avatar",
            Attr::reference("value", &["external"], "The URL of a photo"),
            &["photo", "thumbnail"],
        ),
        Attr::complex(
            "addresses",
            "Physical mailing addresses",
            vec![
                s("formatted", "The full mailing address"),
                s("streetAddress", "The street address"),
                s("locality", "The city or locality"),
                s("region", "The state or region"),
                s("postalCode", "The zip or postal code"),
                s("country", "The country"),
                Attr {
                    canonical: &["work", "home", "other"],
                    ..s("type", "A label indicating the address's function")
                },
                Attr::new("primary", "boolean", "Whether this is the primary address"),
            ],
        )
        .multi(),
        Attr::complex(
            "groups",
            "The groups the identity provider manages that the user belongs to",
            vec![
                s("value", "The group's id").read_only(),
                Attr::reference("$ref", &["Group"], "The group's URI").read_only(),
                s("display", "The group's name").read_only(),
                Attr {
                    canonical: &["direct"],
                    ..s("type", "How the user belongs to the group").read_only()
                },
            ],
        )
        .multi()
        .read_only(),
        Attr::multi_valued(
            "entitlements",
            "Entitlements of the user",
            s("value", "The entitlement"),
            &[],
        ),
        Attr::multi_valued("roles", "Roles of the user", s("value", "The role"), &[]),
        Attr::multi_valued(
            "x509Certificates",
            "Certificates of the user",
            Attr::new("value", "binary", "A DER-encoded certificate"),
            &[],
        ),
    ];
    attributes.iter().map(Attr::json).collect()
}

fn enterprise_attributes() -> Vec<Value> {
    let s = Attr::string;
    [
        s("employeeNumber", "The user's number in the organization"),
        s("costCenter", "The user's cost center"),
        s("organization", "The user's organization"),
        s("division", "The user's division"),
        s("department", "The user's department"),
        Attr::complex(
            "manager",
            "The user's manager",
            vec![
                s("value", "The manager's id"),
                Attr::reference("$ref", &["User"], "The manager's URI"),
                s("displayName", "The manager's name").read_only(),
            ],
        ),
    ]
    .iter()
    .map(Attr::json)
    .collect()
}

fn group_attributes() -> Vec<Value> {
    let s = Attr::string;
    [
        s("displayName", "The group's name").required(),
        Attr::complex(
            "members",
            "The group's members: users (nested groups are not supported)",
            vec![
                s("value", "The member's user id"),
                Attr::reference("$ref", &["User"], "The member's URI"),
                s("display", "The member's name").read_only(),
                Attr {
                    canonical: &["User"],
                    ..s("type", "The kind of member")
                },
            ],
        )
        .multi(),
    ]
    .iter()
    .map(Attr::json)
    .collect()
}
