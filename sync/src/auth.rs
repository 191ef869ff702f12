//! Who is calling: the bearer token of a SCIM connection on every request.
//!
//! A missing, malformed, unknown or revoked token is 401 with the SCIM error body and
//! `WWW-Authenticate`; the refusal is appended to the audit log (`auth.denied`, never the secret).

use crate::{Scim, ScimError, clock, connection};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::AuditEvent;

/// An authenticated SCIM connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub connection_id: String,
    pub name: String,
}

impl Caller {
    /// `scim:<connection name>`.
    pub fn actor(&self) -> String {
        format!("scim:{}", self.name)
    }

    /// An audit event of a change this caller made.
    pub fn event(&self, action: &str, target_kind: &str, target_id: &str) -> AuditEvent {
        AuditEvent {
            time: clock::now(),
            actor: self.actor(),
            via: Some(self.connection_id.clone()),
            action: action.to_owned(),
            target_kind: target_kind.to_owned(),
            target_id: target_id.to_owned(),
            outcome: "ok".into(),
            ..AuditEvent::default()
        }
    }
}

/// The secret of `Authorization: Bearer <secret>`.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, secret) = value.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

/// Middleware: lets the request through with its [`Caller`] in its extensions, or answers 401.
pub async fn authenticate(State(scim): State<Scim>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let refuse = |actor: String, via: Option<String>, why: &str| {
        let event = AuditEvent {
            time: clock::now(),
            actor,
            via,
            action: "auth.denied".into(),
            target_kind: "api".into(),
            target_id: format!("SCIM {path}"),
            outcome: "denied".into(),
            detail: why.to_owned(),
            ..AuditEvent::default()
        };
        if let Err(e) = scim.live.store().append_audit(event) {
            tracing::warn!(error = %e, "cannot audit a refused SCIM call");
        }
        ScimError::unauthorized(why.to_owned()).into_response()
    };
    let Some(secret) = bearer(&request) else {
        return refuse(
            "unknown".into(),
            None,
            "missing credentials: send `Authorization: Bearer <token>`",
        );
    };
    let Some(id) = connection::id_of(secret).map(str::to_owned) else {
        return refuse("unknown".into(), None, "not a SCIM token");
    };
    let found = {
        let id = id.clone();
        scim.live
            .blocking(move |store| store.get_connection(&id))
            .await
    };
    let connection = match found {
        Ok(Ok(Some(connection))) => connection,
        Ok(Ok(None)) => return refuse("unknown".into(), Some(id), "unknown token"),
        Ok(Err(e)) => return ScimError::from(e).into_response(),
        Err(e) => return ScimError::from(e).into_response(),
    };
    let actor = format!("scim:{}", connection.name);
    if !connection::verify(&connection, secret) {
        return refuse(actor, Some(id), "unknown token");
    }
    if connection.revoked_at.is_some() {
        return refuse(actor, Some(id), "the token was revoked");
    }
    request.extensions_mut().insert(Caller {
        connection_id: connection.id,
        name: connection.name,
    });
    next.run(request).await
}
