//! SCIM connections (ListScimConnections, CreateScimConnection, RotateScimConnection,
//! RevokeScimConnection): one per identity provider. Creating and rotating answer with the
//! bearer token, shown once, and the SCIM base URL to paste into Okta or Entra ID; a rotation
//! may keep the old token working for a grace period; revoking asks for a confirmation.

use super::{Secret, confirm, duration, page};
use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::confirm::Confirm;
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::view::segment;
use crate::view::{self, badge, time};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;

const PATH: &str = "/console/settings/scim";

/// The SCIM base URL identity providers call: this HTTP port, as the browser reached it.
fn base_url(console: &Console, headers: &HeaderMap) -> String {
    let scheme = if console.tls() { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}/scim/v2")
}

async fn list(console: &Console, signed: &Signed) -> Page<Vec<pb::ScimConnection>> {
    Ok(console
        .services()
        .admin
        .list_scim_connections(signed.request(pb::ListScimConnectionsRequest {}))
        .await
        .page()?
        .connections)
}

async fn find(console: &Console, signed: &Signed, id: &str) -> Page<pb::ScimConnection> {
    list(console, signed)
        .await?
        .into_iter()
        .find(|connection| connection.id == id)
        .ok_or_else(|| Failure::not_found(format!("SCIM connection `{id}` not found")))
}

