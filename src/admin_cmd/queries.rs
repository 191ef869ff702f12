//! `admin users allowed-tools USER` (what this user's agent may call, from DecisionService) and
//! `admin who-can CONNECTOR TOOL` (whom the policies of a tool name, by action).

use super::show::{self, Table, or_dash};
use super::{Client, Report, status};
use anyhow::Context;
use portcullis_proto::v1 as pb;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct AllowedToolsArgs {
    /// A user id, email (any case) or the identity provider's external id.
    user: String,
    /// The AI agent acting for the user (a registered agent's id or alias); empty: an
    /// unregistered agent.
    #[arg(long, default_value = "")]
    agent: String,
    /// Only this connector.
    #[arg(long)]
    connector: Option<String>,
    /// A request attribute for policy conditions, as KEY=VALUE (repeatable).
    #[arg(long = "attr", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// When the server requires a decision token (--decision-token-file): a file holding it.
    #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
    decision_token_file: Option<PathBuf>,
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Debug, clap::Args)]
pub struct WhoCanArgs {
    /// For example `github`.
    connector: String,
    /// A tool of the connector, for example `create_issue`.
    tool: String,
}

/// ListAllowedTools on the same server, as the gateway would ask it.
pub async fn allowed_tools(channel: Channel, args: AllowedToolsArgs) -> anyhow::Result<Report> {
    let bearer = crate::decision_token::bearer(args.decision_token_file.as_deref())?;
    let mut client =
        pb::decision_service_client::DecisionServiceClient::with_interceptor(channel, bearer);
    let answer = client
        .list_allowed_tools(pb::ListAllowedToolsRequest {
            user: args.user.clone(),
            agent: args.agent,
            connector: args.connector.unwrap_or_default(),
            attributes: args.attributes.into_iter().collect(),
            min_revision: 0,
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut table = Table::new(&["CONNECTOR", "TOOL", "DECISION", "CONDITIONAL", "POLICY"]);
    let mut rows = Vec::with_capacity(answer.tools.len());
    for t in &answer.tools {
        let decision = portcullis_proto::names::decision(t.decision());
        table.row(vec![
            t.connector.clone(),
            t.tool.clone(),
            decision.to_owned(),
            show::yes_no(t.conditional),
            or_dash(&t.policy_id),
        ]);
        rows.push(json!({
            "connector": t.connector,
            "tool": t.tool,
            "decision": decision,
            "conditional": t.conditional,
            "policy_id": t.policy_id,
        }));
    }
    let json = json!({"user": args.user, "tools": rows, "revision": answer.revision});
    let text = if answer.tools.is_empty() {
        format!(
            "no tool: every call by this agent for `{}` is denied\n",
            args.user
        )
    } else {
        table.render()
    };
    Ok(Report::new(json, text))
}

/// Most restrictive first: the order in which a user named by several policies is decided.
const ACTIONS: [pb::PolicyAction; 4] = [
    pb::PolicyAction::Deny,
    pb::PolicyAction::RequireApproval,
    pb::PolicyAction::StepUp,
    pb::PolicyAction::Allow,
];

/// The enabled policies of CONNECTOR that cover TOOL, and whom each names, by action. Exact for
/// what the policies say; what it does not weigh (locks, agents, conditions) is in the note.
pub async fn who_can(client: &mut Client, args: WhoCanArgs) -> anyhow::Result<Report> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_policies(pb::ListPoliciesRequest {
                connector: args.connector.clone(),
                page_size: super::MAX_PAGE_SIZE,
                page_token,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        ids.extend(
            page.policies
                .into_iter()
                .filter(|p| p.enabled && p.connector == args.connector)
                .map(|p| p.id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut group_names: BTreeMap<String, String> = BTreeMap::new();
    let mut rows: Vec<(pb::PolicyAction, &'static str, String, String, pb::Policy)> = Vec::new();
    for id in ids {
        let policy = client
            .get_policy(pb::GetPolicyRequest { id: id.clone() })
            .await
            .map_err(status)
            .with_context(|| format!("cannot read policy `{id}`"))?
            .into_inner()
            .policy
            .unwrap_or_default();
        if !(policy.enabled && (policy.all_tools || policy.tools.contains(&args.tool))) {
            continue;
        }
        let scope = policy.scope.clone().unwrap_or_default();
        let action = policy.action();
        if scope.all_users {
            rows.push((action, "everyone", "*".into(), "-".into(), policy.clone()));
        }
        for user in &scope.user_ids {
            rows.push((action, "user", user.clone(), "-".into(), policy.clone()));
        }
        for group in &scope.group_ids {
            if !group_names.contains_key(group) {
                let name = client
                    .get_group(pb::GetGroupRequest {
                        id: group.clone(),
                        or_by_name: false,
                    })
                    .await
                    .map(|g| g.into_inner().group.unwrap_or_default().name)
                    .unwrap_or_default();
                group_names.insert(group.clone(), name);
            }
            let name = group_names.get(group).cloned().unwrap_or_default();
            rows.push((
                action,
                "group",
                group.clone(),
                or_dash(&name),
                policy.clone(),
            ));
        }
    }
    rows.sort_by_key(|(action, kind, id, _, policy)| {
        let rank = ACTIONS
            .iter()
            .position(|a| a == action)
            .unwrap_or(ACTIONS.len());
        (rank, *kind, id.clone(), policy.id.clone())
    });
    let mut table = Table::new(&[
        "ACTION",
        "WHO",
        "ID",
        "NAME",
        "AGENTS",
        "CONDITION",
        "POLICY",
    ]);
    let mut json_rows = Vec::with_capacity(rows.len());
    for (action, kind, id, name, policy) in &rows {
        let action = action_name(*action);
        let agents = policy
            .agents
            .as_ref()
            .map_or_else(|| "all".to_owned(), |a| or_dash(&a.agent_ids.join(",")));
        let condition = condition(policy);
        table.row(vec![
            action.to_owned(),
            (*kind).to_owned(),
            id.clone(),
            name.clone(),
            agents.clone(),
            or_dash(&condition),
            policy.id.clone(),
        ]);
        json_rows.push(json!({
            "action": action,
            "who": kind,
            "id": id,
            "name": name,
            "agents": policy.agents.as_ref().map(|a| &a.agent_ids),
            "condition": (!condition.is_empty()).then_some(&condition),
            "policy_id": policy.id,
        }));
    }
    let json = json!({
        "connector": args.connector,
        "tool": args.tool,
        "rules": json_rows,
    });
    let text = if rows.is_empty() {
        format!(
            "no enabled policy covers {} {}: every call is denied (NO_MATCHING_POLICY)\n",
            args.connector, args.tool
        )
    } else {
        table.render()
    };
    Ok(Report::new(json, text).note(Some(
        "(whom the enabled policies name; a user named by several gets the most restrictive \
         action, listed first. Locks, agents and conditions may still deny: `portcullis check \
         --explain` answers for one call)"
            .to_owned(),
    )))
}

/// What else must hold: the step-up requirement, the CEL condition, attribute conditions.
fn condition(policy: &pb::Policy) -> String {
    let mut parts = Vec::new();
    if let Some(step_up) = &policy.step_up {
        let mut need = Vec::new();
        if !step_up.acr_values.is_empty() {
            need.push(format!("acr {}", step_up.acr_values.join("|")));
        }
        if !step_up.amr_values.is_empty() {
            need.push(format!("amr {}", step_up.amr_values.join("+")));
        }
        if step_up.max_age > 0 {
            need.push(format!("max-age {}s", step_up.max_age));
        }
        parts.push(format!("step up: {}", need.join(", ")));
    }
    if !policy.conditions.is_empty() {
        parts.push(format!("{} attribute conditions", policy.conditions.len()));
    }
    if !policy.expression.is_empty() {
        parts.push(policy.expression.clone());
    }
    parts.join("; ")
}

/// `ALLOW`, `STEP_UP`, `REQUIRE_APPROVAL`, `DENY`: the names decisions have everywhere.
fn action_name(action: pb::PolicyAction) -> &'static str {
    action.as_str_name().trim_start_matches("POLICY_ACTION_")
}
