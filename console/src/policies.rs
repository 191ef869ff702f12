//! Policies: the list by connector ([`list`]), a policy's page with its fields, enable /
//! disable, delete and "Test this policy" ([`test`]), and the create / edit form ([`form`]).

mod form;
mod list;
mod test;

pub use form::{create, edit, new, update};
pub use list::list;

use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::form::Posted;
use crate::layout;
use crate::users::confirmed;
use crate::view::{self, badge, time};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// The navigation entry every policy page belongs to.
const SECTION: &str = "/console/policies";

/// A policy's page.
pub fn href(id: &str) -> String {
    format!("{SECTION}/{}", view::segment(id))
}

/// The actions, as the form names them and as people read them.
const ACTIONS: [(pb::PolicyAction, &str, &str); 4] = [
    (pb::PolicyAction::Allow, "allow", "Allow"),
    (pb::PolicyAction::StepUp, "step_up", "Step up"),
    (
        pb::PolicyAction::RequireApproval,
        "require_approval",
        "Require approval",
    ),
    (pb::PolicyAction::Deny, "deny", "Deny"),
];

/// The action's badge (its CSS class is the form's name for it; the label says it in words).
pub fn action_badge(action: pb::PolicyAction) -> Markup {
    match ACTIONS.iter().find(|(a, _, _)| *a == action) {
        Some((_, name, label)) => badge(name, label),
        None => badge("", "Unspecified"),
    }
}

pub fn enabled_badge(enabled: bool) -> Markup {
    if enabled {
        badge("enabled", "Enabled")
    } else {
        badge("disabled", "Disabled")
    }
}

