//! The deliverer: one task that sends the outbox's due deliveries, a few at a time, and records
//! each attempt. It runs apart from every write (writes only queue), so a slow or dead receiver
//! delays nothing but its own deliveries.
//!
//! One endpoint's deliveries take at most half the slots ([`Limits::concurrency`]), so a
//! receiver that only times out slows its own deliveries, not other endpoints'.
//!
//! Each delivery is a POST on a connection of its own (HTTP/1.1, TLS for `https`), signed with
//! the endpoint's current key. A 2xx answer delivers it; anything else (another status, a
//! refused connection, a timeout) is retried after an exponential backoff with full jitter,
//! until [`Limits::max_attempts`]; then it is failed. Redirects are not followed. On start the
//! deliverer reads the outbox, so a restart resumes where the last run stopped.

use super::outbox::{Shared, Stats, WebhookOutbox};
use super::sign;
use crate::outbound::{self, Client};
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use pdp::Timestamp;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use store::{DeliveryRetention, Store, Webhook};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;

/// The most of a receiver's answer read (kept, cut shorter, as the last error).
const MAX_ANSWER: usize = 4096;
/// The most of an error kept in a delivery's `last_error`.
const MAX_ERROR: usize = 512;
/// Finished (delivered or failed) deliveries are kept this long…
pub const FINISHED_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// …and at most this many, the newest.
pub const FINISHED_MAX: usize = 10_000;
/// How often finished deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// New deliveries read from the outbox at a time.
const DISCOVER_BATCH: usize = 1_000;
/// When the store fails, try again after this.
const STORE_RETRY: Duration = Duration::from_secs(30);

/// How webhooks are delivered: `serve`'s `--webhook-*` settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "webhook_limits")]
pub struct Limits {
    /// Webhook deliveries in flight at once (one endpoint's at most half of them).
    #[arg(
        long = "webhook-concurrency",
        env = "PORTCULLIS_WEBHOOK_CONCURRENCY",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub concurrency: u16,
    /// How long a webhook delivery may take to connect, and then to be answered (each).
    #[arg(
        long = "webhook-timeout",
        env = "PORTCULLIS_WEBHOOK_TIMEOUT",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub timeout: Duration,
    /// Attempts at a webhook delivery before it is marked failed.
    #[arg(
        long = "webhook-max-attempts",
        env = "PORTCULLIS_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub max_attempts: u32,
    /// The backoff after a webhook delivery's first failed attempt, doubling after each
    /// (full jitter: a random wait up to it).
    #[arg(
        long = "webhook-retry-base",
        env = "PORTCULLIS_WEBHOOK_RETRY_BASE",
        default_value = "5s",
        value_parser = humantime::parse_duration
    )]
    pub retry_base: Duration,
    /// The longest backoff between attempts at a webhook delivery.
    #[arg(
        long = "webhook-retry-max",
        env = "PORTCULLIS_WEBHOOK_RETRY_MAX",
        default_value = "1h",
        value_parser = humantime::parse_duration
    )]
    pub retry_max: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            concurrency: 8,
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60 * 60),
        }
    }
}

impl Limits {
    /// The wait after `attempts` failed attempts: random in `[0, min(max, base × 2^(attempts-1))]`.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self.retry_base.saturating_mul(
            1u32.checked_shl(attempts.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let ceiling = doubled.min(self.retry_max);
        let mut random = [0; 8];
        match getrandom::fill(&mut random) {
            Ok(()) => {
                let fraction = u64::from_le_bytes(random) as f64 / u64::MAX as f64;
                ceiling.mul_f64(fraction)
            }
            Err(_) => ceiling,
        }
    }
}

/// The running deliverer; stop it with [`Deliverer::stop`] (dropping it leaves it running).
#[derive(Debug)]
pub struct Deliverer {
    task: JoinHandle<()>,
}

impl Deliverer {
    /// Starts delivering `outbox`'s deliveries (those already in `store` first). Needs a tokio
    /// runtime.
    pub fn start(store: Store, outbox: &WebhookOutbox, limits: Limits) -> Deliverer {
        Deliverer::start_trusting(store, outbox, limits, Vec::new())
    }

