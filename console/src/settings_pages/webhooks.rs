//! Webhooks (the WebhookService): the endpoints notified of approval requests, each with its
//! recent deliveries; adding one (its signing secret shown once), changing its url, events,
//! description, Slack format and whether it is enabled (optionally with a new secret, shown
//! once), and deleting it after a confirmation. Read Only people may list and read.

use super::{Secret, page};
use crate::Console;
use crate::call::{Answer as _, Failure, Page, Signed};
use crate::confirm::tick;
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::view::segment;
use crate::view::{self, badge, time};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pb::webhook_service_server::WebhookService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;
use tonic::Status;

const PATH: &str = "/console/settings/webhooks";

/// The form's fields, named as the request's `webhook` fields.
const FIELDS: [&str; 3] = ["url", "events", "description"];

/// The event types an endpoint may choose (none chosen: every one).
const EVENTS: [(&str, &str); 6] = [
    ("approval.created", "Created"),
    ("approval.escalated", "Escalated"),
    ("approval.approved", "Approved"),
    ("approval.denied", "Denied"),
    ("approval.expired", "Expired"),
    ("approval.cancelled", "Cancelled"),
];

/// How many recent deliveries the details page shows.
const DELIVERIES: u32 = 50;

fn path(id: &str) -> String {
    format!("{PATH}/{}", segment(id))
}

/// The service's refusal, with its `webhook.` prefix taken off so the message goes next to
/// the form's field (`webhook.url: …` is the url field's).
fn problems(status: Status) -> Result<Problems, Failure> {
    let message = status.message();
    let message = message.strip_prefix("webhook.").unwrap_or(message);
    Problems::refused(Status::new(status.code(), message), &FIELDS)
}

/// The endpoint a form describes.
fn from_form(id: &str, form: &Fields) -> pb::Webhook {
    pb::Webhook {
        id: id.to_owned(),
        url: form.one("url").trim().to_owned(),
        events: form.all("events"),
        enabled: form.one("enabled") == "yes",
        slack: form.one("slack") == "yes",
        description: form.one("description").to_owned(),
        ..pb::Webhook::default()
    }
}

fn enabled(webhook: &pb::Webhook) -> Markup {
    if webhook.enabled {
        badge("enabled", "Enabled")
    } else {
        badge("disabled", "Disabled")
    }
}

fn events(webhook: &pb::Webhook) -> String {
    if webhook.events.is_empty() {
        "All".to_owned()
    } else {
        webhook.events.join(", ")
    }
}

/// The fields of the add and edit forms, showing `draft`.
fn fields(draft: &pb::Webhook, problems: &Problems) -> Markup {
    html! {
        (problems.text("url", "URL (https://, or http:// to a loopback address)", &draft.url, true, 2048))
        (problems.text("description", "Description", &draft.description, false, 1024))
        fieldset.field aria-describedby=[problems.described_by("events")] {
            legend { "Events (none ticked: every event)" }
            @for (value, label) in EVENTS {
                div {
                    input id=(format!("event-{value}")) type="checkbox" name="events" value=(value)
                        checked[draft.events.iter().any(|e| e == value)];
                    label.inline for=(format!("event-{value}")) { (label) " " span.muted { "(" (value) ")" } }
                }
            }
            (problems.under("events"))
        }
        div.field {
            input #enabled type="checkbox" name="enabled" value="yes" checked[draft.enabled];
            label.inline for="enabled" { "Enabled (a disabled endpoint is sent nothing)" }
        }
        div.field {
            input #slack type="checkbox" name="slack" value="yes" checked[draft.slack];
            label.inline for="slack" { "Slack incoming webhook (a text message, without the call's arguments)" }
        }
    }
}

