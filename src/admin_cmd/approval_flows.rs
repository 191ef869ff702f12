//! `admin approval-flows …`: the `ApprovalFlowService` (flows and the default flow).
//!
//! A step is given as one `--step` value, the way `show` prints it:
//! `approvers=user:alice@example.com,group:g-eng,manager,admins;min=2;timeout=30m`.

use super::show::{Table, fields, or_dash, time, time_cell};
use super::{Bearer, Report, status};
use pb::approval_flow_service_client::ApprovalFlowServiceClient;
use portcullis_proto::v1 as pb;
use serde_json::json;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = ApprovalFlowServiceClient<InterceptedService<Channel, Bearer>>;

/// The built-in flow's id, as the server names it.
const BUILTIN: &str = "builtin-admins";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every flow, the built-in one included, and which is the default.
    List,
    /// One flow in full.
    Show {
        /// The flow's id.
        id: String,
    },
    /// Create a flow (its id is generated).
    Create(FlowArgs),
    /// Replace a flow's name, description, steps, TTL and grant (every one: give them all).
    Update {
        /// The flow's id.
        id: String,
        #[command(flatten)]
        flow: FlowArgs,
    },
    /// Delete a flow (refused while policies name it or it is the default).
    Delete {
        /// The flow's id.
        id: String,
    },
    /// Show the default flow, or set it (`builtin-admins`: back to the built-in flow).
    Default {
        /// The flow Require approval policies that name none use.
        id: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// A step, in order (repeatable, at least one):
    /// `approvers=user:<ref>,group:<id>,manager,admins;min=<n>;timeout=<duration>`
    /// (`min` defaults to 1; without `timeout` only the request TTL ends the step).
    #[arg(long = "step", required = true, value_parser = parse_step)]
    steps: Vec<pb::ApprovalStep>,
    /// How long a request may stay pending (default 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Grant calls for this long after the approval (a `window` grant), instead of one call.
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// The grant covers any arguments of the tool, not only the approved ones.
    #[arg(long)]
    any_arguments: bool,
}

impl FlowArgs {
    fn into_wire(self, id: String) -> pb::ApprovalFlow {
        pb::ApprovalFlow {
            id,
            name: self.name,
            description: self.description,
            steps: self.steps,
            request_ttl: self.ttl.map(duration),
            grant_mode: if self.window.is_some() {
                pb::GrantMode::Window
            } else {
                pb::GrantMode::Once
            }
            .into(),
            window: self.window.map(duration),
            any_arguments: self.any_arguments,
            ..Default::default()
        }
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `approvers=user:alice@example.com,group:g-eng,manager,admins;min=2;timeout=30m`.
fn parse_step(text: &str) -> Result<pb::ApprovalStep, String> {
    use pb::approver::Approver as A;
    let mut step = pb::ApprovalStep {
        min_approvals: 1,
        ..Default::default()
    };
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not key=value"))?;
        match key.trim() {
            "approvers" => {
                for approver in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    let approver = match approver.split_once(':') {
                        Some(("user", user)) => A::UserId(user.to_owned()),
                        Some(("group", group)) => A::GroupId(group.to_owned()),
                        None if approver == "manager" => A::Manager(true),
                        None if approver == "admins" => A::Admins(true),
                        _ => {
                            return Err(format!(
                                "approver `{approver}`: use user:<ref>, group:<id>, manager \
                                 or admins"
                            ));
                        }
                    };
                    step.approvers.push(pb::Approver {
                        approver: Some(approver),
                    });
                }
            }
            "min" => {
                step.min_approvals = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("min `{value}` is not a whole number"))?;
            }
            "timeout" => {
                let timeout = humantime::parse_duration(value.trim())
                    .map_err(|e| format!("timeout `{value}`: {e}"))?;
                step.timeout = Some(duration(timeout));
            }
            other => {
                return Err(format!("unknown key `{other}` (approvers, min or timeout)"));
            }
        }
    }
    if step.approvers.is_empty() {
        return Err("a step needs approvers=…".into());
    }
    Ok(step)
}

fn secs_text(d: Option<&prost_types::Duration>) -> Option<String> {
    let d = d?;
    let d = Duration::new(u64::try_from(d.seconds).ok()?, 0);
    Some(humantime::format_duration(d).to_string())
}

fn approver_text(a: &pb::Approver) -> String {
    use pb::approver::Approver as A;
    match &a.approver {
        Some(A::UserId(id)) => format!("user:{id}"),
        Some(A::GroupId(id)) => format!("group:{id}"),
        Some(A::Manager(_)) => "manager".into(),
        Some(A::Admins(_)) => "admins".into(),
        None => "?".into(),
    }
}

/// A step as `--step` takes it.
fn step_text(s: &pb::ApprovalStep) -> String {
    let approvers: Vec<String> = s.approvers.iter().map(approver_text).collect();
    let mut text = format!("approvers={};min={}", approvers.join(","), s.min_approvals);
    if let Some(timeout) = secs_text(s.timeout.as_ref()) {
        text.push_str(&format!(";timeout={timeout}"));
    }
    text
}

fn grant_text(f: &pb::ApprovalFlow) -> String {
    let grant = match f.grant_mode() {
        pb::GrantMode::Window => format!(
            "window {}",
            secs_text(f.window.as_ref()).unwrap_or_default()
        ),
        pb::GrantMode::Once | pb::GrantMode::Unspecified => "once".to_owned(),
    };
    if f.any_arguments {
        format!("{grant}, any arguments")
    } else {
        grant
    }
}

