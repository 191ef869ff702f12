//! HTTP plumbing: what every handler reads from a request (the caller, the base URL, `If-Match`,
//! query parameters, a JSON body read under a size limit) and how resources are answered
//! (`application/scim+json`, `ETag`, `Location`).

use crate::auth::Caller;
use crate::{Limits, Result, ScimError};
use axum::body::Body;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const SCIM_JSON: &str = "application/scim+json";

/// What a handler needs from the request besides its path and body.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub caller: Caller,
    /// `http://<host>/scim/v2` (https when a proxy says so), without a trailing slash.
    pub base: String,
    /// The raw `If-Match` header, if any.
    pub if_match: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    /// The largest body accepted ([`crate::Limits::scim_max_body_bytes`]).
    pub max_body: usize,
    /// The deepest nesting of a body ([`crate::Limits::json_max_depth`]).
    pub max_depth: usize,
    /// Query parameters by lower-cased name (the last one wins).
    pub params: Vec<(String, String)>,
}

impl Ctx {
    /// The value of query parameter `name` (lower-case), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ScimError::unauthorized("missing credentials"))?;
        let headers = &parts.headers;
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let params = match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(params)) => params
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            Err(e) => {
                return Err(ScimError::invalid_syntax(format!(
                    "cannot read the query string: {}",
                    e.body_text()
                )));
            }
        };
        Ok(Ctx {
            caller,
            base: base_url(headers),
            if_match: text(header::IF_MATCH),
            content_type: text(header::CONTENT_TYPE),
            content_length: text(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            max_body: parts
                .extensions
                .get::<BodyLimit>()
                .map_or(Limits::default().scim_max_body_bytes as usize, |l| l.bytes),
            max_depth: parts
                .extensions
                .get::<BodyLimit>()
                .map_or(Limits::default().json_max_depth as usize, |l| l.depth),
            params,
        })
    }
}

/// The base URL resources' `location` and `$ref` start with, from the `Host` header.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        })
        .unwrap_or("localhost");
    // Okta and Entra call over HTTPS: behind a TLS-terminating proxy, say so in the URLs.
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}/scim/v2")
}

/// The largest request body and its deepest nesting, put in each request's extensions by the
/// router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit {
    pub bytes: usize,
    pub depth: usize,
}

/// Reads a JSON request body: `application/scim+json`, `application/json` or no content type;
/// at most [`Ctx::max_body`] bytes (413 otherwise) and [`Ctx::max_depth`] levels; malformed
/// JSON is 400 `invalidSyntax`.
pub async fn read_json(ctx: &Ctx, body: Body) -> Result<Value> {
    if let Some(content_type) = &ctx.content_type {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != SCIM_JSON && essence != "application/json" {
            return Err(ScimError::unsupported_media_type(format!(
                "content type `{content_type}`: send `{SCIM_JSON}` or `application/json`"
            )));
        }
    }
    let max = ctx.max_body;
    let too_large = || {
        ScimError::payload_too_large(format!(
            "the request body is larger than {max} bytes (`scim-max-body-bytes`)"
        ))
    };
    if ctx.content_length.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    // A body that fails to arrive whole after passing the length check is over the limit
    // (chunked) or the client went away, which no answer reaches.
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())?;
    parse_json(&bytes, ctx.max_depth)
}

/// A request body (read whole, within [`Ctx::max_body`]) as the JSON object it must be, nesting
/// at most `max_depth` levels (checked before it is parsed: 400 `invalidSyntax`).
pub fn parse_json(bytes: &[u8], max_depth: usize) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax("the request body is empty"));
    }
    pdp_service::json_depth::within_depth(bytes, max_depth).map_err(|at| {
        ScimError::invalid_syntax(pdp_service::json_depth::too_deep(max_depth, at))
    })?;
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    }
    Ok(value)
}

/// Whether `schemas` in `body` lists `urn` (URNs compare ignoring case); 400 `invalidSyntax`
/// otherwise.
pub fn require_schema(body: &Value, urn: &str) -> Result<()> {
    let listed = match crate::json::get(body, "schemas") {
        Some(Value::Array(items)) => items
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn))),
        _ => false,
    };
    if listed {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "`schemas` must list `{urn}`"
        )))
    }
}

/// An `application/scim+json` answer.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// A resource answer: its `meta.version` as `ETag`, and `Location` when it was just created.
/// `shown` is what the body carries (after `attributes` / `excludedAttributes`), `full` the
/// whole resource.
pub fn resource(status: StatusCode, full: &Value, shown: &Value) -> Response {
    let mut response = scim_json(status, shown);
    let meta = crate::json::get(full, "meta");
    let version = meta.and_then(|m| crate::json::get(m, "version"));
    if let Some(etag) = version
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Some(location) = meta
            .and_then(|m| crate::json::get(m, "location"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `W/"<first 16 hex digits of SHA-256 of the document>"`.
pub fn version(document: &impl serde::Serialize) -> String {
    let digest = Sha256::digest(serde_json::to_vec(document).unwrap_or_default());
    format!("W/\"{}\"", hex::encode(&digest[..8]))
}

/// Checks `If-Match` against a resource's current version: `*` and any listed tag equal to it
/// (weakly: `W/` is ignored on both sides) pass; anything else is 412.
pub fn check_if_match(if_match: Option<&str>, current: &str) -> Result<()> {
    let Some(if_match) = if_match else {
        return Ok(());
    };
    let opaque = |tag: &str| {
        let tag = tag.trim();
        tag.strip_prefix("W/").unwrap_or(tag).to_owned()
    };
    let current = opaque(current);
    let matched = if_match
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == current);
    if matched {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(format!(
            "the resource is at version {current}, not {}",
            if_match.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match() {
        let v = "W/\"0123456789abcdef\"";
        assert!(check_if_match(None, v).is_ok());
        assert!(check_if_match(Some("*"), v).is_ok());
        assert!(check_if_match(Some(v), v).is_ok());
        assert!(check_if_match(Some("\"0123456789abcdef\""), v).is_ok());
        assert!(check_if_match(Some("W/\"x\", W/\"0123456789abcdef\""), v).is_ok());
        assert_eq!(
            check_if_match(Some("W/\"other\""), v).map_err(|e| e.status),
            Err(412)
        );
    }

    #[test]
    fn base_urls() {
        let mut headers = HeaderMap::new();
        assert_eq!(base_url(&headers), "http://localhost/scim/v2");
        headers.insert(
            header::HOST,
            HeaderValue::from_static("idp.example.com:8443"),
        );
        assert_eq!(base_url(&headers), "http://idp.example.com:8443/scim/v2");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(base_url(&headers), "https://idp.example.com:8443/scim/v2");
        headers.insert(header::HOST, HeaderValue::from_static("evil/path"));
        assert_eq!(base_url(&headers), "https://localhost/scim/v2");
    }
}
