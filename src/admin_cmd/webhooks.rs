//! `admin webhooks …`: endpoints notified of approval requests, and their deliveries.

use super::show::{self, Table, fields, or_dash, time_cell};
use super::{Report, status};
use pb::webhook_service_client::WebhookServiceClient;
use portcullis_proto::v1 as pb;
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = WebhookServiceClient<InterceptedService<Channel, super::Bearer>>;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every webhook endpoint.
    List,
    /// One endpoint in full.
    Show {
        /// The endpoint's id (`wh_…`).
        id: String,
    },
    /// Add an endpoint; prints its signing secret (`whsec_…`), shown only this once.
    Create(CreateArgs),
    /// Change an endpoint (only what is given), or issue it a new secret.
    Update(UpdateArgs),
    /// Delete an endpoint; its pending deliveries fail.
    Delete {
        /// The endpoint's id.
        id: String,
    },
    /// An endpoint's deliveries, newest first: attempts, last error, next attempt.
    Deliveries {
        /// The endpoint's id.
        id: String,
        /// At most this many (the server's maximum is 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// `https://…`, or `http://` to a loopback address.
    #[arg(long)]
    url: String,
    /// An event type to send (`approval.created`, `approval.escalated`, `approval.approved`,
    /// `approval.denied`, `approval.expired`, `approval.cancelled`; repeatable). None: every one.
    #[arg(long = "event")]
    events: Vec<String>,
    /// Send Slack incoming-webhook messages (`{"text": …}`, without the call's arguments).
    #[arg(long)]
    slack: bool,
    /// Create it disabled (nothing is queued for it until it is enabled).
    #[arg(long)]
    disabled: bool,
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The endpoint's id.
    id: String,
    #[arg(long)]
    url: Option<String>,
    /// Replace the event types with these (repeatable).
    #[arg(long = "event", conflicts_with = "all_events")]
    events: Vec<String>,
    /// Send every event type.
    #[arg(long)]
    all_events: bool,
    /// Send Slack messages (`true`) or the event JSON (`false`).
    #[arg(long)]
    slack: Option<bool>,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Queue nothing for it until it is enabled again; its pending deliveries fail.
    #[arg(long)]
    disable: bool,
    #[arg(long)]
    description: Option<String>,
    /// Issue a new signing secret (printed, shown only this once); the old one stops working.
    #[arg(long)]
    rotate_secret: bool,
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List => {
            let answer = client
                .list_webhooks(pb::ListWebhooksRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut table = Table::new(&["ID", "URL", "EVENTS", "SLACK", "ENABLED"]);
            for w in &answer.webhooks {
                table.row(vec![
                    w.id.clone(),
                    w.url.clone(),
                    events_text(&w.events),
                    show::yes_no(w.slack),
                    show::yes_no(w.enabled),
                ]);
            }
            let json = json!({
                "webhooks": answer.webhooks.iter().map(webhook_json).collect::<Vec<_>>(),
            });
            Ok(Report::new(json, table.render()))
        }
        Command::Show { id } => {
            let webhook = get(client, id).await?;
            Ok(shown(&webhook, None, ""))
        }
        Command::Create(args) => {
            let webhook = pb::Webhook {
                url: args.url,
                events: args.events,
                enabled: !args.disabled,
                slack: args.slack,
                description: args.description,
                ..Default::default()
            };
            let answer = client
                .create_webhook(pb::CreateWebhookRequest {
                    webhook: Some(webhook),
                })
                .await
                .map_err(status)?
                .into_inner();
            let webhook = answer.webhook.unwrap_or_default();
            Ok(shown(&webhook, Some("created"), &answer.secret))
        }
        Command::Update(args) => update(client, args).await,
        Command::Delete { id } => {
            client
                .delete_webhook(pb::DeleteWebhookRequest { id: id.clone() })
                .await
                .map_err(status)?;
            Ok(
                Report::new(json!({"deleted": id}), format!("deleted webhook {id}\n"))
                    .changed(true),
            )
        }
        Command::Deliveries { id, limit } => {
            let answer = client
                .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                    webhook_id: id,
                    page_size: limit.min(super::MAX_PAGE_SIZE),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut table = Table::new(&[
                "ID",
                "EVENT",
                "REQUEST",
                "CREATED",
                "STATE",
                "ATTEMPTS",
                "NEXT",
                "LAST ERROR",
            ]);
            for d in &answer.deliveries {
                table.row(vec![
                    d.id.clone(),
                    d.event_type.clone(),
                    d.approval_request_id.clone(),
                    time_cell(d.created_at.as_ref()),
                    delivery_state(d).to_owned(),
                    d.attempts.to_string(),
                    time_cell(d.next_attempt_at.as_ref()),
                    or_dash(&d.last_error),
                ]);
            }
            let json = json!({
                "deliveries": answer.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
            });
            Ok(Report::new(json, table.render()))
        }
    }
}

