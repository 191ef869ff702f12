//! Agents: the registry, and for Admins the organisation-wide kill switch (disable with a
//! reason and a confirmation that says what happens, enable again).

use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::form::Posted;
use crate::layout;
use crate::users::confirmed;
use crate::view::{self, badge, time};
use axum::extract::State;
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

const SECTION: &str = "/console/agents";

pub async fn list(State(console): State<Console>, signed: Signed) -> Page<Markup> {
    let answer = console
        .services()
        .admin
        .list_agents(signed.request(pb::ListAgentsRequest {}))
        .await
        .page()?;
    let content = html! {
        h1 { "Agents" }
        p.muted { "The AI agents registered with Portcullis. Disabling one denies every call it makes, for every user, from the next decision on, whatever the policies say." }
        table {
            caption.visually-hidden { "Registered agents" }
            thead { tr {
                th scope="col" { "Agent" }
                th scope="col" { "Vendor" }
                th scope="col" { "Aliases" }
                th scope="col" { "Acts for" }
                th scope="col" { "State" }
                th scope="col" { "Updated" }
                @if signed.is_admin() { th scope="col" { "Kill switch" } }
            } }
            tbody {
                @for (i, agent) in answer.agents.iter().enumerate() {
                    tr {
                        td { (agent.display_name) " " span.muted { code { (agent.id) } } }
                        td { (agent.vendor) }
                        td { (agent.aliases.join(", ")) }
                        td { (acts_for(agent.scope.as_ref())) }
                        td { (if agent.enabled { badge("enabled", "Enabled") } else { badge("disabled", "Disabled") }) }
                        td { (time(agent.updated_at.as_ref())) }
                        @if signed.is_admin() { td { (switch(&signed, i, agent)) } }
                    }
                }
                @if answer.agents.is_empty() {
                    tr { td colspan="7" { "No agent is registered." } }
                }
            }
        }
    };
    Ok(layout::page(&signed, SECTION, "Agents", content))
}

fn acts_for(scope: Option<&pb::PolicyScope>) -> String {
    match scope {
        Some(scope) => crate::policies::scope_summary(
            scope.all_users,
            scope.user_ids.len(),
            scope.group_ids.len(),
        ),
        None => "No one".to_owned(),
    }
}

/// Disable (with a reason, kept in the audit log, and a confirmation) or enable. The agent's
/// id travels in the form, not the path: ids may hold any character.
fn switch(signed: &Signed, i: usize, agent: &pb::Agent) -> Markup {
    let reason = format!("reason-{i}");
    let confirm = format!("confirm-{i}");
    html! {
        @if agent.enabled {
            form.stacked method="post" action=(format!("{SECTION}/disable")) {
                input type="hidden" name="csrf" value=(signed.csrf());
                input type="hidden" name="id" value=(agent.id);
                div.field {
                    label for=(reason) { "Reason (kept in the audit log)" }
                    input id=(reason) type="text" name="reason" required maxlength="1024";
                }
                div.field {
                    input id=(confirm) type="checkbox" name="confirm" value="yes" required;
                    label.inline for=(confirm) {
                        " Deny every call by " (agent.display_name) ", for every user, at once"
                    }
                }
                button.danger type="submit" { "Disable " (agent.display_name) }
            }
        } @else {
            form.stacked method="post" action=(format!("{SECTION}/enable")) {
                input type="hidden" name="csrf" value=(signed.csrf());
                input type="hidden" name="id" value=(agent.id);
                div.field {
                    input id=(confirm) type="checkbox" name="confirm" value="yes" required;
                    label.inline for=(confirm) {
                        " Let " (agent.display_name) " act again, as the policies allow"
                    }
                }
                button type="submit" { "Enable " (agent.display_name) }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

pub async fn disable(State(console): State<Console>, posted: Posted<SwitchForm>) -> Page {
    set(console, posted, false).await
}

pub async fn enable(State(console): State<Console>, posted: Posted<SwitchForm>) -> Page {
    set(console, posted, true).await
}

async fn set(console: Console, posted: Posted<SwitchForm>, enabled: bool) -> Page {
    let Posted { signed, form } = posted;
    confirmed(&form.confirm)?;
    let request = pb::SetAgentEnabledRequest {
        id: form.id,
        enabled,
        reason: form.reason.trim().to_owned(),
    };
    console
        .services()
        .admin
        .set_agent_enabled(signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(SECTION))
}
