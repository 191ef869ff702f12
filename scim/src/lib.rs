//! A SCIM 2.0 service provider (RFC 7643 schema, RFC 7644 protocol) that Okta and
//! Microsoft Entra ID provision in real time, served over HTTP (axum) by `portcullis serve`.
//!
//! It owns the SCIM view of users and groups: filters ([`filter`]), PATCH ([`patch`]), the
//! mapping between SCIM documents and the model, the IdP dialects it accepts, its bearer tokens
//! (one per IdP connection) and its errors (always the RFC 7644 §3.12 body). Every change goes
//! through [`live::Live::write`]: one store transaction with its audit event, answered only once
//! decisions reflect it.
//!
//! It must not decide (that is `pdp`), touch sled (that is `store`), or call the admin API.
//!
//! Modules: [`router`] and its endpoints (`users`, `groups`, `list`, `discovery`), the mapping
//! of documents (`users`, `groups`, `resource`), `attributes` / `excludedAttributes` (`attrs`),
//! authentication (`auth`, [`connection`]), the write path (`write`), the bounds of every write
//! ([`limits`]) and HTTP plumbing (`http`).

pub mod error;
pub mod filter;
pub mod limits;
pub mod patch;
pub mod path;

mod attrs;
mod auth;
mod clock;
pub mod connection;
mod discovery;
mod groups;
mod handlers;
mod http;
mod json;
mod list;
mod resource;
mod schema;
mod search;
mod users;
mod write;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use connection::create_connection;
pub use error::{Result, ScimError};
pub use limits::Limits;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use live::Live;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Scim {
    live: Live,
    /// SCIM writes take turns to commit (see module `write`).
    writes: Arc<tokio::sync::Mutex<()>>,
    limits: Limits,
}

/// The SCIM service provider, under `/scim/v2`: `/Users`, `/Groups`, `/ServiceProviderConfig`,
/// `/ResourceTypes`, `/Schemas` (and `/Bulk`, `/Me`: 501). Every request needs a SCIM
/// connection's bearer token ([`create_connection`]); every answer is
/// `application/scim+json`, errors in the RFC 7644 form.
pub fn router(live: Live) -> Router {
    router_with(live, Limits::default())
}

/// [`router`] with these bounds on what a write may carry ([`Limits`]).
pub fn router_with(live: Live, limits: Limits) -> Router {
    let scim = Scim {
        live,
        writes: Arc::new(tokio::sync::Mutex::new(())),
        limits,
    };
    let api = Router::new()
        .route("/.search", post(search::root))
        .route("/Users/.search", post(search::users))
        .route("/Groups/.search", post(search::groups))
        .route(
            "/Users",
            get(users::list).post(handlers::create::<users::Users>),
        )
        .route(
            "/Users/{id}",
            get(handlers::get::<users::Users>)
                .put(handlers::replace::<users::Users>)
                .patch(handlers::patch::<users::Users>)
                .delete(users::delete),
        )
        .route(
            "/Groups",
            get(groups::list).post(handlers::create::<groups::Groups>),
        )
        .route(
            "/Groups/{id}",
            get(handlers::get::<groups::Groups>)
                .put(handlers::replace::<groups::Groups>)
                .patch(handlers::patch::<groups::Groups>)
                .delete(groups::delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route(
            "/ResourceTypes/{name}",
            get(discovery::resource_type_by_name),
        )
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema_by_id))
        .route("/Bulk", any(bulk))
        .route("/Me", any(me))
        .fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(
            scim.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::map_response(scim_errors))
        .layer(axum::Extension(http::BodyLimit {
            bytes: limits.scim_max_body_bytes as usize,
            depth: limits.json_max_depth as usize,
        }))
        .with_state(scim);
    Router::new().nest("/scim/v2", api)
}

async fn bulk() -> ScimError {
    ScimError::not_implemented("bulk operations are not supported")
}

async fn me() -> ScimError {
    ScimError::not_implemented("/Me is not supported: a SCIM connection is no user")
}

async fn unknown() -> ScimError {
    ScimError::not_found("no such endpoint")
}

/// Makes every error answer a SCIM one, including those axum makes itself (405 for a method an
/// endpoint does not serve, with its `Allow` header; a path it cannot decode).
async fn scim_errors(response: Response) -> Response {
    let status = response.status();
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(http::SCIM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_scim {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("method not allowed here; allowed: {allowed}")
        }
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = ScimError::new(status.as_u16(), None, detail).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}
