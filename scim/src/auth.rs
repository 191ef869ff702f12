//! Who is calling: the bearer token of a SCIM connection on every request.
//!
//! A missing, malformed, unknown or revoked token is 401 with the SCIM error body and
//! `WWW-Authenticate`. The refusal is counted and logged at a bounded rate
//! ([`live::refusals`]), not audited: it names no one, and anyone who reaches the port could
//! otherwise fill the disk with audit events.

use crate::{Scim, ScimError, clock, connection};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use live::refusals::{Port, Reason};
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

/// How often a connection's `last_used_at` is written, at most: once a minute, not once a request.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// The secret of `Authorization: Bearer <secret>` ([`pdp_service::secret::bearer`]).
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?;
    pdp_service::secret::bearer(value.to_str().ok()?)
}

/// Middleware: lets the request through with its [`Caller`] in its extensions, or answers 401.
pub async fn authenticate(State(scim): State<Scim>, mut request: Request, next: Next) -> Response {
    // `router` nests the API under `/scim/v2`, which the nested router's URI has lost.
    let path = format!("/scim/v2{}", request.uri().path());
    let refuse = |reason: Reason, why: &str| {
        scim.live.refusals().refuse(Port::Scim, reason, &path);
        ScimError::unauthorized(why.to_owned()).into_response()
    };
    let Some(secret) = bearer(&request) else {
        return refuse(
            Reason::Missing,
            "missing credentials: send `Authorization: Bearer <token>`",
        );
    };
    let Some(id) = connection::id_of(secret).map(str::to_owned) else {
        return refuse(Reason::Malformed, "not a SCIM token");
    };
    let found = {
        let id = id.clone();
        scim.live
            .blocking(move |store| store.get_connection(&id))
            .await
    };
    let connection = match found {
        Ok(Ok(Some(connection))) => connection,
        Ok(Ok(None)) => return refuse(Reason::Unknown, "unknown token"),
        Ok(Err(e)) => return ScimError::from(e).into_response(),
        Err(e) => return ScimError::from(e).into_response(),
    };
    let now = clock::now();
    if !connection::accepts(&connection, secret, now) {
        return refuse(Reason::Unknown, "unknown token");
    }
    if connection.revoked_at.is_some() {
        return refuse(Reason::Revoked, "the token was revoked");
    }
    let stale = connection
        .last_used_at
        .is_none_or(|at| now.0.saturating_sub(at.0) >= LAST_USED_EVERY_MS);
    if stale {
        // Off the request's path: a failed bump loses only a "last used" time.
        let (live, id) = (scim.live.clone(), connection.id.clone());
        tokio::spawn(async move {
            let bumped = live
                .blocking(move |store| store.mark_connection_used(&id, now))
                .await;
            if let Ok(Err(error)) = bumped {
                tracing::debug!(%error, "cannot record when a SCIM connection was last used");
            }
        });
    }
    request.extensions_mut().insert(Caller {
        connection_id: connection.id,
        name: connection.name,
    });
    next.run(request).await
}