pub async fn list(State(console): State<Console>, signed: Signed) -> Page<Markup> {
    let answer = console
        .services()
        .webhooks
        .list_webhooks(signed.request(pb::ListWebhooksRequest {}))
        .await
        .page()?;
    let content = html! {
        div.heading {
            h1 { "Webhooks" }
            @if signed.is_admin() { a.button href=(format!("{PATH}/new")) { "Add webhook" } }
        }
        p.muted { "Endpoints notified when approval requests are created, escalated, approved, denied, expire or are cancelled; signed per Standard Webhooks." }
        table {
            caption.visually-hidden { "Webhooks" }
            thead { tr {
                th scope="col" { "URL" }
                th scope="col" { "Events" }
                th scope="col" { "Format" }
                th scope="col" { "State" }
            } }
            tbody {
                @for webhook in &answer.webhooks {
                    tr {
                        td {
                            a href=(path(&webhook.id)) { (webhook.url) }
                            @if !webhook.description.is_empty() { div.muted { (webhook.description) } }
                        }
                        td { (events(webhook)) }
                        td { @if webhook.slack { "Slack" } @else { "Event JSON" } }
                        td { (enabled(webhook)) }
                    }
                }
                @if answer.webhooks.is_empty() {
                    tr { td colspan="4" { "No webhook yet." } }
                }
            }
        }
    };
    Ok(page(&signed, super::SETTINGS, "Webhooks", content))
}

