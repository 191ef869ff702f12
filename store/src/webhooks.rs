//! Webhook endpoints and the outbox of their deliveries: records outside the model.
//!
//! Endpoints (`w/<id>`) are written in transactions like the rest, with their audit event.
//! Deliveries (`h/<seq>`) are queued in the transaction of the transition they announce
//! ([`Tx::enqueue_delivery`]), so a delivery exists exactly when its transition committed. From
//! then on only the deliverer touches them, outside the revision ([`Store::update_delivery`],
//! [`Store::prune_deliveries`]): an attempt bumps nothing and waits for no fsync, so a crash may
//! forget the last half second of attempts and the delivery is sent again, with the same
//! `webhook-id` (receivers deduplicate on it).
//!
//! `seq` numbers deliveries in the order they were queued (the caller numbers them under the
//! write lock), so the deliverer finds new ones by reading past the last it saw
//! ([`Store::deliveries_after`]).

use crate::error::engine;
use crate::store::Store;
use crate::tx::Tx;
use crate::{Result, codec, keys, lock};
use pdp::Timestamp;
use serde::{Deserialize, Serialize};

/// An endpoint notified of approval requests' transitions.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event type names (`approval.created`, …); empty: every one.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Send a Slack incoming-webhook body instead of the event JSON.
    pub slack: bool,
    pub description: String,
    /// The HMAC-SHA256 signing key (the decoded part of the `whsec_` secret). Kept to sign;
    /// never shown again after it is issued.
    pub secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Without the key: a `{:?}` in a log line must not leak it.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("slack", &self.slack)
            .field("description", &self.description)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// One event for one endpoint, and how its delivery is going.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    /// The `webhook-id` header: the same on every attempt.
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub request_id: String,
    /// The body sent, exactly (signed as is).
    pub payload: String,
    pub created_at: Timestamp,
    pub attempts: u32,
    /// When to try next; `None` once delivered or failed.
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: String,
    pub delivered_at: Option<Timestamp>,
    /// Retries ran out (or the endpoint is gone).
    pub failed: bool,
}

impl Delivery {
    /// Whether it is still to be sent.
    pub fn pending(&self) -> bool {
        self.delivered_at.is_none() && !self.failed
    }
}

/// The part of a delivery's record that says whose it is.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    webhook_id: String,
}

/// How many finished deliveries [`Store::prune_deliveries`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRetention {
    /// Finished deliveries older than this (by creation) are removed, in milliseconds.
    pub max_age_ms: i64,
    /// At most this many finished deliveries are kept, the newest.
    pub max_finished: usize,
}

impl Tx<'_, '_> {
    pub fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        keys::check_id("webhook id", id)?;
        match self.get_raw(&keys::webhook(id))? {
            Some(bytes) => codec::from_json("webhook", id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every webhook endpoint, by id, as they stand before this change.
    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        let mut out = Vec::new();
        for item in self.scan_raw(keys::WEBHOOK) {
            let (key, value) = item?;
            let id = keys::id_of(keys::WEBHOOK, &key)?;
            out.push(codec::from_json("webhook", id, &value)?);
        }
        Ok(out)
    }

    /// Creates or replaces a webhook endpoint (checked by the caller).
    pub fn put_webhook(&mut self, webhook: &Webhook) -> Result<()> {
        keys::check_id("webhook id", &webhook.id)?;
        let value = codec::to_json("webhook", webhook)?;
        self.put_raw(keys::webhook(&webhook.id), &value)
    }

    /// Deletes a webhook endpoint; [`crate::Error::NotFound`] if there is none. Its deliveries
    /// stay until pruned (the deliverer fails the pending ones).
    pub fn delete_webhook(&mut self, id: &str) -> Result<()> {
        keys::check_id("webhook id", id)?;
        let key = keys::webhook(id);
        if self.get_raw(&key)?.is_none() {
            return Err(crate::store::not_found("webhook", id));
        }
        self.remove_raw(key)
    }

    /// Queues a delivery as `seq` (numbered by the caller, increasing, under the write lock
    /// this transaction holds).
    pub fn enqueue_delivery(&mut self, seq: u64, delivery: &Delivery) -> Result<()> {
        let value = codec::to_json("webhook delivery", delivery)?;
        self.put_raw(keys::delivery(seq), &value)
    }
}

impl Store {
    pub fn get_webhook(&self, id: &str) -> Result<Option<Webhook>> {
        keys::check_id("webhook id", id)?;
        self.get_record("webhook", &keys::webhook(id), id)
    }

