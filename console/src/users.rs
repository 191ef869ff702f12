//! Users: the searchable, sortable, paged list, a user's details, and lock / unlock.

use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::form::Posted;
use crate::layout;
use crate::list::{self, Search, pager};
use crate::view::{self, badge, time};
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// Rows per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    /// `email` (default), `mfa` or `created`.
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: Option<String>,
    /// `active`, `inactive`, `locked`, or empty for all.
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

impl ListQuery {
    fn descending(&self) -> bool {
        list::descending(self.desc.as_deref())
    }

    /// This list's address with `page`, and with `sort` when given (flipping the direction
    /// when it is already the sort).
    fn link(&self, sort: Option<&str>, page: &str) -> String {
        let (sort, desc) = list::sort_after(self.sort_name(), self.descending(), sort);
        let mut pairs = vec![("q", self.q.as_str()), ("sort", sort)];
        if desc {
            pairs.push(("desc", "1"));
        }
        if !self.status.is_empty() {
            pairs.push(("status", &self.status));
        }
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        list::link("/console/users", &pairs)
    }

    fn sort_name(&self) -> &str {
        match self.sort.as_str() {
            "mfa" => "mfa",
            "created" => "created",
            _ => "email",
        }
    }
}

pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Page<Markup> {
    let sort = match query.sort_name() {
        "mfa" => pb::UserSort::Mfa,
        "created" => pb::UserSort::Created,
        _ => pb::UserSort::Email,
    };
    let status = match query.status.as_str() {
        "active" => pb::UserStatus::Active,
        "inactive" => pb::UserStatus::Inactive,
        "locked" => pb::UserStatus::Locked,
        _ => pb::UserStatus::Unspecified,
    };
    let request = pb::ListUsersRequest {
        search: query.q.trim().to_owned(),
        status: status as i32,
        sort: sort as i32,
        descending: query.descending(),
        page_size: PAGE,
        page_token: query.page.clone(),
    };
    let answer = console
        .services()
        .admin
        .list_users(signed.request(request))
        .await
        .page()?;
    let content = html! {
        h1 { "Users" }
        (Search {
            action: "/console/users",
            trigger: "input changed delay:300ms from:#q, change, submit",
            target: "users",
            label: "Search by email or name",
            q: &query.q,
            maxlength: None,
            placeholder: Some("Name or name@example.com"),
            more: html! {
                div {
                    label for="status" { "Status" }
                    select #status name="status" {
                        @for (value, label) in [("", "All"), ("active", "Active"), ("inactive", "Inactive"), ("locked", "Locked")] {
                            option value=(value) selected[query.status == value] { (label) }
                        }
                    }
                }
                input type="hidden" name="sort" value=(query.sort_name());
                @if query.descending() { input type="hidden" name="desc" value="1"; }
            },
        }.render())
        div #users {
            table {
                caption.visually-hidden { "Users" }
                thead { tr {
                    th scope="col" { a href=(query.link(Some("email"), "")) { "User" } }
                    th scope="col" { "Status" }
                    th scope="col" { a href=(query.link(Some("mfa"), "")) { "MFA" } }
                    th scope="col" { a href=(query.link(Some("created"), "")) { "Created" } }
                } }
                tbody {
                    @for user in &answer.users {
                        tr {
                            td {
                                span.avatar aria-hidden="true" { (initials(user)) }
                                a href=(format!("/console/users/{}", view::segment(&user.id))) {
                                    (display(user.display_name.as_str(), &user.email))
                                }
                                @if !user.display_name.is_empty() {
                                    " " span.muted { (user.email) }
                                }
                            }
                            td { (status_badge(user.status())) }
                            td { (mfa(user.mfa())) }
                            td { (time(user.created_at.as_ref())) }
                        }
                    }
                    @if answer.users.is_empty() {
                        tr { td colspan="4" { "No user matches." } }
                    }
                }
            }
            (pager("Pages", &query.page, &answer.next_page_token, |page| query.link(None, page)))
        }
    };
    Ok(layout::page(&signed, "/console/users", "Users", content))
}

