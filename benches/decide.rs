//! In-process `Snapshot::decide` over a generated workload's requests, and what a snapshot costs
//! to build and hold.
//!
//! ```sh
//! cargo bench --bench decide                              # small and medium
//! PORTCULLIS_BENCH_LARGE=1 cargo bench --bench decide     # and large (1M users)
//! ```
//!
//! Besides criterion's per-call time over the request mix, prints the per-request latency
//! distribution (p50, p99, each call timed alone, so timer overhead is included and reported),
//! the snapshot build time and the resident memory the snapshot adds per user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput};
use pdp::{NoAttributes, Request, Snapshot};
use std::hint::black_box;
use std::time::Instant;

struct Case {
    preset: &'static str,
    snapshot: Snapshot,
    requests: Vec<(String, String, String, String)>,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn prepare(preset: &'static str) -> Case {
    let params = workload::Params::preset(preset).unwrap();
    let generated = workload::generate(&params).unwrap();
    let model = generated.files.to_model(pdp::Timestamp(0));
    let before = rss_bytes();
    let started = Instant::now();
    let snapshot = Snapshot::build(&model);
    let build = started.elapsed();
    let added = rss_bytes().saturating_sub(before);
    println!(
        "{preset}: {} users, {} policies; snapshot build {:.0} ms; snapshot RSS {:.1} MiB ({:.0} bytes per user)",
        snapshot.user_count(),
        snapshot.policy_count(),
        build.as_secs_f64() * 1000.0,
        added as f64 / (1 << 20) as f64,
        added as f64 / snapshot.user_count().max(1) as f64
    );
    let requests = generated
        .files
        .requests
        .iter()
        .map(|r| {
            (
                r.user.clone(),
                r.agent.clone(),
                r.connector.clone(),
                r.tool.clone(),
            )
        })
        .collect();
    Case {
        preset,
        snapshot,
        requests,
    }
}

fn request(r: &(String, String, String, String)) -> Request<'_> {
    Request {
        user: &r.0,
        agent: &r.1,
        connector: &r.2,
        tool: &r.3,
        attributes: &NoAttributes,
    }
}

/// Times every request alone, a few passes over the workload, and prints percentiles.
fn percentiles(case: &Case) {
    let timer_overhead = {
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| {
                let t = Instant::now();
                black_box(());
                t.elapsed().as_nanos() as u64
            })
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut samples = Vec::with_capacity(case.requests.len() * 3);
    for _ in 0..3 {
        for r in &case.requests {
            let req = request(r);
            let t = Instant::now();
            black_box(case.snapshot.decide(black_box(&req)));
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{}: decide per request, timed alone: p50 {} ns, p99 {} ns, p99.9 {} ns (timer overhead ~{} ns included)",
        case.preset,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        timer_overhead
    );
}

fn main() {
    let mut presets = vec!["small", "medium"];
    if std::env::var_os("PORTCULLIS_BENCH_LARGE").is_some() {
        presets.push("large");
    }
    let mut c = Criterion::default().configure_from_args();
    for preset in presets {
        let case = prepare(preset);
        percentiles(&case);
        let mut group = c.benchmark_group("decide");
        group.throughput(Throughput::Elements(1));
        group.bench_function(preset, |b| {
            let mut i = 0;
            b.iter(|| {
                let r = &case.requests[i];
                i = (i + 1) % case.requests.len();
                black_box(case.snapshot.decide(black_box(&request(r))))
            })
        });
        group.finish();
    }
    c.final_summary();
}
