//! Approvals: the signed-in approver's inbox (Admins may also see every request), a request's
//! details (who, which agent, tool, arguments, justification, the flow's steps and the
//! approvals so far), and approve or deny with a comment. The approval service decides who may
//! approve what; a person without an admin role reaches only this section.

use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::form::Posted;
use crate::layout;
use crate::list::{self, pager};
use crate::view::{self, badge, time};
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use pb::approval_service_server::ApprovalService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    /// `pending` (default), `approved`, `denied`, `expired`, `cancelled`, or `any`.
    #[serde(default)]
    state: String,
    /// `1`: every request (Admins), not only those awaiting the signed-in person.
    #[serde(default)]
    all: String,
    #[serde(default)]
    page: String,
}

const STATES: &[(&str, &str)] = &[
    ("pending", "Pending"),
    ("approved", "Approved"),
    ("denied", "Denied"),
    ("expired", "Expired"),
    ("cancelled", "Cancelled"),
    ("any", "Any state"),
];

fn states(state: &str) -> Vec<i32> {
    let one = |s: pb::ApprovalState| vec![s as i32];
    match state {
        "approved" => one(pb::ApprovalState::Approved),
        "denied" => one(pb::ApprovalState::Denied),
        "expired" => one(pb::ApprovalState::Expired),
        "cancelled" => one(pb::ApprovalState::Cancelled),
        "any" => vec![
            pb::ApprovalState::Pending as i32,
            pb::ApprovalState::Approved as i32,
            pb::ApprovalState::Denied as i32,
            pb::ApprovalState::Expired as i32,
            pb::ApprovalState::Cancelled as i32,
        ],
        _ => one(pb::ApprovalState::Pending),
    }
}

pub async fn inbox(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<InboxQuery>,
) -> Page<Markup> {
    let all = query.all == "1" && signed.is_admin();
    let state = if query.state.is_empty() {
        "pending"
    } else {
        query.state.as_str()
    };
    let request = pb::ListApprovalRequestsRequest {
        all,
        states: states(state),
        page_size: 50,
        page_token: query.page.clone(),
        ..Default::default()
    };
    let answer = console
        .services()
        .approvals
        .list_approval_requests(signed.request(request))
        .await
        .page()?;
    let link = |page: &str| {
        let mut pairs = vec![("state", state)];
        if all {
            pairs.push(("all", "1"));
        }
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        list::link("/console/approvals", &pairs)
    };
    let content = html! {
        h1 { (if all { "Approval requests" } else { "Your approvals" }) }
        form.toolbar method="get" action="/console/approvals" {
            div {
                label for="state" { "State" }
                select #state name="state" {
                    @for (value, label) in STATES {
                        option value=(value) selected[*value == state] { (label) }
                    }
                }
            }
            @if signed.is_admin() {
                div.field.check {
                    input #all type="checkbox" name="all" value="1" checked[all];
                    label for="all" { "Every request, not only those awaiting me" }
                }
            }
            button type="submit" { "Show" }
        }
        table {
            caption.visually-hidden { "Approval requests" }
            thead { tr {
                th scope="col" { "Requested" }
                th scope="col" { "For" }
                th scope="col" { "Agent" }
                th scope="col" { "Tool" }
                th scope="col" { "State" }
            } }
            tbody {
                @for r in &answer.requests {
                    tr {
                        td { a href=(format!("/console/approvals/{}", r.id)) { (time(r.created_at.as_ref())) } }
                        td { (r.user_email) }
                        td { (r.agent) }
                        td { (r.connector) "." (r.tool) }
                        td { (state_badge(r.state())) }
                    }
                }
                @if answer.requests.is_empty() {
                    tr { td colspan="5" { "Nothing here." } }
                }
            }
        }
        (pager("Pages", &query.page, &answer.next_page_token, link))
    };
    Ok(layout::page(
        &signed,
        "/console/approvals",
        "Approvals",
        content,
    ))
}

