//! The gRPC `WebhookService`: webhook endpoints, their secrets and their deliveries. Admins
//! write; Read Only callers list and get.
//!
//! A secret is returned once (on create and on rotation) and never otherwise leaves the
//! store: responses and the audit log show the endpoint without it, and nothing logs it.

use super::{WebhookOutbox, sign, validate};
use crate::auth::{self, Caller};
use crate::{Error, Result, audit, clock, convert, page, text};
use live::Live;
use pb::webhook_service_server::WebhookServiceServer;
use portcullis_proto::v1 as pb;
use store::{Delivery, Webhook};
use tonic::{Request, Response, Status};

/// The most webhook endpoints: every transition reads them all.
pub const MAX_WEBHOOKS: usize = 100;

const READ: bool = false;
const WRITE: bool = true;

/// Serves `WebhookService` over the live store.
#[derive(Debug, Clone)]
pub struct WebhookService {
    live: Live,
    outbox: WebhookOutbox,
}

impl WebhookService {
    /// `outbox` is woken when an endpoint changes (a re-enabled endpoint's deliveries are
    /// retried as they fall due).
    pub fn new(live: Live, outbox: WebhookOutbox) -> WebhookService {
        WebhookService { live, outbox }
    }

    /// The tonic service, ready to add to a server.
    pub fn into_server(self) -> WebhookServiceServer<WebhookService> {
        WebhookServiceServer::new(self)
    }

    fn authorize<T>(&self, request: &Request<T>, method: &str, write: bool) -> Result<Caller> {
        auth::authorize(&self.live, request, method, write)
    }
}

/// An endpoint as responses and the audit log show it: without its key.
fn shown(w: &Webhook) -> pb::Webhook {
    pb::Webhook {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        enabled: w.enabled,
        slack: w.slack,
        description: w.description.clone(),
        created_at: Some(convert::timestamp(w.created_at)),
        updated_at: Some(convert::timestamp(w.updated_at)),
    }
}

fn redacted(w: &Webhook) -> Option<serde_json::Value> {
    audit::json(&Webhook {
        secret: Vec::new(),
        ..w.clone()
    })
}

fn delivery(d: &Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_type: d.event_type.clone(),
        approval_request_id: d.request_id.clone(),
        created_at: Some(convert::timestamp(d.created_at)),
        attempts: d.attempts,
        delivered: d.delivered_at.is_some(),
        failed: d.failed,
        last_error: d.last_error.clone(),
        next_attempt_at: d.next_attempt_at.map(convert::timestamp),
        delivered_at: d.delivered_at.map(convert::timestamp),
    }
}

/// The settable fields of a `Webhook` message, checked.
struct Fields {
    url: String,
    events: Vec<String>,
    enabled: bool,
    slack: bool,
    description: String,
}

/// Checks `webhook`; `creating`: its id must be empty (it is generated).
fn fields(webhook: Option<pb::Webhook>, creating: bool) -> Result<(String, Fields)> {
    let pb::Webhook {
        id,
        url,
        events,
        enabled,
        slack,
        description,
        created_at: _,
        updated_at: _,
    } = webhook.ok_or_else(|| Error::invalid("webhook", "is required"))?;
    if creating && !id.is_empty() {
        return Err(Error::invalid(
            "webhook.id",
            "is generated on create; leave it empty",
        ));
    }
    if !creating {
        text::required("webhook.id", &id)?;
    }
    validate::url("webhook.url", &url)?;
    // Known names without repeats: at most the six event types.
    validate::events("webhook.events", &events)?;
    text::bounded("webhook.description", &description)?;
    Ok((
        id,
        Fields {
            url,
            events,
            enabled,
            slack,
            description,
        },
    ))
}

async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateWebhookRequest,
) -> Result<pb::CreateWebhookResponse> {
    let pb::CreateWebhookRequest { webhook } = request;
    let (_, fields) = fields(webhook, true)?;
    let (key, secret) = sign::new_secret()?;
    let id = format!("wh_{}", pdp_service::secret::new_id()?);
    let now = clock::now();
    let webhook = Webhook {
        id,
        url: fields.url,
        events: fields.events,
        enabled: fields.enabled,
        slack: fields.slack,
        description: fields.description,
        secret: key,
        created_at: now,
        updated_at: now,
    };
    let (_, webhook) = live
        .write(move |tx| -> Result<Webhook> {
            let existing = tx.webhooks()?;
            if existing.len() >= MAX_WEBHOOKS {
                return Err(Error::FailedPrecondition(format!(
                    "there are {MAX_WEBHOOKS} webhooks already, the most allowed"
                )));
            }
            if existing.iter().any(|w| w.id == webhook.id) {
                return Err(Error::Unavailable(format!(
                    "the new webhook id `{}` is taken; try again",
                    webhook.id
                )));
            }
            tx.put_webhook(&webhook)?;
            let mut event = caller.event("webhook.created", "webhook", &webhook.id);
            event.detail = format!("to `{}`", webhook.url);
            event.after = redacted(&webhook);
            tx.audit(event)?;
            Ok(webhook)
        })
        .await?;
    Ok(pb::CreateWebhookResponse {
        webhook: Some(shown(&webhook)),
        secret,
    })
}

