//! A control plane and its sidecars, each the real binary in a process of its own: how long a
//! sidecar takes to get the whole directory, what it holds, and how fast an admin change reaches
//! every sidecar.
//!
//! ```sh
//! cargo bench --bench fleet                                       # medium (100k users)
//! PORTCULLIS_BENCH_PRESET=large PORTCULLIS_BENCH_DATA=/tmp/data-large \
//!     cargo bench --bench fleet                                   # on a copy of that store
//! ```
//!
//! Also `PORTCULLIS_BENCH_SIDECARS` (default 3; fewer, and it says so, if MemAvailable cannot
//! hold 1.3× the control plane's RSS for each) and `PORTCULLIS_BENCH_CHANGES` (users locked and
//! unlocked per variant, default 200 at medium, 100 at large).
//!
//! Setup as `benches/freshness.rs`: the preset is generated (seed 1) for its requests and
//! imported into a store in a temp dir, or with `PORTCULLIS_BENCH_DATA=<dir>` the store in
//! `<dir>` is copied (importing the preset into `<dir>` first if it holds no store); the bench
//! only ever writes to its copy. An admin token is minted with `portcullis token create`. Then
//! `portcullis serve --sidecar-token-file` (the control plane) and `portcullis sidecar`s run as
//! child processes on loopback ports; they are killed when the bench ends or panics.
//!
//! 1. Full snapshot: the sidecars start at once. For each: from spawn to its `full snapshot
//!    applied` log line (and that line's `bytes` and `elapsed_ms`: from the snapshot's first
//!    message to published) and to answering a Check at the control plane's revision; when its
//!    apply thread first used CPU (it waits for the whole snapshot, so that splits the stream
//!    from the build); its VmRSS and peak then, and the CPU it used. The control plane's VmRSS
//!    before and after, the CPU it spent and when it had spent 97% of it (about when it sent the
//!    last SnapshotEnd). Then one more sidecar alone (uncontended), and the stream alone, read
//!    by a bare gRPC client in this process (the control plane's encoding and the transfer,
//!    without a sidecar's build).
//! 2. Change → every sidecar: users a workload request allows are locked over the admin API
//!    (`AdminService.LockUser`), then unlocked, one change at a time, 20 ms apart. After each
//!    acknowledged change, the time until every sidecar answers a Check for that user showing
//!    it: for half the users, one Check per sidecar sent concurrently with `min_revision` = the
//!    change's revision (the sidecar waits for it); for the other half, one poller per sidecar
//!    calling Check without `min_revision` in a loop from before the call until the answer
//!    changes (0 when every poller saw it before the acknowledgment arrived). Before them, Check
//!    round trips with nothing pending to each sidecar and to the control plane, for scale
//!    (`PORTCULLIS_BENCH_BASELINE_CHECKS` each, default 200; those over 5 ms are listed).
//! 3. For comparison, in this process after the children are gone: `View::from_model` and
//!    `live::build` of the generated model, which is what a sidecar does after the stream's last
//!    message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pb::admin_service_client::AdminServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pb::snapshot_service_client::SnapshotServiceClient;
use portcullis_proto::v1 as pb;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Picker, ms, peak_rss_mib, pid_cpu_secs, pid_status_kib, rss_mib, summary};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

mod support;

/// Sidecars started together, unless `PORTCULLIS_BENCH_SIDECARS` says otherwise.
const SIDECARS: usize = 3;
/// Time between one change's measurement and the next change.
const PACE: Duration = Duration::from_millis(20);
/// How long anything may take before the bench gives up (a 1M-user store takes ~15 s to open).
const PATIENCE: Duration = Duration::from_secs(600);
/// How long a poller waits for a change before it counts as never seen.
const POLL_LIMIT: Duration = Duration::from_secs(10);
/// Check round trips to a sidecar with nothing pending, for the baseline.
const BASELINE_CHECKS: usize = 200;
/// A round trip slower than this with nothing pending is listed.
const SLOW: Duration = Duration::from_millis(5);
const SIDECAR_TOKEN: &str = "fleet-bench-sidecar-secret";

// ---- child processes ----

/// What a child wrote to stderr, line by line, each with the moment it arrived.
#[derive(Clone, Default)]
struct Log {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    closed: Arc<AtomicBool>,
}