fn render(
    signed: &Signed,
    base: &str,
    connections: &[pb::ScimConnection],
    name: &str,
    problems: &Problems,
) -> Response {
    let content = html! {
        h1 { "SCIM connections" }
        p { "Identity providers provision users and groups at " code { (base) } ", each with its connection's bearer token." }
        table {
            caption.visually-hidden { "SCIM connections" }
            thead { tr {
                th scope="col" { "Name" }
                th scope="col" { "Created" }
                th scope="col" { "Last used" }
                th scope="col" { "Rotated" }
                th scope="col" { "State" }
                @if signed.is_admin() { th scope="col" { span.visually-hidden { "Actions" } } }
            } }
            tbody {
                @for connection in connections {
                    tr {
                        td { (connection.name) div.muted { code { (connection.id) } } }
                        td { (time(connection.created_at.as_ref())) div.muted { "by " (connection.created_by) } }
                        td { @if connection.last_used_at.is_some() { (time(connection.last_used_at.as_ref())) } @else { span.muted { "Never" } } }
                        td {
                            @if connection.rotated_at.is_some() { (time(connection.rotated_at.as_ref())) } @else { span.muted { "Never" } }
                            @if connection.previous_valid_until.is_some() {
                                div.muted { "old token valid until " (time(connection.previous_valid_until.as_ref())) }
                            }
                        }
                        td { (state(connection)) }
                        @if signed.is_admin() {
                            td {
                                @if connection.revoked_at.is_none() {
                                    div.actions {
                                        a href=(format!("{PATH}/{}/rotate", segment(&connection.id))) { "Rotate" span.visually-hidden { " " (connection.name) } }
                                        a href=(format!("{PATH}/{}/revoke", segment(&connection.id))) { "Revoke" span.visually-hidden { " " (connection.name) } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if connections.is_empty() {
                    tr { td colspan="6" { "No SCIM connection yet." } }
                }
            }
        }
        @if signed.is_admin() {
            form.card method="post" action=(PATH) {
                h2 { "Connect an identity provider" }
                (problems.above())
                input type="hidden" name="csrf" value=(signed.csrf());
                (problems.text("name", "Name (the audit log calls it scim:<name>)", name, true, 64))
                button type="submit" { "Create connection" }
            }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        page(signed, super::SETTINGS, "SCIM connections", content),
    )
        .into_response()
}

fn state(connection: &pb::ScimConnection) -> Markup {
    if connection.revoked_at.is_some() {
        badge("locked", "Revoked")
    } else {
        badge("active", "Active")
    }
}

pub async fn show(State(console): State<Console>, headers: HeaderMap, signed: Signed) -> Page {
    let connections = list(&console, &signed).await?;
    Ok(render(
        &signed,
        &base_url(&console, &headers),
        &connections,
        "",
        &Problems::none(),
    ))
}

/// The answer to creating or rotating: the connection, its new token this once, and where the
/// identity provider sends it.
fn with_secret(
    signed: &Signed,
    title: &str,
    base: &str,
    connection: &pb::ScimConnection,
    secret: &str,
) -> Response {
    Secret {
        title,
        back: (PATH, "SCIM connections"),
        facts: html! {
            dt { "Name" } dd { (connection.name) }
            dt { "Id" } dd { code { (connection.id) } }
            @if connection.previous_valid_until.is_some() {
                dt { "Old token accepted until" } dd { (time(connection.previous_valid_until.as_ref())) }
            }
        },
        more: html! {
            div.field {
                label for="base-url" { "SCIM base URL (Okta: SCIM connector base URL; Entra ID: Tenant URL)" }
                input #base-url type="text" value=(base) readonly aria-describedby="base-url-note";
                p #base-url-note.muted { "As this browser reached the server. Behind a TLS-terminating proxy, give the identity provider the proxy's https:// address with the same /scim/v2 path." }
            }
        },
        label: "Bearer token (Okta: HTTP Header authentication; Entra ID: Secret Token)",
        secret,
        next: (PATH, "Back to the SCIM connections"),
    }
    .render(signed)
}

pub async fn create(
    State(console): State<Console>,
    headers: HeaderMap,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    let name = form.one("name").trim().to_owned();
    let base = base_url(&console, &headers);
    let request = pb::CreateScimConnectionRequest { name: name.clone() };
    let refused = match console
        .services()
        .admin
        .create_scim_connection(signed.request(request))
        .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            let connection = answer.connection.unwrap_or_default();
            return Ok(with_secret(
                &signed,
                "SCIM connection created",
                &base,
                &connection,
                &answer.secret,
            ));
        }
        Err(status) => Problems::refused(status, &["name"])?,
    };
    let connections = list(&console, &signed).await?;
    Ok(render(&signed, &base, &connections, &name, &refused))
}

fn rotate_page(
    signed: &Signed,
    connection: &pb::ScimConnection,
    grace: &str,
    problems: &Problems,
) -> Response {
    let content = html! {
        h1 { "Rotate " (connection.name) }
        form.card method="post" action=(format!("{PATH}/{}/rotate", segment(&connection.id))) {
            p { "A new bearer token is made and shown once. The current one stops working when the grace period ends (at once when it is empty); the grace of an earlier rotation ends now." }
            (problems.above())
            input type="hidden" name="csrf" value=(signed.csrf());
            (problems.text("grace", "Grace period for the current token (for example 1h or 2d; at most 7d)", grace, false, 64))
            button type="submit" { "Rotate token" }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        page(
            signed,
            (PATH, "SCIM connections"),
            &format!("Rotate {}", connection.name),
            content,
        ),
    )
        .into_response()
}

pub async fn confirm_rotate(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page {
    signed.admin_only("rotating a SCIM connection")?;
    let connection = find(&console, &signed, &id).await?;
    Ok(rotate_page(&signed, &connection, "1h", &Problems::none()))
}

pub async fn rotate(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    let grace_text = form.one("grace").to_owned();
    let refused = match duration("grace", &grace_text) {
        Err(problems) => problems,
        Ok(grace) => {
            let request = pb::RotateScimConnectionRequest {
                id: id.clone(),
                grace,
            };
            match console
                .services()
                .admin
                .rotate_scim_connection(signed.request(request))
                .await
            {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    let connection = answer.connection.unwrap_or_default();
                    let base = base_url(&console, &headers);
                    return Ok(with_secret(
                        &signed,
                        "SCIM token rotated",
                        &base,
                        &connection,
                        &answer.secret,
                    ));
                }
                Err(status) => Problems::refused(status, &["grace"])?,
            }
        }
    };
    let connection = find(&console, &signed, &id).await?;
    Ok(rotate_page(&signed, &connection, &grace_text, &refused))
}

/// The question before revoking `connection`.
fn revoking(connection: &pb::ScimConnection) -> Confirm<'static> {
    confirm(
        "Revoke SCIM connection",
        (PATH, "SCIM connections"),
        format!("{PATH}/{}/revoke", segment(&connection.id)),
        html! {
            p { "Revoking " strong { (connection.name) } " (" code { (connection.id) } "):" }
            ul {
                li { "every token of it, the current one and any still in a grace period, is refused from the next request on;" }
                li { "the identity provider can no longer provision users or groups; those it made stay, and stay managed by SCIM;" }
                li { "it cannot be restored: create a new connection instead." }
            }
        },
        "Revoke this connection now",
        "Revoke connection",
    )
}

pub async fn confirm_revoke(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page {
    signed.admin_only("revoking a SCIM connection")?;
    let connection = find(&console, &signed, &id).await?;
    Ok(revoking(&connection).render(&signed, &Problems::none()))
}

pub async fn revoke(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let connection = find(&console, &signed, &id).await?;
        return Ok(revoking(&connection).unticked(
            &signed,
            "tick the confirmation box to revoke the connection",
        ));
    }
    console
        .services()
        .admin
        .revoke_scim_connection(signed.request(pb::RevokeScimConnectionRequest { id }))
        .await
        .page()?;
    Ok(view::see_other(PATH))
}