async fn get(client: &mut Client, id: String) -> anyhow::Result<pb::Webhook> {
    Ok(client
        .get_webhook(pb::GetWebhookRequest { id })
        .await
        .map_err(status)?
        .into_inner()
        .webhook
        .unwrap_or_default())
}

/// The server replaces every field: read the endpoint, change what was given, send it back.
async fn update(client: &mut Client, args: UpdateArgs) -> anyhow::Result<Report> {
    let changes = args.url.is_some()
        || !args.events.is_empty()
        || args.all_events
        || args.slack.is_some()
        || args.enable
        || args.disable
        || args.description.is_some()
        || args.rotate_secret;
    if !changes {
        anyhow::bail!(
            "nothing to change: pass --url, --event, --all-events, --slack, --enable, --disable, \
             --description or --rotate-secret"
        );
    }
    let mut webhook = get(client, args.id).await?;
    if let Some(url) = args.url {
        webhook.url = url;
    }
    if args.all_events {
        webhook.events.clear();
    } else if !args.events.is_empty() {
        webhook.events = args.events;
    }
    if let Some(slack) = args.slack {
        webhook.slack = slack;
    }
    if args.enable {
        webhook.enabled = true;
    }
    if args.disable {
        webhook.enabled = false;
    }
    if let Some(description) = args.description {
        webhook.description = description;
    }
    let answer = client
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(webhook),
            rotate_secret: args.rotate_secret,
        })
        .await
        .map_err(status)?
        .into_inner();
    let webhook = answer.webhook.unwrap_or_default();
    Ok(shown(&webhook, Some("updated"), &answer.secret))
}

/// One endpoint: in full, or one line saying what was done to it; then the new secret, if
/// there is one, alone on the last line.
fn shown(w: &pb::Webhook, done: Option<&str>, secret: &str) -> Report {
    let mut json = json!({"webhook": webhook_json(w)});
    if !secret.is_empty() {
        json["secret"] = json!(secret);
    }
    let mut text = match done {
        Some(verb) => format!("{verb} webhook {} ({})\n", w.id, w.url),
        None => fields(&[
            ("id", w.id.clone()),
            ("url", w.url.clone()),
            ("events", events_text(&w.events)),
            ("slack", show::yes_no(w.slack)),
            ("enabled", show::yes_no(w.enabled)),
            ("description", or_dash(&w.description)),
            ("created", time_cell(w.created_at.as_ref())),
            ("updated", time_cell(w.updated_at.as_ref())),
        ]),
    };
    if !secret.is_empty() {
        text.push_str(
            "The signing secret follows; it is shown only this once. Receivers verify \
             deliveries with it (any Standard Webhooks library).\n",
        );
        text.push_str(secret);
        text.push('\n');
    }
    Report::new(json, text)
        .changed(done.is_some())
        .secret(secret)
}

fn events_text(events: &[String]) -> String {
    if events.is_empty() {
        "all".to_owned()
    } else {
        events.join(", ")
    }
}

fn delivery_state(d: &pb::WebhookDelivery) -> &'static str {
    if d.delivered {
        "delivered"
    } else if d.failed {
        "failed"
    } else {
        "pending"
    }
}

fn webhook_json(w: &pb::Webhook) -> serde_json::Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "enabled": w.enabled,
        "slack": w.slack,
        "description": w.description,
        "created_at": show::time(w.created_at.as_ref()),
        "updated_at": show::time(w.updated_at.as_ref()),
    })
}

fn delivery_json(d: &pb::WebhookDelivery) -> serde_json::Value {
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_type": d.event_type,
        "approval_request_id": d.approval_request_id,
        "state": delivery_state(d),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": show::time(d.created_at.as_ref()),
        "next_attempt_at": show::time(d.next_attempt_at.as_ref()),
        "delivered_at": show::time(d.delivered_at.as_ref()),
    })
}
