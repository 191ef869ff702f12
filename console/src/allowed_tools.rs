//! "The tools each agent may use for this user", on a user's details: for each enabled agent,
//! what ListAllowedTools answers, asked of the same engine the gateway's checks use (without
//! request attributes, so a tool whose policy tests them is marked conditional).

use crate::Console;
use crate::call::Signed;
use crate::users::decision_badge;
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use pb::decision_service_server::DecisionService as _;
use portcullis_proto::v1 as pb;

/// At most this many agents are asked about (a registry is a few dozen agents; the page stays
/// quick whatever it holds).
pub const MAX_AGENTS: usize = 20;

/// At most this many tools are shown for one agent.
pub const MAX_TOOLS: usize = 100;

/// What one agent may use for the user, or why it could not be read.
struct ForAgent {
    agent: pb::Agent,
    tools: Result<Vec<pb::AllowedTool>, String>,
}

/// The section for user `user_id`. The agent registry is read as the signed-in person (it is
/// an admin read); the allowed tools come from the console's own decision service, which the
/// decision log does not record.
pub async fn section(console: &Console, signed: &Signed, user: &pb::User) -> Markup {
    let user_id = user.id.as_str();
    let agents = match console
        .services()
        .admin
        .list_agents(signed.request(pb::ListAgentsRequest {}))
        .await
    {
        Ok(answer) => answer.into_inner().agents,
        Err(status) => {
            return html! {
                h2 { "Tools each agent may use" }
                p.notice.danger role="alert" { "The agents could not be read: " (status.message()) }
            };
        }
    };
    let enabled: Vec<pb::Agent> = agents.into_iter().filter(|a| a.enabled).collect();
    let more = enabled.len().saturating_sub(MAX_AGENTS);
    let mut rows = Vec::with_capacity(enabled.len().min(MAX_AGENTS));
    for agent in enabled.into_iter().take(MAX_AGENTS) {
        let request = pb::ListAllowedToolsRequest {
            user: user_id.to_owned(),
            agent: agent.id.clone(),
            ..pb::ListAllowedToolsRequest::default()
        };
        let tools = console
            .services()
            .decisions
            .list_allowed_tools(tonic::Request::new(request))
            .await
            .map(|answer| answer.into_inner().tools)
            .map_err(|status| status.message().to_owned());
        rows.push(ForAgent { agent, tools });
    }
    html! {
        h2 #allowed-tools { "Tools each agent may use" }
        @match user.status() {
            pb::UserStatus::Locked => p.notice.danger role="note" {
                "This user is locked: every agent is denied for them, whatever the policies say."
            },
            pb::UserStatus::Inactive => p.notice.warn role="note" {
                "This user is inactive in the identity provider: every agent is denied for them."
            },
            _ => {},
        }
        p.muted {
            "For each enabled agent, what the policies allow it to do for this user now. "
            "\u{201c}*\u{201d} is every other tool of the connector. Conditional: the answer depends on the call's arguments or attributes."
        }
        table {
            caption.visually-hidden { "Tools each agent may use for this user" }
            thead { tr { th scope="col" { "Agent" } th scope="col" { "Tools" } } }
            tbody {
                @for row in &rows {
                    tr {
                        th scope="row" {
                            (if row.agent.display_name.is_empty() { &row.agent.id } else { &row.agent.display_name })
                            " " span.muted { code { (row.agent.id) } }
                        }
                        td { (tools(&row.tools)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="2" { "No agent is enabled." } } }
            }
        }
        @if more > 0 {
            p.muted { "Showing the first " (MAX_AGENTS) " enabled agents; " (more) " more not shown." }
        }
    }
}

fn tools(tools: &Result<Vec<pb::AllowedTool>, String>) -> Markup {
    match tools {
        Err(problem) => html! { span.error { "Could not be read: " (problem) } },
        Ok(tools) if tools.is_empty() => html! { "None" },
        Ok(tools) => html! {
            ul.tools {
                @for tool in tools.iter().take(MAX_TOOLS) {
                    li {
                        code { (tool.connector) "." (tool.tool) }
                        " " (decision_badge(tool.decision()))
                        @if tool.conditional { " " span.badge { "Conditional" } }
                    }
                }
            }
            @if tools.len() > MAX_TOOLS {
                p.muted { "and " (tools.len() - MAX_TOOLS) " more" }
            }
        },
    }
}
