//! Groups: the searchable, sortable, paged list and creating a group (here); a group's
//! details with its members, removing one ([`details`]); assigning users ([`assign`]); the
//! group's settings and deleting it ([`settings`]).

pub mod assign;
pub mod details;
pub mod settings;

use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::layout;
use crate::list::{self, Search, pager};
use crate::users::roles;
use crate::view;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// Rows per page.
const PAGE: u32 = 50;

/// The section every group page belongs to.
const SECTION: &str = "/console/groups";

/// `/console/groups/{id}` with the id escaped for a path (an imported id may hold `/` or `?`).
pub fn path(id: &str) -> String {
    format!("/console/groups/{}", view::segment(id))
}

/// Who manages a group, as the list and details say it.
fn managed_by(group: &pb::Group) -> Markup {
    match group.managed_by() {
        pb::ManagedBy::External => view::badge("scim", "SCIM"),
        _ => view::badge("local", "Local"),
    }
}

/// A group's console roles, or a muted "None".
fn roles_or_none(chosen: &[i32]) -> Markup {
    let names = roles(chosen);
    html! {
        @if names.is_empty() { span.muted { "None" } } @else { (names) }
    }
}

/// The warning every local edit of a group the identity provider manages carries.
fn sync_warning(group: &pb::Group) -> Markup {
    html! {
        @if group.managed_by() == pb::ManagedBy::External {
            p.notice.warn role="note" {
                strong { "Managed by SCIM. " }
                "This group is synced from the identity provider: the next sync may overwrite a change made here."
            }
        }
    }
}

/// The role checkboxes of the create and settings forms, `chosen` ticked.
fn role_choices(chosen: &[i32], problems: &Problems) -> Markup {
    html! {
        fieldset.field aria-describedby=[problems.described_by("roles")] {
            legend { "Roles" }
            p.muted { "Members get these console roles. None: membership alone gives no admin access (people still reach their own approvals)." }
            @for (value, role, label) in [("admin", pb::Role::Admin, "Admin"), ("read_only", pb::Role::ReadOnly, "Read Only")] {
                div {
                    input id=(format!("role-{value}")) type="checkbox" name="roles" value=(value)
                        checked[chosen.contains(&(role as i32))];
                    label.inline for=(format!("role-{value}")) { (label) }
                }
            }
            (problems.under("roles"))
        }
    }
}

/// The roles a form's checkboxes chose. An unknown value becomes an unspecified role, which
/// the service refuses with the field named.
fn chosen_roles(form: &Fields) -> Vec<i32> {
    form.all("roles")
        .iter()
        .map(|value| match value.as_str() {
            "admin" => pb::Role::Admin as i32,
            "read_only" => pb::Role::ReadOnly as i32,
            _ => pb::Role::Unspecified as i32,
        })
        .collect()
}

/// A group by id, through GetGroup, with the ids of the policies that name it.
async fn get(console: &Console, signed: &Signed, id: &str) -> Page<(pb::Group, Vec<String>)> {
    let request = pb::GetGroupRequest {
        id: id.to_owned(),
        or_by_name: false,
    };
    let answer = console
        .services()
        .admin
        .get_group(signed.request(request))
        .await
        .page()?;
    let group = answer
        .group
        .ok_or_else(|| Failure::not_found("no such group"))?;
    Ok((group, answer.policy_ids))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    /// `name` (default) or `users`.
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    page: String,
}

impl ListQuery {
    fn descending(&self) -> bool {
        list::descending(self.desc.as_deref())
    }

    fn sort_name(&self) -> &str {
        match self.sort.as_str() {
            "users" => "users",
            _ => "name",
        }
    }

    /// This list's address with `page`, and with `sort` when given (flipping the direction
    /// when it is already the sort).
    fn link(&self, sort: Option<&str>, page: &str) -> String {
        let (sort, desc) = list::sort_after(self.sort_name(), self.descending(), sort);
        let mut pairs = vec![("q", self.q.as_str()), ("sort", sort)];
        if desc {
            pairs.push(("desc", "1"));
        }
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        list::link(SECTION, &pairs)
    }