/// Who a scope covers, in words.
pub fn scope_summary(all_users: bool, users: usize, groups: usize) -> String {
    if all_users {
        return "All users".to_owned();
    }
    let mut parts = Vec::new();
    if users > 0 {
        parts.push(format!("{users} user{}", if users == 1 { "" } else { "s" }));
    }
    if groups > 0 {
        parts.push(format!(
            "{groups} group{}",
            if groups == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        "No one".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The agents a selector covers, in words: absent is every agent.
fn agents_summary(agents: Option<&pb::PolicyAgents>) -> String {
    match agents {
        None => "Every agent".to_owned(),
        Some(selected) if selected.agent_ids.is_empty() => "No agent".to_owned(),
        Some(selected) => selected.agent_ids.join(", "),
    }
}

fn tools_summary(all_tools: bool, tools: &[String]) -> String {
    if all_tools {
        "Every tool".to_owned()
    } else {
        tools.join(", ")
    }
}

/// The policy `id` as the service has it, and the revision it was read at.
async fn get(console: &Console, signed: &Signed, id: &str) -> Page<(pb::Policy, u64)> {
    let answer = console
        .services()
        .admin
        .get_policy(signed.request(pb::GetPolicyRequest { id: id.to_owned() }))
        .await
        .page()?;
    let policy = answer
        .policy
        .ok_or_else(|| Failure::not_found(format!("no policy `{id}`")))?;
    Ok((policy, answer.revision))
}

/// A policy's page; with a "Test this policy" question in the query, its answer too.
pub async fn details(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(question): Query<test::Question>,
) -> Page {
    let (policy, revision) = get(&console, &signed, &id).await?;
    let tested = if question.asked() {
        Some(test::run(&console, &policy, &question, revision).await)
    } else {
        None
    };
    let status = match &tested {
        Some(Err(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let content = html! {
        h1 { (policy.name) " " (enabled_badge(policy.enabled)) }
        (facts(&policy))
        @if signed.is_admin() { (controls(&signed, &policy)) }
        (test::section(&policy, &question, tested.as_ref()))
    };
    Ok((
        status,
        layout::page(&signed, SECTION, &policy.name, content),
    )
        .into_response())
}

/// Everything the policy says.
fn facts(policy: &pb::Policy) -> Markup {
    let scope = policy.scope.clone().unwrap_or_default();
    html! {
        div.card {
            dl.facts {
                dt { "Id" } dd { code { (policy.id) } }
                @if !policy.description.is_empty() {
                    dt { "Description" } dd { (policy.description) }
                }
                dt { "Connector" } dd { code { (policy.connector) } }
                dt { "Tools" } dd { (tools_summary(policy.all_tools, &policy.tools)) }
                dt { "Users" } dd {
                    @if scope.all_users {
                        "All users"
                    } @else if scope.user_ids.is_empty() {
                        "None listed"
                    } @else {
                        @for (i, user) in scope.user_ids.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href=(format!("/console/users/{}", view::segment(user))) { (user) }
                        }
                    }
                }
                @if !scope.all_users {
                    dt { "Groups" } dd {
                        @if scope.group_ids.is_empty() { "None listed" } @else { (scope.group_ids.join(", ")) }
                    }
                }
                dt { "Agents" } dd { (agents_summary(policy.agents.as_ref())) }
                dt { "Action" } dd { (action_badge(policy.action())) }
                @if let Some(step_up) = &policy.step_up {
                    dt { "Step-up requirement" } dd { (step_up_summary(step_up)) }
                }
                @if policy.action() == pb::PolicyAction::RequireApproval {
                    dt { "Approval flow" } dd {
                        @if policy.approval_flow_id.is_empty() { "The default flow" } @else { code { (policy.approval_flow_id) } }
                    }
                }
                @for condition in &policy.conditions {
                    dt { "Condition" } dd { code { (condition.attribute) " " (condition.operator) " " (condition.values.join(", ")) } }
                }
                dt { "CEL condition" } dd {
                    @if policy.expression.is_empty() { "None" } @else { code { (policy.expression) } }
                }
                dt { "Created" } dd { (time(policy.created_at.as_ref())) }
                dt { "Updated" } dd { (time(policy.updated_at.as_ref())) }
            }
        }
    }
}

pub fn step_up_summary(step_up: &pb::StepUpRequirement) -> String {
    let mut parts = Vec::new();
    if !step_up.acr_values.is_empty() {
        parts.push(format!("acr one of {}", step_up.acr_values.join(", ")));
    }
    if !step_up.amr_values.is_empty() {
        parts.push(format!("amr all of {}", step_up.amr_values.join(", ")));
    }
    if step_up.max_age > 0 {
        parts.push(format!("signed in within {} s", step_up.max_age));
    }
    if parts.is_empty() {
        "Nothing a token could show".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Edit, enable or disable, delete: Admins only.
fn controls(signed: &Signed, policy: &pb::Policy) -> Markup {
    let base = href(&policy.id);
    html! {
        p { a.button href=(format!("{base}/edit")) { "Edit policy" } }
        form.card method="post" action=(format!("{base}/enabled")) {
            input type="hidden" name="csrf" value=(signed.csrf());
            @if policy.enabled {
                h2 { "Disable" }
                p { "The policy stops applying from the next decision on: what it allowed or denied falls to the other policies." }
                input type="hidden" name="enabled" value="false";
                div.field {
                    input #confirm-enabled type="checkbox" name="confirm" value="yes" required;
                    label for="confirm-enabled" { " Disable this policy" }
                }
                button.danger type="submit" { "Disable policy" }
            } @else {
                h2 { "Enable" }
                p { "The policy applies again from the next decision on." }
                input type="hidden" name="enabled" value="true";
                div.field {
                    input #confirm-enabled type="checkbox" name="confirm" value="yes" required;
                    label for="confirm-enabled" { " Enable this policy" }
                }
                button type="submit" { "Enable policy" }
            }
        }
        form.card method="post" action=(format!("{base}/delete")) {
            h2 { "Delete" }
            p { "The policy is removed for good (the audit log keeps what it was); decisions no longer consider it." }
            input type="hidden" name="csrf" value=(signed.csrf());
            div.field {
                input #confirm-delete type="checkbox" name="confirm" value="yes" required;
                label for="confirm-delete" { " Delete this policy" }
            }
            button.danger type="submit" { "Delete policy" }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    enabled: String,
    #[serde(default)]
    confirm: String,
}

pub async fn set_enabled(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<EnabledForm>,
) -> Page {
    confirmed(&posted.form.confirm)?;
    let enabled = match posted.form.enabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("enabled: `{other}` is not `true` or `false`"),
            ));
        }
    };
    let request = pb::SetPolicyEnabledRequest {
        id: id.clone(),
        enabled,
    };
    console
        .services()
        .admin
        .set_policy_enabled(posted.signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(&href(&id)))
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<DeleteForm>,
) -> Page {
    confirmed(&posted.form.confirm)?;
    console
        .services()
        .admin
        .delete_policy(posted.signed.request(pb::DeletePolicyRequest { id }))
        .await
        .page()?;
    Ok(view::see_other(SECTION))
}
