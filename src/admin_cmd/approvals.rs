//! `admin approvals …`: an approver's inbox, every request (admins), and approving, denying
//! or cancelling one.

use super::show::{Table, fields, or_dash, time_cell};
use super::{Bearer, Report, status};
use pb::approval_service_client::ApprovalServiceClient;
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = ApprovalServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// What awaits you (pending requests you may approve); with `--all`, every request (an
    /// admin role is needed), filtered.
    List(ListArgs),
    /// One request in full: its call, flow, step, approvals and who is still awaited.
    Show {
        /// The request's id (`apr_…`).
        id: String,
    },
    /// Approve a request at its current step.
    Approve {
        id: String,
        /// Kept with the approval and in the audit log.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a request: one denial by an eligible approver ends it.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Withdraw a pending (or approved, unused) request: the requester or an Admin.
    Cancel {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Every request, not only what awaits you.
    #[arg(long)]
    all: bool,
    /// Only this state (repeatable): pending (the default), approved, denied, expired,
    /// cancelled.
    #[arg(long = "state", value_enum)]
    states: Vec<StateArg>,
    /// Only requests for this user (an id, email or user name).
    #[arg(long, default_value = "")]
    user: String,
    /// Only requests for this connector.
    #[arg(long, default_value = "")]
    connector: String,
    /// At most this many requests (newest first).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl StateArg {
    fn wire(self) -> pb::ApprovalState {
        match self {
            StateArg::Pending => pb::ApprovalState::Pending,
            StateArg::Approved => pb::ApprovalState::Approved,
            StateArg::Denied => pb::ApprovalState::Denied,
            StateArg::Expired => pb::ApprovalState::Expired,
            StateArg::Cancelled => pb::ApprovalState::Cancelled,
        }
    }
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List(args) => list(client, args).await,
        Command::Show { id } => {
            let request = client
                .get_approval_request(pb::GetApprovalRequestRequest {
                    id,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .request
                .unwrap_or_default();
            Ok(shown(&request, None))
        }
        Command::Approve { id, comment } => {
            let request = client
                .approve(pb::ApproveRequest { id, comment })
                .await
                .map_err(status)?
                .into_inner()
                .request
                .unwrap_or_default();
            Ok(shown(&request, Some("approved")))
        }
        Command::Deny { id, comment } => {
            let request = client
                .deny(pb::DenyRequest { id, comment })
                .await
                .map_err(status)?
                .into_inner()
                .request
                .unwrap_or_default();
            Ok(shown(&request, Some("denied")))
        }
        Command::Cancel { id, comment } => {
            let request = client
                .cancel(pb::CancelRequest { id, comment })
                .await
                .map_err(status)?
                .into_inner()
                .request
                .unwrap_or_default();
            Ok(shown(&request, Some("cancelled")))
        }
    }
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Report> {
    let mut requests = Vec::new();
    let mut page_token = String::new();
    let limit = args.limit as usize;
    loop {
        let answer = client
            .list_approval_requests(pb::ListApprovalRequestsRequest {
                all: args.all,
                states: args.states.iter().map(|s| s.wire().into()).collect(),
                user: args.user.clone(),
                connector: args.connector.clone(),
                page_size: u32::try_from(limit.saturating_sub(requests.len()))
                    .unwrap_or(super::MAX_PAGE_SIZE)
                    .clamp(1, super::MAX_PAGE_SIZE),
                page_token,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        requests.extend(answer.requests);
        page_token = answer.next_page_token;
        if page_token.is_empty() || requests.len() >= limit {
            break;
        }
    }
    requests.truncate(limit);
    let mut table = Table::new(&[
        "ID", "STATE", "USER", "AGENT", "CALL", "STEP", "NEEDED", "CREATED", "EXPIRES",
    ]);
    for r in &requests {
        table.row(vec![
            r.id.clone(),
            state_name(r.state()),
            or_dash(&r.user_email),
            or_dash(&r.agent),
            format!("{}/{}", r.connector, r.tool),
            (r.step + 1).to_string(),
            r.approvals_needed.to_string(),
            time_cell(r.created_at.as_ref()),
            time_cell(r.expires_at.as_ref()),
        ]);
    }
    let json = json!({ "requests": requests.iter().map(request_json).collect::<Vec<_>>() });
    let text = if requests.is_empty() {
        "nothing awaits you\n".to_owned()
    } else {
        table.render()
    };
    Ok(Report::new(json, text))
}

fn state_name(s: pb::ApprovalState) -> String {
    s.as_str_name()
        .trim_start_matches("APPROVAL_STATE_")
        .to_lowercase()
}

fn shown(r: &pb::ApprovalRequest, done: Option<&str>) -> Report {
    let approvals: Vec<String> = r
        .approvals
        .iter()
        .map(|a| {
            let who = if a.user_email.is_empty() {
                &a.user_id
            } else {
                &a.user_email
            };
            if a.comment.is_empty() {
                format!("{who} (step {})", a.step + 1)
            } else {
                format!("{who} (step {}): {}", a.step + 1, a.comment)
            }
        })
        .collect();
    let arguments = r
        .arguments
        .as_ref()
        .map(|s| Value::Object(portcullis_struct(s)).to_string())
        .unwrap_or_else(|| "{}".to_owned());
    let mut text = String::new();
    if let Some(done) = done {
        text.push_str(&format!("{done} {}\n", r.id));
    }
    text.push_str(&fields(&[
        ("id", r.id.clone()),
        ("state", state_name(r.state())),
        (
            "user",
            format!("{} ({})", or_dash(&r.user_email), r.user_id),
        ),
        ("agent", or_dash(&r.agent)),
        ("call", format!("{}/{}", r.connector, r.tool)),
        ("arguments", arguments),
        ("digest", r.arguments_digest.clone()),
        ("justification", or_dash(&r.justification)),
        ("policy", r.policy_id.clone()),
        (
            "flow",
            r.flow.as_ref().map(|f| f.id.clone()).unwrap_or_default(),
        ),
        (
            "step",
            format!(
                "{} of {}",
                r.step + 1,
                r.flow.as_ref().map_or(0, |f| f.steps.len())
            ),
        ),
        ("needed", r.approvals_needed.to_string()),
        ("awaiting", or_dash(&r.awaiting.join(", "))),
        ("approvals", or_dash(&approvals.join("; "))),
        (
            "denial",
            r.denial
                .as_ref()
                .map(|d| format!("{} {}", d.user_id, d.comment))
                .unwrap_or_else(|| "-".to_owned()),
        ),
        ("created", time_cell(r.created_at.as_ref())),
        ("expires", time_cell(r.expires_at.as_ref())),
        ("approved until", time_cell(r.approved_until.as_ref())),
        ("used by", or_dash(&r.used_by_decision)),
    ]));
    Report::new(json!({ "request": request_json(r) }), text).changed(done.is_some())
}

/// A protobuf Struct as JSON.
fn portcullis_struct(s: &prost_types::Struct) -> serde_json::Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect()
}

fn value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => Value::Object(portcullis_struct(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value).collect()),
    }
}

fn request_json(r: &pb::ApprovalRequest) -> Value {
    json!({
        "id": r.id,
        "state": state_name(r.state()),
        "user_id": r.user_id,
        "user_email": r.user_email,
        "agent": r.agent,
        "connector": r.connector,
        "tool": r.tool,
        "arguments": r.arguments.as_ref().map(|s| Value::Object(portcullis_struct(s))),
        "arguments_digest": r.arguments_digest,
        "justification": r.justification,
        "policy_id": r.policy_id,
        "flow_id": r.flow.as_ref().map(|f| f.id.clone()),
        "step": r.step,
        "approvals_needed": r.approvals_needed,
        "awaiting": r.awaiting,
        "approvals": r.approvals.iter().map(|a| json!({
            "user_id": a.user_id, "user_email": a.user_email, "step": a.step, "comment": a.comment,
            "at": super::show::time(a.at.as_ref()),
        })).collect::<Vec<_>>(),
        "denial": r.denial.as_ref().map(|d| json!({"user_id": d.user_id, "comment": d.comment})),
        "created_at": super::show::time(r.created_at.as_ref()),
        "expires_at": super::show::time(r.expires_at.as_ref()),
        "approved_until": super::show::time(r.approved_until.as_ref()),
        "used_by_decision": r.used_by_decision,
    })
}
