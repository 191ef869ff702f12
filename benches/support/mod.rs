//! What the server benches share: latency summaries, memory readings, a deterministic picker
//! and the Check request they send. Each bench uses part of it.

#![allow(dead_code)]

use portcullis_proto::v1 as pb;
use std::time::Duration;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints one row: the distribution of `samples` (p50, p90, p99, max).
pub fn summary(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("  {name:<52} n=0");
        return;
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "  {name:<52} n={:<5} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        samples.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(samples[samples.len() - 1])
    );
}

/// A field of `/proc/self/status` in KiB (0 if unreadable).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

pub fn rss_mib() -> u64 {
    status_kib("VmRSS:") / 1024
}

pub fn peak_rss_mib() -> u64 {
    status_kib("VmHWM:") / 1024
}

/// A deterministic pick from `n`, so runs compare.
pub struct Picker(pub u64);

impl Picker {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

pub fn check(user: &str, connector: &str, tool: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.to_owned(),
        agent: "bench".into(),
        connector: connector.to_owned(),
        tool: tool.to_owned(),
        ..Default::default()
    }
}

/// A field of `/proc/<pid>/status` in KiB (0 if unreadable, e.g. the process is gone).
pub fn pid_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds (0 if unreadable).
pub fn pid_cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
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
        .map_or(0.0, |ticks| ticks as f64 / 100.0)
}

/// A store in a temp dir holding `model`, an Admin token of `admin_email` minted on it, and the
/// live view over it: what the admin and console benches start from, each step timed on stdout.
/// Keep the temp dir as long as the store is used.
pub fn imported(model: pdp::Model, admin_email: &str) -> (tempfile::TempDir, live::Live, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    let started = std::time::Instant::now();
    store.import(&model).unwrap();
    drop(model);
    println!("  import {:.1} s", started.elapsed().as_secs_f64());
    let secret =
        admin::token::create_on_store(&store, admin_email, "bench", Some(pdp::Role::Admin), None)
            .unwrap()
            .secret;
    let started = std::time::Instant::now();
    let live = live::Live::start(store).unwrap();
    println!(
        "  view + first snapshot {:.1} s; peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    (dir, live, secret)
}