pub async fn details(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Page<Markup> {
    let request = pb::GetApprovalRequestRequest {
        id,
        ..Default::default()
    };
    let answer = console
        .services()
        .approvals
        .get_approval_request(signed.request(request))
        .await
        .page()?;
    let r = answer
        .request
        .ok_or_else(|| Failure::not_found("no such approval request"))?;
    let arguments = r
        .arguments
        .as_ref()
        .map(|s| serde_json::to_string_pretty(&pdp_service::struct_to_json(s)).unwrap_or_default())
        .unwrap_or_else(|| "{}".to_owned());
    let awaits_me = r.awaiting.contains(&signed.who.user_id);
    let title = format!("{}.{} for {}", r.connector, r.tool, r.user_email);
    let content = html! {
        h1 { (r.connector) "." (r.tool) " " (state_badge(r.state())) }
        div.card {
            dl.facts {
                dt { "For" } dd { (r.user_email) " (" code { (r.user_id) } ")" }
                dt { "Agent" } dd { (r.agent) }
                dt { "Tool" } dd { (r.connector) "." (r.tool) }
                dt { "Justification" } dd { (r.justification) }
                dt { "Requested" } dd { (time(r.created_at.as_ref())) }
                @if r.state() == pb::ApprovalState::Pending {
                    dt { "Expires" } dd { (time(r.expires_at.as_ref())) }
                }
                @if r.approved_until.is_some() {
                    dt { "Approved until" } dd { (time(r.approved_until.as_ref())) }
                }
                dt { "Policy" } dd { code { (r.policy_id) } }
                dt { "Request id" } dd { code { (r.id) } }
            }
        }
        h2 { "Arguments" }
        pre.card tabindex="0" aria-label="Arguments" { (arguments) }
        @if let Some(flow) = &r.flow {
            h2 { "Steps of " (flow.name) }
            ol {
                @for (i, step) in flow.steps.iter().enumerate() {
                    li {
                        (approvers(&step.approvers)) ", " (step.min_approvals.max(1)) " approval(s)"
                        @if i as u32 == r.step && r.state() == pb::ApprovalState::Pending {
                            " " (badge("pending", "current step"))
                        }
                    }
                }
            }
        }
        h2 { "Approvals so far" }
        @if r.approvals.is_empty() && r.denial.is_none() {
            p { "None yet." }
        }
        ul {
            @for a in &r.approvals {
                li { (decision_line(a, "approved")) }
            }
            @if let Some(denial) = &r.denial {
                li { (decision_line(denial, "denied")) }
            }
        }
        @if r.state() == pb::ApprovalState::Pending {
            @if awaits_me {
                (decide_form(&signed, &r.id))
            } @else {
                p.notice { "This request does not await your approval at its current step." }
            }
        }
    };
    Ok(layout::page(&signed, "/console/approvals", &title, content))
}

fn decide_form(signed: &Signed, id: &str) -> Markup {
    html! {
        div.card {
            h2 { "Your decision" }
            form method="post" action=(format!("/console/approvals/{id}/approve")) {
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field {
                    label for="approve-comment" { "Comment (optional)" }
                    textarea #approve-comment name="comment" maxlength="1024" {}
                }
                button type="submit" { "Approve this exact call" }
            }
            form method="post" action=(format!("/console/approvals/{id}/deny")) {
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field {
                    label for="deny-comment" { "Why not (optional)" }
                    textarea #deny-comment name="comment" maxlength="1024" {}
                }
                button.danger type="submit" { "Deny" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    comment: String,
}

pub async fn approve(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<DecideForm>,
) -> Page {
    let request = pb::ApproveRequest {
        id: id.clone(),
        comment: posted.form.comment.trim().to_owned(),
    };
    console
        .services()
        .approvals
        .approve(posted.signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&format!("/console/approvals/{id}")))
}

pub async fn deny(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<DecideForm>,
) -> Page {
    let request = pb::DenyRequest {
        id: id.clone(),
        comment: posted.form.comment.trim().to_owned(),
    };
    console
        .services()
        .approvals
        .deny(posted.signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&format!("/console/approvals/{id}")))
}

fn decision_line(a: &pb::ApprovalDecision, what: &str) -> Markup {
    html! {
        (if a.user_email.is_empty() { &a.user_id } else { &a.user_email })
        " " (what) " at step " (a.step + 1) ", " (time(a.at.as_ref()))
        @if !a.comment.is_empty() { ": “" (a.comment) "”" }
    }
}

fn approvers(approvers: &[pb::Approver]) -> String {
    use pb::approver::Approver;
    let names: Vec<String> = approvers
        .iter()
        .filter_map(|a| a.approver.as_ref())
        .map(|a| match a {
            Approver::UserId(id) => format!("user {id}"),
            Approver::GroupId(id) => format!("group {id}"),
            Approver::Manager(_) => "the requester's manager".to_owned(),
            Approver::Admins(_) => "any admin".to_owned(),
        })
        .collect();
    names.join(" or ")
}

pub fn state_badge(state: pb::ApprovalState) -> Markup {
    match state {
        pb::ApprovalState::Pending => badge("pending", "Pending"),
        pb::ApprovalState::Approved => badge("allow", "Approved"),
        pb::ApprovalState::Denied => badge("deny", "Denied"),
        pb::ApprovalState::Expired => badge("", "Expired"),
        pb::ApprovalState::Cancelled => badge("", "Cancelled"),
        pb::ApprovalState::Unspecified => badge("", "Unknown"),
    }
}
