//! The sidecar's side: follows the control plane's stream and keeps an engine's snapshot in
//! step with it, without a store.
//!
//! Two parts. The stream task (async) connects, decodes and checks what arrives, reconnecting
//! with backoff and resuming from the last revision it received. The apply thread holds the
//! directory as a [`View`] (the same in-memory model the control plane keeps), replays each
//! change into it and publishes through a [`Publisher`], exactly as the control plane does:
//! changes applied in proportion to their size, folded into a full build in the background.
//! A watchdog marks the snapshot stale once the control plane has been silent too long. The
//! approval state the stream carries goes straight to [`Grants`], independent of revisions.

use crate::decoder::{Decoded, Decoder, Delta, Received};
use crate::{Error, FORMAT, Grants, Result};
use live::{Publisher, Settings, Wake};
use pb::snapshot_service_client::SnapshotServiceClient;
use pdp::{Model, Snapshot};
use pdp_service::{Engine, Freshness};
use portcullis_proto::v1 as pb;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use store::View;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, error, info, warn};

/// The largest message a follower accepts: chunks and parts of changes stay far below it.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long a follower waits before reconnecting, at first and at most.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often the watchdog looks at the clock.
const WATCHDOG: Duration = Duration::from_millis(100);

/// Where to follow from, and with what credentials.
#[derive(Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    url: String,
    /// `Bearer <token>`, ready to send.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// With `https://`, how the control plane is checked (and, once given, how we identify).
    tls: Option<ClientTlsConfig>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Upstream").field("url", &self.url).finish()
    }
}

impl Upstream {
    /// The control plane at `url` (`http://` or `https://`), sending `token` if given; with
    /// `https`, its certificate is checked against `ca_pem` if given, else the webpki roots.
    pub fn new(url: &str, token: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Upstream> {
        let bad = |reason: String| Error::Config(format!("upstream `{url}`: {reason}"));
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // A control plane that vanishes without closing the connection is noticed within
            // seconds even when no heartbeat is due.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let mut with_tls = None;
        match (url.split_once("://").map(|(scheme, _)| scheme), ca_pem) {
            (Some("https"), ca) => {
                let mut tls = ClientTlsConfig::new();
                tls = match ca {
                    Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                    None => tls.with_webpki_roots(),
                };
                endpoint = endpoint
                    .tls_config(tls.clone())
                    .map_err(|e| bad(e.to_string()))?;
                with_tls = Some(tls);
            }
            (Some("http"), None) => {}
            (Some("http"), Some(_)) => {
                return Err(bad("a CA file is given but the URL is not https://".into()));
            }
            _ => return Err(bad("the URL must start with http:// or https://".into())),
        }
        let authorization = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Error::Config("the upstream token is not printable ASCII".into()))
            })
            .transpose()?;
        Ok(Upstream {
            endpoint,
            url: url.to_owned(),
            authorization,
            tls: with_tls,
        })
    }

    /// Presents this client certificate (PEM chain and key) to the control plane, for one that
    /// requires them (`serve --client-ca-file`). Only over `https://`.
    pub fn with_client_identity(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Upstream> {
        let bad = |reason: &str| Error::Config(format!("upstream `{}`: {reason}", self.url));
        let Some(tls) = self.tls.take() else {
            return Err(bad(
                "a client certificate is given but the URL is not https://",
            ));
        };
        let tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
        self.endpoint = self
            .endpoint
            .tls_config(tls.clone())
            .map_err(|e| bad(&e.to_string()))?;
        self.tls = Some(tls);
        Ok(self)
    }
}

/// How a follower behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long the control plane may be silent before the snapshot counts as stale.
    pub max_staleness: Duration,
    /// Keep answering from a stale snapshot instead of failing closed.
    pub serve_stale: bool,
    pub settings: Settings,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_staleness: Duration::from_secs(60),
            serve_stale: false,
            settings: Settings::default(),
        }
    }
}

