//! Freshness under load: how fast admin and SCIM changes reach decisions, and what a stream of
//! them costs Check, while a steady Check load runs against a real server.
//!
//! ```sh
//! cargo bench --bench freshness                                   # medium (100k users)
//! PORTCULLIS_BENCH_PRESET=large cargo bench --bench freshness     # large (1M users)
//! PORTCULLIS_BENCH_PRESET=large PORTCULLIS_BENCH_DATA=/tmp/data-large \
//!     cargo bench --bench freshness                               # on a copy of that store
//! PORTCULLIS_BENCH_CHURN_SECS=60 cargo bench --bench freshness    # a longer SCIM churn
//! PORTCULLIS_BENCH_FOLD_AT=50 cargo bench --bench freshness       # fold far sooner than the default
//! RUST_LOG=portcullis_live=debug cargo bench --bench freshness 2>log   # and every publish
//! ```
//!
//! Also `PORTCULLIS_BENCH_WRITE_RATE` (SCIM writes/s, default 200) and
//! `PORTCULLIS_BENCH_CHECK_RATE` (the open-loop Check rate, default half the measured maximum).
//!
//! As `benches/admin.rs` and `benches/scim.rs` do, it generates the preset's directory, imports
//! it into a sled store in a temp dir, mints an admin API token and a SCIM connection, starts
//! `Live`, serves DecisionService and AdminService (tonic) and `scim::router` (axum) in this
//! process on loopback ports, and calls them with real gRPC and HTTP/1 clients. Importing 1M
//! users takes minutes, so with `PORTCULLIS_BENCH_DATA=<dir>` the run works on a copy of the store
//! in `<dir>` instead (importing the preset into `<dir>` first if it holds no store, and keeping
//! it for the next run); the preset is still generated for its requests and must be the one the
//! store holds. The copy keeps the bench's own writes out of the kept store.
//!
//! In order, Check requests always taken from the workload's generated request set:
//! 1. Check throughput, closed loop: 16 clients over 4 HTTP/2 connections for 5 s. Then an
//!    open-loop generator holds Check at half that rate until the end, on a fixed schedule: each
//!    latency is counted from the request's scheduled send time, so a stall also counts against
//!    the requests it kept from being sent (no coordinated omission). First 10 s with no writes:
//!    the baseline.
//! 2. LockUser → the first Check that sees it: for users a request of the workload allows, a
//!    poller calls Check in a loop (no `min_revision`) from before LockUser; right after LockUser
//!    returns, one Check with `min_revision` = its revision. Then UnlockUser.
//! 3. SCIM churn: first 20 PATCHes one at a time (one write's latency), then 16 writers,
//!    together 200 writes/s on a fixed schedule for `PORTCULLIS_BENCH_CHURN_SECS` (30 s at
//!    medium, 60 s at large): PATCHes of users' names and titles, group PATCHes removing or
//!    re-adding one member of a group some policy grants through, and PATCHes of `active`. A
//!    writer behind its schedule sends its next write at once, and none after the end (those are
//!    counted as not sent). After each acknowledged write the writer calls Check for
//!    the user: a deactivation must answer USER_INACTIVE, a reactivation not, a removal must no
//!    longer be decided by the group's policy, a re-add must be again. Every Check client also
//!    checks that no answer's revision is older than one it had already received.
//! 4. Throughout: the publisher's events (`snapshot published` at debug, `snapshot folded` when
//!    it folds accumulated changes into a new base) are captured by a tracing layer, and this
//!    process's VmRSS and CPU time, and the machine's, are sampled every 50 ms: the machine's
//!    shows whether other processes competed for the cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use admin::{Activity, AdminService};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use live::Live;
use pb::admin_service_client::AdminServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pdp_service::{DecisionService, Recorder};
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::{Picker, check, ms, peak_rss_mib, rss_mib, status_kib, summary};
use tonic::transport::Channel;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter};

mod support;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// HTTP/2 connections the Check load is spread over, and closed-loop clients on them.
const CHANNELS: usize = 4;
const MAX_CLIENTS: usize = 16;
const MAX_WARMUP: Duration = Duration::from_secs(1);
const MAX_SECS: Duration = Duration::from_secs(5);
const BASELINE: Duration = Duration::from_secs(10);
const AFTER_CHURN: Duration = Duration::from_secs(5);
const LOCKS: usize = 200;
const WRITERS: usize = 16;
/// Membership writes use groups at most this large: a group PATCH answers with every member,
/// and rendering 20,000 members at 60 writes/s would measure JSON, not freshness.
const MAX_GRANT_GROUP: usize = 1_000;
/// Beyond this many Checks in flight (about 100 ms of backlog) the generator drops sends and
/// counts them rather than queue without bound: thousands of streams in flight cost the
/// server more per request and turn an overload into a collapse.
const MAX_IN_FLIGHT: u64 = 1_024;
const RSS_EVERY: Duration = Duration::from_millis(50);
/// SCIM writes sent one at a time before the churn, to show one write's latency.
const SCIM_ALONE: usize = 20;

// ---- measuring ----

/// A latency histogram with ~1.5% resolution (7 significant bits), recorded lock-free from any
/// task, so the Check load can record 20k samples/s without a lock or a growing buffer.
struct Hist {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: (0..(64 - SUB_BITS as usize + 1) * SUB as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(ns: u64) -> usize {
        if ns < SUB {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros();
        let top = ns >> (exp - SUB_BITS);
        ((exp - SUB_BITS + 1) as u64 * SUB + (top - SUB)) as usize
    }

    /// The middle of bucket `index`, in nanoseconds.
    fn value(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB {
            return index;
        }
        let exp = index / SUB + u64::from(SUB_BITS) - 1;
        let top = index % SUB + SUB;
        let shift = exp - u64::from(SUB_BITS);
        (top << shift) + ((1 << shift) >> 1)
    }

    fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.counts[Self::index(ns)].fetch_add(1, Relaxed);
        self.max.fetch_max(ns, Relaxed);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn quantile(&self, q: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return Duration::from_nanos(Self::value(i).min(self.max.load(Relaxed)));
            }
        }
        self.max()
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(self.max.load(Relaxed))
    }
}

fn hist_row(name: &str, h: &Hist) {
    println!(
        "  {name:<40} n={:<7} p50 {:>8.3}  p90 {:>8.3}  p99 {:>8.3}  p99.9 {:>8.3}  max {:>8.3} ms",
        h.count(),
        ms(h.quantile(0.5)),
        ms(h.quantile(0.9)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.max())
    );
}