impl Log {
    fn find(&self, pattern: &str) -> Option<(Instant, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, line)| line.contains(pattern))
            .cloned()
    }

    fn all(&self, pattern: &str) -> Vec<(Instant, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains(pattern))
            .cloned()
            .collect()
    }

    /// Blocks until a line contains `pattern`; panics if the child exits first.
    fn wait(&self, pattern: &str, name: &str) -> (Instant, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let closed = self.closed.load(Relaxed);
            if let Some(found) = self.find(pattern) {
                return found;
            }
            assert!(
                !closed && Instant::now() < deadline,
                "{name} never logged `{pattern}`:\n{}",
                self.tail(30)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `key=value` in a log line (tracing's plain format).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn number(line: &str, key: &str) -> u64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A child process of the binary, killed on drop (so also when the bench panics).
struct Proc {
    name: String,
    child: Child,
    spawned: Instant,
    log: Log,
}

impl Proc {
    fn spawn(name: &str, args: &[&str]) -> Proc {
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::default();
        let reader = BufReader::new(child.stderr.take().unwrap());
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                lines.lines.lock().unwrap().push((Instant::now(), line));
            }
            lines.closed.store(true, Relaxed);
        });
        Proc {
            name: name.to_owned(),
            child,
            spawned,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://<address>` the child logged for `key` (`grpc_addr`, `http_addr`), once it has.
    fn address(&self, key: &str) -> String {
        let (_, line) = self.log.wait(&format!(" {key}="), &self.name);
        format!("http://{}", field(&line, key).unwrap())
    }

    fn rss_mib(&self) -> u64 {
        pid_status_kib(self.pid(), "VmRSS:") / 1024
    }

    fn peak_mib(&self) -> u64 {
        pid_status_kib(self.pid(), "VmHWM:") / 1024
    }

    fn cpu_secs(&self) -> f64 {
        pid_cpu_secs(self.pid())
    }

    /// Warnings and errors it logged.
    fn complaints(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The machine's busy CPU time so far (everything but idle and iowait), in seconds.
fn machine_busy_secs() -> f64 {
    std::fs::read_to_string("/proc/stat")
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
        .map_or(0.0, |ticks| ticks as f64 / 100.0)
}

fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// A sidecar's `/metrics`: sample name → value.
fn metrics(http: &str) -> HashMap<String, f64> {
    let host = http.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
        .collect()
}

/// One process's CPU time, sampled every 20 ms from a thread of its own.
struct CpuSampler {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    stop: Arc<AtomicBool>,
}

impl CpuSampler {
    fn start(pid: u32) -> CpuSampler {
        let sampler = CpuSampler {
            samples: Arc::default(),
            stop: Arc::default(),
        };
        let (samples, stop) = (Arc::clone(&sampler.samples), Arc::clone(&sampler.stop));
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let cpu = pid_cpu_secs(pid);
                samples.lock().unwrap().push((Instant::now(), cpu));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        sampler
    }

    /// When the process had used `share` of the CPU time it used while sampled: for the
    /// control plane, about when it sent the last SnapshotEnd (it encodes at most a few
    /// messages ahead of the slowest reader).
    fn done_at(&self, share: f64) -> Option<Instant> {
        self.stop.store(true, Relaxed);
        let samples = self.samples.lock().unwrap();
        let (first, last) = (samples.first()?.1, samples.last()?.1);
        samples
            .iter()
            .find(|(_, cpu)| cpu - first >= (last - first) * share)
            .map(|(at, _)| *at)
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

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

/// The admin API with a bearer token.
struct Admin {
    client: AdminServiceClient<Channel>,
    auth: MetadataValue<Ascii>,
}

impl Admin {
    /// Locks or unlocks `user`; the revision of the change.
    async fn set_locked(&mut self, user: &str, locked: bool) -> u64 {
        if locked {
            let mut request = tonic::Request::new(pb::LockUserRequest {
                user: user.to_owned(),
                reason: "fleet bench".into(),
            });
            request
                .metadata_mut()
                .insert("authorization", self.auth.clone());
            self.client
                .lock_user(request)
                .await
                .unwrap()
                .into_inner()
                .revision
        } else {
            let mut request = tonic::Request::new(pb::UnlockUserRequest {
                user: user.to_owned(),
            });
            request
                .metadata_mut()
                .insert("authorization", self.auth.clone());
            self.client
                .unlock_user(request)
                .await
                .unwrap()
                .into_inner()
                .revision
        }
    }
}

// ---- 1. full snapshot ----

/// One sidecar's start, measured.
struct Arrival {
    grpc_up: Duration,
    applied: Duration,
    answered: Duration,
    bytes: u64,
    elapsed_ms: u64,
    users: u64,
    revision: u64,
    rss_mib: u64,
    peak_mib: u64,
    cpu_secs: f64,
    /// When its apply thread first used CPU: about when the stream's SnapshotEnd arrived.
    build_started: Option<Duration>,
}

/// CPU seconds in a `/proc/.../stat` file (0 if unreadable).
fn stat_cpu_secs(stat: &Path) -> f64 {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?.to_owned();
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            Some(fields.get(11)? + fields.get(12)?)
        })
        .map_or(0.0, |ticks| ticks as f64 / 100.0)
}

/// The `stat` file of a sidecar's apply thread (`sidecar-apply`), once it has started: it
/// waits for a whole snapshot and uses no CPU before one has arrived.
fn apply_thread(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "sidecar-apply")
        })
        .map(|task| task.path().join("stat"))
}

/// Watches sidecars' apply threads every 10 ms until each has used CPU; when each first did
/// (about when the stream's SnapshotEnd arrived: the apply thread then starts the build).
fn watch_builds(pids: Vec<u32>) -> std::thread::JoinHandle<Vec<Option<Instant>>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        let mut threads = vec![None; pids.len()];
        let mut started = vec![None; pids.len()];
        while started.iter().any(Option::is_none) && Instant::now() < deadline {
            for ((pid, thread), at) in pids.iter().zip(threads.iter_mut()).zip(started.iter_mut()) {
                if thread.is_none() {
                    *thread = apply_thread(*pid);
                }
                if let Some(stat) = thread.as_ref()
                    && at.is_none()
                    && stat_cpu_secs(stat) > 0.0
                {
                    *at = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        started
    })
}

fn spawn_sidecar(name: &str, upstream: &str, token_file: &str) -> Proc {
    Proc::spawn(
        name,
        &[
            "sidecar",
            "--upstream",
            upstream,
            "--upstream-token-file",
            token_file,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--max-staleness",
            "60s",
        ],
    )
}

/// Waits for `sidecar` to have its snapshot and to answer `probe` at `revision` (polling once
/// the snapshot is logged, so the polls do not compete with its build); reads its memory and CPU
/// right then.
async fn arrival(
    name: String,
    pid: u32,
    spawned: Instant,
    log: Log,
    probe: pb::CheckRequest,
    revision: u64,
) -> (Arrival, DecisionServiceClient<Channel>) {
    let (l, n) = (log.clone(), name.clone());
    let (grpc_at, line) = tokio::task::spawn_blocking(move || l.wait(" grpc_addr=", &n))
        .await
        .unwrap();
    let mut client = DecisionServiceClient::new(
        connect(&format!("http://{}", field(&line, "grpc_addr").unwrap())).await,
    );
    let (l, n) = (log.clone(), name.clone());
    let (applied_at, line) =
        tokio::task::spawn_blocking(move || l.wait("full snapshot applied", &n))
            .await
            .unwrap();
    let request = pb::CheckRequest {
        min_revision: revision,
        ..probe
    };
    let answered_at = loop {
        match client.check(request.clone()).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                if answer.reason() != pb::Reason::StaleSnapshot && answer.revision >= revision {
                    break Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            Err(status) => panic!("{name}: Check failed: {status}"),
        }
    };
    let arrival = Arrival {
        grpc_up: grpc_at - spawned,
        applied: applied_at - spawned,
        answered: answered_at - spawned,
        bytes: number(&line, "bytes"),
        elapsed_ms: number(&line, "elapsed_ms"),
        users: number(&line, "users"),
        revision: number(&line, "revision"),
        rss_mib: pid_status_kib(pid, "VmRSS:") / 1024,
        peak_mib: pid_status_kib(pid, "VmHWM:") / 1024,
        cpu_secs: pid_cpu_secs(pid),
        build_started: None,
    };
    (arrival, client)
}

/// Starts `names.len()` sidecars at once and waits for all of them to answer at `revision`.
async fn start_sidecars(
    names: &[String],
    upstream: &str,
    token_file: &str,
    probe: &pb::CheckRequest,
    revision: u64,
) -> Vec<(Proc, Arrival, DecisionServiceClient<Channel>)> {
    let procs: Vec<Proc> = names
        .iter()
        .map(|name| spawn_sidecar(name, upstream, token_file))
        .collect();
    let builds = watch_builds(procs.iter().map(Proc::pid).collect());
    let tasks: Vec<_> = procs
        .iter()
        .map(|p| {
            tokio::spawn(arrival(
                p.name.clone(),
                p.pid(),
                p.spawned,
                p.log.clone(),
                probe.clone(),
                revision,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (proc, task) in procs.into_iter().zip(tasks) {
        let (arrival, client) = task.await.unwrap();
        out.push((proc, arrival, client));
    }
    let builds = tokio::task::spawn_blocking(move || builds.join().unwrap())
        .await
        .unwrap();
    for ((proc, arrival, _), started) in out.iter_mut().zip(builds) {
        arrival.build_started = started.map(|at| at - proc.spawned);
    }
    out
}

fn print_arrival(name: &str, a: &Arrival) {
    println!(
        "  {name:<10} gRPC up {:>5.0} ms | building from {:>6.2} s, snapshot applied {:>6.2} s after \
         spawn (elapsed_ms {:>6}, {:>6.1} MB, {} users, revision {}) | Check at the revision \
         {:>6.2} s | RSS {:>5} MiB, peak {:>5} MiB | CPU {:>5.2} s",
        ms(a.grpc_up),
        a.build_started.unwrap_or_default().as_secs_f64(),
        a.applied.as_secs_f64(),
        a.elapsed_ms,
        a.bytes as f64 / 1e6,
        a.users,
        a.revision,
        a.answered.as_secs_f64(),
        a.rss_mib,
        a.peak_mib,
        a.cpu_secs
    );
}

/// A sidecar's log from spawn, each line's offset from spawn (from when it reached us).
fn print_timeline(p: &Proc) {
    for (at, line) in p.log.lines.lock().unwrap().iter() {
        // Drop the child's own timestamp: the offset says when.
        let text = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
        println!(
            "    {:>8.1} ms  {}",
            ms(at.saturating_duration_since(p.spawned)),
            text.trim()
        );
    }
}

/// The stream alone: a bare Watch from nothing, read by this process (prost decoding only).
async fn bare_stream(upstream: &str) -> (Duration, Duration, usize, u64) {
    let channel = connect(upstream).await;
    let auth: MetadataValue<Ascii> = format!("Bearer {SIDECAR_TOKEN}").parse().unwrap();
    let mut client =
        SnapshotServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", auth.clone());
            Ok(r)
        })
        .max_decoding_message_size(64 * 1024 * 1024);
    let asked = Instant::now();
    let mut stream = client
        .watch(pb::WatchRequest {
            format: fleet::FORMAT,
            store_id: String::new(),
            from_revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut begin = None;
    let mut messages = 0;
    let mut users = 0;
    while let Some(message) = stream.message().await.unwrap() {
        messages += 1;
        match message.event {
            Some(pb::watch_event::Event::Begin(_)) => begin = Some(Instant::now()),
            Some(pb::watch_event::Event::Chunk(chunk)) => users += chunk.users.len() as u64,
            Some(pb::watch_event::Event::End(_)) => {
                let begin = begin.unwrap();
                return (begin - asked, begin.elapsed(), messages, users);
            }
            _ => {}
        }
    }
    panic!("the stream ended before SnapshotEnd");
}

// ---- 2. change → every sidecar ----

/// The answer shows the user locked (or, unlocked, allowed again as the workload expects).
fn shows(answer: &pb::CheckResponse, locked: bool) -> bool {
    if locked {
        answer.reason() == pb::Reason::UserLocked
    } else {
        answer.decision() == pb::Decision::Allow
    }
}

#[derive(Default)]
struct Changes {
    call: [Vec<Duration>; 2],
    /// [unlock, lock] × [min_revision, pollers]: from the acknowledgment until every sidecar.
    all: [[Vec<Duration>; 2]; 2],
    /// Each sidecar's own time, with `min_revision`.
    each: Vec<Duration>,
    /// Pollers' sightings before the acknowledgment arrived, of all pollers.
    early: usize,
    polled: usize,
    /// Checks with `min_revision` that the sidecar answered FAILED_PRECONDITION (the revision
    /// was not there within its 100 ms wait), asked again; (which sidecar, lock?) each.
    retried: Vec<(usize, bool)>,
    violations: Vec<String>,
}

/// One lock or unlock of `target`, measured one way.
async fn one_change(
    admin: &mut Admin,
    sidecars: &[DecisionServiceClient<Channel>],
    target: &pb::CheckRequest,
    locked: bool,
    pollers: bool,
    out: &mut Changes,
) {
    let mut polling = Vec::new();
    if pollers {
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(2 * sidecars.len());
        for (i, client) in sidecars.iter().enumerate() {
            let mut client = client.clone();
            let request = target.clone();
            let ready = ready_tx.clone();
            polling.push(tokio::spawn(async move {
                let deadline = Instant::now() + POLL_LIMIT;
                let mut first = true;
                loop {
                    let answer = client.check(request.clone()).await.unwrap().into_inner();
                    if shows(&answer, locked) {
                        let at = Instant::now();
                        let _ = ready.send(()).await;
                        return Ok(at);
                    }
                    if first {
                        first = false;
                        let _ = ready.send(()).await;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("sidecar {i} never showed locked={locked}"));
                    }
                }
            }));
        }
        // Every poller has had its first answer (the old state) before the change is made.
        for _ in 0..sidecars.len() {
            ready_rx.recv().await.unwrap();
        }
    }
    let sent = Instant::now();
    let revision = admin.set_locked(&target.user, locked).await;
    let acked = Instant::now();
    out.call[usize::from(locked)].push(acked - sent);
    let mut seen = Vec::new();
    if pollers {
        for task in polling {
            match task.await.unwrap() {
                Ok(at) => {
                    out.polled += 1;
                    if at < acked {
                        out.early += 1;
                    }
                    seen.push(at);
                }
                Err(e) => out.violations.push(e),
            }
        }
    } else {
        let request = pb::CheckRequest {
            min_revision: revision,
            ..target.clone()
        };
        let checks = sidecars.iter().map(|client| {
            let mut client = client.clone();
            let request = request.clone();
            async move {
                let mut retries = 0;
                loop {
                    match client.check(request.clone()).await {
                        Ok(answer) => return (Instant::now(), answer.into_inner(), retries),
                        // Not there within the server's wait: ask again.
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => retries += 1,
                        Err(s) => panic!("Check failed: {s}"),
                    }
                }
            }
        });
        for (i, (at, answer, retries)) in futures_util::future::join_all(checks)
            .await
            .into_iter()
            .enumerate()
        {
            out.retried
                .extend(std::iter::repeat_n((i, locked), retries));
            if answer.revision < revision || !shows(&answer, locked) {
                out.violations.push(format!(
                    "sidecar {i}: {} locked={locked} at revision {revision}: answered {:?}/{:?} \
                     at revision {}",
                    target.user,
                    answer.decision(),
                    answer.reason(),
                    answer.revision
                ));
            }
            out.each.push(at - acked);
            seen.push(at);
        }
    }
    if let Some(last) = seen.iter().max() {
        out.all[usize::from(locked)][usize::from(pollers)]
            .push(last.saturating_duration_since(acked));
    }
}

// ---- main ----

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let preset = std::env::var("PORTCULLIS_BENCH_PRESET").unwrap_or_else(|_| "medium".into());
    let params = workload::Params::preset(&preset).unwrap();
    let changes =
        env_usize("PORTCULLIS_BENCH_CHANGES").unwrap_or(if preset == "large" { 100 } else { 200 });
    let mut sidecar_count = env_usize("PORTCULLIS_BENCH_SIDECARS").unwrap_or(SIDECARS);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    println!(
        "fleet bench, {preset}, at {commit} (working tree), {:04}-{:02}-{:02} {:02}:{:02} UTC; \
         load average {}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let started = Instant::now();
    let mut generated = workload::generate(&params).unwrap();
    let requests = std::mem::take(&mut generated.files.requests);
    println!(
        "{preset}: {} users, {} groups, {} policies, {} requests (generated in {:.1} s)",
        generated.files.users.len(),
        generated.files.groups.len(),
        generated.files.policies.len(),
        requests.len(),
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    match std::env::var_os("PORTCULLIS_BENCH_DATA").map(std::path::PathBuf::from) {
        Some(source) => {
            if !source.join("db").exists() {
                let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
                import(&source, &model);
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
            import(&data, &model);
        }
    }

    // The admin: the first active user (never one of the users locked below).
    let admin_user = generated
        .files
        .users
        .iter()
        .find(|u| u.active && !u.locked)
        .map(|u| u.id.clone())
        .unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "token",
            "create",
            "--data-dir",
            path(&data),
            "--user",
            &admin_user,
            "--role",
            "admin",
            "--name",
            "fleet-bench",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    println!(
        "  admin token for {admin_user} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let token_file = dir.path().join("sidecar-token");
    std::fs::write(&token_file, format!("{SIDECAR_TOKEN}\n")).unwrap();
    let token_file = path(&token_file).to_owned();

    // The users to lock: a request of the workload allows each of them (checked below).
    let mut pick = Picker(42);
    let allowed: Vec<&workload::format::RequestLine> = requests
        .iter()
        .filter(|r| r.expected.decision == pdp::Action::Allow && r.user != admin_user)
        .collect();
    let mut taken = HashSet::new();
    let mut candidates: Vec<pb::CheckRequest> = Vec::new();
    let mut tries = 0;
    while candidates.len() < changes * 3 && tries < changes * 60 && !allowed.is_empty() {
        tries += 1;
        let r = allowed[pick.below(allowed.len())];
        if taken.insert(r.user.clone()) {
            candidates.push(pb::CheckRequest {
                user: r.user.clone(),
                agent: r.agent.clone(),
                connector: r.connector.clone(),
                tool: r.tool.clone(),
                ..Default::default()
            });
        }
    }
    drop(requests);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut procs: Vec<Proc> = Vec::new();
    runtime.block_on(async {
        // ---- the control plane ----
        let control = Proc::spawn(
            "control",
            &[
                "serve",
                "--data-dir",
                path(&data),
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--sidecar-token-file",
                &token_file,
            ],
        );
        let upstream = {
            let c = control.log.clone();
            tokio::task::spawn_blocking(move || c.wait(" grpc_addr=", "the control plane"))
                .await
                .unwrap()
        };
        let serving = upstream.0 - control.spawned;
        let upstream = format!("http://{}", field(&upstream.1, "grpc_addr").unwrap());
        let built = control
            .log
            .find("elapsed_ms=")
            .map(|(_, l)| l.split_once(' ').map_or(l.as_str(), |(_, rest)| rest.trim()).to_owned())
            .unwrap_or_default();
        println!(
            "Control plane: serving {:.1} s after spawn ({built}); RSS {} MiB, peak {} MiB",
            serving.as_secs_f64(),
            control.rss_mib(),
            control.peak_mib()
        );
        let channel = connect(&upstream).await;
        let mut decisions = DecisionServiceClient::new(channel.clone());
        let mut admin = Admin {
            client: AdminServiceClient::new(channel),
            auth: format!("Bearer {secret}").parse().unwrap(),
        };
        // Keep the users the control plane allows as the workload says.
        let mut targets = Vec::new();
        for batch in candidates.chunks(1000) {
            let answers = decisions
                .batch_check(pb::BatchCheckRequest {
                    checks: batch.to_vec(),
                })
                .await
                .unwrap()
                .into_inner()
                .results;
            for (request, answer) in batch.iter().zip(answers) {
                if answer.decision() == pb::Decision::Allow && targets.len() < changes * 2 {
                    targets.push(request.clone());
                }
            }
        }
        let probe = targets[0].clone();
        let revision = decisions
            .check(probe.clone())
            .await
            .unwrap()
            .into_inner()
            .revision;

        // ---- 1. full snapshot ----
        tokio::time::sleep(Duration::from_secs(2)).await;
        let available = mem_available_mib();
        // A sidecar holds about what the control plane does (the view and the snapshot, no
        // sled cache); keep a margin.
        let fit = (available as f64 / (control.rss_mib() as f64 * 1.3)).floor() as usize;
        if fit < sidecar_count {
            println!(
                "  only {fit} sidecars fit in {available} MiB available (control plane RSS {} MiB): \
                 starting {fit}",
                control.rss_mib()
            );
            sidecar_count = fit.max(1);
        }
        let (cp_rss, cp_cpu, busy) = (control.rss_mib(), control.cpu_secs(), machine_busy_secs());
        let sampler = CpuSampler::start(control.pid());
        let t = Instant::now();
        let names: Vec<String> = (1..=sidecar_count).map(|i| format!("sidecar {i}")).collect();
        let fleet = start_sidecars(&names, &upstream, &token_file, &probe, revision).await;
        let encoded = sampler.done_at(0.97).map(|at| at - t);
        let secs = t.elapsed().as_secs_f64();
        let (cp_cpu_used, busy_used) = (control.cpu_secs() - cp_cpu, machine_busy_secs() - busy);
        println!(
            "Full snapshot, {sidecar_count} sidecars started at once (control plane at revision \
             {revision}; MemAvailable {available} MiB before):"
        );
        for (p, a, _) in &fleet {
            print_arrival(&p.name, a);
        }
        let sidecar_cpu: f64 = fleet.iter().map(|(_, a, _)| a.cpu_secs).sum();
        println!(
            "  control plane: RSS {cp_rss} MiB before, {} MiB after, peak {} MiB; CPU {:.2} s for \
             the {sidecar_count} snapshots, 97% of it spent {:.2} s after the spawns",
            control.rss_mib(),
            control.peak_mib(),
            cp_cpu_used,
            encoded.unwrap_or_default().as_secs_f64()
        );
        println!(
            "  the machine over those {secs:.1} s: {:.2} cores busy (control plane {:.2}, sidecars \
             {:.2}, the rest {:.2})",
            busy_used / secs,
            cp_cpu_used / secs,
            sidecar_cpu / secs,
            (busy_used - cp_cpu_used - sidecar_cpu).max(0.0) / secs
        );
        println!("  {}'s log, from its spawn:", fleet[0].0.name);
        print_timeline(&fleet[0].0);
        let mut clients = Vec::new();
        for (p, _, client) in fleet {
            clients.push(client);
            procs.push(p);
        }

        // One more, alone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let peak = procs.iter().map(Proc::peak_mib).max().unwrap_or(0);
        let available = mem_available_mib();
        if (available as f64) < peak as f64 * 1.3 {
            println!(
                "A sidecar alone: skipped, {available} MiB available and a sidecar peaked at \
                 {peak} MiB"
            );
        } else {
            let (cp_cpu, busy) = (control.cpu_secs(), machine_busy_secs());
            let sampler = CpuSampler::start(control.pid());
            let t = Instant::now();
            let alone = start_sidecars(
                &["alone".to_owned()],
                &upstream,
                &token_file,
                &probe,
                revision,
            )
            .await;
            let secs = t.elapsed().as_secs_f64();
            let encoded = sampler.done_at(0.97).map(|at| at - t);
            let (cp_cpu_used, busy_used) =
                (control.cpu_secs() - cp_cpu, machine_busy_secs() - busy);
            println!(
                "A sidecar alone, the {} others up and idle (MemAvailable {available} MiB before):",
                procs.len()
            );
            let (p, a, _) = &alone[0];
            print_arrival(&p.name, a);
            println!(
                "  control plane: CPU {cp_cpu_used:.2} s for the snapshot, 97% of it spent {:.2} s \
                 after the spawn; RSS {} MiB, peak {} MiB; the machine {:.2} cores busy over \
                 {secs:.1} s (the rest {:.2})",
                encoded.unwrap_or_default().as_secs_f64(),
                control.rss_mib(),
                control.peak_mib(),
                busy_used / secs,
                (busy_used - cp_cpu_used - a.cpu_secs).max(0.0) / secs
            );
            println!("  its log, from its spawn:");
            print_timeline(p);
            let complaints = p.complaints();
            if !complaints.is_empty() {
                println!("  its warnings: {complaints:#?}");
            }
        }

        // The stream alone, read by a bare client.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cp_cpu = control.cpu_secs();
        let (to_begin, transfer, messages, users) = bare_stream(&upstream).await;
        println!(
            "The stream alone, read by a bare gRPC client in this process (prost decoding only): \
             first message {:.0} ms after the call, SnapshotBegin → SnapshotEnd {:.2} s, {messages} \
             messages, {users} users; control plane CPU {:.2} s",
            ms(to_begin),
            transfer.as_secs_f64(),
            control.cpu_secs() - cp_cpu
        );

        // ---- 2. change → every sidecar ----
        // Round trips with nothing pending, to each sidecar in turn; the slow ones kept with
        // when they happened (ms from the start) to tell a stall from noise.
        let baseline_checks =
            env_usize("PORTCULLIS_BENCH_BASELINE_CHECKS").unwrap_or(BASELINE_CHECKS);
        let mut baseline = Vec::new();
        let mut slow = Vec::new();
        let t0 = Instant::now();
        for i in 0..baseline_checks * clients.len() {
            let k = i % clients.len();
            let t = Instant::now();
            clients[k].check(probe.clone()).await.unwrap();
            let took = t.elapsed();
            if took > SLOW {
                slow.push(format!("{} at {:.0}: {:.1}", k + 1, ms(t - t0), ms(took)));
            }
            baseline.push(took);
        }
        let mut control_baseline = Vec::new();
        let mut control_slow = Vec::new();
        let t0 = Instant::now();
        for _ in 0..baseline_checks {
            let t = Instant::now();
            decisions.check(probe.clone()).await.unwrap();
            let took = t.elapsed();
            if took > SLOW {
                control_slow.push(format!("at {:.0}: {:.1}", ms(t - t0), ms(took)));
            }
            control_baseline.push(took);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut measured = Changes::default();
        let t = Instant::now();
        for (i, target) in targets.iter().enumerate() {
            let pollers = i % 2 == 1;
            one_change(&mut admin, &clients, target, true, pollers, &mut measured).await;
            tokio::time::sleep(PACE).await;
            one_change(&mut admin, &clients, target, false, pollers, &mut measured).await;
            tokio::time::sleep(PACE).await;
        }
        let n = clients.len();
        println!(
            "Change → all {n} sidecars: {} users locked then unlocked over the admin API, one \
             change at a time, {} ms apart ({:.1} s); half read with min_revision, half with pollers:",
            targets.len(),
            PACE.as_millis(),
            t.elapsed().as_secs_f64()
        );
        summary("Check round trip to a sidecar, nothing pending", baseline);
        println!(
            "    over {} ms: {}",
            SLOW.as_millis(),
            if slow.is_empty() {
                "none".to_owned()
            } else {
                format!("{} (sidecar at ms: took ms) {}", slow.len(), slow.join(", "))
            }
        );
        summary("the same to the control plane", control_baseline);
        println!(
            "    over {} ms: {}",
            SLOW.as_millis(),
            if control_slow.is_empty() {
                "none".to_owned()
            } else {
                format!("{} (at ms: took ms) {}", control_slow.len(), control_slow.join(", "))
            }
        );
        let [unlock_call, lock_call] = std::mem::take(&mut measured.call);
        summary("LockUser round trip", lock_call);
        summary("UnlockUser round trip", unlock_call);
        let [[unlock_min, unlock_poll], [lock_min, lock_poll]] = std::mem::take(&mut measured.all);
        summary(&format!("lock → all {n}, Check with min_revision"), lock_min);
        summary(&format!("unlock → all {n}, Check with min_revision"), unlock_min);
        summary(&format!("lock → all {n}, pollers (no min_revision)"), lock_poll);
        summary(&format!("unlock → all {n}, pollers (no min_revision)"), unlock_poll);
        summary(
            "each sidecar's Check with min_revision",
            std::mem::take(&mut measured.each),
        );
        println!(
            "  (from the acknowledgment; a poller that saw it first counts 0: {}/{} did)",
            measured.early, measured.polled
        );
        println!(
            "  Checks with min_revision answered FAILED_PRECONDITION (not there within 100 ms) and \
             asked again: {} {:?}",
            measured.retried.len(),
            measured.retried
        );
        println!(
            "  violations (wrong answer, older revision, never seen): {}",
            measured.violations.len()
        );
        for v in measured.violations.iter().take(10) {
            println!("    {v}");
        }

        let revision = decisions
            .check(probe.clone())
            .await
            .unwrap()
            .into_inner()
            .revision;
        println!("After the changes (control plane at revision {revision}):");
        for p in &procs {
            let m = metrics(&p.address("http_addr"));
            let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
            println!(
                "  {:<10} RSS {:>5} MiB | revision {} lag {} | changes {} full snapshots {} \
                 reconnects {} | snapshot bytes {}",
                p.name,
                p.rss_mib(),
                get("portcullis_snapshot_revision"),
                get("portcullis_snapshot_lag_revisions"),
                get("portcullis_snapshot_changes_total"),
                get("portcullis_full_snapshots_total"),
                get("portcullis_upstream_reconnects_total"),
                get("portcullis_full_snapshot_bytes")
            );
            let complaints = p.complaints();
            if !complaints.is_empty() {
                println!("    warnings: {complaints:#?}");
            }
        }
        println!(
            "  control plane RSS {} MiB, peak {} MiB; it sent {} full snapshots",
            control.rss_mib(),
            control.peak_mib(),
            control.log.all("sending a full snapshot").len()
        );
        let complaints = control.complaints();
        if !complaints.is_empty() {
            println!("    control plane warnings: {complaints:#?}");
        }
        procs.push(control);
    });
    // Sidecars first (the control plane is last), so they do not log its end.
    for p in procs {
        drop(p);
    }
    drop(runtime);

    // ---- 3. what a sidecar does after the stream, in this process ----
    let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
    drop(generated);
    let rss = rss_mib();
    let t = Instant::now();
    let view = store::View::from_model(model);
    let from_model = t.elapsed();
    let t = Instant::now();
    let snapshot = live::build(&view);
    let build = t.elapsed();
    println!(
        "For comparison, in this process (the generated model, with the fields the stream \
         leaves out): View::from_model {:.2} s, live::build {:.2} s; RSS +{} MiB (peak {} MiB)",
        from_model.as_secs_f64(),
        build.as_secs_f64(),
        rss_mib().saturating_sub(rss),
        peak_rss_mib()
    );
    drop((snapshot, view));
}