/// What a follower knows of itself, as counters the metrics and health read.
#[derive(Debug)]
struct Counters {
    started: Instant,
    /// Milliseconds after `started` of the last message from the control plane, plus one (0:
    /// never).
    contact_ms: AtomicU64,
    upstream_revision: AtomicU64,
    connected: AtomicBool,
    has_snapshot: AtomicBool,
    stale: AtomicBool,
    full_snapshots: AtomicU64,
    changes: AtomicU64,
    reconnects: AtomicU64,
    last_full_bytes: AtomicU64,
    last_full_ms: AtomicU64,
}

impl Counters {
    fn contact(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.contact_ms.store(ms, Ordering::Relaxed);
    }

    fn since_contact(&self) -> Option<Duration> {
        match self.contact_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// A follower's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The revision decisions are answered from.
    pub revision: u64,
    /// The control plane's latest revision, as its last heartbeat said.
    pub upstream_revision: u64,
    /// Time since the control plane was last heard from (`None`: never).
    pub since_contact: Option<Duration>,
    pub connected: bool,
    /// A full snapshot arrived (decisions have something to answer from).
    pub has_snapshot: bool,
    /// Older than the staleness bound, or none yet.
    pub stale: bool,
    /// Checks are denied as stale (stale, and not configured to serve stale).
    pub failing_closed: bool,
    pub full_snapshots: u64,
    pub changes: u64,
    pub reconnects: u64,
    /// Size on the wire and time from its first message to published, of the last full
    /// snapshot.
    pub last_full_bytes: u64,
    pub last_full_ms: u64,
}

impl Status {
    /// Revisions the control plane is ahead by.
    pub fn lag(&self) -> u64 {
        self.upstream_revision.saturating_sub(self.revision)
    }
}

/// Follows a control plane and keeps [`Follower::engine`] in step. Cheap to clone.
#[derive(Clone)]
pub struct Follower {
    engine: Engine,
    freshness: Freshness,
    counters: Arc<Counters>,
    grants: Grants,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("status", &self.status())
            .finish()
    }
}

impl Follower {
    /// Starts following `upstream`. Until the first full snapshot arrives the engine holds an
    /// empty one and `freshness` is stale, so checks fail closed. Must run within a tokio
    /// runtime; the follower runs until the process ends.
    pub fn start(upstream: Upstream, options: Options) -> Result<Follower> {
        let engine = Engine::new(Snapshot::build(&Model::default()));
        let freshness = Freshness::new(true);
        let counters = Arc::new(Counters {
            started: Instant::now(),
            contact_ms: AtomicU64::new(0),
            upstream_revision: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            has_snapshot: AtomicBool::new(false),
            stale: AtomicBool::new(true),
            full_snapshots: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_full_bytes: AtomicU64::new(0),
            last_full_ms: AtomicU64::new(0),
        });
        let (apply, applied) = mpsc::channel();
        {
            let wake_tx = apply.clone();
            let wake: Wake = Arc::new(move || {
                let _ = wake_tx.send(Apply::Folded);
            });
            let engine = engine.clone();
            let counters = Arc::clone(&counters);
            let fresh = freshness.clone();
            let settings = options.settings;
            std::thread::Builder::new()
                .name("sidecar-apply".into())
                .spawn(move || apply_loop(&applied, &engine, &counters, &fresh, settings, &wake))
                .map_err(|e| Error::Config(format!("cannot start the apply thread: {e}")))?;
        }
        let grants = Grants::new(
            upstream.endpoint.connect_lazy(),
            upstream.authorization.clone(),
        );
        tokio::spawn(stream_loop(
            upstream,
            apply,
            Arc::clone(&counters),
            grants.clone(),
        ));
        tokio::spawn(watchdog(freshness.clone(), Arc::clone(&counters), options));
        Ok(Follower {
            engine,
            freshness,
            counters,
            grants,
        })
    }

    /// The approval state the control plane streams; hand it to the DecisionService
    /// (`with_approvals`).
    pub fn approvals(&self) -> &Grants {
        &self.grants
    }

