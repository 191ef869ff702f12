//! gRPC load generator: the real `portcullis serve` against a bare tonic DecisionService that
//! echoes a constant answer (the transport's own limit), measured by the same generator in the
//! same run, alternating so machine noise hits both alike.
//!
//! ```sh
//! cargo bench --bench grpc_load -- --preset medium --concurrency 64 --seconds 10 --rounds 3
//! ```
//!
//! Both servers run as their own processes (the echo server is this binary re-executed), so the
//! generator's CPU use is the same for both. Reports throughput, p50 and p99 per round, and the
//! median over rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pb::decision_service_client::DecisionServiceClient;
use portcullis_proto::v1 as pb;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const ECHO_ROLE: &str = "--echo-server";

struct Options {
    preset: String,
    concurrency: usize,
    seconds: u64,
    rounds: usize,
    connections: usize,
    workload: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        preset: "small".into(),
        concurrency: 64,
        seconds: 10,
        rounds: 3,
        connections: 4,
        workload: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--preset" => o.preset = value,
            "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            "--connections" => o.connections = value.parse().expect("--connections N"),
            "--workload" => o.workload = Some(PathBuf::from(value)),
            // cargo bench passes --bench; ignore flags we do not know.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn main() {
    if std::env::args().any(|a| a == ECHO_ROLE) {
        echo_server();
        return;
    }
    let o = options();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let scratch = tempfile::tempdir().unwrap();

    let workload = match &o.workload {
        Some(dir) => dir.clone(),
        None => {
            let dir = scratch.path().join("workload");
            run(Command::new(&bin)
                .args([
                    "workload", "generate", "--preset", &o.preset, "--seed", "1", "--out",
                ])
                .arg(&dir));
            dir
        }
    };
    let data = scratch.path().join("data");
    run(Command::new(&bin)
        .args(["import", "--data-dir"])
        .arg(&data)
        .arg(&workload));
    let checks = read_checks(&workload.join("requests.jsonl"));

    let (mut real, real_addr) = spawn_server(
        Command::new(&bin)
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data),
    );
    let (mut echo, echo_addr) =
        spawn_server(Command::new(std::env::current_exe().unwrap()).arg(ECHO_ROLE));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "workload {} ({} requests), {} in flight over {} connections, {} s per round, {} rounds",
            workload.display(),
            checks.len(),
            o.concurrency,
            o.connections,
            o.seconds,
            o.rounds
        );
        let duration = Duration::from_secs(o.seconds);
        let mut real_runs = Vec::new();
        let mut echo_runs = Vec::new();
        for round in 1..=o.rounds {
            let e = load(&echo_addr, &checks, o.concurrency, o.connections, duration).await;
            println!("round {round} echo      {e}");
            echo_runs.push(e);
            let r = load(&real_addr, &checks, o.concurrency, o.connections, duration).await;
            println!("round {round} portcullis {r}");
            real_runs.push(r);
        }
        let (e, r) = (Summary::median(&echo_runs), Summary::median(&real_runs));
        println!("median echo       {e}");
        println!("median portcullis {r}");
        println!("ratio portcullis/echo throughput: {:.2}", r.per_second / e.per_second);

        let single = Duration::from_secs(o.seconds.min(5));
        let s = load(&real_addr, &checks, 1, 1, single).await;
        println!("portcullis single in-flight: {s}");
        let s = load(&echo_addr, &checks, 1, 1, single).await;
        println!("echo single in-flight:       {s}");

        let b = batch_load(&real_addr, &checks, 100, o.concurrency.min(8), single).await;
        println!("portcullis BatchCheck of 100, {} in flight: {:.0} checks/s", o.concurrency.min(8), b);
    });
    let _ = real.kill();
    let _ = echo.kill();
    let _ = real.wait();
    let _ = echo.wait();
}

