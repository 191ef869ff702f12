//! `POST /Users/.search` and `POST /Groups/.search` (RFC 7644 §3.4.3): a query sent in the body
//! (a `SearchRequest`) rather than the URL, so that filters stay out of logs and proxies.
//! Answered exactly as the GET it stands for. A search at the root (`POST /.search`, across
//! resource types) is not supported: 501, naming the two that are.

use crate::error::{Result, ScimError};
use crate::http::{self, Ctx};
use crate::{Scim, list};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

pub async fn users(State(scim): State<Scim>, ctx: Ctx, body: Body) -> Result<Response> {
    let ctx = query(ctx, body).await?;
    list::users(scim, ctx).await
}

pub async fn groups(State(scim): State<Scim>, ctx: Ctx, body: Body) -> Result<Response> {
    let ctx = query(ctx, body).await?;
    list::groups(scim, ctx).await
}

pub async fn root() -> ScimError {
    ScimError::not_implemented(
        "a search across resource types is not supported: POST /Users/.search or /Groups/.search",
    )
}

/// The request's `SearchRequest` as the query parameters a GET would carry (replacing any in
/// the URL).
async fn query(mut ctx: Ctx, body: Body) -> Result<Ctx> {
    let body = http::read_json(&ctx, body).await?;
    let Value::Object(request) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a SearchRequest object",
        ));
    };
    let mut params = Vec::new();
    for (name, value) in &request {
        let key = name.to_lowercase();
        let text = match (key.as_str(), value) {
            ("schemas", Value::Array(schemas)) => {
                if !schemas.iter().any(|s| s.as_str() == Some(SEARCH_REQUEST)) {
                    return Err(ScimError::invalid_syntax(format!(
                        "`schemas` must list `{SEARCH_REQUEST}`"
                    )));
                }
                continue;
            }
            ("filter" | "sortby" | "sortorder", Value::String(s)) => s.clone(),
            ("startindex" | "count", Value::Number(n)) => n.to_string(),
            ("attributes" | "excludedattributes", Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                names
                    .ok_or_else(|| {
                        ScimError::invalid_syntax(format!("`{name}` must be an array of strings"))
                    })?
                    .join(",")
            }
            ("attributes" | "excludedattributes", Value::String(s)) => s.clone(),
            (_, Value::Null) => continue,
            (
                "filter" | "sortby" | "sortorder" | "startindex" | "count" | "attributes"
                | "excludedattributes" | "schemas",
                _,
            ) => {
                return Err(ScimError::invalid_syntax(format!(
                    "`{name}` has the wrong type"
                )));
            }
            // Unknown members are ignored, as in resources.
            _ => continue,
        };
        params.push((key, text));
    }
    if !request.keys().any(|k| k.eq_ignore_ascii_case("schemas")) {
        return Err(ScimError::invalid_syntax(format!(
            "`schemas` must list `{SEARCH_REQUEST}`"
        )));
    }
    ctx.params = params;
    Ok(ctx)
}