fn new_page(signed: &Signed, draft: &pb::Webhook, problems: &Problems) -> Response {
    let content = html! {
        h1 { "Add webhook" }
        form.card method="post" action=(PATH) {
            (problems.above())
            input type="hidden" name="csrf" value=(signed.csrf());
            (fields(draft, problems))
            button type="submit" { "Add webhook" }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    (
        status,
        page(signed, (PATH, "Webhooks"), "Add webhook", content),
    )
        .into_response()
}

pub async fn new(signed: Signed) -> Page {
    signed.admin_only("adding a webhook")?;
    let draft = pb::Webhook {
        enabled: true,
        ..pb::Webhook::default()
    };
    Ok(new_page(&signed, &draft, &Problems::none()))
}

/// The page answering a form that made a signing secret: shown this once.
fn with_secret(signed: &Signed, title: &str, webhook: &pb::Webhook, secret: &str) -> Response {
    Secret {
        title,
        back: (PATH, "Webhooks"),
        facts: html! {
            dt { "URL" } dd { (webhook.url) }
            dt { "Id" } dd { code { (webhook.id) } }
        },
        more: html! {},
        label: "Signing secret (verify the webhook-signature header with it)",
        secret,
        next: (&path(&webhook.id), "To the webhook"),
    }
    .render(signed)
}

pub async fn create(State(console): State<Console>, posted: Posted<Fields>) -> Page {
    let Posted { signed, form } = posted;
    let draft = from_form("", &form);
    let request = pb::CreateWebhookRequest {
        webhook: Some(draft.clone()),
    };
    match console
        .services()
        .webhooks
        .create_webhook(signed.request(request))
        .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            let webhook = answer.webhook.unwrap_or_default();
            Ok(with_secret(
                &signed,
                "Webhook added",
                &webhook,
                &answer.secret,
            ))
        }
        Err(status) => Ok(new_page(&signed, &draft, &problems(status)?)),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

async fn get(console: &Console, signed: &Signed, id: &str) -> Page<pb::Webhook> {
    console
        .services()
        .webhooks
        .get_webhook(signed.request(pb::GetWebhookRequest { id: id.to_owned() }))
        .await
        .page()?
        .webhook
        .ok_or_else(|| Failure::not_found("no such webhook"))
}

/// The details page: `webhook` as stored, `draft` what the edit form shows, its deliveries.
async fn details(
    console: &Console,
    signed: &Signed,
    webhook: &pb::Webhook,
    draft: &pb::Webhook,
    problems: &Problems,
    saved: bool,
) -> Page {
    let request = pb::ListWebhookDeliveriesRequest {
        webhook_id: webhook.id.clone(),
        page_size: DELIVERIES,
    };
    let deliveries = console
        .services()
        .webhooks
        .list_webhook_deliveries(signed.request(request))
        .await
        .page()?
        .deliveries;
    let base = path(&webhook.id);
    let content = html! {
        h1 { "Webhook " code { (webhook.id) } }
        @if saved { p.notice role="status" { "Saved." } }
        div.card {
            dl.facts {
                dt { "URL" } dd { (webhook.url) }
                dt { "Description" } dd { (webhook.description) }
                dt { "Events" } dd { (events(webhook)) }
                dt { "Format" } dd { @if webhook.slack { "Slack" } @else { "Event JSON" } }
                dt { "State" } dd { (enabled(webhook)) }
                dt { "Created" } dd { (time(webhook.created_at.as_ref())) }
                dt { "Updated" } dd { (time(webhook.updated_at.as_ref())) }
            }
        }
        h2 { "Recent deliveries" }
        table {
            caption.visually-hidden { "Recent deliveries, newest first" }
            thead { tr {
                th scope="col" { "Created" }
                th scope="col" { "Event" }
                th scope="col" { "Approval request" }
                th scope="col" { "Attempts" }
                th scope="col" { "Status" }
                th scope="col" { "Last error" }
            } }
            tbody {
                @for delivery in &deliveries {
                    tr {
                        td { (time(delivery.created_at.as_ref())) }
                        td { (delivery.event_type) }
                        td { a href=(format!("/console/approvals/{}", segment(&delivery.approval_request_id))) { (delivery.approval_request_id) } }
                        td { (delivery.attempts) }
                        td {
                            @if delivery.delivered {
                                (badge("active", "Delivered")) " " (time(delivery.delivered_at.as_ref()))
                            } @else if delivery.failed {
                                (badge("locked", "Failed"))
                            } @else {
                                (badge("pending", "Pending"))
                                @if delivery.next_attempt_at.is_some() {
                                    div.muted { "next attempt " (time(delivery.next_attempt_at.as_ref())) }
                                }
                            }
                        }
                        td { (delivery.last_error) }
                    }
                }
                @if deliveries.is_empty() {
                    tr { td colspan="6" { "Nothing delivered yet." } }
                }
            }
        }
        @if signed.is_admin() {
            form.card method="post" action=(base) {
                h2 { "Change" }
                (problems.above())
                input type="hidden" name="csrf" value=(signed.csrf());
                (fields(draft, problems))
                div.field {
                    input #rotate_secret type="checkbox" name="rotate_secret" value="yes";
                    label.inline for="rotate_secret" { "Also issue a new signing secret (the old one stops at once)" }
                }
                button type="submit" { "Save" }
            }
            form.card method="post" action=(format!("{base}/delete")) {
                h2 { "Delete webhook" }
                p { "Deleting it stops every delivery to " strong { (webhook.url) } ", pending retries included. It cannot be restored." }
                input type="hidden" name="csrf" value=(signed.csrf());
                (tick("confirm", "Delete this webhook now", problems))
                button.danger type="submit" { "Delete webhook" }
            }
        }
    };
    let status = problems.status.unwrap_or(StatusCode::OK);
    Ok((
        status,
        page(
            signed,
            (PATH, "Webhooks"),
            &format!("Webhook {}", webhook.id),
            content,
        ),
    )
        .into_response())
}

pub async fn show(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Page {
    let webhook = get(&console, &signed, &id).await?;
    details(
        &console,
        &signed,
        &webhook,
        &webhook,
        &Problems::none(),
        shown.saved.is_some(),
    )
    .await
}

pub async fn update(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    let draft = from_form(&id, &form);
    let request = pb::UpdateWebhookRequest {
        webhook: Some(draft.clone()),
        rotate_secret: form.one("rotate_secret") == "yes",
    };
    let refused = match console
        .services()
        .webhooks
        .update_webhook(signed.request(request))
        .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            if answer.secret.is_empty() {
                return Ok(view::see_other(&format!("{}?saved=1", path(&id))));
            }
            let webhook = answer.webhook.unwrap_or(draft);
            return Ok(with_secret(
                &signed,
                "New signing secret",
                &webhook,
                &answer.secret,
            ));
        }
        Err(status) => problems(status)?,
    };
    let webhook = get(&console, &signed, &id).await?;
    details(&console, &signed, &webhook, &draft, &refused, false).await
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let webhook = get(&console, &signed, &id).await?;
        let problems =
            Problems::field("confirm", "tick the confirmation box to delete the webhook");
        return details(&console, &signed, &webhook, &webhook, &problems, false).await;
    }
    console
        .services()
        .webhooks
        .delete_webhook(signed.request(pb::DeleteWebhookRequest { id }))
        .await
        .page()?;
    Ok(view::see_other(PATH))
}
