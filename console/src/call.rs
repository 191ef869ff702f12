//! Who is asking: the signed-in person behind a request ([`Signed`]), how the console calls
//! the admin services as them ([`Signed::request`]), and what a refused call becomes in the
//! browser ([`Failure`]).

use crate::Console;
use crate::session::{Credential, Session};
use crate::view;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Code, Status};

/// The cookie a session travels in. Under TLS the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`, so no other host or plain-HTTP page can set it.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-portcullis-console"
    } else {
        "portcullis-console"
    }
}

/// The `Set-Cookie` value that carries a session's secret.
pub fn session_cookie(tls: bool, secret: &str) -> String {
    let name = cookie_name(tls);
    if tls {
        format!("{name}={secret}; Path=/; HttpOnly; SameSite=Strict; Secure")
    } else {
        format!("{name}={secret}; Path=/console; HttpOnly; SameSite=Strict")
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(tls: bool) -> String {
    let name = cookie_name(tls);
    if tls {
        format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0")
    } else {
        format!("{name}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// The signed-in person of a request, checked by the admin service just now (`WhoAmI`).
#[derive(Debug, Clone)]
pub struct Signed {
    pub session: Arc<Session>,
    pub who: pb::WhoAmIResponse,
}

impl Signed {
    /// A request to an admin service as this person.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        credentials(&self.session, message)
    }

    /// Whether the person holds the Admin role: write controls are shown only then (the
    /// services refuse a Read Only person's writes whatever the page showed).
    pub fn is_admin(&self) -> bool {
        self.who.roles.contains(&(pb::Role::Admin as i32))
    }

    /// Refuses (403) a page only the Admin role has a use for (its forms write), saying that
    /// `what` needs it; the services refuse a Read Only person's writes anyway.
    pub fn admin_only(&self, what: &str) -> Result<(), Failure> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!("{what} needs the Admin role"),
            ))
        }
    }

    /// Whether the person holds a role (Admin or Read Only): without one, the console shows
    /// only their approvals inbox.
    pub fn has_role(&self) -> bool {
        !self.who.roles.is_empty()
    }

    /// What the page header calls them.
    pub fn name(&self) -> &str {
        [&self.who.display_name, &self.who.email, &self.who.user_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("signed in")
    }

    pub fn csrf(&self) -> &str {
        self.session.csrf()
    }
}

/// A request to an admin service with `session`'s credentials.
pub fn credentials<T>(session: &Session, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    match &session.credential {
        Credential::Token(secret) => {
            if let Ok(value) = format!("Bearer {secret}").parse() {
                request.metadata_mut().insert("authorization", value);
            }
        }
        Credential::User(user_id) => {
            request
                .extensions_mut()
                .insert(admin::auth::ConsoleSession {
                    user_id: user_id.clone(),
                    handle: session.handle.clone(),
                });
        }
    }
    request
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Signed, Response> {
        let tls = console.tls();
        // A page opened (not a form posted, nor an htmx fragment) is where sign-in returns.
        let then = (parts.method == axum::http::Method::GET
            && !parts.headers.contains_key("hx-request"))
        .then(|| parts.uri.path());
        let Some(secret) = cookie(&parts.headers, cookie_name(tls)) else {
            return Err(view::to_sign_in(&parts.headers, None, then));
        };
        let Some(session) = console.sessions().find(secret) else {
            return Err(view::to_sign_in(
                &parts.headers,
                Some("Your session ended. Sign in again."),
                then,
            ));
        };
        let answer = console
            .services()
            .admin
            .who_am_i(credentials(&session, pb::WhoAmIRequest {}))
            .await;
        match answer {
            Ok(who) => Ok(Signed {
                session,
                who: who.into_inner(),
            }),
            // The person can no longer use the console (locked, inactive, token revoked, no
            // role left): the session ends here, server-side.
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ) =>
            {
                console.sessions().end(secret);
                let mut response = view::to_sign_in(&parts.headers, Some(status.message()), None);
                if let Ok(value) = crate::call::cleared_cookie(tls).parse() {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
                Err(response)
            }
            Err(status) => Err(Failure::from(status).into_response()),
        }
    }
}

/// A call the admin service refused, as the browser sees it: the status that matches the
/// gRPC code, and the service's message on an error page.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// 404 with `message` (a record the service answered without, such as `no such group`).
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }
}

/// What a page handler answers: the page, or the error page of whatever refused it. Handlers
/// end a failed call with `?` instead of matching on it.
pub type Page<T = Response> = Result<T, Failure>;

/// A service's answer as a page handler takes it: the message, or the refusal as a
/// [`Failure`] (`call(...).await.page()?`).
pub trait Answer<T> {
    fn page(self) -> Page<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, Status> {
    fn page(self) -> Page<T> {
        self.map(tonic::Response::into_inner).map_err(Failure::from)
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Failure {
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(code, status.message())
    }
}

impl From<crate::session::RandomFailed> for Failure {
    fn from(failed: crate::session::RandomFailed) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, failed.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        view::error_page(self.status, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_tls_the_session_cookie_is_secure_and_host_only() {
        let cookie = session_cookie(true, "s3cret");
        assert_eq!(
            cookie,
            "__Host-portcullis-console=s3cret; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let plain = session_cookie(false, "s3cret");
        assert!(!plain.contains("Secure") && plain.contains("HttpOnly; SameSite=Strict"));
        assert!(cleared_cookie(true).contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; portcullis-console=xyz".parse().unwrap(),
        );
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "portcullis-console"), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "portcullis"), None);
    }
}
