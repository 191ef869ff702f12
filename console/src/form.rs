//! A submitted form ([`Posted`]): the signed-in person, their CSRF token checked, the body
//! bounded and parsed. Every console write goes through it, so a form without its token (a
//! forged cross-site POST) gets 403 before any service is called.

use crate::Console;
use crate::call::{Failure, Signed};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// The largest form body the console reads (a policy with its condition is the largest form).
pub const MAX_FORM: usize = 64 * 1024;

/// A form posted by a signed-in person with their session's CSRF token (`csrf`).
#[derive(Debug)]
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Console> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let request = Request::from_parts(parts, body);
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM)
            .await
            .map_err(|_| {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the form is larger than {} KiB", MAX_FORM / 1024),
                )
                .into_response()
            })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| bad_form(e.to_string()).into_response())?;
        let presented = pairs
            .iter()
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.as_str())
            .unwrap_or("");
        if !signed.session.csrf_matches(presented) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the page and try again",
            )
            .into_response());
        }
        let form = serde_urlencoded::from_bytes(&body)
            .map_err(|e| bad_form(e.to_string()).into_response())?;
        Ok(Posted { signed, form })
    }
}

fn bad_form(problem: String) -> Failure {
    Failure::new(
        StatusCode::BAD_REQUEST,
        format!("unreadable form: {problem}"),
    )
}

/// A form with nothing but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct Nothing {}
