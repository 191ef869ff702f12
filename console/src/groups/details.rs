//! A group's details: its facts, its members (searchable, paged) with the time each joined,
//! and removing a member after a confirmation.

use super::fields::{Fields, Problems};
use super::{PAGE, SECTION, admin_only, get, managed_by, path, roles_or_none, sync_warning};
use crate::Console;
use crate::call::{Failure, Signed};
use crate::form::Posted;
use crate::layout;
use crate::users::status_badge;
use crate::view::segment;
use crate::view::{self, time};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct MembersQuery {
    /// A substring of the member's name or email.
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
    /// How many users the last Assign Users added (shown once after the redirect).
    #[serde(default)]
    added: Option<u32>,
    /// Set after a member was removed.
    #[serde(default)]
    removed: Option<String>,
}

impl MembersQuery {
    fn link(&self, base: &str, page: &str) -> String {
        let mut pairs = vec![("q", self.q.as_str())];
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        format!(
            "{base}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

fn source(source: pb::MembershipSource) -> &'static str {
    match source {
        pb::MembershipSource::Idp => "Identity provider",
        pb::MembershipSource::Local => "Added here",
        pb::MembershipSource::Unspecified => "",
    }
}

fn member_name(member: &pb::GroupMember) -> &str {
    if member.display_name.is_empty() {
        &member.email
    } else {
        &member.display_name
    }
}

pub async fn page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Response {
    let answer = match get(&console, &signed, &id).await {
        Ok(answer) => answer,
        Err(failure) => return failure.into_response(),
    };
    let Some(group) = answer.group.as_ref() else {
        return Failure::new(StatusCode::NOT_FOUND, "no such group").into_response();
    };
    let request = pb::ListGroupMembersRequest {
        group_id: group.id.clone(),
        search: query.q.trim().to_owned(),
        page_size: PAGE,
        page_token: query.page.clone(),
    };
    let members = match console
        .services()
        .admin
        .list_group_members(signed.request(request))
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return Failure::from(status).into_response(),
    };
    let base = path(&group.id);
    let content = html! {
        p { a href=(SECTION) { "← Groups" } }
        div.heading {
            h1 { (group.name) " " (managed_by(group)) }
            nav.actions aria-label="Group" {
                a.button.secondary href=(format!("{base}/settings")) { "Settings" }
                @if signed.is_admin() {
                    a.button href=(format!("{base}/assign")) { "Assign users" }
                }
            }
        }
        @if let Some(added) = query.added {
            p.notice role="status" { (added) " user" @if added != 1 { "s" } " added." }
        }
        @if query.removed.is_some() {
            p.notice role="status" { "Member removed." }
        }
        div.card {
            dl.facts {
                dt { "Id" } dd { code { (group.id) } }
                @if !group.external_id.is_empty() {
                    dt { "External id" } dd { code { (group.external_id) } }
                }
                dt { "Description" } dd { (group.description) }
                dt { "Roles" } dd { (roles_or_none(&group.roles)) }
                dt { "Users" } dd { (group.user_count) }
                dt { "Policies naming it" } dd { (answer.policy_ids.len()) }
                dt { "Created" } dd { (time(group.created_at.as_ref())) }
                dt { "Updated" } dd { (time(group.updated_at.as_ref())) }
            }
        }
        @if signed.is_admin() { (sync_warning(group)) }
        h2 { "Members" }
        form.toolbar method="get" action=(base) role="search"
            hx-get=(base) hx-trigger="input changed delay:300ms from:#q, submit"
            hx-target="#members" hx-select="#members" hx-swap="outerHTML" hx-push-url="true" {
            div {
                label for="q" { "Search members by name or email" }
                input #q type="search" name="q" value=(query.q) maxlength="1024";
            }
            button type="submit" { "Search" }
        }
        div #members {
            table {
                caption.visually-hidden { "Members" }
                thead { tr {
                    th scope="col" { "User" }
                    th scope="col" { "Status" }
                    th scope="col" { "Joined" }
                    th scope="col" { "Added by" }
                    @if signed.is_admin() { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for member in &members.members {
                        tr {
                            td {
                                span.avatar aria-hidden="true" {
                                    (member.avatar.as_ref().map(|a| a.initials.clone()).filter(|i| !i.is_empty())
                                        .unwrap_or_else(|| view::initials(member_name(member))))
                                }
                                a href=(format!("/console/users/{}", segment(&member.user_id))) { (member_name(member)) }
                                @if !member.display_name.is_empty() {
                                    " " span.muted { (member.email) }
                                }
                            }
                            td { (status_badge(member.status())) }
                            td { (time(member.joined_at.as_ref())) }
                            td { (source(member.source())) }
                            @if signed.is_admin() {
                                td {
                                    a href=(format!("{base}/members/{}/remove", segment(&member.user_id))) {
                                        "Remove" span.visually-hidden { " " (member_name(member)) }
                                    }
                                }
                            }
                        }
                    }
                    @if members.members.is_empty() {
                        tr { td colspan="5" {
                            @if query.q.trim().is_empty() { "No member yet." } @else { "No member matches." }
                        } }
                    }
                }
            }
            nav.pager aria-label="Pages of members" {
                @if !query.page.is_empty() {
                    a.button.secondary href=(query.link(&base, "")) { "First page" }
                }
                @if !members.next_page_token.is_empty() {
                    a.button.secondary href=(query.link(&base, &members.next_page_token)) { "Next page" }
                }
            }
        }
    };
    layout::page(&signed, SECTION, &group.name, content).into_response()
}

/// The member `user` of `group`, found through GetUser (the page names them).
async fn user_named(console: &Console, signed: &Signed, user: &str) -> Result<pb::User, Failure> {
    let request = pb::GetUserRequest {
        user: user.to_owned(),
        activity_limit: 1,
    };
    console
        .services()
        .admin
        .get_user(signed.request(request))
        .await
        .map_err(Failure::from)?
        .into_inner()
        .user
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "no such user"))
}

