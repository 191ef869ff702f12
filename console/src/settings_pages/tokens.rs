//! Admin API tokens (ListApiTokens, CreateApiToken, RevokeApiToken): the list with each token's
//! person, role and state; creating one, whose secret the answering page shows once; revoking
//! one after a confirmation. The API lists tokens to Admins only.

use super::{Secret, confirm, duration, page, past};
use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::confirm::Confirm;
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::view::segment;
use crate::view::{self, badge, time};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;

const PATH: &str = "/console/settings/tokens";

/// The create form's fields, named as CreateApiToken's.
const FIELDS: [&str; 4] = ["user", "name", "expires_in", "role"];

/// The role choices: (form value, role, label).
const ROLES: [(&str, pb::Role, &str); 3] = [
    (
        "",
        pb::Role::Unspecified,
        "None (the person's groups' roles apply)",
    ),
    ("admin", pb::Role::Admin, "Admin"),
    ("read_only", pb::Role::ReadOnly, "Read Only"),
];

/// What the create form holds, to show it again after a refusal.
#[derive(Debug, Default)]
struct Draft {
    user: String,
    name: String,
    expires_in: String,
    role: String,
}

fn state(token: &pb::ApiToken) -> Markup {
    if token.revoked_at.is_some() {
        badge("locked", "Revoked")
    } else if past(token.expires_at.as_ref()) {
        badge("inactive", "Expired")
    } else {
        badge("active", "Active")
    }
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "Admin",
        Ok(pb::Role::ReadOnly) => "Read Only",
        _ => "From groups",
    }
}

async fn list(console: &Console, signed: &Signed) -> Result<Vec<pb::ApiToken>, tonic::Status> {
    Ok(console
        .services()
        .admin
        .list_api_tokens(signed.request(pb::ListApiTokensRequest::default()))
        .await?
        .into_inner()
        .tokens)
}

fn render(
    signed: &Signed,
    tokens: &[pb::ApiToken],
    draft: &Draft,
    problems: &Problems,
) -> Response {
    let content = html! {
        h1 { "Admin API tokens" }
        table {
            caption.visually-hidden { "Admin API tokens" }
            thead { tr {
                th scope="col" { "Name" }
                th scope="col" { "Acts as" }
                th scope="col" { "Role" }
                th scope="col" { "Created" }
                th scope="col" { "Expires" }
                th scope="col" { "State" }
                th scope="col" { span.visually-hidden { "Actions" } }
            } }
            tbody {
                @for token in tokens {
                    tr {
                        td { (token.name) div.muted { code { (token.id) } } }
                        td { a href=(format!("/console/users/{}", segment(&token.user_id))) { (token.user_id) } }
                        td { (role_name(token.role)) }
                        td { (time(token.created_at.as_ref())) div.muted { "by " (token.created_by) } }
                        td { @if token.expires_at.is_some() { (time(token.expires_at.as_ref())) } @else { span.muted { "Never" } } }
                        td { (state(token)) }
                        td {
                            @if token.revoked_at.is_none() {
                                a href=(format!("{PATH}/{}/revoke", segment(&token.id))) { "Revoke" span.visually-hidden { " " (token.name) } }
                            }
                        }
                    }
                }
                @if tokens.is_empty() {
                    tr { td colspan="7" { "No token yet." } }
                }
            }
        }
        form.card method="post" action=(PATH) {
            h2 { "Create a token" }
            p.muted { "The token acts as the person you name, with their groups' roles or the role chosen here. Its secret is shown once." }
            (problems.above())
            input type="hidden" name="csrf" value=(signed.csrf());
            (problems.text("user", "Acts as (user id or email)", &draft.user, true, 1024))
            (problems.text("name", "Name", &draft.name, true, 256))
            (problems.text("expires_in", "Expires in (for example 90d; empty: never)", &draft.expires_in, false, 64))
            div.field {
                label for="role" { "Role of the token" }
                select #role name="role" aria-describedby=[problems.described_by("role")] {
                    @for (value, _, label) in ROLES {
                        option value=(value) selected[draft.role == value] { (label) }
                    }
                }
                (problems.under("role"))
            }
            button type="submit" { "Create token" }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        page(signed, super::SETTINGS, "Admin API tokens", content),
    )
        .into_response()
}

