//! Assign Users: search the directory, tick several users, add them in one AssignUsers call.
//! Without JavaScript it is a search form and a form of checkboxes; with htmx the search
//! results update in place.

use super::{PAGE, SECTION, get, path, sync_warning};
use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::layout;
use crate::list::{self, Search, pager};
use crate::users::status_badge;
use crate::view;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
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
        list::link(&format!("{base}/assign"), &pairs)
    }
}

async fn page_of(
    console: &Console,
    signed: &Signed,
    id: &str,
    query: &SearchQuery,
    picked: &[String],
    problems: &Problems,
) -> Page {
    let (group, _) = get(console, signed, id).await?;
    let request = pb::ListUsersRequest {
        search: query.q.trim().to_owned(),
        page_size: PAGE,
        page_token: query.page.clone(),
        ..pb::ListUsersRequest::default()
    };
    let users = console
        .services()
        .admin
        .list_users(signed.request(request))
        .await
        .page()?;
    let base = path(&group.id);
    let action = format!("{base}/assign");
    let content = html! {
        p { a href=(base) { "← " (group.name) } }
        h1 { "Assign users to " (group.name) }
        (sync_warning(&group))
        (Search {
            action: &action,
            trigger: "input changed delay:300ms from:#q, submit",
            target: "candidates",
            label: "Search users by email",
            q: &query.q,
            maxlength: Some("1024"),
            placeholder: Some("name@example.com"),
            more: html! {},
        }.render())
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
            (pager("Pages of users", &query.page, &users.next_page_token, |page| query.link(&base, page)))
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    Ok((
        status,
        layout::page(signed, SECTION, "Assign users", content),
    )
        .into_response())
}

pub async fn page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Page {
    signed.admin_only("assigning users")?;
    page_of(&console, &signed, &id, &query, &[], &Problems::none()).await
}

pub async fn assign(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    let users = form.all("users");
    let request = pb::AssignUsersRequest {
        group_id: id.clone(),
        users: users.clone(),
    };
    let problems = match console
        .services()
        .admin
        .assign_users(signed.request(request))
        .await
    {
        Ok(answer) => {
            let added = answer.into_inner().added;
            return Ok(view::see_other(&format!("{}?added={added}", path(&id))));
        }
        Err(status) => Problems::refused(status, &["users"])?,
    };
    let query = SearchQuery {
        q: form.one("q").to_owned(),
        page: String::new(),
    };
    page_of(&console, &signed, &id, &query, &users, &problems).await
}