/// CPU time in clock ticks (`USER_HZ`, 100 a second on Linux): this process's (user + system),
/// and the whole machine's busy time (everything but idle and iowait).
fn cpu_ticks() -> (u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which may contain spaces, start after ')'.
            let rest = stat.get(stat.rfind(')')? + 2..)?.to_owned();
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            Some(fields.get(11)? + fields.get(12)?)
        })
        .unwrap_or(0);
    let busy = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let fields: Vec<u64> = line
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let all: u64 = fields.iter().take(8).sum();
            Some(all - fields.get(3)? - fields.get(4)?)
        })
        .unwrap_or(0);
    (own, busy)
}

/// VmRSS and CPU time every [`RSS_EVERY`], from a thread of its own so a busy runtime does not
/// skip samples. The machine's CPU shows whether other processes competed for the two cores.
struct RssSampler {
    /// (when, VmRSS KiB, this process's CPU ticks, the machine's busy ticks)
    samples: Mutex<Vec<(Instant, u64, u64, u64)>>,
    stop: AtomicBool,
}

impl RssSampler {
    fn start() -> Arc<RssSampler> {
        let sampler = Arc::new(RssSampler {
            samples: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&sampler);
        std::thread::spawn(move || {
            while !s.stop.load(Relaxed) {
                let kib = status_kib("VmRSS:");
                let (own, busy) = cpu_ticks();
                s.samples
                    .lock()
                    .unwrap()
                    .push((Instant::now(), kib, own, busy));
                std::thread::sleep(RSS_EVERY);
            }
        });
        sampler
    }

    /// The largest sample in `[from, to)`, MiB.
    fn max_between(&self, from: Instant, to: Instant) -> u64 {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, ..)| *at >= from && *at < to)
            .map(|(_, kib, ..)| kib / 1024)
            .max()
            .unwrap_or(0)
    }

    /// Cores used in `[from, to)`: by this process, and by everything else on the machine.
    fn cores_between(&self, from: Instant, to: Instant) -> (f64, f64) {
        let samples = self.samples.lock().unwrap();
        let inside: Vec<_> = samples
            .iter()
            .filter(|(at, ..)| *at >= from && *at < to)
            .collect();
        let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
            return (0.0, 0.0);
        };
        let secs = (last.0 - first.0).as_secs_f64().max(1e-3);
        let own = last.2.saturating_sub(first.2) as f64 / 100.0 / secs;
        let busy = last.3.saturating_sub(first.3) as f64 / 100.0 / secs;
        (own, (busy - own).max(0.0))
    }
}

/// One event of the publisher (target `portcullis_live` or `live`): its message and its
/// numeric and boolean fields.
#[derive(Debug, Clone)]
struct LiveEvent {
    at: Instant,
    message: String,
    numbers: Vec<(&'static str, u64)>,
    flags: Vec<(&'static str, bool)>,
}

impl LiveEvent {
    fn number(&self, name: &str) -> Option<u64> {
        self.numbers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.flags.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// `elapsed_ms` or `elapsed_us`, whichever the event carries.
    fn elapsed(&self) -> Option<Duration> {
        self.number("elapsed_us")
            .map(Duration::from_micros)
            .or_else(|| self.number("elapsed_ms").map(Duration::from_millis))
    }
}

impl tracing::field::Visit for LiveEvent {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.numbers.push((field.name(), value));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.numbers.push((field.name(), value));
        }
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.flags.push((field.name(), value));
    }
}

/// A tracing layer keeping the publisher's events, to time its folds and publishes.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<LiveEvent>>>,
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut captured = LiveEvent {
            at: Instant::now(),
            message: String::new(),
            numbers: Vec::new(),
            flags: Vec::new(),
        };
        event.record(&mut captured);
        self.events.lock().unwrap().push(captured);
    }
}

impl Capture {
    fn between(&self, from: Instant, to: Instant) -> Vec<LiveEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.at >= from && e.at < to)
            .cloned()
            .collect()
    }
}

/// Violations of freshness or monotonicity, counted, the first few kept to print.
#[derive(Default)]
struct Violations {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Violations {
    fn report(&self, what: String) {
        self.count.fetch_add(1, Relaxed);
        let mut first = self.first.lock().unwrap();
        if first.len() < 20 {
            first.push(what);
        }
    }

    fn print(&self, name: &str) {
        let n = self.count.load(Relaxed);
        println!("  {name}: {n}");
        for v in self.first.lock().unwrap().iter() {
            println!("    {v}");
        }
    }
}

// ---- the Check load ----

const BASE: usize = 0;
const LOCK: usize = 1;
const QUIET: usize = 2;
const CHURN: usize = 3;
const AFTER: usize = 4;
const PHASES: [&str; 5] = [
    "baseline (no writes)",
    "LockUser loop (+ its pollers)",
    "between phases",
    "SCIM churn",
    "after the churn",
];

/// The open-loop Check load: what it measured, by phase.
struct Load {
    phase: AtomicUsize,
    stop: AtomicBool,
    from_schedule: Vec<Hist>,
    from_send: Vec<Hist>,
    errors: Vec<AtomicU64>,
    dropped: Vec<AtomicU64>,
    first_error: OnceLock<String>,
    in_flight: AtomicU64,
    /// Per client (connection): the newest revision among the answers it has received.
    seen: Vec<AtomicU64>,
    monotonic: Violations,
    /// From the churn's start: one histogram a second (from the scheduled send time).
    timeline: OnceLock<(Instant, Vec<Hist>)>,
}

impl Load {
    fn new() -> Load {
        Load {
            phase: AtomicUsize::new(BASE),
            stop: AtomicBool::new(false),
            from_schedule: PHASES.iter().map(|_| Hist::new()).collect(),
            from_send: PHASES.iter().map(|_| Hist::new()).collect(),
            errors: PHASES.iter().map(|_| AtomicU64::new(0)).collect(),
            dropped: PHASES.iter().map(|_| AtomicU64::new(0)).collect(),
            first_error: OnceLock::new(),
            in_flight: AtomicU64::new(0),
            seen: (0..CHANNELS).map(|_| AtomicU64::new(0)).collect(),
            monotonic: Violations::default(),
            timeline: OnceLock::new(),
        }
    }

