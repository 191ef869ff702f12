//! Signing in and out. People sign in with the company's identity provider when one is
//! configured ([`crate::oidc`]); an admin API token signs in for first setup (its user, roles
//! and revocation are the token's). The session cookie is HttpOnly and SameSite=Strict (Secure
//! under TLS). The sign-in form is protected by a cookie of its own holding the same random
//! value as the form (a cross-site page can neither read it nor send it), so nobody can sign a
//! browser in to their own account behind its back.

use crate::Console;
use crate::call::{self, Failure, cleared_cookie, cookie, cookie_name, session_cookie};
use crate::form::{Nothing, Posted};
use crate::layout;
use crate::session::{Credential, random};
use crate::view;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The cookie that ties the sign-in form to the browser that loaded it.
const FORM_COOKIE: &str = "portcullis-sign-in";

#[derive(Debug, Deserialize)]
pub struct Why {
    why: Option<String>,
    /// The console page to open once signed in ([`view::return_path`]).
    then: Option<String>,
}

pub async fn page(State(console): State<Console>, Query(why): Query<Why>) -> Response {
    form(
        &console,
        why.why.as_deref(),
        StatusCode::OK,
        why.then.as_deref(),
    )
}

/// The sign-in page; `then` is carried through either way of signing in, and opened after.
pub(crate) fn form(
    console: &Console,
    message: Option<&str>,
    status: StatusCode,
    then: Option<&str>,
) -> Response {
    let then = then.and_then(view::return_path);
    let to_provider = match then.map(|then| serde_urlencoded::to_string([("then", then)])) {
        Some(Ok(query)) => format!("/console/sign-in/provider?{query}"),
        _ => "/console/sign-in/provider".to_owned(),
    };
    let nonce = match random() {
        Ok(nonce) => nonce,
        Err(failed) => return Failure::from(failed).into_response(),
    };
    let body = layout::bare(
        "Sign in",
        html! {
            div.card.sign-in {
                h1 { "Sign in to Portcullis" }
                @if let Some(message) = message {
                    p.notice.danger role="alert" { (message) }
                }
                @if let Some(provider) = console.provider() {
                    p {
                        a.button href=(to_provider) {
                            "Sign in with " (provider.config.name)
                        }
                    }
                    p.muted { "Or, for first setup, with an admin API token:" }
                }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(nonce);
                    @if let Some(then) = then {
                        input type="hidden" name="then" value=(then);
                    }
                    div.field {
                        label for="token" { "Admin API token" }
                        input #token type="password" name="token" autocomplete="off" required;
                    }
                    button type="submit" { "Sign in with a token" }
                }
            }
        },
    );
    let path = if console.tls() { "/" } else { "/console" };
    let secure = if console.tls() { "; Secure" } else { "" };
    let cookie = format!(
        "{FORM_COOKIE}={nonce}; Path={path}; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    );
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    then: String,
}

pub async fn with_token(
    State(console): State<Console>,
    headers: HeaderMap,
    axum::Form(submitted): axum::Form<TokenForm>,
) -> Response {
    let expected = cookie(&headers, FORM_COOKIE).unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(submitted.csrf.as_bytes())) {
        return Failure::new(
            StatusCode::FORBIDDEN,
            "the sign-in form expired or came from another site: open the sign-in page again",
        )
        .into_response();
    }
    let token = submitted.token.trim();
    if token.is_empty() {
        return form(
            &console,
            Some("Enter an admin API token."),
            StatusCode::BAD_REQUEST,
            Some(&submitted.then),
        );
    }
    let (secret, session) = match console
        .sessions()
        .start(Credential::Token(token.to_owned()))
    {
        Ok(started) => started,
        Err(failed) => return Failure::from(failed).into_response(),
    };
    let who = console
        .services()
        .admin
        .who_am_i(call::credentials(&session, pb::WhoAmIRequest {}))
        .await;
    if let Err(status) = who {
        console.sessions().end(&secret);
        let status = Failure::from(status);
        return form(
            &console,
            Some(&status.message),
            status.status,
            Some(&submitted.then),
        );
    }
    let mut response = view::see_other(view::return_path(&submitted.then).unwrap_or("/console"));
    if let Ok(value) = session_cookie(console.tls(), &secret).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    _posted: Posted<Nothing>,
) -> Response {
    if let Some(secret) = cookie(&headers, cookie_name(console.tls())) {
        console.sessions().end(secret);
    }
    let mut response = view::see_other("/console/sign-in");
    if let Ok(value) = cleared_cookie(console.tls()).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
