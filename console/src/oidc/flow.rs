//! The two steps a browser takes: `GET /console/sign-in/provider` sends it to the identity
//! provider, `GET /console/sign-in/callback` brings it back with a code.
//!
//! The callback is a cross-site navigation (it starts at the provider), so the console's
//! SameSite=Strict session cookie it sets would not be sent on a redirect that continues that
//! chain: it answers with a small page that moves on to `/console` by itself (a `refresh`
//! meta element, not script: the CSP allows none) and a link. The sign-in's own cookie is
//! SameSite=Lax for the same reason: it must come back on that cross-site navigation.

use crate::Console;
use crate::call::{Failure, cookie, session_cookie};
use crate::layout;
use crate::oidc::pending::Refused;
use crate::session::{Credential, new_handle, random};
use crate::sign_in;
use crate::view;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

fn pending_cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-portcullis-sign-in-provider"
    } else {
        "portcullis-sign-in-provider"
    }
}

fn pending_cookie(tls: bool, value: &str, max_age: u64) -> String {
    let name = pending_cookie_name(tls);
    if tls {
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age={max_age}")
    } else {
        format!("{name}={value}; Path=/console/sign-in; HttpOnly; SameSite=Lax; Max-Age={max_age}")
    }
}

#[derive(Debug, Deserialize)]
pub struct Start {
    /// The console page to open once signed in ([`view::return_path`]).
    then: Option<String>,
}

/// `GET /console/sign-in/provider`: to the identity provider, with a sign-in held for the
/// way back.
pub async fn start(State(console): State<Console>, Query(start): Query<Start>) -> Response {
    let Some(client) = console.provider() else {
        return Failure::new(
            StatusCode::NOT_FOUND,
            "sign-in with an identity provider is not configured: sign in with a token",
        )
        .into_response();
    };
    let started = match client.start().await {
        Ok(started) => started,
        Err(problem) => {
            tracing::warn!(%problem, "cannot start a console sign-in at the identity provider");
            return Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("the identity provider cannot be reached or is misconfigured: {problem}"),
            )
            .into_response();
        }
    };
    let binding = match random() {
        Ok(binding) => binding,
        Err(failed) => return Failure::from(failed).into_response(),
    };
    let then = start
        .then
        .as_deref()
        .and_then(view::return_path)
        .map(str::to_owned);
    client.pending.insert(
        started.state,
        &binding,
        started.verifier,
        started.nonce,
        then,
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let max_age = super::pending::LIFETIME.as_secs();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&started.location) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(cookie) = pending_cookie(console.tls(), &binding, max_age).parse() {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// The issuer, from providers that send it (RFC 9207): must be ours.
    iss: Option<String>,
}

/// `GET /console/sign-in/callback`: the code exchanged, the ID token checked, the person
/// matched to a directory user who may use the console, and a session started.
pub async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let tls = console.tls();
    let refuse = |status: StatusCode, message: &str| {
        let mut response = sign_in::form(&console, Some(message), status, None);
        // The sign-in is over either way: its cookie goes.
        if let Ok(cookie) = pending_cookie(tls, "", 0).parse() {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    };
    let Some(client) = console.provider() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Sign-in with an identity provider is not configured.",
        );
    };
    let Some(state) = callback.state.as_deref().filter(|s| !s.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider sent you back without the sign-in's state. Sign in again.",
        );
    };
    let login = match client
        .pending
        .take(state, cookie(&headers, pending_cookie_name(tls)))
    {
        Ok(login) => login,
        Err(Refused::Unknown) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown, has expired or was already used. Sign in again.",
            );
        }
        Err(Refused::OtherBrowser) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "This sign-in was started in another browser, or its cookie expired. Sign in again.",
            );
        }
    };
    if let Some(error) = &callback.error {
        let description = callback.error_description.as_deref().unwrap_or("");
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!(
                "The identity provider did not sign you in: {} {}",
                super::provider::bounded(error),
                super::provider::bounded(description)
            ),
        );
    }
    if callback
        .iss
        .as_deref()
        .is_some_and(|iss| iss != client.config.issuer)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The answer came from another identity provider than the console's. Sign in again.",
        );
    }
    let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider sent you back without a code. Sign in again.",
        );
    };
    let claims = match client.finish(code, &login.verifier, &login.nonce).await {
        Ok(claims) => claims,
        Err(problem) => {
            tracing::warn!(%problem, "a console sign-in through the identity provider failed");
            return refuse(
                StatusCode::UNAUTHORIZED,
                &format!("Sign-in failed: {problem}."),
            );
        }
    };
    let handle = match new_handle() {
        Ok(handle) => handle,
        Err(failed) => return Failure::from(failed).into_response(),
    };
    let identity = admin::auth::ProviderIdentity {
        issuer: claims.iss.clone(),
        subject: claims.sub.clone(),
        email: claims.email().map(str::to_owned),
    };
    let user_id = match console.services().admin.console_sign_in(&identity, &handle) {
        Ok(user_id) => user_id,
        Err(status) => {
            let failure = Failure::from(status);
            return refuse(
                failure.status,
                &format!("You cannot use the console: {}.", failure.message),
            );
        }
    };
    let secret = match console
        .sessions()
        .start_as(Credential::User(user_id.clone()), handle)
    {
        Ok((secret, _)) => secret,
        Err(failed) => return Failure::from(failed).into_response(),
    };
    tracing::info!(user = %user_id, "signed in to the console through the identity provider");
    let then = login.then.as_deref().unwrap_or("/console");
    let body = layout::bare_then(
        "Signed in",
        then,
        html! {
            div.card.sign-in {
                h1 { "Signed in" }
                p { "Opening the console…" }
                p { a href=(then) { "Continue to the console" } }
            }
        },
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    if let Ok(cookie) = session_cookie(tls, &secret).parse() {
        headers.append(header::SET_COOKIE, cookie);
    }
    if let Ok(cookie) = pending_cookie(tls, "", 0).parse() {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}