pub async fn details(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page<Markup> {
    let request = pb::GetUserRequest {
        user: id,
        activity_limit: 20,
    };
    let answer = console
        .services()
        .admin
        .get_user(signed.request(request))
        .await
        .page()?;
    let user = answer
        .user
        .as_ref()
        .ok_or_else(|| Failure::not_found("no such user"))?;
    let name = display(
        &user.display_name,
        user.emails.first().map_or("", String::as_str),
    );
    let allowed = crate::allowed_tools::section(&console, &signed, user).await;
    let content = html! {
        h1 { (name) " " (status_badge(user.status())) }
        div.card {
            dl.facts {
                dt { "Id" } dd { code { (user.id) } }
                dt { "Email" } dd { (user.emails.join(", ")) }
                dt { "User name" } dd { (user.user_name) }
                dt { "External id" } dd { (user.external_id) }
                dt { "MFA" } dd { (mfa(user.mfa())) }
                dt { "Created" } dd { (time(user.created_at.as_ref())) }
                dt { "Updated" } dd { (time(user.updated_at.as_ref())) }
                @if let Some(lock) = &user.lock {
                    dt { "Locked" } dd { (time(lock.locked_at.as_ref())) " by " (lock.locked_by) ": " (lock.reason) }
                }
            }
        }
        @if signed.is_admin() { (lock_controls(&signed, user)) }
        h2 { "Groups" }
        table {
            thead { tr { th scope="col" { "Group" } th scope="col" { "Roles" } th scope="col" { "Joined" } } }
            tbody {
                @for group in &answer.groups {
                    tr {
                        td { a href=(crate::groups::path(&group.group_id)) { (group.name) } }
                        td { (roles(&group.roles)) }
                        td { (time(group.joined_at.as_ref())) }
                    }
                }
                @if answer.groups.is_empty() { tr { td colspan="3" { "In no group." } } }
            }
        }
        (allowed)
        h2 { "Recent activity" }
        table {
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Agent" } th scope="col" { "Tool" } th scope="col" { "Decision" }
            } }
            tbody {
                @for decision in &answer.decisions {
                    tr {
                        td { (time(decision.time.as_ref())) }
                        td { (decision.agent) }
                        td { (decision.connector) "." (decision.tool) }
                        td { (decision_badge(decision.decision())) }
                    }
                }
                @if answer.decisions.is_empty() { tr { td colspan="4" { "No decision recorded." } } }
            }
        }
    };
    Ok(layout::page(&signed, "/console/users", name, content))
}

/// Lock (with a reason and a confirmation) or unlock.
fn lock_controls(signed: &Signed, user: &pb::User) -> Markup {
    let base = format!("/console/users/{}", view::segment(&user.id));
    html! {
        @if user.lock.is_some() {
            form.card method="post" action=(format!("{base}/unlock")) {
                h2 { "Unlock" }
                p { "Agents may act for this user again, as the policies allow." }
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field.check {
                    input #confirm type="checkbox" name="confirm" value="yes" required;
                    label for="confirm" { " Unlock this user" }
                }
                button type="submit" { "Unlock" }
            }
        } @else {
            form.card method="post" action=(format!("{base}/lock")) {
                h2 { "Lock" }
                p { "Every agent acting for this user is denied from the next decision on, whatever the policies say." }
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field {
                    label for="reason" { "Reason (kept in the audit log)" }
                    input #reason type="text" name="reason" required maxlength="1000";
                }
                div.field.check {
                    input #confirm type="checkbox" name="confirm" value="yes" required;
                    label for="confirm" { " Lock this user now" }
                }
                button.danger type="submit" { "Lock user" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LockForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

pub async fn lock(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<LockForm>,
) -> Page {
    confirmed(&posted.form.confirm)?;
    let request = pb::LockUserRequest {
        user: id.clone(),
        reason: posted.form.reason.trim().to_owned(),
    };
    console
        .services()
        .admin
        .lock_user(posted.signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&format!("/console/users/{id}")))
}

pub async fn unlock(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<LockForm>,
) -> Page {
    confirmed(&posted.form.confirm)?;
    let request = pb::UnlockUserRequest { user: id.clone() };
    console
        .services()
        .admin
        .unlock_user(posted.signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&format!("/console/users/{id}")))
}

/// Refuses a destructive form submitted without its confirmation box ticked.
pub fn confirmed(confirm: &str) -> Result<(), Failure> {
    if confirm == "yes" {
        Ok(())
    } else {
        Err(Failure::new(
            axum::http::StatusCode::BAD_REQUEST,
            "confirm: tick the confirmation box to go on",
        ))
    }
}

fn display<'a>(display_name: &'a str, email: &'a str) -> &'a str {
    if display_name.is_empty() {
        email
    } else {
        display_name
    }
}

fn initials(user: &pb::UserRow) -> String {
    match user.avatar.as_ref().map(|a| a.initials.as_str()) {
        Some(initials) if !initials.is_empty() => initials.to_owned(),
        _ => view::initials(display(&user.display_name, &user.email)),
    }
}

pub fn status_badge(status: pb::UserStatus) -> Markup {
    match status {
        pb::UserStatus::Active => badge("active", "Active"),
        pb::UserStatus::Inactive => badge("inactive", "Inactive"),
        pb::UserStatus::Locked => badge("locked", "Locked"),
        pb::UserStatus::Unspecified => badge("", "Unknown"),
    }
}

fn mfa(mfa: pb::MfaStatus) -> &'static str {
    match mfa {
        pb::MfaStatus::Enabled => "Enabled",
        pb::MfaStatus::Disabled => "Disabled",
        pb::MfaStatus::NotConfigured | pb::MfaStatus::Unspecified => "Not configured",
    }
}

pub fn roles(roles: &[i32]) -> String {
    let names: Vec<&str> = roles
        .iter()
        .filter_map(|&r| match pb::Role::try_from(r) {
            Ok(pb::Role::Admin) => Some("Admin"),
            Ok(pb::Role::ReadOnly) => Some("Read Only"),
            _ => None,
        })
        .collect();
    names.join(", ")
}

pub fn decision_badge(decision: pb::Decision) -> Markup {
    match decision {
        pb::Decision::Allow => badge("allow", "Allow"),
        pb::Decision::StepUp => badge("step_up", "Step up"),
        pb::Decision::RequireApproval => badge("require_approval", "Require approval"),
        _ => badge("deny", "Deny"),
    }
}