    /// Every webhook endpoint, by id.
    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        let mut out = Vec::new();
        for item in self.db().scan_prefix(keys::WEBHOOK) {
            let (key, value) = item.map_err(engine)?;
            let id = keys::id_of(keys::WEBHOOK, &key)?;
            out.push(codec::from_json("webhook", id, &value)?);
        }
        Ok(out)
    }

    /// The highest delivery number ever queued that is still kept (0: none).
    pub fn last_delivery_seq(&self) -> Result<u64> {
        match self.db().scan_prefix(keys::DELIVERY).next_back() {
            Some(item) => keys::delivery_seq(&item.map_err(engine)?.0),
            None => Ok(0),
        }
    }

    /// Up to `limit` deliveries numbered after `seq`, in order. Read under the write lock, so
    /// no transaction is half applied: a delivery numbered lower than one returned is never
    /// committed later.
    pub fn deliveries_after(&self, seq: u64, limit: usize) -> Result<Vec<(u64, Delivery)>> {
        let from = keys::delivery(seq.saturating_add(1));
        let end = keys::delivery(u64::MAX);
        // Only the reads under the lock; decoding after it.
        let raw = {
            let _writer = lock(&self.inner.writer)?;
            self.db()
                .range(from..=end)
                .take(limit)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(engine)?
        };
        raw.into_iter()
            .map(|(key, value)| {
                let seq = keys::delivery_seq(&key)?;
                Ok((seq, codec::from_json("webhook delivery", "", &value)?))
            })
            .collect()
    }