fn flow_json(f: &pb::ApprovalFlow) -> serde_json::Value {
    json!({
        "id": f.id,
        "name": f.name,
        "description": f.description,
        "steps": f.steps.iter().map(|s| json!({
            "approvers": s.approvers.iter().map(approver_text).collect::<Vec<_>>(),
            "min_approvals": s.min_approvals,
            "timeout_secs": s.timeout.as_ref().map(|t| t.seconds),
        })).collect::<Vec<_>>(),
        "request_ttl_secs": f.request_ttl.as_ref().map(|t| t.seconds),
        "grant": match f.grant_mode() {
            pb::GrantMode::Window => "window",
            _ => "once",
        },
        "window_secs": f.window.as_ref().map(|t| t.seconds),
        "any_arguments": f.any_arguments,
        "created_at": time(f.created_at.as_ref()),
        "updated_at": time(f.updated_at.as_ref()),
    })
}

fn shown(f: &pb::ApprovalFlow, done: Option<&str>) -> Report {
    let json = json!({"flow": flow_json(f)});
    let text = match done {
        Some(verb) => format!("{verb} approval flow {}\n", f.id),
        None => {
            let mut pairs = vec![
                ("id", f.id.clone()),
                ("name", f.name.clone()),
                ("description", or_dash(&f.description)),
                (
                    "request ttl",
                    secs_text(f.request_ttl.as_ref()).unwrap_or_default(),
                ),
                ("grant", grant_text(f)),
                ("created", time_cell(f.created_at.as_ref())),
                ("updated", time_cell(f.updated_at.as_ref())),
            ];
            let steps: Vec<(String, String)> = f
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("step {}", i + 1), step_text(s)))
                .collect();
            pairs.extend(steps.iter().map(|(k, v)| (k.as_str(), v.clone())));
            fields(&pairs)
        }
    };
    Report::new(json, text).changed(done.is_some())
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List => {
            let answer = client
                .list_approval_flows(pb::ListApprovalFlowsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let default = if answer.default_flow_id.is_empty() {
                BUILTIN
            } else {
                answer.default_flow_id.as_str()
            };
            let mut table = Table::new(&["ID", "NAME", "STEPS", "TTL", "GRANT", "DEFAULT"]);
            for f in &answer.flows {
                table.row(vec![
                    f.id.clone(),
                    f.name.clone(),
                    f.steps.len().to_string(),
                    secs_text(f.request_ttl.as_ref()).unwrap_or_default(),
                    grant_text(f),
                    if f.id == default { "yes" } else { "" }.to_owned(),
                ]);
            }
            let json = json!({
                "flows": answer.flows.iter().map(flow_json).collect::<Vec<_>>(),
                "default_flow_id": default,
            });
            Ok(Report::new(json, table.render()))
        }
        Command::Show { id } => {
            let answer = client
                .get_approval_flow(pb::GetApprovalFlowRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            Ok(shown(&answer.flow.unwrap_or_default(), None))
        }
        Command::Create(args) => {
            let answer = client
                .create_approval_flow(pb::CreateApprovalFlowRequest {
                    flow: Some(args.into_wire(String::new())),
                })
                .await
                .map_err(status)?
                .into_inner();
            Ok(shown(&answer.flow.unwrap_or_default(), Some("created")))
        }
        Command::Update { id, flow } => {
            let answer = client
                .update_approval_flow(pb::UpdateApprovalFlowRequest {
                    flow: Some(flow.into_wire(id)),
                })
                .await
                .map_err(status)?
                .into_inner();
            Ok(shown(&answer.flow.unwrap_or_default(), Some("updated")))
        }
        Command::Delete { id } => {
            client
                .delete_approval_flow(pb::DeleteApprovalFlowRequest { id: id.clone() })
                .await
                .map_err(status)?;
            Ok(Report::new(
                json!({"deleted": id}),
                format!("deleted approval flow {id}\n"),
            )
            .changed(true))
        }
        Command::Default { id: None } => {
            let answer = client
                .get_default_approval_flow(pb::GetDefaultApprovalFlowRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let id = if answer.flow_id.is_empty() {
                BUILTIN.to_owned()
            } else {
                answer.flow_id
            };
            Ok(Report::new(
                json!({"default_flow_id": id}),
                format!("{id}\n"),
            ))
        }
        Command::Default { id: Some(id) } => {
            client
                .set_default_approval_flow(pb::SetDefaultApprovalFlowRequest {
                    flow_id: id.clone(),
                })
                .await
                .map_err(status)?;
            Ok(Report::new(
                json!({"default_flow_id": id}),
                format!("the default approval flow is now {id}\n"),
            )
            .changed(true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_print_the_same_way() {
        let text = "approvers=user:alice@example.com,group:g-eng,manager,admins;min=2;timeout=30m";
        let step = parse_step(text).unwrap();
        assert_eq!(step.approvers.len(), 4);
        assert_eq!(step.min_approvals, 2);
        assert_eq!(step.timeout.unwrap().seconds, 1800);
        assert_eq!(step_text(&step), text);
        assert_eq!(parse_step("approvers=manager").unwrap().min_approvals, 1);
        for bad in [
            "min=2",
            "approvers=boss",
            "approvers=manager;min=two",
            "approvers=manager;timeout=soon",
            "approvers=manager;color=red",
            "approvers",
        ] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }
}