async fn update(
    live: &Live,
    caller: Caller,
    request: pb::UpdateWebhookRequest,
) -> Result<pb::UpdateWebhookResponse> {
    let pb::UpdateWebhookRequest {
        webhook,
        rotate_secret,
    } = request;
    let (id, fields) = fields(webhook, false)?;
    let rotated = if rotate_secret {
        Some(sign::new_secret()?)
    } else {
        None
    };
    let (key, secret) = match rotated {
        Some((key, secret)) => (Some(key), secret),
        None => (None, String::new()),
    };
    let (_, webhook) = live
        .write(move |tx| -> Result<Webhook> {
            let before = tx
                .webhook(&id)?
                .ok_or_else(|| Error::not_found("webhook", &id))?;
            let after = Webhook {
                url: fields.url,
                events: fields.events,
                enabled: fields.enabled,
                slack: fields.slack,
                description: fields.description,
                secret: key.unwrap_or_else(|| before.secret.clone()),
                updated_at: clock::now(),
                ..before.clone()
            };
            tx.put_webhook(&after)?;
            let mut event = caller.event("webhook.updated", "webhook", &id);
            if rotate_secret {
                event.detail = "secret rotated".into();
            }
            event.before = redacted(&before);
            event.after = redacted(&after);
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::UpdateWebhookResponse {
        webhook: Some(shown(&webhook)),
        secret,
    })
}

async fn delete(
    live: &Live,
    caller: Caller,
    request: pb::DeleteWebhookRequest,
) -> Result<pb::DeleteWebhookResponse> {
    let pb::DeleteWebhookRequest { id } = request;
    text::required("id", &id)?;
    live.write(move |tx| -> Result<()> {
        let before = tx
            .webhook(&id)?
            .ok_or_else(|| Error::not_found("webhook", &id))?;
        tx.delete_webhook(&id)?;
        let mut event = caller.event("webhook.deleted", "webhook", &id);
        event.before = redacted(&before);
        tx.audit(event)?;
        Ok(())
    })
    .await?;
    Ok(pb::DeleteWebhookResponse {})
}

async fn get(live: &Live, id: String) -> Result<Webhook> {
    text::required("id", &id)?;
    let found = {
        let id = id.clone();
        live.blocking(move |store| store.get_webhook(&id)).await??
    };
    found.ok_or_else(|| Error::not_found("webhook", id))
}

async fn deliveries(
    live: &Live,
    request: pb::ListWebhookDeliveriesRequest,
) -> Result<pb::ListWebhookDeliveriesResponse> {
    let pb::ListWebhookDeliveriesRequest {
        webhook_id,
        page_size,
    } = request;
    let size = page::size("page_size", page_size)?;
    text::required("webhook_id", &webhook_id)?;
    get(live, webhook_id.clone()).await?;
    let found = live
        .blocking(move |store| store.deliveries_of(&webhook_id, size))
        .await??;
    Ok(pb::ListWebhookDeliveriesResponse {
        deliveries: found.iter().map(delivery).collect(),
    })
}

#[tonic::async_trait]
impl pb::webhook_service_server::WebhookService for WebhookService {
    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        self.authorize(&request, "ListWebhooks", READ)?;
        let pb::ListWebhooksRequest {} = request.into_inner();
        let webhooks = self
            .live
            .blocking(|store| store.webhooks())
            .await
            .map_err(Error::from)?
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: webhooks.iter().map(shown).collect(),
        }))
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> Result<Response<pb::GetWebhookResponse>, Status> {
        self.authorize(&request, "GetWebhook", READ)?;
        let pb::GetWebhookRequest { id } = request.into_inner();
        let webhook = get(&self.live, id).await?;
        Ok(Response::new(pb::GetWebhookResponse {
            webhook: Some(shown(&webhook)),
        }))
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        let caller = self.authorize(&request, "CreateWebhook", WRITE)?;
        let response = create(&self.live, caller, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn update_webhook(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> Result<Response<pb::UpdateWebhookResponse>, Status> {
        let caller = self.authorize(&request, "UpdateWebhook", WRITE)?;
        let response = update(&self.live, caller, request.into_inner()).await?;
        self.outbox.wake();
        Ok(Response::new(response))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let caller = self.authorize(&request, "DeleteWebhook", WRITE)?;
        let response = delete(&self.live, caller, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        self.authorize(&request, "ListWebhookDeliveries", READ)?;
        let response = deliveries(&self.live, request.into_inner()).await?;
        Ok(Response::new(response))
    }
}
