//! The webhook outbox the approvals core writes transitions to: one delivery per enabled
//! endpoint subscribed to the event, in the transition's own transaction.

use super::payload;
use crate::approvals::events::{Event, Outbox};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::{Delivery, Store, Tx};
use tokio::sync::Notify;

/// The most undelivered deliveries kept: past it, new events are not queued (counted as
/// dropped and logged) rather than let a dead receiver grow the store without bound.
pub const MAX_PENDING: u64 = 100_000;

/// Counts for metrics: plain atomics, read at scrape time.
#[derive(Debug, Default)]
pub struct Stats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

impl Stats {
    /// Deliveries a receiver answered with 2xx.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Attempts that failed and will be tried again.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Deliveries given up on: out of attempts, or their endpoint deleted or disabled.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Deliveries not queued because the outbox held [`MAX_PENDING`] already.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Deliveries waiting to be sent (as of the deliverer's last look, plus those queued since).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_pending(&self, pending: u64) {
        self.pending.store(pending, Ordering::Relaxed);
    }
}

/// The [`Outbox`] of webhook deliveries; cheap to clone. Give it to the approvals core, and
/// to [`super::Deliverer::start`], which it wakes.
#[derive(Debug, Clone)]
pub struct WebhookOutbox {
    shared: Arc<Shared>,
    /// The console's public origin, when it has one: each payload links to the request's
    /// page there (`<origin>/console/approvals/<id>`).
    console_url: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// The last delivery number handed out; numbers are taken under the store's write lock
    /// (in `enqueue`), so they increase in commit order.
    last_seq: AtomicU64,
    pub(crate) wake: Notify,
    pub(crate) stats: Arc<Stats>,
}

impl WebhookOutbox {
    /// The outbox of `store`, numbering on from its last delivery.
    pub fn open(store: &Store) -> store::Result<WebhookOutbox> {
        Ok(WebhookOutbox {
            shared: Arc::new(Shared {
                last_seq: AtomicU64::new(store.last_delivery_seq()?),
                wake: Notify::new(),
                stats: Arc::new(Stats::default()),
            }),
            console_url: None,
        })
    }

    /// Links each payload to the request's page in the console served at `origin` (scheme,
    /// host and port, as browsers reach it: `serve`'s `--console-public-url`).
    pub fn with_console_url(mut self, origin: &str) -> WebhookOutbox {
        self.console_url = Some(origin.trim_end_matches('/').into());
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Wakes the deliverer.
    pub(crate) fn wake(&self) {
        self.shared.wake.notify_one();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Outbox for WebhookOutbox {
    fn enqueue(&self, tx: &mut Tx<'_, '_>, event: &Event<'_>) -> store::Result<()> {
        let kind = event.kind.name();
        let stats = &self.shared.stats;
        let mut bodies: [Option<String>; 2] = [None, None];
        for hook in tx.webhooks()? {
            if !hook.enabled || !(hook.events.is_empty() || hook.events.iter().any(|e| e == kind)) {
                continue;
            }
            if stats.pending.load(Ordering::Relaxed) >= MAX_PENDING {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    webhook = %hook.id,
                    event = kind,
                    request = %event.request.id,
                    "webhook outbox full ({MAX_PENDING} undelivered): event not queued"
                );
                continue;
            }
            // Built once per body kind, whatever the number of endpoints.
            let body = bodies[usize::from(hook.slack)]
                .get_or_insert_with(|| {
                    let console = self.console_url.as_deref();
                    if hook.slack {
                        payload::slack(event, console)
                    } else {
                        payload::event(event, console)
                    }
                })
                .clone();
            let seq = self.shared.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
            let now = pdp::Timestamp::now();
            let id = match pdp_service::secret::random_hex(16) {
                Ok(random) => format!("msg_{random}"),
                // Unique within the store all the same.
                Err(_) => format!("msg_{:016x}{seq:016x}", now.0),
            };
            tx.enqueue_delivery(
                seq,
                &Delivery {
                    id,
                    webhook_id: hook.id.clone(),
                    event_type: kind.to_owned(),
                    request_id: event.request.id.clone(),
                    payload: body,
                    created_at: now,
                    next_attempt_at: Some(now),
                    ..Delivery::default()
                },
            )?;
            stats.pending.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn committed(&self) {
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::events::EventType;
    use pdp::{ApprovalRequest, Timestamp};
    use store::Webhook;

    fn hook(id: &str, events: &[&str], enabled: bool) -> Webhook {
        Webhook {
            id: id.into(),
            url: "https://example.com/hook".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            enabled,
            secret: vec![1; 32],
            ..Webhook::default()
        }
    }

    fn publish(store: &Store, outbox: &WebhookOutbox, kind: EventType) {
        let request = ApprovalRequest {
            id: "r1".into(),
            ..ApprovalRequest::default()
        };
        let event = Event {
            kind,
            request: &request,
            actor: "system",
            at: Timestamp(0),
        };
        store
            .transact(|tx| -> store::Result<()> {
                tx.put_approval(&request)?;
                outbox.enqueue(tx, &event)
            })
            .unwrap();
    }

    #[test]
    fn one_delivery_per_enabled_subscribed_endpoint_and_none_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .transact(|tx| -> store::Result<()> {
                tx.put_webhook(&hook("all", &[], true))?;
                tx.put_webhook(&hook("expired", &["approval.expired"], true))?;
                tx.put_webhook(&hook("off", &[], false))
            })
            .unwrap();
        let outbox = WebhookOutbox::open(&store).unwrap();
        publish(&store, &outbox, EventType::Created);
        publish(&store, &outbox, EventType::Expired);
        let queued: Vec<(String, String)> = store
            .pending_deliveries()
            .unwrap()
            .into_iter()
            .map(|(_, d)| (d.webhook_id, d.event_type))
            .collect();
        assert_eq!(
            queued,
            [
                ("all".into(), "approval.created".into()),
                ("all".into(), "approval.expired".into()),
                ("expired".into(), "approval.expired".into()),
            ]
        );
        let ids: std::collections::HashSet<String> = store
            .pending_deliveries()
            .unwrap()
            .into_iter()
            .map(|(_, d)| d.id)
            .collect();
        assert_eq!(ids.len(), 3, "every delivery has its own webhook-id");

        // Full: the transition commits, nothing is queued, the drop is counted.
        outbox.stats().set_pending(MAX_PENDING);
        publish(&store, &outbox, EventType::Cancelled);
        assert_eq!(store.pending_deliveries().unwrap().len(), 3);
        assert_eq!(
            outbox.stats().dropped(),
            1,
            "`all` only: `expired` does not take it"
        );
        assert!(store.get_approval("r1").unwrap().is_some());

        // Numbering goes on from the store's last delivery after a reopen.
        drop(outbox);
        let outbox = WebhookOutbox::open(&store).unwrap();
        publish(&store, &outbox, EventType::Denied);
        assert_eq!(store.last_delivery_seq().unwrap(), 4);
    }
}