    /// How a sortable column's header says its order, for screen readers.
    fn aria_sort(&self, column: &str) -> Option<&'static str> {
        (self.sort_name() == column).then(|| {
            if self.descending() {
                "descending"
            } else {
                "ascending"
            }
        })
    }
}

pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Page<Markup> {
    let sort = match query.sort_name() {
        "users" => pb::GroupSort::UserCount,
        _ => pb::GroupSort::Name,
    };
    let request = pb::ListGroupsRequest {
        search: query.q.trim().to_owned(),
        sort: sort as i32,
        descending: query.descending(),
        page_size: PAGE,
        page_token: query.page.clone(),
    };
    let answer = console
        .services()
        .admin
        .list_groups(signed.request(request))
        .await
        .page()?;
    let content = html! {
        div.heading {
            h1 { "Groups" }
            @if signed.is_admin() {
                a.button href="/console/groups/new" { "Create group" }
            }
        }
        (Search {
            action: SECTION,
            trigger: "input changed delay:300ms from:#q, submit",
            target: "groups",
            label: "Search by name",
            q: &query.q,
            maxlength: Some("1024"),
            placeholder: None,
            more: html! {
                input type="hidden" name="sort" value=(query.sort_name());
                @if query.descending() { input type="hidden" name="desc" value="1"; }
            },
        }.render())
        div #groups {
            table {
                caption.visually-hidden { "Groups" }
                thead { tr {
                    th scope="col" aria-sort=[query.aria_sort("name")] { a href=(query.link(Some("name"), "")) { "Name" } }
                    th scope="col" { "Roles" }
                    th scope="col" aria-sort=[query.aria_sort("users")] { a href=(query.link(Some("users"), "")) { "Users" } }
                    th scope="col" { "Managed by" }
                } }
                tbody {
                    @for group in &answer.groups {
                        tr {
                            td {
                                a href=(path(&group.id)) { (group.name) }
                                @if !group.description.is_empty() {
                                    div.muted { (group.description) }
                                }
                            }
                            td { (roles_or_none(&group.roles)) }
                            td { (group.user_count) }
                            td { (managed_by(group)) }
                        }
                    }
                    @if answer.groups.is_empty() {
                        tr { td colspan="4" { "No group matches." } }
                    }
                }
            }
            (pager("Pages", &query.page, &answer.next_page_token, |page| query.link(None, page)))
        }
    };
    Ok(layout::page(&signed, SECTION, "Groups", content))
}

/// What the create form holds, to show it again after a refusal.
#[derive(Debug, Default)]
struct Draft {
    name: String,
    description: String,
    roles: Vec<i32>,
}

fn create_page(signed: &Signed, draft: &Draft, problems: &Problems) -> Response {
    let content = html! {
        p { a href=(SECTION) { "← Groups" } }
        h1 { "Create group" }
        form.card method="post" action=(SECTION) {
            (problems.above())
            input type="hidden" name="csrf" value=(signed.csrf());
            (problems.text("name", "Name", &draft.name, true, 256))
            (problems.textarea("description", "Description", &draft.description, 1024))
            (role_choices(&draft.roles, problems))
            button type="submit" { "Create group" }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        layout::page(signed, SECTION, "Create group", content),
    )
        .into_response()
}

pub async fn new(signed: Signed) -> Page {
    signed.admin_only("creating a group")?;
    Ok(create_page(&signed, &Draft::default(), &Problems::none()))
}

pub async fn create(State(console): State<Console>, posted: Posted<Fields>) -> Page {
    let Posted { signed, form } = posted;
    let draft = Draft {
        name: form.one("name").to_owned(),
        description: form.one("description").to_owned(),
        roles: chosen_roles(&form),
    };
    let request = pb::CreateGroupRequest {
        name: draft.name.clone(),
        description: draft.description.clone(),
        roles: draft.roles.clone(),
    };
    let problems = match console
        .services()
        .admin
        .create_group(signed.request(request))
        .await
    {
        Ok(answer) => {
            return Ok(match answer.into_inner().group {
                Some(group) => view::see_other(&path(&group.id)),
                None => view::see_other(SECTION),
            });
        }
        Err(status) => Problems::refused(status, &["name", "description", "roles"])?,
    };
    Ok(create_page(&signed, &draft, &problems))
}
