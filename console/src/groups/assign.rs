//! Assign Users: search the directory, tick several users, add them in one AssignUsers call.
//! Without JavaScript it is a search form and a form of checkboxes; with htmx the search
//! results update in place.

use super::fields::{Fields, Problems};
use super::{PAGE, SECTION, admin_only, get, path, sync_warning};
use crate::Console;
use crate::call::{Failure, Signed};
use crate::form::Posted;
use crate::layout;
use crate::users::status_badge;
use crate::view;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    /// A substring of the user's email.
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
}

impl SearchQuery {
    fn link(&self, base: &str, page: &str) -> String {
        let mut pairs = vec![("q", self.q.as_str())];
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        format!(
            "{base}/assign?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

async fn page_of(
    console: &Console,
    signed: &Signed,
    id: &str,
    query: &SearchQuery,
    picked: &[String],
    problems: &Problems,
) -> Response {
    let group = match get(console, signed, id).await {
        Ok(answer) => answer.group,
        Err(failure) => return failure.into_response(),
    };
    let Some(group) = group else {
        return Failure::new(StatusCode::NOT_FOUND, "no such group").into_response();
    };
    let request = pb::ListUsersRequest {
        search: query.q.trim().to_owned(),
        page_size: PAGE,
        page_token: query.page.clone(),
        ..pb::ListUsersRequest::default()
    };
    let users = match console
        .services()
        .admin
        .list_users(signed.request(request))
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return Failure::from(status).into_response(),
    };
    let base = path(&group.id);
    let action = format!("{base}/assign");
    let content = html! {
        p { a href=(base) { "← " (group.name) } }
        h1 { "Assign users to " (group.name) }
        (sync_warning(&group))
        form.toolbar method="get" action=(action) role="search"
            hx-get=(action) hx-trigger="input changed delay:300ms from:#q, submit"
            hx-target="#candidates" hx-select="#candidates" hx-swap="outerHTML" hx-push-url="true" {
            div {
                label for="q" { "Search users by email" }
                input #q type="search" name="q" value=(query.q) maxlength="1024" placeholder="name@example.com";
            }
            button type="submit" { "Search" }
        }
        div #candidates {
            form method="post" action=(action) {
                (problems.above())
                input type="hidden" name="csrf" value=(signed.csrf());
                input type="hidden" name="q" value=(query.q);
                fieldset aria-describedby=[problems.described_by("users")] {
                    legend { "Pick the users to add (users already in the group stay as they are)" }
                    table {
                        thead { tr {
                            th scope="col" { span.visually-hidden { "Pick" } }
                            th scope="col" { "User" }
                            th scope="col" { "Status" }
                        } }
                        tbody {
                            @for (i, user) in users.users.iter().enumerate() {
                                @let name = if user.display_name.is_empty() { &user.email } else { &user.display_name };
                                tr {
                                    td {
                                        input id=(format!("pick-{i}")) type="checkbox" name="users" value=(user.id)
                                            checked[picked.contains(&user.id)];
                                    }
                                    td {
                                        label.inline for=(format!("pick-{i}")) { (name) }
                                        @if !user.display_name.is_empty() { " " span.muted { (user.email) } }
                                    }
                                    td { (status_badge(user.status())) }
                                }
                            }
                            @if users.users.is_empty() {
                                tr { td colspan="3" { "No user matches." } }
                            }
                        }
                    }
                    (problems.under("users"))
                }
                div.actions {
                    button type="submit" { "Assign selected users" }
                    " "
                    a.button.secondary href=(base) { "Cancel" }
                }
            }
            nav.pager aria-label="Pages of users" {
                @if !query.page.is_empty() {
                    a.button.secondary href=(query.link(&base, "")) { "First page" }
                }
                @if !users.next_page_token.is_empty() {
                    a.button.secondary href=(query.link(&base, &users.next_page_token)) { "Next page" }
                }
            }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        layout::page(signed, SECTION, "Assign users", content),
    )
        .into_response()
}

pub async fn page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Response {
    if let Err(refused) = admin_only(&signed, "assigning users") {
        return refused.into_response();
    }
    page_of(&console, &signed, &id, &query, &[], &Problems::none()).await
}

pub async fn assign(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Response {
    let Posted { signed, form } = posted;
    let users = form.all("users");
    let request = pb::AssignUsersRequest {
        group_id: id.clone(),
        users: users.clone(),
    };
    match console
        .services()
        .admin
        .assign_users(signed.request(request))
        .await
    {
        Ok(answer) => view::see_other(&format!(
            "{}?added={}",
            path(&id),
            answer.into_inner().added
        )),
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            Failure::from(status).into_response()
        }
        Err(status) => {
            let problems = Problems::from_status(&status, &["users"]);
            let query = SearchQuery {
                q: form.one("q").to_owned(),
                page: String::new(),
            };
            page_of(&console, &signed, &id, &query, &users, &problems).await
        }
    }
}