    /// The engine decisions read.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Set while checks must fail closed; hand it to the DecisionService.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    pub fn status(&self) -> Status {
        let c = &self.counters;
        let stale = c.stale.load(Ordering::Relaxed);
        Status {
            revision: self.engine.revision(),
            upstream_revision: c.upstream_revision.load(Ordering::Relaxed),
            since_contact: c.since_contact(),
            connected: c.connected.load(Ordering::Relaxed),
            has_snapshot: c.has_snapshot.load(Ordering::Relaxed),
            stale,
            failing_closed: self.freshness.is_stale(),
            full_snapshots: c.full_snapshots.load(Ordering::Relaxed),
            changes: c.changes.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            last_full_bytes: c.last_full_bytes.load(Ordering::Relaxed),
            last_full_ms: c.last_full_ms.load(Ordering::Relaxed),
        }
    }
}

/// Marks the snapshot stale (and fails closed, unless told to serve stale) while there is none
/// or the control plane has been silent past the bound.
async fn watchdog(freshness: Freshness, counters: Arc<Counters>, options: Options) {
    let mut tick = tokio::time::interval(WATCHDOG);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let silent = counters
            .since_contact()
            .is_none_or(|since| since > options.max_staleness);
        let has_snapshot = counters.has_snapshot.load(Ordering::Relaxed);
        let stale = !has_snapshot || silent;
        if counters.stale.swap(stale, Ordering::Relaxed) != stale {
            if stale {
                warn!(
                    max_staleness_ms = options.max_staleness.as_millis() as u64,
                    serve_stale = options.serve_stale,
                    "the snapshot is stale: the control plane has been silent too long"
                );
            } else {
                info!("the snapshot is fresh");
            }
        }
        // Serving stale is for a snapshot that aged, never for having none.
        freshness.set_stale(!has_snapshot || (silent && !options.serve_stale));
    }
}

/// What the stream task hands the apply thread.
enum Apply {
    Full {
        model: Model,
        store_id: String,
        started: Instant,
        bytes: u64,
    },
    Change(Delta),
    /// A background build is done.
    Folded,
}

/// Applies what the stream task hands over, in order, and publishes each result.
fn apply_loop(
    applied: &mpsc::Receiver<Apply>,
    engine: &Engine,
    counters: &Counters,
    freshness: &Freshness,
    settings: Settings,
    wake: &Wake,
) {
    let mut publisher: Option<Publisher> = None;
    let mut store_id = String::new();
    while let Ok(message) = applied.recv() {
        match message {
            Apply::Full {
                model,
                store_id: new_store,
                started,
                bytes,
            } => {
                let users = model.users.len();
                let view = Arc::new(View::from_model(model));
                let snapshot = live::build(&view);
                let revision = snapshot.revision();
                let elapsed_ms = started.elapsed().as_millis() as u64;
                // Counted before it is published, so whoever sees the revision sees the count.
                counters.last_full_bytes.store(bytes, Ordering::Relaxed);
                counters.last_full_ms.store(elapsed_ms, Ordering::Relaxed);
                counters.full_snapshots.fetch_add(1, Ordering::Relaxed);
                // Revisions of another store, or of this one restored to an earlier point,
                // mean nothing next to the old ones: start over from this snapshot.
                if new_store != store_id || revision < engine.revision() {
                    engine.replace(snapshot.clone());
                } else {
                    engine.publish(snapshot.clone());
                }
                store_id = new_store;
                publisher = Some(Publisher::new(
                    engine.clone(),
                    view,
                    snapshot,
                    settings,
                    Arc::clone(wake),
                ));
                counters.has_snapshot.store(true, Ordering::Relaxed);
                // It just came from the control plane: answer from it now rather than at the
                // watchdog's next look.
                counters.stale.store(false, Ordering::Relaxed);
                freshness.set_stale(false);
                info!(revision, users, bytes, elapsed_ms, "full snapshot applied");
            }
            Apply::Change(delta) => {
                let Some(publisher) = publisher.as_mut() else {
                    error!("a change arrived before any snapshot; ignored");
                    continue;
                };
                let revision = delta.revision;
                let mut view = View::clone(publisher.view());
                view.apply(revision, delta.updates(publisher.view()));
                counters.changes.fetch_add(1, Ordering::Relaxed);
                publisher.publish(Arc::new(view));
            }
            Apply::Folded => {
                if let Some(publisher) = publisher.as_mut() {
                    publisher.fold_done();
                }
            }
        }
    }
}

