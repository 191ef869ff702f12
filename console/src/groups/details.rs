//! A group's details: its facts, its members (searchable, paged) with the time each joined,
//! and removing a member after a confirmation.

use super::{PAGE, SECTION, get, managed_by, path, roles_or_none, sync_warning};
use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::confirm::Confirm;
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::layout;
use crate::list::{self, Search, pager};
use crate::users::status_badge;
use crate::view::segment;
use crate::view::{self, time};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
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
        list::link(base, &pairs)
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
) -> Page<Markup> {
    let (group, policy_ids) = get(&console, &signed, &id).await?;
    let request = pb::ListGroupMembersRequest {
        group_id: group.id.clone(),
        search: query.q.trim().to_owned(),
        page_size: PAGE,
        page_token: query.page.clone(),
    };
    let members = console
        .services()
        .admin
        .list_group_members(signed.request(request))
        .await
        .page()?;
    let base = path(&group.id);
    let content = html! {
        p { a href=(SECTION) { "← Groups" } }
        div.heading {
            h1 { (group.name) " " (managed_by(&group)) }
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
                dt { "Policies naming it" } dd { (policy_ids.len()) }
                dt { "Created" } dd { (time(group.created_at.as_ref())) }
                dt { "Updated" } dd { (time(group.updated_at.as_ref())) }
            }
        }
        @if signed.is_admin() { (sync_warning(&group)) }
        h2 { "Members" }
        (Search {
            action: &base,
            trigger: "input changed delay:300ms from:#q, submit",
            target: "members",
            label: "Search members by name or email",
            q: &query.q,
            maxlength: Some("1024"),
            placeholder: None,
            more: html! {},
        }.render())
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
            (pager("Pages of members", &query.page, &members.next_page_token, |page| query.link(&base, page)))
        }
    };
    Ok(layout::page(&signed, SECTION, &group.name, content))
}

/// The member `user` of `group`, found through GetUser (the page names them).
async fn user_named(console: &Console, signed: &Signed, user: &str) -> Page<pb::User> {
    let request = pb::GetUserRequest {
        user: user.to_owned(),
        activity_limit: 1,
    };
    console
        .services()
        .admin
        .get_user(signed.request(request))
        .await
        .page()?
        .user
        .ok_or_else(|| Failure::not_found("no such user"))
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
    Confirm {
        section: SECTION,
        title: "Remove a member",
        back: (&base, &group.name),
        action: format!("{base}/members/{}/remove", segment(&user.id)),
        warning: sync_warning(group),
        what: html! {
            p {
                "Remove " strong { (name) } " from " strong { (group.name) } "? "
                "They lose the group's roles and whatever its policies give them, from the next decision on. "
                "The user stays in the directory."
            }
        },
        tick: &format!("Remove {name} from this group"),
        button: "Remove member",
        cancel: Some(&base),
    }
    .render(signed, problems)
}

pub async fn confirm_remove(
    State(console): State<Console>,
    signed: Signed,
    Path((id, user)): Path<(String, String)>,
) -> Page {
    signed.admin_only("removing a member")?;
    let (group, _) = get(&console, &signed, &id).await?;
    let user = user_named(&console, &signed, &user).await?;
    Ok(remove_page(&signed, &group, &user, &Problems::none()))
}

pub async fn remove(
    State(console): State<Console>,
    Path((id, user)): Path<(String, String)>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let problems = Problems::field("confirm", "tick the confirmation box to go on");
        let (group, _) = get(&console, &signed, &id).await?;
        let user = user_named(&console, &signed, &user).await?;
        return Ok(remove_page(&signed, &group, &user, &problems));
    }
    let request = pb::RemoveGroupMemberRequest {
        group_id: id.clone(),
        user,
    };
    console
        .services()
        .admin
        .remove_group_member(signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&format!("{}?removed=1", path(&id))))
}
