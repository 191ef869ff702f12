//! What decisions and publishes leave behind for metrics: decisions by (decision, reason), the
//! Check latency histogram, and how the snapshots an [`crate::Engine`] answers from were made.
//!
//! Plain atomics, updated with relaxed adds and stores: the Check path neither allocates nor
//! locks for them (a prometheus-client `Histogram` takes a lock per observation; this one does
//! not). Whoever exports them reads them at scrape time (the binary's `/metrics`, through a
//! prometheus-client collector); a scrape may see one observation's bucket without its sum, never
//! a torn value.

use portcullis_proto::v1 as pb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `pb::Decision` values, `DECISION_UNSPECIFIED` (0) to `DECISION_DENY` (4).
const DECISIONS: usize = 5;
/// `pb::Reason` values, `REASON_UNSPECIFIED` (0) to `REASON_STEP_UP_MET` (11); a test checks
/// that it covers every one.
const REASONS: usize = 13;

/// Upper bounds of the Check latency buckets, from a microsecond (an answer from memory) to
/// 100 ms (a `min_revision` wait gives up at [`crate::MAX_REVISION_WAIT`], so those land in
/// `+Inf`).
pub const CHECK_BUCKETS: [Duration; 16] = [
    Duration::from_micros(1),
    Duration::from_nanos(2_500),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// [`CHECK_BUCKETS`] in nanoseconds, for placing an observation without converting bounds.
const CHECK_BUCKETS_NS: [u64; CHECK_BUCKETS.len()] = {
    let mut ns = [0; CHECK_BUCKETS.len()];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = CHECK_BUCKETS[i].as_nanos() as u64;
        i += 1;
    }
    ns
};

/// Answered checks by (decision, reason) and the Check latency histogram, shared by every clone
/// of a [`crate::DecisionService`] given it with
/// [`with_metrics`](crate::DecisionService::with_metrics).
#[derive(Debug)]
pub struct DecisionMetrics {
    /// Indexed by `decision * REASONS + reason`, the wire values.
    decisions: [AtomicU64; DECISIONS * REASONS],
    check: Histogram,
}

impl Default for DecisionMetrics {
    fn default() -> DecisionMetrics {
        DecisionMetrics {
            decisions: std::array::from_fn(|_| AtomicU64::new(0)),
            check: Histogram::default(),
        }
    }
}

impl DecisionMetrics {
    pub fn new() -> DecisionMetrics {
        DecisionMetrics::default()
    }

    /// Counts one answered check by its wire decision and reason. One relaxed add; values out
    /// of range (none are made) are ignored rather than panicking.
    pub fn count(&self, decision: i32, reason: i32) {
        let (Ok(d), Ok(r)) = (usize::try_from(decision), usize::try_from(reason)) else {
            return;
        };
        if d < DECISIONS && r < REASONS {
            self.decisions[d * REASONS + r].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long one Check took, from the handler's entry to its answer.
    pub fn observe_check(&self, elapsed: Duration) {
        self.check.observe(elapsed);
    }

    /// Every (decision, reason) pair but the unspecified ones, with its count.
    pub fn decisions(&self) -> impl Iterator<Item = (pb::Decision, pb::Reason, u64)> + '_ {
        (1..DECISIONS).flat_map(move |d| {
            (1..REASONS).filter_map(move |r| {
                let decision = pb::Decision::try_from(d as i32).ok()?;
                let reason = pb::Reason::try_from(r as i32).ok()?;
                let count = self.decisions[d * REASONS + r].load(Ordering::Relaxed);
                Some((decision, reason, count))
            })
        })
    }

    /// The Check latency histogram as it stands.
    pub fn check_latency(&self) -> Latencies {
        self.check.read()
    }
}

/// A latency histogram over [`CHECK_BUCKETS`]: a counter per bucket (not cumulative; the last
/// one is `+Inf`) and the sum in nanoseconds.
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; CHECK_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Two relaxed adds; the bucket is found by scanning 16 integers.
    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn read(&self) -> Latencies {
        Latencies {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
        }
    }
}