pub async fn show(State(console): State<Console>, signed: Signed) -> Response {
    match list(&console, &signed).await {
        Ok(tokens) => render(&signed, &tokens, &Draft::default(), &Problems::none()),
        // A Read Only person: the API lists tokens to Admins only. Said in the console's frame,
        // with the service's status.
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            let content = html! {
                h1 { "Admin API tokens" }
                p.notice role="status" { "Only Admins see and manage API tokens. " (status.message()) }
            };
            (
                StatusCode::FORBIDDEN,
                page(&signed, super::SETTINGS, "Admin API tokens", content),
            )
                .into_response()
        }
        Err(status) => Failure::from(status).into_response(),
    }
}

pub async fn create(State(console): State<Console>, posted: Posted<Fields>) -> Page {
    let Posted { signed, form } = posted;
    let draft = Draft {
        user: form.one("user").trim().to_owned(),
        name: form.one("name").to_owned(),
        expires_in: form.one("expires_in").to_owned(),
        role: form.one("role").to_owned(),
    };
    let refused = match duration("expires_in", &draft.expires_in) {
        Err(problems) => problems,
        Ok(expires_in) => {
            let role = ROLES
                .iter()
                .find(|(value, ..)| *value == draft.role)
                .map_or(-1, |(_, role, _)| *role as i32);
            let request = pb::CreateApiTokenRequest {
                user: draft.user.clone(),
                name: draft.name.clone(),
                expires_in,
                role,
            };
            match console
                .services()
                .admin
                .create_api_token(signed.request(request))
                .await
            {
                Ok(answer) => return Ok(created(&signed, answer.into_inner())),
                // The person named does not exist: said next to the field that named them.
                Err(status) if status.code() == tonic::Code::NotFound => {
                    let mut problems = Problems::field("user", status.message());
                    problems.status = Some(StatusCode::NOT_FOUND);
                    problems
                }
                Err(status) => Problems::refused(status, &FIELDS)?,
            }
        }
    };
    let tokens = list(&console, &signed).await.map_err(Failure::from)?;
    Ok(render(&signed, &tokens, &draft, &refused))
}

/// The answer to the create form: the token and, this once, its secret.
fn created(signed: &Signed, answer: pb::CreateApiTokenResponse) -> Response {
    let token = answer.token.unwrap_or_default();
    Secret {
        title: "Token created",
        back: (PATH, "Admin API tokens"),
        facts: html! {
            dt { "Name" } dd { (token.name) }
            dt { "Id" } dd { code { (token.id) } }
            dt { "Acts as" } dd { (token.user_id) }
            dt { "Role" } dd { (role_name(token.role)) }
            dt { "Expires" } dd { @if token.expires_at.is_some() { (time(token.expires_at.as_ref())) } @else { "Never" } }
        },
        more: html! {},
        label: "Secret (send it as Authorization: Bearer …, or sign in with it)",
        secret: &answer.secret,
        next: (PATH, "Back to the tokens"),
    }
    .render(signed)
}

/// The question before revoking `token`.
fn revoking(token: &pb::ApiToken) -> Confirm<'static> {
    confirm(
        "Revoke token",
        (PATH, "Admin API tokens"),
        format!("{PATH}/{}/revoke", segment(&token.id)),
        html! {
            p { "Revoking " strong { (token.name) } " (" code { (token.id) } "), which acts as " (token.user_id) ":" }
            ul {
                li { "every call with it is refused from the next request on, and console sessions signed in with it end;" }
                li { "it cannot be restored: make a new token instead." }
            }
        },
        "Revoke this token now",
        "Revoke token",
    )
}

async fn find(console: &Console, signed: &Signed, id: &str) -> Result<pb::ApiToken, Failure> {
    list(console, signed)
        .await
        .map_err(Failure::from)?
        .into_iter()
        .find(|token| token.id == id)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("token `{id}` not found")))
}

pub async fn confirm_revoke(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page {
    let token = find(&console, &signed, &id).await?;
    Ok(revoking(&token).render(&signed, &Problems::none()))
}

pub async fn revoke(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let token = find(&console, &signed, &id).await?;
        return Ok(
            revoking(&token).unticked(&signed, "tick the confirmation box to revoke the token")
        );
    }
    console
        .services()
        .admin
        .revoke_api_token(signed.request(pb::RevokeApiTokenRequest { id }))
        .await
        .page()?;
    Ok(view::see_other(PATH))
}