fn remove_page(
    signed: &Signed,
    group: &pb::Group,
    user: &pb::User,
    problems: &Problems,
) -> Response {
    let name = if user.display_name.is_empty() {
        user.emails.first().map_or(user.id.as_str(), String::as_str)
    } else {
        user.display_name.as_str()
    };
    let base = path(&group.id);
    let content = html! {
        p { a href=(base) { "← " (group.name) } }
        h1 { "Remove a member" }
        form.card method="post" action=(format!("{base}/members/{}/remove", segment(&user.id))) {
            (sync_warning(group))
            (problems.above())
            p {
                "Remove " strong { (name) } " from " strong { (group.name) } "? "
                "They lose the group's roles and whatever its policies give them, from the next decision on. "
                "The user stays in the directory."
            }
            input type="hidden" name="csrf" value=(signed.csrf());
            div.field {
                input #confirm type="checkbox" name="confirm" value="yes" required
                    aria-describedby=[problems.described_by("confirm")];
                label.inline for="confirm" { "Remove " (name) " from this group" }
                (problems.under("confirm"))
            }
            button.danger type="submit" { "Remove member" }
            " "
            a.button.secondary href=(base) { "Cancel" }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        layout::page(signed, SECTION, "Remove a member", content),
    )
        .into_response()
}

pub async fn confirm_remove(
    State(console): State<Console>,
    signed: Signed,
    Path((id, user)): Path<(String, String)>,
) -> Response {
    if let Err(refused) = admin_only(&signed, "removing a member") {
        return refused.into_response();
    }
    let shown = async {
        let group = get(&console, &signed, &id).await?.group;
        let user = user_named(&console, &signed, &user).await?;
        Ok::<_, Failure>((group, user))
    };
    match shown.await {
        Ok((Some(group), user)) => remove_page(&signed, &group, &user, &Problems::none()),
        Ok((None, _)) => Failure::new(StatusCode::NOT_FOUND, "no such group").into_response(),
        Err(failure) => failure.into_response(),
    }
}

pub async fn remove(
    State(console): State<Console>,
    Path((id, user)): Path<(String, String)>,
    posted: Posted<Fields>,
) -> Response {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let problems = Problems::field("confirm", "tick the confirmation box to go on");
        return match (
            get(&console, &signed, &id).await,
            user_named(&console, &signed, &user).await,
        ) {
            (Ok(answer), Ok(user)) => match answer.group {
                Some(group) => remove_page(&signed, &group, &user, &problems),
                None => Failure::new(StatusCode::NOT_FOUND, "no such group").into_response(),
            },
            (Err(failure), _) | (_, Err(failure)) => failure.into_response(),
        };
    }
    let request = pb::RemoveGroupMemberRequest {
        group_id: id.clone(),
        user,
    };
    match console
        .services()
        .admin
        .remove_group_member(signed.request(request))
        .await
    {
        Ok(_) => view::see_other(&format!("{}?removed=1", path(&id))),
        Err(status) => Failure::from(status).into_response(),
    }
}