/// The bucket of an observation of `ns` nanoseconds: the first whose bound it does not exceed
/// (Prometheus' `le`), else `+Inf`.
fn bucket(ns: u64) -> usize {
    CHECK_BUCKETS_NS
        .iter()
        .position(|&bound| ns <= bound)
        .unwrap_or(CHECK_BUCKETS_NS.len())
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latencies {
    /// Observations per bucket of [`CHECK_BUCKETS`], not cumulative; the last is `+Inf`.
    pub counts: [u64; CHECK_BUCKETS.len() + 1],
    pub sum: Duration,
}

impl Latencies {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// How the snapshots an [`crate::Engine`] answers from were made, recorded by whoever
/// publishes into it (`live::Publisher`, on the control plane and on a sidecar alike) and read
/// by metrics. Held by the engine, so every clone of it reaches the same counts.
#[derive(Debug, Default)]
pub struct PublishStats {
    applied: AtomicU64,
    built: AtomicU64,
    folds: AtomicU64,
    last_build_ns: AtomicU64,
    last_fold_ns: AtomicU64,
}

impl PublishStats {
    /// One publish: the changes applied to the last snapshot, or (`full`) a full build that
    /// took `elapsed`.
    pub fn published(&self, full: bool, elapsed: Duration) {
        if full {
            self.built.fetch_add(1, Ordering::Relaxed);
            self.last_build_ns.store(nanos(elapsed), Ordering::Relaxed);
        } else {
            self.applied.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A background build made the base: its full build took `build`, and `total` passed from
    /// its start to being published (the build, the wait for the publisher, the catch-up).
    pub fn folded(&self, build: Duration, total: Duration) {
        self.folds.fetch_add(1, Ordering::Relaxed);
        self.last_build_ns.store(nanos(build), Ordering::Relaxed);
        self.last_fold_ns.store(nanos(total), Ordering::Relaxed);
    }

    /// Publishes made by applying changes to the last snapshot.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Publishes built in full (the new view shared nothing with the last).
    pub fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Background builds made the base.
    pub fn folds(&self) -> u64 {
        self.folds.load(Ordering::Relaxed)
    }

    /// The last full build a publisher made (in a publish or a fold); zero before any.
    pub fn last_build(&self) -> Duration {
        Duration::from_nanos(self.last_build_ns.load(Ordering::Relaxed))
    }

    /// The last fold, from its start to its publish; zero before any.
    pub fn last_fold(&self) -> Duration {
        Duration::from_nanos(self.last_fold_ns.load(Ordering::Relaxed))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_they_do_not_exceed() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0, "a bound is inclusive (le)");
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(2_500), 1);
        assert_eq!(bucket(2_501), 2);
        assert_eq!(bucket(999_999), 9);
        assert_eq!(bucket(1_000_000), 9);
        assert_eq!(bucket(100_000_000), 15);
        assert_eq!(bucket(100_000_001), 16, "past the last bound is +Inf");
        assert_eq!(bucket(u64::MAX), 16);
        assert!(CHECK_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_histogram_counts_and_sums_what_it_observes() {
        let metrics = DecisionMetrics::new();
        for d in [
            Duration::from_nanos(800),
            Duration::from_micros(3),
            Duration::from_micros(3),
            Duration::from_millis(7),
            Duration::from_millis(150),
        ] {
            metrics.observe_check(d);
        }
        let read = metrics.check_latency();
        let mut expected = [0; CHECK_BUCKETS.len() + 1];
        expected[0] = 1; // 800 ns ≤ 1 µs
        expected[2] = 2; // 3 µs ≤ 5 µs
        expected[12] = 1; // 7 ms ≤ 10 ms
        expected[16] = 1; // 150 ms: +Inf
        assert_eq!(read.counts, expected);
        assert_eq!(read.count(), 5);
        assert_eq!(
            read.sum,
            Duration::from_nanos(800 + 3_000 + 3_000 + 7_000_000 + 150_000_000)
        );
    }

    #[test]
    fn decisions_are_counted_by_decision_and_reason() {
        let metrics = DecisionMetrics::new();
        let allow = pb::Decision::Allow as i32;
        let deny = pb::Decision::Deny as i32;
        metrics.count(allow, pb::Reason::Policy as i32);
        metrics.count(allow, pb::Reason::Policy as i32);
        metrics.count(deny, pb::Reason::UnknownUser as i32);
        metrics.count(deny, pb::Reason::StaleSnapshot as i32);
        metrics.count(deny, pb::Reason::AmbiguousUser as i32);
        metrics.count(allow, pb::Reason::StepUpMet as i32);
        metrics.count(99, 1);
        metrics.count(-1, 1);
        metrics.count(deny, REASONS as i32);
        let counted: Vec<_> = metrics.decisions().filter(|(_, _, n)| *n > 0).collect();
        assert_eq!(
            counted,
            [
                (pb::Decision::Allow, pb::Reason::Policy, 2),
                (pb::Decision::Allow, pb::Reason::StepUpMet, 1),
                (pb::Decision::Deny, pb::Reason::UnknownUser, 1),
                (pb::Decision::Deny, pb::Reason::StaleSnapshot, 1),
                (pb::Decision::Deny, pb::Reason::AmbiguousUser, 1),
            ]
        );
        assert_eq!(metrics.decisions().count(), 4 * (REASONS - 1));
        // Every reason on the wire has a counter.
        assert!(pb::Reason::try_from(REASONS as i32 - 1).is_ok());
        assert!(pb::Reason::try_from(REASONS as i32).is_err());
    }

    #[test]
    fn publish_stats_keep_the_last_durations() {
        let stats = PublishStats::default();
        stats.published(false, Duration::from_micros(40));
        stats.published(true, Duration::from_millis(3));
        stats.published(false, Duration::from_micros(40));
        assert_eq!((stats.applied(), stats.built(), stats.folds()), (2, 1, 0));
        assert_eq!(stats.last_build(), Duration::from_millis(3));
        stats.folded(Duration::from_millis(20), Duration::from_millis(25));
        assert_eq!(stats.folds(), 1);
        assert_eq!(stats.last_build(), Duration::from_millis(20));
        assert_eq!(stats.last_fold(), Duration::from_millis(25));
    }
}