    /// [`Deliverer::start`], also trusting `roots` for `https` receivers (beside the webpki
    /// roots): a private CA's, or a test's.
    pub fn start_trusting(
        store: Store,
        outbox: &WebhookOutbox,
        limits: Limits,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Deliverer {
        let shared = Arc::clone(outbox.shared());
        let client = Arc::new(Client::new(roots, "webhooks"));
        Deliverer {
            task: tokio::spawn(run(store, shared, limits, client)),
        }
    }

    /// Stops it, abandoning attempts in flight (their deliveries stay pending: sent again on
    /// the next start, with the same `webhook-id`).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn blocking<T: Send + 'static>(
    store: &Store,
    call: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn run(store: Store, shared: Arc<Shared>, limits: Limits, client: Arc<Client>) {
    let mut schedule = Schedule::default();
    let mut seen = 0;
    let mut running: JoinSet<(u64, Option<i64>)> = JoinSet::new();
    // Which delivery each task attempts, so a task that panicked still frees its slot.
    let mut tasks: HashMap<tokio::task::Id, u64> = HashMap::new();
    let mut next_prune = tokio::time::Instant::now();
    let concurrency = usize::from(limits.concurrency.max(1));
    // One endpoint's deliveries take at most half the slots: a receiver that only times out
    // slows its own deliveries, not everyone's.
    let per_endpoint = (concurrency / 2).max(1);
    loop {
        let mut wait = PRUNE_EVERY;
        if let Err(error) = discover(&store, &mut seen, &mut schedule).await {
            tracing::warn!(%error, "cannot read the webhook outbox");
            wait = STORE_RETRY;
        }
        shared.stats.set_pending(schedule.len() as u64);
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            let retention = DeliveryRetention {
                max_age_ms: i64::try_from(FINISHED_MAX_AGE.as_millis()).unwrap_or(i64::MAX),
                max_finished: FINISHED_MAX,
            };
            match blocking(&store, move |s| {
                s.prune_deliveries(retention, Timestamp::now())
            })
            .await
            {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "pruned finished webhook deliveries"),
                Err(error) => tracing::warn!(%error, "cannot prune the webhook outbox"),
            }
        }
        let now = Timestamp::now().0;
        let free = concurrency.saturating_sub(running.len());
        let (picked, next_due) = schedule.take_due(now, free, per_endpoint);
        for seq in picked {
            let task = running.spawn(attempt(
                store.clone(),
                Arc::clone(&shared.stats),
                limits.clone(),
                Arc::clone(&client),
                seq,
            ));
            tasks.insert(task.id(), seq);
        }
        if let Some(due) = next_due {
            wait = wait.min(Duration::from_millis(
                u64::try_from(due.saturating_sub(now)).unwrap_or(0),
            ));
        }
        let prune_in = next_prune.saturating_duration_since(tokio::time::Instant::now());
        wait = wait.min(prune_in);
        tokio::select! {
            () = shared.wake.notified() => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => match done {
                Ok((task, (seq, retry))) => {
                    tasks.remove(&task);
                    schedule.attempted(seq, retry);
                }
                Err(error) => {
                    // Its delivery stays pending in the store: the next start sends it.
                    tracing::error!(%error, "a webhook delivery task failed");
                    if let Some(seq) = tasks.remove(&error.id()) {
                        schedule.attempted(seq, None);
                    }
                }
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The most due deliveries [`Schedule::take_due`] passes over (their endpoint busy) before it
/// stops looking: a dead endpoint's backlog costs a bounded scan per round.
const MAX_SKIPPED: usize = 1024;

/// The pending deliveries the deliverer knows: when each is due, whose it is, and how many of
/// each endpoint's are in flight (those are out of `due` until their attempt ends).
#[derive(Debug, Default)]
struct Schedule {
    due: BTreeSet<(i64, u64)>,
    endpoint: HashMap<u64, Arc<str>>,
    /// Endpoints with deliveries in flight (none at zero).
    in_flight: HashMap<Arc<str>, usize>,
    /// Endpoint ids, each allocated once (bounded by the endpoints there ever were).
    names: HashSet<Arc<str>>,
}

impl Schedule {
    /// Pending deliveries, in flight included.
    fn len(&self) -> usize {
        self.endpoint.len()
    }

    fn add(&mut self, seq: u64, due: i64, endpoint: &str) {
        let endpoint = match self.names.get(endpoint) {
            Some(name) => Arc::clone(name),
            None => {
                let name: Arc<str> = Arc::from(endpoint);
                self.names.insert(Arc::clone(&name));
                name
            }
        };
        self.endpoint.insert(seq, endpoint);
        self.due.insert((due, seq));
    }

    /// Up to `free` deliveries due at `now`, at most `per_endpoint` of an endpoint in flight;
    /// and when the next one not yet due is, if that is why it stopped.
    fn take_due(&mut self, now: i64, free: usize, per_endpoint: usize) -> (Vec<u64>, Option<i64>) {
        let mut picked = Vec::new();
        let mut next_due = None;
        let mut skipped = 0;
        for &(due, seq) in &self.due {
            if picked.len() >= free {
                break;
            }
            if due > now {
                next_due = Some(due);
                break;
            }
            let Some(endpoint) = self.endpoint.get(&seq) else {
                continue;
            };
            let busy = self.in_flight.entry(Arc::clone(endpoint)).or_insert(0);
            if *busy >= per_endpoint {
                skipped += 1;
                if skipped >= MAX_SKIPPED {
                    break;
                }
                continue;
            }
            *busy += 1;
            picked.push((due, seq));
        }
        for key in &picked {
            self.due.remove(key);
        }
        (picked.into_iter().map(|(_, seq)| seq).collect(), next_due)
    }

    /// The attempt at `seq` ended: due again at `retry`, or done with.
    fn attempted(&mut self, seq: u64, retry: Option<i64>) {
        if let Some(endpoint) = self.endpoint.get(&seq)
            && let Some(busy) = self.in_flight.get_mut(endpoint)
        {
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                self.in_flight.remove(endpoint);
            }
        }
        match retry {
            Some(due) => {
                self.due.insert((due, seq));
            }
            None => {
                self.endpoint.remove(&seq);
            }
        }
    }
}

/// Adds the deliveries queued since `seen` to `schedule`.
async fn discover(store: &Store, seen: &mut u64, schedule: &mut Schedule) -> Result<(), String> {
    loop {
        let after = *seen;
        let batch = blocking(store, move |s| s.deliveries_after(after, DISCOVER_BATCH)).await?;
        let full = batch.len() == DISCOVER_BATCH;
        for (seq, delivery) in batch {
            *seen = seq;
            if delivery.pending() {
                let due = delivery.next_attempt_at.unwrap_or(delivery.created_at);
                schedule.add(seq, due.0, &delivery.webhook_id);
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// One attempt at delivery `seq`; returns when to try again, if it is to be.
async fn attempt(
    store: Store,
    stats: Arc<Stats>,
    limits: Limits,
    client: Arc<Client>,
    seq: u64,
) -> (u64, Option<i64>) {
    let loaded = blocking(&store, move |s| {
        let Some(delivery) = s.get_delivery(seq)? else {
            return Ok(None);
        };
        let webhook = s.get_webhook(&delivery.webhook_id)?;
        Ok(Some((delivery, webhook)))
    })
    .await;
    let (mut delivery, webhook) = match loaded {
        Ok(Some(found)) => found,
        // Pruned: nothing to do.
        Ok(None) => return (seq, None),
        Err(error) => {
            tracing::warn!(%error, "cannot read a webhook delivery");
            return (seq, Some(later(STORE_RETRY)));
        }
    };
    if !delivery.pending() {
        return (seq, None);
    }
    let outcome = match webhook {
        None => Outcome::Gone("the webhook was deleted"),
        Some(Webhook { enabled: false, .. }) => Outcome::Gone("the webhook is disabled"),
        Some(webhook) => {
            match send(
                &client,
                &webhook,
                &delivery.id,
                &delivery.payload,
                limits.timeout,
            )
            .await
            {
                Ok(()) => Outcome::Delivered,
                Err(error) => Outcome::Failed(error),
            }
        }
    };
    let now = Timestamp::now();
    let mut retry = None;
    match outcome {
        Outcome::Delivered => {
            delivery.attempts += 1;
            delivery.delivered_at = Some(now);
            delivery.next_attempt_at = None;
            stats.count_delivered();
        }
        Outcome::Gone(why) => {
            delivery.failed = true;
            delivery.next_attempt_at = None;
            delivery.last_error = why.to_owned();
            stats.count_failed();
        }
        Outcome::Failed(error) => {
            delivery.attempts += 1;
            tracing::info!(
                webhook = %delivery.webhook_id,
                delivery = %delivery.id,
                attempts = delivery.attempts,
                %error,
                "webhook delivery failed"
            );
            delivery.last_error = bounded(error);
            if delivery.attempts >= limits.max_attempts {
                delivery.failed = true;
                delivery.next_attempt_at = None;
                stats.count_failed();
            } else {
                let due = Timestamp(later(limits.backoff(delivery.attempts)));
                delivery.next_attempt_at = Some(due);
                retry = Some(due.0);
                stats.count_retried();
            }
        }
    }
    let recorded = delivery.clone();
    match blocking(&store, move |s| s.update_delivery(seq, &recorded)).await {
        Ok(true) => (seq, retry),
        Ok(false) => (seq, None),
        Err(error) => {
            tracing::warn!(%error, "cannot record a webhook delivery attempt");
            (seq, retry.or(Some(later(STORE_RETRY))))
        }
    }
}

enum Outcome {
    Delivered,
    Failed(String),
    /// Not attempted: failed at once.
    Gone(&'static str),
}

/// `wait` from now, in milliseconds since the epoch.
fn later(wait: Duration) -> i64 {
    Timestamp::now()
        .0
        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

fn bounded(mut error: String) -> String {
    if error.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}

/// Whether an answer with `status` delivers (2xx).
fn delivered(status: u16) -> bool {
    (200..300).contains(&status)
}

/// One POST of delivery `id` to `webhook`, signed now: delivered on a 2xx answer, else the
/// status and the start of what the receiver said.
async fn send(
    client: &Client,
    webhook: &Webhook,
    id: &str,
    body: &str,
    timeout: Duration,
) -> Result<(), String> {
    let timestamp = Timestamp::now().0.div_euclid(1000);
    let signature = sign::signature(&webhook.secret, id, timestamp, body.as_bytes());
    let request = hyper::Request::post("/")
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "portcullis-webhooks")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    let limits = outbound::Limits {
        timeout,
        max_answer: MAX_ANSWER,
        // A delivered answer's body says nothing the deliverer keeps: it is not read.
        read_body: |status| !delivered(status),
    };
    let answer = client
        .send(&webhook.url, request, Bytes::from(body.to_owned()), limits)
        .await?;
    if delivered(answer.status) {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&answer.body);
    let said = said.trim();
    if said.is_empty() {
        Err(format!("HTTP {}", answer.status))
    } else {
        Err(format!("HTTP {}: {said}", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_cap() {
        let limits = Limits::default();
        for attempts in 1..=20 {
            let ceiling = (Duration::from_secs(5) * 2u32.saturating_pow(attempts - 1))
                .min(Duration::from_secs(3600));
            let wait = limits.backoff(attempts);
            assert!(wait <= ceiling, "{attempts}: {wait:?} > {ceiling:?}");
        }
    }

    #[test]
    fn one_endpoint_takes_at_most_its_share_of_the_slots() {
        let mut schedule = Schedule::default();
        for seq in 1..=4 {
            schedule.add(seq, 100, "dead");
        }
        schedule.add(5, 100, "alive");
        schedule.add(6, 500, "alive");
        // Four slots, two per endpoint: two of `dead`'s, then `alive`'s due one.
        let (picked, next) = schedule.take_due(200, 4, 2);
        assert_eq!(picked, [1, 2, 5]);
        assert_eq!(next, Some(500));
        assert_eq!(schedule.len(), 6);
        // `dead` is still busy: nothing of it until an attempt ends.
        assert_eq!(schedule.take_due(200, 4, 2).0, Vec::<u64>::new());
        schedule.attempted(1, Some(300));
        schedule.attempted(5, None);
        assert_eq!(schedule.len(), 5);
        assert_eq!(schedule.take_due(200, 4, 2).0, [3]);
        assert_eq!(schedule.take_due(600, 4, 2).0, [6]);
        assert!(schedule.in_flight.contains_key("alive"));
        schedule.attempted(6, None);
        assert!(!schedule.in_flight.contains_key("alive"));
    }

    #[test]
    fn errors_are_bounded() {
        assert_eq!(bounded("short".into()), "short");
        let long = bounded("é".repeat(1000));
        assert!(long.len() <= MAX_ERROR + '…'.len_utf8());
    }
}
