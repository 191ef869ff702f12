//! Counters of approval requests, for metrics: what they came to, and how long people took.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the time-to-decide histogram, in seconds (then +Inf).
pub const DECIDE_BUCKETS: [u64; 8] = [10, 60, 300, 900, 3_600, 14_400, 86_400, 604_800];

/// What requests came to. Relaxed atomics: read by scrapes, written per transition.
#[derive(Debug, Default)]
pub struct Stats {
    created: AtomicU64,
    escalated: AtomicU64,
    approved: AtomicU64,
    denied: AtomicU64,
    expired: AtomicU64,
    cancelled: AtomicU64,
    /// `once` grants used by an allowed Check.
    used: AtomicU64,
    /// Approved or denied requests by how long after creation (bucket i: ≤ DECIDE_BUCKETS[i];
    /// the last: more).
    decided: [AtomicU64; DECIDE_BUCKETS.len() + 1],
    decided_ms: AtomicU64,
}

/// One outcome counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Escalated,
    Approved,
    Denied,
    Expired,
    Cancelled,
    Used,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Created,
        Outcome::Escalated,
        Outcome::Approved,
        Outcome::Denied,
        Outcome::Expired,
        Outcome::Cancelled,
        Outcome::Used,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Escalated => "escalated",
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::Used => "used",
        }
    }
}

impl Stats {
    fn counter(&self, outcome: Outcome) -> &AtomicU64 {
        match outcome {
            Outcome::Created => &self.created,
            Outcome::Escalated => &self.escalated,
            Outcome::Approved => &self.approved,
            Outcome::Denied => &self.denied,
            Outcome::Expired => &self.expired,
            Outcome::Cancelled => &self.cancelled,
            Outcome::Used => &self.used,
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        self.counter(outcome).fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counter(outcome).load(Ordering::Relaxed)
    }

    /// A request approved or denied `ms` after it was made.
    pub(crate) fn decided_after(&self, ms: i64) {
        let ms = u64::try_from(ms).unwrap_or(0);
        let secs = ms / 1000;
        let bucket = DECIDE_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DECIDE_BUCKETS.len());
        self.decided[bucket].fetch_add(1, Ordering::Relaxed);
        self.decided_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The time-to-decide histogram: per-bucket counts (not cumulative) and the sum in
    /// seconds.
    pub fn decide_times(&self) -> (Vec<u64>, f64) {
        let counts = self
            .decided
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (
            counts,
            self.decided_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}