    pub fn get_delivery(&self, seq: u64) -> Result<Option<Delivery>> {
        match self.db().get(keys::delivery(seq)).map_err(engine)? {
            Some(bytes) => codec::from_json("webhook delivery", "", &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records an attempt's outcome, outside the revision (see the module's doc). `false` if
    /// the delivery is gone (pruned).
    pub fn update_delivery(&self, seq: u64, delivery: &Delivery) -> Result<bool> {
        let key = keys::delivery(seq);
        let value = codec::to_json("webhook delivery", delivery)?;
        // Under the write lock: a transaction reading the outbox sees an attempt whole.
        let _writer = lock(&self.inner.writer)?;
        if !self.db().contains_key(&key).map_err(engine)? {
            return Ok(false);
        }
        self.inner.written.note(&key);
        self.db().insert(key, value).map_err(engine)?;
        Ok(true)
    }

    /// The deliveries to `webhook_id`, newest first, at most `limit` (a scan of the outbox,
    /// which is bounded).
    pub fn deliveries_of(&self, webhook_id: &str, limit: usize) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for item in self.db().scan_prefix(keys::DELIVERY).rev() {
            if out.len() >= limit {
                break;
            }
            let (_, value) = item.map_err(engine)?;
            // The endpoint first, without copying the payload: most deliveries are others'.
            let head: Head = codec::from_json("webhook delivery", "", &value)?;
            if head.webhook_id == webhook_id {
                out.push(codec::from_json("webhook delivery", "", &value)?);
            }
        }
        Ok(out)
    }

    /// Every pending delivery, in order: what the deliverer loads on start.
    pub fn pending_deliveries(&self) -> Result<Vec<(u64, Delivery)>> {
        let mut out = Vec::new();
        for item in self.db().scan_prefix(keys::DELIVERY) {
            let (key, value) = item.map_err(engine)?;
            let delivery: Delivery = codec::from_json("webhook delivery", "", &value)?;
            if delivery.pending() {
                out.push((keys::delivery_seq(&key)?, delivery));
            }
        }
        Ok(out)
    }

    /// Removes finished deliveries created before `now - max_age`, then the oldest finished
    /// ones beyond `max_finished`; pending ones stay. Returns how many it removed.
    pub fn prune_deliveries(&self, retention: DeliveryRetention, now: Timestamp) -> Result<u64> {
        let cutoff = now.0.saturating_sub(retention.max_age_ms);
        let mut finished = Vec::new();
        for item in self.db().scan_prefix(keys::DELIVERY) {
            let (key, value) = item.map_err(engine)?;
            let delivery: Delivery = codec::from_json("webhook delivery", "", &value)?;
            if !delivery.pending() {
                finished.push((key, delivery.created_at));
            }
        }
        let beyond = finished.len().saturating_sub(retention.max_finished);
        let mut batch = sled::Batch::default();
        let mut gone = Vec::new();
        for (i, (key, created)) in finished.into_iter().enumerate() {
            if i < beyond || created.0 < cutoff {
                batch.remove(&key);
                gone.push(key);
            }
        }
        if !gone.is_empty() {
            let _writer = lock(&self.inner.writer)?;
            for key in &gone {
                self.inner.written.note(key);
            }
            self.db().apply_batch(batch).map_err(engine)?;
        }
        let removed = gone.len() as u64;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, webhook: &str) -> Delivery {
        Delivery {
            id: id.into(),
            webhook_id: webhook.into(),
            event_type: "approval.created".into(),
            request_id: "r1".into(),
            payload: "{}".into(),
            created_at: Timestamp(1_000),
            next_attempt_at: Some(Timestamp(1_000)),
            ..Delivery::default()
        }
    }

    #[test]
    fn deliveries_are_queued_in_transactions_and_updated_outside_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hook = Webhook {
            id: "w1".into(),
            url: "https://example.com/hook".into(),
            enabled: true,
            secret: vec![7; 32],
            ..Webhook::default()
        };
        store
            .transact(|tx| -> Result<()> {
                tx.put_webhook(&hook)?;
                tx.enqueue_delivery(1, &delivery("msg_1", "w1"))?;
                tx.enqueue_delivery(2, &delivery("msg_2", "w2"))
            })
            .unwrap();
        // A failed transaction queues nothing.
        let failed = store.transact(|tx| -> Result<()> {
            tx.enqueue_delivery(3, &delivery("msg_3", "w1"))?;
            Err(crate::Error::Failed)
        });
        assert!(failed.is_err());
        assert_eq!(store.last_delivery_seq().unwrap(), 2);
        assert_eq!(store.deliveries_after(1, 10).unwrap().len(), 1);
        let revision = store.revision();
        let mut first = store.get_delivery(1).unwrap().unwrap();
        first.attempts = 1;
        first.delivered_at = Some(Timestamp(2_000));
        first.next_attempt_at = None;
        assert!(store.update_delivery(1, &first).unwrap());
        assert!(!store.update_delivery(9, &first).unwrap());
        assert_eq!(store.revision(), revision, "attempts bump nothing");
        assert_eq!(store.get_webhook("w1").unwrap(), Some(hook));
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get_delivery(1).unwrap(), Some(first));
        let pending = store.pending_deliveries().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, 2);
        assert_eq!(store.deliveries_of("w1", 10).unwrap().len(), 1);
        let retention = DeliveryRetention {
            max_age_ms: 10_000,
            max_finished: 10,
        };
        assert_eq!(
            store.prune_deliveries(retention, Timestamp(5_000)).unwrap(),
            0
        );
        assert_eq!(
            store
                .prune_deliveries(retention, Timestamp(20_000))
                .unwrap(),
            1,
            "the delivered one is old; the pending one stays"
        );
        assert_eq!(store.last_delivery_seq().unwrap(), 2);
        store
            .transact(|tx| -> Result<()> { tx.delete_webhook("w1") })
            .unwrap();
        assert!(store.webhooks().unwrap().is_empty());
    }
}