/// Follows the control plane for good: each connection until it fails, then again after a
/// backoff that grows while connections make no progress.
async fn stream_loop(
    upstream: Upstream,
    apply: mpsc::Sender<Apply>,
    counters: Arc<Counters>,
    grants: Grants,
) {
    let mut received = Received::default();
    let mut backoff = BACKOFF_MIN;
    // The failure last logged as a warning: the same one again, attempt after attempt while the
    // control plane stays away, is said once (then at debug), until it changes or the stream
    // makes progress.
    let mut said: Option<String> = None;
    loop {
        let before = counters.contact_ms.load(Ordering::Relaxed);
        let outcome = follow_once(&upstream, &mut received, &apply, &counters, &grants).await;
        if counters.contact_ms.load(Ordering::Relaxed) != before {
            backoff = BACKOFF_MIN;
            said = None;
        }
        match outcome {
            Ok(()) => info!(upstream = %upstream.url, "the control plane ended the stream"),
            Err(Error::Closed) => return,
            Err(e) => {
                let error = e.to_string();
                if said.as_deref() == Some(error.as_str()) {
                    debug!(upstream = %upstream.url, error, "following the control plane failed again");
                } else {
                    warn!(
                        upstream = %upstream.url,
                        error,
                        "following the control plane failed; retrying with backoff (the same failure is not logged again)"
                    );
                    said = Some(error);
                }
            }
        }
        counters.connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// `error` and its causes, each said once (tonic's "transport error" alone names no cause).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// `wait` give or take a fifth, so a fleet does not reconnect in step.
fn jitter(wait: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let spread = (hasher.finish() % 401) as f64 / 1000.0 - 0.2;
    wait.mul_f64(1.0 + spread)
}

/// One connection: watches from where `received` stands and hands everything over until the
/// stream ends or fails.
async fn follow_once(
    upstream: &Upstream,
    received: &mut Received,
    apply: &mpsc::Sender<Apply>,
    counters: &Counters,
    grants: &Grants,
) -> Result<()> {
    use prost::Message;
    let channel = upstream
        .endpoint
        .connect()
        .await
        .map_err(|e| Error::Connect(with_causes(&e)))?;
    let authorization = upstream.authorization.clone();
    let mut client =
        SnapshotServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        })
        .max_decoding_message_size(MAX_MESSAGE);
    let mut stream = client
        .watch(pb::WatchRequest {
            format: FORMAT,
            store_id: received.store_id.clone(),
            from_revision: received.revision,
        })
        .await?
        .into_inner();
    counters.connected.store(true, Ordering::Relaxed);
    counters.contact();
    let mut decoder = Decoder::default();
    while let Some(message) = stream.message().await? {
        counters.contact();
        let size = message.encoded_len() as u64;
        let Some(event) = message.event else {
            continue;
        };
        match decoder.event(event, size, received)? {
            Decoded::Full {
                model,
                store_id,
                started,
                bytes,
            } => apply
                .send(Apply::Full {
                    model,
                    store_id,
                    started,
                    bytes,
                })
                .map_err(|_| Error::Closed)?,
            Decoded::Change(delta) => apply
                .send(Apply::Change(delta))
                .map_err(|_| Error::Closed)?,
            Decoded::Approvals(parts) => grants.apply(parts)?,
            Decoded::Heartbeat(revision) => {
                counters
                    .upstream_revision
                    .store(revision, Ordering::Relaxed);
            }
            Decoded::Nothing => {}
        }
    }
    Ok(())
}
