//! Webhook notifications of approval requests: endpoints over the admin API
//! ([`WebhookService`]), the durable outbox transitions write to ([`WebhookOutbox`], the
//! [`crate::approvals::events::Outbox`] of the approvals core) and the task that sends what it
//! holds ([`Deliverer`]), signed per the Standard Webhooks specification.
//!
//! Writes only queue: a transition's transaction adds one delivery per subscribed endpoint and
//! returns. The deliverer runs apart, so a slow or dead receiver never delays a decision or a
//! write; it retries with exponential backoff and full jitter, and a restart resumes from the
//! outbox. See `docs/webhooks.md`.

mod deliver;
mod outbox;
mod payload;
mod service;
mod sign;
mod validate;

pub use deliver::{Deliverer, Limits};
pub use outbox::{MAX_PENDING, Stats, WebhookOutbox};
pub use service::{MAX_WEBHOOKS, WebhookService};
pub use sign::{SECRET_PREFIX, signature};