fn run(command: &mut Command) {
    let status = command.stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

/// Starts a server and waits for the address it logs (`grpc_addr=…` on stderr, or a bare
/// address on stdout for the echo server).
fn spawn_server(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("grpc_addr=").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server did not report its address");
    (child, format!("http://{addr}"))
}

fn read_checks(path: &Path) -> Vec<pb::CheckRequest> {
    #[derive(serde::Deserialize)]
    struct Line {
        user: String,
        agent: String,
        connector: String,
        tool: String,
    }
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file)
        .lines()
        .map(|line| {
            let line: Line = serde_json::from_str(&line.unwrap()).unwrap();
            pb::CheckRequest {
                user: line.user,
                agent: line.agent,
                connector: line.connector,
                tool: line.tool,
                ..Default::default()
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Summary {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    errors: usize,
}

impl Summary {
    fn median(runs: &[Summary]) -> Summary {
        let pick = |f: fn(&Summary) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Summary {
            per_second: pick(|s| s.per_second),
            p50_us: pick(|s| s.p50_us),
            p99_us: pick(|s| s.p99_us),
            errors: runs.iter().map(|s| s.errors).sum(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  errors {}",
            self.per_second, self.p50_us, self.p99_us, self.errors
        )
    }
}

async fn channels(addr: &str, n: usize) -> Vec<DecisionServiceClient<Channel>> {
    let mut clients = Vec::new();
    for _ in 0..n.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        clients.push(DecisionServiceClient::new(channel));
    }
    clients
}

/// Holds `concurrency` Checks in flight for `duration`, after a one-second warm-up.
async fn load(
    addr: &str,
    checks: &[pb::CheckRequest],
    concurrency: usize,
    connections: usize,
    duration: Duration,
) -> Summary {
    let clients = channels(addr, connections).await;
    let checks: Arc<[pb::CheckRequest]> = checks.into();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let (checks, stop, measuring) = (checks.clone(), stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0;
            let mut i = worker * 7919;
            while !stop.load(Ordering::Relaxed) {
                let check = checks[i % checks.len()].clone();
                i += concurrency;
                let started = Instant::now();
                let ok = client.check(check).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed().as_nanos() as u32);
                    errors += usize::from(!ok);
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Summary {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
    }
}

/// Checks per second through BatchCheck calls of `size` checks.
async fn batch_load(
    addr: &str,
    checks: &[pb::CheckRequest],
    size: usize,
    concurrency: usize,
    duration: Duration,
) -> f64 {
    let clients = channels(addr, concurrency).await;
    let batches: Arc<Vec<Vec<pb::CheckRequest>>> =
        Arc::new(checks.chunks(size).map(<[_]>::to_vec).collect());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for (worker, mut client) in clients.into_iter().enumerate() {
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut i = worker;
            while Instant::now() < deadline {
                let batch = batches[i % batches.len()].clone();
                i += concurrency;
                done += client
                    .batch_check(pb::BatchCheckRequest { checks: batch })
                    .await
                    .map_or(0, |r| r.into_inner().results.len());
            }
            done
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// The baseline: a DecisionService that does no work, answering every Check with a constant.
fn echo_server() {
    struct Echo;
    #[tonic::async_trait]
    impl pb::decision_service_server::DecisionService for Echo {
        async fn check(
            &self,
            _: tonic::Request<pb::CheckRequest>,
        ) -> Result<tonic::Response<pb::CheckResponse>, tonic::Status> {
            Ok(tonic::Response::new(pb::CheckResponse {
                step_up: None,
                challenge: String::new(),
                decision: pb::Decision::Allow.into(),
                reason: pb::Reason::Policy.into(),
                policy_id: "pol-000001".into(),
                revision: 1,
                decision_id: "00000000000000000000000000000000".into(),
                explanation: Vec::new(),
                ..Default::default()
            }))
        }
        async fn batch_check(
            &self,
            r: tonic::Request<pb::BatchCheckRequest>,
        ) -> Result<tonic::Response<pb::BatchCheckResponse>, tonic::Status> {
            let n = r.into_inner().checks.len();
            Ok(tonic::Response::new(pb::BatchCheckResponse {
                results: vec![pb::CheckResponse::default(); n],
            }))
        }
        async fn list_allowed_tools(
            &self,
            _: tonic::Request<pb::ListAllowedToolsRequest>,
        ) -> Result<tonic::Response<pb::ListAllowedToolsResponse>, tonic::Status> {
            Ok(tonic::Response::new(pb::ListAllowedToolsResponse::default()))
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("grpc_addr={}", listener.local_addr().unwrap());
        tonic::transport::Server::builder()
            .add_service(pb::decision_service_server::DecisionServiceServer::new(
                Echo,
            ))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await
            .unwrap();
    });
}
