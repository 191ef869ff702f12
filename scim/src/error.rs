//! SCIM errors: every 4xx and 5xx answer carries the RFC 7644 §3.12 body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An error as a SCIM client sees it: an HTTP status, an optional `scimType` and a detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}{}: {detail}", scim_type.map(|t| format!(" ({t})")).unwrap_or_default())]
pub struct ScimError {
    pub status: u16,
    /// One of RFC 7644's `scimType` keywords (`invalidFilter`, `uniqueness`, `invalidPath`…).
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

pub type Result<T, E = ScimError> = std::result::Result<T, E>;

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError::new(400, Some(scim_type), detail)
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidFilter", detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidPath", detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidValue", detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidSyntax", detail)
    }

    pub fn no_target(detail: impl Into<String>) -> Self {
        ScimError::bad_request("noTarget", detail)
    }

    pub fn mutability(detail: impl Into<String>) -> Self {
        ScimError::bad_request("mutability", detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        ScimError::new(409, Some("uniqueness"), detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ScimError::new(404, None, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ScimError::new(401, None, detail)
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        ScimError::new(412, None, detail)
    }

    pub fn not_implemented(detail: impl Into<String>) -> Self {
        ScimError::new(501, None, detail)
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        ScimError::new(405, None, detail)
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        ScimError::new(413, None, detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        ScimError::new(415, None, detail)
    }

    /// 503: the server could not do it now; the client may try again.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ScimError::new(503, None, detail)
    }

    /// A server-side failure: logged, and shown without internals.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "SCIM request failed");
        ScimError::new(500, None, "internal error")
    }

    /// The RFC 7644 §3.12 body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        body
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis-scim\""),
            );
        }
        response
    }
}

impl From<store::Error> for ScimError {
    fn from(error: store::Error) -> ScimError {
        match error {
            store::Error::NotFound { kind, id } => {
                ScimError::not_found(format!("{kind} `{id}` not found"))
            }
            store::Error::InvalidId { .. } => ScimError::invalid_value(error.to_string()),
            store::Error::Dangling { .. } | store::Error::Duplicate { .. } => {
                ScimError::invalid_value(error.to_string())
            }
            other => ScimError::internal(other),
        }
    }
}

impl From<pdp_service::secret::RandomFailed> for ScimError {
    fn from(error: pdp_service::secret::RandomFailed) -> ScimError {
        ScimError::unavailable(error.to_string())
    }
}

impl From<live::Error> for ScimError {
    fn from(error: live::Error) -> ScimError {
        match error {
            live::Error::Store(e) => e.into(),
            other => ScimError::new(503, None, other.to_string()),
        }
    }
}