    async fn one(
        &self,
        phase: usize,
        client: usize,
        due: Instant,
        mut grpc: DecisionServiceClient<Channel>,
        request: pb::CheckRequest,
    ) {
        // Any answer this client received before this send came from a snapshot at least that
        // new was already current, and served revisions must never go backwards.
        let floor = self.seen[client].load(Relaxed);
        let sent = Instant::now();
        let result = grpc.check(request).await;
        let done = Instant::now();
        self.in_flight.fetch_sub(1, Relaxed);
        match result {
            Ok(answer) => {
                let revision = answer.into_inner().revision;
                if revision < floor {
                    self.monotonic.report(format!(
                        "client {client}: revision {revision} after {floor} ({})",
                        PHASES[phase]
                    ));
                }
                self.seen[client].fetch_max(revision, Relaxed);
            }
            Err(status) => {
                self.errors[phase].fetch_add(1, Relaxed);
                let _ = self.first_error.set(status.to_string());
            }
        }
        self.from_schedule[phase].record(done - due);
        self.from_send[phase].record(done - sent);
        if let Some((start, timeline)) = self.timeline.get()
            && due >= *start
        {
            let second = ((due - *start).as_secs() as usize).min(timeline.len() - 1);
            timeline[second].record(done - due);
        }
    }
}

/// Sends Checks at `rate` per second on a fixed schedule until `load.stop`, each in its own
/// task so a slow answer never delays the next send. Returns how many were scheduled.
async fn open_loop(
    load: Arc<Load>,
    clients: Vec<DecisionServiceClient<Channel>>,
    requests: Arc<Vec<pb::CheckRequest>>,
    rate: f64,
) -> u64 {
    let start = Instant::now();
    let interval = 1e9 / rate;
    let due_at = |k: u64| start + Duration::from_nanos((k as f64 * interval) as u64);
    let mut k: u64 = 0;
    while !load.stop.load(Relaxed) {
        let now = Instant::now();
        let mut due = due_at(k);
        // The timer wakes at millisecond granularity: send everything due by now.
        while due <= now {
            let phase = load.phase.load(Relaxed);
            if load.in_flight.load(Relaxed) >= MAX_IN_FLIGHT {
                load.dropped[phase].fetch_add(1, Relaxed);
            } else {
                load.in_flight.fetch_add(1, Relaxed);
                let client = k as usize % clients.len();
                let grpc = clients[client].clone();
                let request = requests[k as usize % requests.len()].clone();
                let load = Arc::clone(&load);
                tokio::spawn(async move { load.one(phase, client, due, grpc, request).await });
            }
            k += 1;
            due = due_at(k);
        }
        tokio::time::sleep_until(due.into()).await;
    }
    k
}

/// Closed loop: `tasks` clients each sending the next Check as soon as the last is answered.
/// Returns Checks/s over `secs` (after `warmup`), the latencies, and monotonicity violations.
async fn max_throughput(
    clients: &[DecisionServiceClient<Channel>],
    requests: &Arc<Vec<pb::CheckRequest>>,
    tasks: usize,
) -> (f64, Arc<Hist>, u64) {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Hist::new());
    let backwards = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut grpc = clients[t % clients.len()].clone();
        let requests = Arc::clone(requests);
        let (measuring, stop, done, hist, backwards) = (
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(&hist),
            Arc::clone(&backwards),
        );
        handles.push(tokio::spawn(async move {
            let mut i = t;
            let mut last = 0;
            while !stop.load(Relaxed) {
                let request = requests[i % requests.len()].clone();
                i += tasks;
                let sent = Instant::now();
                let answer = grpc.check(request).await.unwrap().into_inner();
                if answer.revision < last {
                    backwards.fetch_add(1, Relaxed);
                }
                last = answer.revision;
                if measuring.load(Relaxed) {
                    hist.record(sent.elapsed());
                    done.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(MAX_WARMUP).await;
    measuring.store(true, Relaxed);
    let started = Instant::now();
    tokio::time::sleep(MAX_SECS).await;
    let count = done.load(Relaxed);
    let wall = started.elapsed();
    stop.store(true, Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    (
        count as f64 / wall.as_secs_f64(),
        hist,
        backwards.load(Relaxed),
    )
}

// ---- SCIM ----

/// An HTTP/1 SCIM client with the connection's bearer token.
#[derive(Clone)]
struct Scim {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    bearer: Arc<str>,
}

impl Scim {
    /// One call; the status and the body once fully received, or why the call failed.
    async fn call(&self, method: &str, path: &str, body: &Value) -> Result<(u16, Bytes), String> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", &*self.bearer)
            .header("content-type", "application/scim+json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// A member of a group some policy grants through, and a request that policy decides for them:
/// removing the member must take that decision away, adding them back must restore it.
#[derive(Clone, Debug)]
struct Grant {
    user: String,
    group: String,
    group_size: usize,
    policy: String,
    connector: String,
    tool: String,
}

/// Candidates for [`Grant`]s, each a different user and group: the user is in exactly one of
/// the policy's groups (of at most [`MAX_GRANT_GROUP`] members), not named by it directly.
/// Whether the policy decides the request is checked over gRPC by the caller.
fn grant_candidates(view: &store::View, n: usize, taken: &HashSet<String>) -> Vec<Grant> {
    let mut found = Vec::new();
    let mut users: HashSet<String> = HashSet::new();
    let mut groups: HashSet<String> = HashSet::new();
    for policy in view.policies() {
        if found.len() >= n {
            break;
        }
        if !policy.enabled || policy.scope.all_users || policy.scope.groups.is_empty() {
            continue;
        }
        let tool = match &policy.tools {
            pdp::Tools::All => "bench_tool".to_owned(),
            pdp::Tools::Only(tools) => match tools.first() {
                Some(t) => t.clone(),
                None => continue,
            },
        };
        'groups: for group in &policy.scope.groups {
            let Some(entry) = view.group(group) else {
                continue;
            };
            if entry.group.managed_by != pdp::ManagedBy::External
                || entry.members > MAX_GRANT_GROUP
                || groups.contains(group)
            {
                continue;
            }
            for (user, _) in view.members_of(group).take(50) {
                if users.contains(&**user)
                    || taken.contains(&**user)
                    || policy.scope.users.iter().any(|u| **u == **user)
                    || view.user(user).map(|u| u.status()) != Some(pdp::UserStatus::Active)
                {
                    continue;
                }
                let through = view
                    .groups_of(user)
                    .filter(|(g, _)| policy.scope.groups.iter().any(|p| **p == ***g))
                    .count();
                if through != 1 {
                    continue;
                }
                users.insert(user.to_string());
                groups.insert(group.clone());
                found.push(Grant {
                    user: user.to_string(),
                    group: group.clone(),
                    group_size: entry.members,
                    policy: policy.id.clone(),
                    connector: policy.connector.clone(),
                    tool: tool.clone(),
                });
                break 'groups;
            }
        }
    }
    found
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// PATCH a user's `name.givenName` and `title`: decisions do not read them.
    Update,
    /// PATCH a group: remove one member, or add them back.
    Membership,
    /// PATCH a user's `active`.
    Active,
}

/// One writer's share of the subjects; no two writers touch the same user or group, so what a
/// writer reads back reflects its own writes only. Updates and deactivations take a new user
/// each time (an IdP's churn touches many users, and each changed user adds to what the
/// publisher holds over its last full build); a deactivated user is reactivated by the next
/// (de)activation; a membership grant is removed and re-added in turn.
#[derive(Default)]
struct Subjects {
    updates: Vec<String>,
    /// And whether the user is currently a member.
    grants: Vec<(Grant, bool)>,
    toggles: Vec<String>,
    /// The user the last (de)activation deactivated, to reactivate next.
    inactive: Option<String>,
}

#[derive(Default)]
struct WriterReport {
    /// (op, completion time from the churn's start, latency from send, latency from schedule)
    writes: Vec<(Op, Duration, Duration, Duration)>,
    /// Writes due before the end that a writer, behind its schedule, had not begun by then.
    unsent: u64,
    failed: u64,
    first_failure: Option<String>,
    /// Writes whose effect a Check can show, and those whose Check showed it.
    observable: u64,
    observed: u64,
}

/// Sends one SCIM write every `every` from `first` until `end`, each followed by a Check for the
/// user it changed; 4 in 10 user updates, 3 membership changes, 3 (de)activations.
#[allow(clippy::too_many_arguments)]
async fn writer(
    w: usize,
    scim: Scim,
    mut grpc: DecisionServiceClient<Channel>,
    mut subjects: Subjects,
    churn_start: Instant,
    first: Instant,
    every: Duration,
    end: Instant,
    violations: Arc<Violations>,
) -> WriterReport {
    const PATTERN: [Op; 10] = [
        Op::Update,
        Op::Membership,
        Op::Active,
        Op::Update,
        Op::Membership,
        Op::Active,
        Op::Update,
        Op::Membership,
        Op::Active,
        Op::Update,
    ];
    let mut report = WriterReport::default();
    let (mut iu, mut ig, mut it) = (0usize, 0usize, 0usize);
    let mut last_revision = 0;
    let mut k: u32 = 0;
    loop {
        let due = first + every * k;
        if due >= end {
            break;
        }
        // A writer behind its schedule sends its next write at once, but none past the end:
        // what the writers could not send is counted, not left to run on.
        if Instant::now() >= end {
            report.unsent += 1;
            k += 1;
            continue;
        }
        let mut op = PATTERN[k as usize % PATTERN.len()];
        k += 1;
        if op == Op::Membership && subjects.grants.is_empty() {
            op = Op::Update;
        }
        tokio::time::sleep_until(due.into()).await;
        let (path, body, probe, expect): (String, Value, pb::CheckRequest, Expect) = match op {
            Op::Update => {
                let user = &subjects.updates[iu % subjects.updates.len()];
                iu += 1;
                (
                    format!("/Users/{user}"),
                    json!({
                        "schemas": [PATCH_OP],
                        "Operations": [
                            {"op": "replace", "path": "name.givenName", "value": format!("Given{w}x{k}")},
                            {"op": "replace", "path": "title", "value": format!("Title {w}x{k}")}
                        ]
                    }),
                    check(user, "github", "t"),
                    Expect::Nothing,
                )
            }
            Op::Membership => {
                let n = subjects.grants.len();
                let (grant, member) = &mut subjects.grants[ig % n];
                ig += 1;
                let body = if *member {
                    json!({
                        "schemas": [PATCH_OP],
                        "Operations": [{
                            "op": "remove",
                            "path": format!("members[value eq \"{}\"]", grant.user)
                        }]
                    })
                } else {
                    json!({
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": grant.user}]}]
                    })
                };
                let expect = if *member {
                    Expect::NotDecidedBy(grant.policy.clone())
                } else {
                    Expect::DecidedBy(grant.policy.clone())
                };
                *member = !*member;
                (
                    format!("/Groups/{}", grant.group),
                    body,
                    check(&grant.user, &grant.connector, &grant.tool),
                    expect,
                )
            }
            Op::Active => {
                let (user, active) = match subjects.inactive.take() {
                    Some(user) => (user, true),
                    None => {
                        let user = subjects.toggles[it % subjects.toggles.len()].clone();
                        it += 1;
                        subjects.inactive = Some(user.clone());
                        (user, false)
                    }
                };
                (
                    format!("/Users/{user}"),
                    json!({
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "replace", "value": {"active": active}}]
                    }),
                    check(&user, "github", "t"),
                    if active {
                        Expect::NotInactive
                    } else {
                        Expect::Inactive
                    },
                )
            }
        };
        let sent = Instant::now();
        let result = scim.call("PATCH", &path, &body).await;
        let done = Instant::now();
        match result {
            Ok((200, _)) => {}
            Ok((status, bytes)) => {
                report.failed += 1;
                report.first_failure.get_or_insert_with(|| {
                    format!(
                        "PATCH {path}: {status} {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                    )
                });
                continue;
            }
            Err(e) => {
                report.failed += 1;
                report
                    .first_failure
                    .get_or_insert_with(|| format!("PATCH {path}: {e}"));
                continue;
            }
        }
        report
            .writes
            .push((op, done - churn_start, done - sent, done - due));
        let answer = match grpc.check(probe.clone()).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                violations.report(format!(
                    "writer {w}: Check after PATCH {path} failed: {status}"
                ));
                continue;
            }
        };
        if answer.revision < last_revision {
            violations.report(format!(
                "writer {w}: revision {} after {last_revision}",
                answer.revision
            ));
        }
        last_revision = last_revision.max(answer.revision);
        if expect != Expect::Nothing {
            report.observable += 1;
            if expect.holds(&answer) {
                report.observed += 1;
            } else {
                violations.report(format!(
                    "writer {w}: after PATCH {path} ({:.1} s into the churn) Check for {} answered \
                     {:?}/{:?} policy `{}` at revision {}, expected {expect:?}",
                    (due - churn_start).as_secs_f64(),
                    probe.user,
                    answer.decision(),
                    answer.reason(),
                    answer.policy_id,
                    answer.revision
                ));
            }
        }
    }
    report
}

/// What the writer's Check must show after its write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// The write changed nothing decisions read.
    Nothing,
    Inactive,
    NotInactive,
    DecidedBy(String),
    NotDecidedBy(String),
}

impl Expect {
    fn holds(&self, answer: &pb::CheckResponse) -> bool {
        match self {
            Expect::Nothing => true,
            Expect::Inactive => answer.reason() == pb::Reason::UserInactive,
            Expect::NotInactive => !matches!(
                answer.reason(),
                pb::Reason::UserInactive | pb::Reason::UserLocked
            ),
            Expect::DecidedBy(policy) => answer.policy_id == *policy,
            Expect::NotDecidedBy(policy) => answer.policy_id != *policy,
        }
    }
}

// ---- setup ----

/// Copies a store directory (sled's files and the acknowledgment file) to `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            bytes += copy_dir(&entry.path(), &target)?;
        } else {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

fn import(dir: &Path, model: &pdp::Model) {
    let store = store::Store::open(dir).unwrap();
    let started = Instant::now();
    store.import(model).unwrap();
    println!(
        "  import into {} {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let preset = std::env::var("PORTCULLIS_BENCH_PRESET").unwrap_or_else(|_| "medium".into());
    let churn_secs = Duration::from_secs_f64(
        env_f64("PORTCULLIS_BENCH_CHURN_SECS").unwrap_or(if preset == "large" {
            60.0
        } else {
            30.0
        }),
    );
    let write_rate = env_f64("PORTCULLIS_BENCH_WRITE_RATE").unwrap_or(200.0);
    let check_rate = env_f64("PORTCULLIS_BENCH_CHECK_RATE");
    let capture = Capture::default();
    // Errors (a failed publish) go to stderr by default, `RUST_LOG` for more; the capture layer
    // sees only the publisher's events, so the servers' own tracing costs nothing extra.
    tracing_subscriber::registry()
        .with(
            capture.clone().with_filter(
                filter::Targets::new()
                    .with_target("portcullis_live", tracing::Level::DEBUG)
                    .with_target("live", tracing::Level::DEBUG),
            ),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
        )
        .init();

    let params = workload::Params::preset(&preset).unwrap();
    let mut generated = workload::generate(&params).unwrap();
    let requests_source = std::mem::take(&mut generated.files.requests);
    let requests = &requests_source;
    println!(
        "{preset}: {} users, {} groups, {} policies, {} requests; churn {} s",
        generated.files.users.len(),
        generated.files.groups.len(),
        generated.files.policies.len(),
        requests.len(),
        churn_secs.as_secs()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    match std::env::var_os("PORTCULLIS_BENCH_DATA").map(std::path::PathBuf::from) {
        Some(source) => {
            if !source.join("db").exists() {
                let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
                drop(generated);
                import(&source, &model);
            } else {
                drop(generated);
            }
            let started = Instant::now();
            let bytes = copy_dir(&source, &data).unwrap();
            println!(
                "  copied the store in {} ({:.2} GB) in {:.1} s",
                source.display(),
                bytes as f64 / 1e9,
                started.elapsed().as_secs_f64()
            );
        }
        None => {
            let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
            drop(generated);
            import(&data, &model);
        }
    }

    let store = store::Store::open(&data).unwrap();
    let view = store.view().unwrap();
    if view.user_count() != params.users {
        println!(
            "  note: the store holds {} users, the preset {}",
            view.user_count(),
            params.users
        );
    }
    let admin_email = view
        .users()
        .find(|u| u.status() == pdp::UserStatus::Active)
        .map(|u| u.id.clone())
        .unwrap();
    drop(view);
    let secret =
        admin::token::create_on_store(&store, &admin_email, "bench", Some(pdp::Role::Admin), None)
            .unwrap()
            .secret;
    // Unique, so a kept store that already has connections takes one more.
    let connection = format!("freshness-bench-{}", std::process::id());
    let (_connection, scim_secret) = scim::create_connection(&store, &connection).unwrap();
    let started = Instant::now();
    // The publisher's defaults unless asked: a lower bound makes folds happen in a short run.
    let live = match std::env::var("PORTCULLIS_BENCH_FOLD_AT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(fold_at) => {
            println!("  folding at {fold_at} pending changes");
            Live::start_with(store, live::Settings { fold_at }).unwrap()
        }
        None => Live::start(store).unwrap(),
    };
    println!(
        "  view + first snapshot {:.1} s; RSS {} MiB, peak {} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib(),
        peak_rss_mib()
    );

    // Who the measurements touch, picked before any change and disjoint: lock targets (users a
    // request allows), membership grants, (de)activated users and updated users.
    let view = live.view().unwrap();
    let mut pick = Picker(42);
    let mut lock_candidates: Vec<(String, String, String)> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    {
        let allowed: Vec<&workload::format::RequestLine> = requests
            .iter()
            .filter(|r| r.expected.decision == pdp::Action::Allow)
            .filter(|r| view.user(&r.user).map(|u| u.status()) == Some(pdp::UserStatus::Active))
            .collect();
        let mut tries = 0;
        while lock_candidates.len() < LOCKS * 2 && tries < LOCKS * 20 && !allowed.is_empty() {
            tries += 1;
            let r = allowed[pick.below(allowed.len())];
            if taken.insert(r.user.clone()) {
                lock_candidates.push((r.user.clone(), r.connector.clone(), r.tool.clone()));
            }
        }
    }
    let candidates = grant_candidates(&view, WRITERS * 8, &taken);
    for g in &candidates {
        taken.insert(g.user.clone());
    }
    let active: Vec<String> = view
        .users()
        .filter(|u| u.status() == pdp::UserStatus::Active && !taken.contains(u.id.as_str()))
        .map(|u| u.id.clone())
        .collect();
    // Enough users that updates and deactivations rarely repeat one (see `Subjects`).
    let per_writer = |share: f64| {
        (write_rate * share / WRITERS as f64 * churn_secs.as_secs_f64()).ceil() as usize + 10
    };
    let per_writer_updates = per_writer(0.4);
    let per_writer_toggles = per_writer(0.15);
    let wanted = WRITERS * (per_writer_updates + per_writer_toggles);
    let mut others: Vec<String> = Vec::new();
    let mut chosen: HashSet<usize> = HashSet::new();
    while others.len() < wanted && others.len() < active.len() {
        let index = pick.below(active.len());
        if chosen.insert(index) {
            others.push(active[index].clone());
        }
    }
    drop(active);
    drop(view);
    let requests: Arc<Vec<pb::CheckRequest>> = Arc::new(
        requests
            .iter()
            .map(|r| pb::CheckRequest {
                user: r.user.clone(),
                agent: r.agent.clone(),
                connector: r.connector.clone(),
                tool: r.tool.clone(),
                ..Default::default()
            })
            .collect(),
    );
    drop(requests_source);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rss_start = rss_mib();
    let sampler = RssSampler::start();
    let bench_start = Instant::now();
    runtime.block_on(async {
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc_listener.local_addr().unwrap();
        let (recorder, records) = Recorder::channel(1024);
        let activity = Activity::start(records);
        let server = tonic::transport::Server::builder()
            .add_service(
                DecisionService::new(live.engine().clone())
                    .with_recorder(recorder)
                    .into_server(),
            )
            .add_service(AdminService::new(live.clone(), activity).into_server());
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        tokio::spawn(server.serve_with_incoming(incoming));
        let scim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scim_addr = scim_listener.local_addr().unwrap();
        let app = scim::router(live.clone());
        tokio::spawn(async move {
            axum::serve(scim_listener, app).await.unwrap();
        });

        let connect = async || {
            Channel::from_shared(format!("http://{grpc_addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        };
        let mut clients = Vec::new();
        for _ in 0..CHANNELS {
            clients.push(DecisionServiceClient::new(connect().await));
        }
        let control = connect().await;
        let mut decisions = DecisionServiceClient::new(control.clone());
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
        let mut admin =
            AdminServiceClient::with_interceptor(control, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", auth.clone());
                Ok(r)
            });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let scim = Scim {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: format!("http://{scim_addr}/scim/v2"),
            bearer: format!("Bearer {scim_secret}").into(),
        };

        // The candidates, confirmed against the live server.
        let mut lock_users = Vec::new();
        for (user, connector, tool) in &lock_candidates {
            if lock_users.len() >= LOCKS {
                break;
            }
            let request = check(user, connector, tool);
            let answer = decisions.check(request.clone()).await.unwrap().into_inner();
            if answer.decision() == pb::Decision::Allow {
                lock_users.push(request);
            }
        }
        let mut grants = Vec::new();
        for g in candidates {
            let answer = decisions
                .check(check(&g.user, &g.connector, &g.tool))
                .await
                .unwrap()
                .into_inner();
            if answer.policy_id == g.policy {
                grants.push(g);
            }
        }
        let mut sizes: Vec<usize> = grants.iter().map(|g| g.group_size).collect();
        sizes.sort_unstable();
        println!(
            "  subjects: {} lock targets, {} membership grants (group sizes min {} median {} max \
             {}), {} users to (de)activate or update",
            lock_users.len(),
            grants.len(),
            sizes.first().copied().unwrap_or(0),
            sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            sizes.last().copied().unwrap_or(0),
            others.len()
        );

        // 1. Max throughput, then the open loop at half of it.
        println!(
            "Check throughput, closed loop ({MAX_CLIENTS} clients over {CHANNELS} connections, \
             {} s):",
            MAX_SECS.as_secs()
        );
        let max_start = Instant::now();
        let (max_rate, max_hist, backwards) =
            max_throughput(&clients, &requests, MAX_CLIENTS).await;
        hist_row(&format!("{max_rate:.0} checks/s"), &max_hist);
        let (own, other) = sampler.cores_between(max_start, Instant::now());
        println!("  CPU cores used, this process + other processes: {own:.2} + {other:.2}");
        let rate = check_rate.unwrap_or((max_rate / 2.0).round().max(100.0));
        println!("Open-loop Check load at {rate:.0}/s from here on.");
        let load = Arc::new(Load::new());
        let generator = tokio::spawn(open_loop(
            Arc::clone(&load),
            clients.clone(),
            Arc::clone(&requests),
            rate,
        ));
        let load_start = Instant::now();
        tokio::time::sleep(BASELINE).await;

        // 2. Lock → visible.
        load.phase.store(LOCK, Relaxed);
        eprintln!("freshness: lock loop");
        let lock_start = Instant::now();
        let lock_violations = Arc::new(Violations::default());
        let mut lock_call = Vec::new();
        let mut own = Vec::new();
        let mut polled = Vec::new();
        let mut unlock_call = Vec::new();
        let mut before_return = 0;
        for (i, request) in lock_users.iter().enumerate() {
            let mut poller = decisions.clone();
            let (polled_request, violations) = (request.clone(), Arc::clone(&lock_violations));
            let seen = tokio::spawn(async move {
                let mut last = 0;
                loop {
                    let answer = poller
                        .check(polled_request.clone())
                        .await
                        .unwrap()
                        .into_inner();
                    if answer.revision < last {
                        violations.report(format!(
                            "poller for {}: revision {} after {last}",
                            polled_request.user, answer.revision
                        ));
                    }
                    last = answer.revision;
                    if answer.reason() == pb::Reason::UserLocked {
                        return Instant::now();
                    }
                }
            });
            let t = Instant::now();
            let locked = admin
                .lock_user(pb::LockUserRequest {
                    user: request.user.clone(),
                    reason: format!("freshness bench {i}"),
                })
                .await
                .unwrap()
                .into_inner();
            let returned = Instant::now();
            lock_call.push(returned - t);
            let answer = decisions
                .check(pb::CheckRequest {
                    min_revision: locked.revision,
                    ..request.clone()
                })
                .await;
            own.push(returned.elapsed());
            match answer {
                Ok(a) if a.get_ref().reason() == pb::Reason::UserLocked => {}
                other => lock_violations.report(format!(
                    "Check with min_revision {} after locking {}: {:?}",
                    locked.revision,
                    request.user,
                    other.map(|a| a.into_inner())
                )),
            }
            match tokio::time::timeout(Duration::from_secs(10), seen).await {
                Ok(Ok(seen)) => {
                    if seen < returned {
                        before_return += 1;
                    }
                    polled.push(seen.saturating_duration_since(returned));
                }
                _ => lock_violations.report(format!(
                    "the poller never saw {} locked (10 s)",
                    request.user
                )),
            }
            let t = Instant::now();
            let unlocked = admin
                .unlock_user(pb::UnlockUserRequest {
                    user: request.user.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            unlock_call.push(t.elapsed());
            let answer = decisions
                .check(pb::CheckRequest {
                    min_revision: unlocked.revision,
                    ..request.clone()
                })
                .await
                .unwrap()
                .into_inner();
            if answer.decision() != pb::Decision::Allow {
                lock_violations.report(format!(
                    "after unlocking {} Check answered {:?}/{:?}",
                    request.user,
                    answer.decision(),
                    answer.reason()
                ));
            }
        }
        let lock_end = Instant::now();
        load.phase.store(QUIET, Relaxed);
        // SCIM writes take turns, so one write's latency alone bounds the churn's rate.
        let mut alone = Vec::new();
        for (i, user) in others.iter().take(SCIM_ALONE).enumerate() {
            let body = json!({
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "title", "value": format!("Alone {i}")}]
            });
            let t = Instant::now();
            let (status, _) = scim.call("PATCH", &format!("/Users/{user}"), &body).await.unwrap();
            alone.push(t.elapsed());
            assert_eq!(status, 200);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        // 3. SCIM churn.
        let churn_start = Instant::now();
        let timeline_len = (churn_secs + AFTER_CHURN).as_secs() as usize + 30;
        let _ = load
            .timeline
            .set((churn_start, (0..timeline_len).map(|_| Hist::new()).collect()));
        load.phase.store(CHURN, Relaxed);
        eprintln!("freshness: SCIM churn");
        let churn_end = churn_start + churn_secs;
        let write_violations = Arc::new(Violations::default());
        let writer_channel = connect().await;
        let mut shares: Vec<Subjects> = (0..WRITERS).map(|_| Subjects::default()).collect();
        for (i, g) in grants.iter().enumerate() {
            shares[i % WRITERS].grants.push((g.clone(), true));
        }
        for (i, user) in others.iter().enumerate() {
            let share = &mut shares[i % WRITERS];
            if i < WRITERS * per_writer_toggles {
                share.toggles.push(user.clone());
            } else {
                share.updates.push(user.clone());
            }
        }
        let every = Duration::from_secs_f64(WRITERS as f64 / write_rate);
        let mut writers = Vec::new();
        for (w, subjects) in shares.into_iter().enumerate() {
            let first = churn_start + every.mul_f64(w as f64 / WRITERS as f64);
            writers.push(tokio::spawn(writer(
                w,
                scim.clone(),
                DecisionServiceClient::new(writer_channel.clone()),
                subjects,
                churn_start,
                first,
                every,
                churn_end,
                Arc::clone(&write_violations),
            )));
        }
        let mut reports = Vec::new();
        for w in writers {
            reports.push(w.await.unwrap());
        }
        let writes_done = Instant::now();
        load.phase.store(AFTER, Relaxed);
        let after_start = Instant::now();
        tokio::time::sleep(AFTER_CHURN).await;
        load.stop.store(true, Relaxed);
        let scheduled = generator.await.unwrap();
        let draining = Instant::now();
        while load.in_flight.load(Relaxed) > 0 && draining.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let load_end = Instant::now();
        sampler.stop.store(true, Relaxed);

        // ---- report ----
        println!(
            "Check latency, open loop at {rate:.0}/s ({scheduled} scheduled over {:.0} s), from \
             the scheduled send time:",
            (load_end - load_start).as_secs_f64()
        );
        for (phase, name) in PHASES.iter().enumerate() {
            if phase != QUIET {
                hist_row(name, &load.from_schedule[phase]);
            }
        }
        println!("  the same, from the actual send:");
        for (phase, name) in PHASES.iter().enumerate() {
            if phase != QUIET {
                hist_row(name, &load.from_send[phase]);
            }
        }
        let ratio = |q: f64| {
            ms(load.from_schedule[CHURN].quantile(q)) / ms(load.from_schedule[BASE].quantile(q))
        };
        println!(
            "  churn / baseline: p50 {:.2}×  p99 {:.2}×  p99.9 {:.2}×",
            ratio(0.5),
            ratio(0.99),
            ratio(0.999)
        );
        let errors: Vec<u64> = load.errors.iter().map(|e| e.load(Relaxed)).collect();
        let dropped: Vec<u64> = load.dropped.iter().map(|e| e.load(Relaxed)).collect();
        println!(
            "  errors by phase {errors:?}{}; dropped sends (over {MAX_IN_FLIGHT} in flight) {dropped:?}",
            load.first_error
                .get()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        println!("  closed-loop clients whose answers' revisions went backwards: {backwards}");
        let cpu = |name: &str, from: Instant, to: Instant| {
            let (own, others) = sampler.cores_between(from, to);
            format!("{name} {own:.2} + {others:.2}")
        };
        println!(
            "  CPU cores used, this process + other processes: {}; {}; {}; {}",
            cpu("baseline", load_start, lock_start),
            cpu("lock loop", lock_start, lock_end),
            cpu("churn", churn_start, writes_done),
            cpu("after", after_start, load_end)
        );

        println!(
            "LockUser → first Check that sees it, {} users, under the load:",
            lock_call.len()
        );
        summary("LockUser round trip", lock_call);
        summary("Check with min_revision, after LockUser returned", own);
        summary("poller's first Check seeing it, after the return", polled);
        summary("UnlockUser round trip", unlock_call);
        println!(
            "  the poller saw the lock before LockUser's answer arrived: {before_return}/{}",
            lock_users.len()
        );
        lock_violations.print("violations (wrong answer, revision backwards, never seen)");

        let mut by_op: [Vec<Duration>; 3] = Default::default();
        let mut all = Vec::new();
        let mut late = Vec::new();
        let (mut failed, mut observable, mut observed, mut unsent) = (0, 0, 0, 0);
        let mut last_done = Duration::ZERO;
        let mut first_failure = None;
        let mut writes_per_second = vec![(0u64, Duration::ZERO); timeline_len];
        for r in &reports {
            for &(op, at, took, from_schedule) in &r.writes {
                by_op[op as usize].push(took);
                all.push(took);
                late.push(from_schedule);
                let s = (at.as_secs() as usize).min(timeline_len - 1);
                writes_per_second[s].0 += 1;
                writes_per_second[s].1 = writes_per_second[s].1.max(took);
                last_done = last_done.max(at);
            }
            unsent += r.unsent;
            failed += r.failed;
            observable += r.observable;
            observed += r.observed;
            if first_failure.is_none() {
                first_failure.clone_from(&r.first_failure);
            }
        }
        println!(
            "SCIM churn: {WRITERS} writers, {write_rate:.0} writes/s scheduled for {} s:",
            churn_secs.as_secs()
        );
        println!(
            "  achieved {:.1} writes/s: {} acknowledged in {:.1} s, {failed} failed{}, {unsent} not \
             sent (the writers were behind schedule at the end)",
            all.len() as f64 / last_done.max(churn_secs).as_secs_f64(),
            all.len(),
            last_done.as_secs_f64(),
            first_failure.map(|f| format!(": {f}")).unwrap_or_default(),
        );
        summary("one PATCH at a time, before the churn", alone);
        summary("all writes, from the send", all);
        summary("all writes, from the scheduled time", late);
        summary("PATCH /Users name.givenName + title", std::mem::take(&mut by_op[0]));
        summary("PATCH /Groups remove or re-add one member", std::mem::take(&mut by_op[1]));
        summary("PATCH /Users active=false / true", std::mem::take(&mut by_op[2]));
        println!(
            "  the writer's Check right after the response showed the change: {observed}/{observable} \
             (user updates change nothing a Check shows)"
        );
        write_violations.print("violations (stale read-your-write, revision backwards, errors)");
        load.monotonic.print("open-loop Check answers older than one the same client had received");

        // The publisher: folds and publishes.
        let events = capture.between(bench_start, Instant::now());
        let folds: Vec<&LiveEvent> = events
            .iter()
            .filter(|e| e.message == "snapshot folded")
            .collect();
        println!("Publisher (events of target portcullis_live / live):");
        let mut messages: Vec<(String, usize)> = Vec::new();
        for e in &events {
            match messages.iter_mut().find(|(m, _)| *m == e.message) {
                Some((_, n)) => *n += 1,
                None => messages.push((e.message.clone(), 1)),
            }
        }
        println!("  events: {messages:?}");
        let phase_of = |at: Instant| {
            if at < load_start {
                "before the load"
            } else if at < lock_start {
                PHASES[BASE]
            } else if at < lock_end {
                PHASES[LOCK]
            } else if at < churn_start {
                PHASES[QUIET]
            } else if at < writes_done {
                PHASES[CHURN]
            } else if at < after_start + AFTER_CHURN {
                PHASES[AFTER]
            } else {
                "at the end"
            }
        };
        for (phase, from, to) in [
            (LOCK, lock_start, lock_end),
            (CHURN, churn_start, writes_done),
        ] {
            let publishes: Vec<&LiveEvent> = events
                .iter()
                .filter(|e| e.message == "snapshot published" && e.at >= from && e.at < to)
                .collect();
            let full = publishes.iter().filter(|e| e.flag("full") == Some(true)).count();
            let pending = publishes
                .iter()
                .filter_map(|e| e.number("pending").or_else(|| e.number("overrides")))
                .max()
                .unwrap_or(0);
            summary(
                &format!(
                    "publishes during {} ({full} full, max {pending} pending)",
                    PHASES[phase]
                ),
                publishes.iter().filter_map(|e| e.elapsed()).collect(),
            );
        }
        println!(
            "  folds counted by the publisher: {}, fold events captured: {}",
            live.folds(),
            folds.len()
        );
        if folds.is_empty() {
            println!("  no fold happened");
        } else {
            let churn_folds = folds
                .iter()
                .filter(|e| e.at >= churn_start && e.at < writes_done)
                .count();
            summary(
                &format!("folds ({churn_folds} during the churn)"),
                folds.iter().filter_map(|e| e.elapsed()).collect(),
            );
            for f in &folds {
                println!(
                    "    fold at {:.1} s into the load ({}): revision {:?} over base {:?}, {:?} ms, \
                     {:?} pending after",
                    (f.at - load_start).as_secs_f64(),
                    phase_of(f.at),
                    f.number("revision"),
                    f.number("base_revision"),
                    f.elapsed().map(|d| d.as_millis()),
                    f.number("pending")
                );
            }
        }

        println!(
            "Memory (this process: server, clients and the generated requests): RSS {rss_start} MiB \
             after loading; max {} MiB during the churn, {} MiB overall; peak (VmHWM) {} MiB",
            sampler.max_between(churn_start, writes_done),
            sampler.max_between(bench_start, Instant::now()),
            peak_rss_mib()
        );

        println!(
            "Timeline from the churn's start (per second: Check p99/max from schedule, writes, \
             publishes and their slowest, folds, max RSS, CPU cores of this process + others):"
        );
        let (_, timeline) = load.timeline.get().unwrap();
        let seconds = ((load_end - churn_start).as_secs() as usize).min(timeline_len);
        for (s, (hist, (writes, slowest))) in timeline
            .iter()
            .zip(&writes_per_second)
            .take(seconds)
            .enumerate()
        {
            let from = churn_start + Duration::from_secs(s as u64);
            let to = from + Duration::from_secs(1);
            let in_second: Vec<&LiveEvent> =
                events.iter().filter(|e| e.at >= from && e.at < to).collect();
            let publishes: Vec<&&LiveEvent> = in_second
                .iter()
                .filter(|e| e.message == "snapshot published")
                .collect();
            let full = publishes.iter().filter(|e| e.flag("full") == Some(true)).count();
            let slowest_publish = publishes
                .iter()
                .filter_map(|e| e.elapsed())
                .max()
                .unwrap_or_default();
            let folded = in_second
                .iter()
                .filter(|e| e.message == "snapshot folded")
                .count();
            let pending = publishes
                .iter()
                .filter_map(|e| e.number("pending"))
                .max()
                .unwrap_or(0);
            println!(
                "  {s:>3} s  checks {:>6} p99 {:>8.3} max {:>8.3} ms | writes {writes:>3} max {:>8.3} \
                 ms | publishes {:>3} ({full} full) max {:>8.3} ms, pending {pending:>5} | folds \
                 {folded} | RSS {} MiB | CPU {:.2} + {:.2}",
                hist.count(),
                ms(hist.quantile(0.99)),
                ms(hist.max()),
                ms(*slowest),
                publishes.len(),
                ms(slowest_publish),
                sampler.max_between(from, to),
                sampler.cores_between(from, to).0,
                sampler.cores_between(from, to).1
            );
        }
    });
    println!("peak RSS {} MiB", peak_rss_mib());
}
