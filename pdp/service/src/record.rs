//! Decisions as records, handed off the hot path to whoever keeps them (the control plane's
//! decision log, which feeds the admin API's recent activity).
//!
//! Check never waits for the consumer: records go through a bounded channel with `try_send`,
//! and a full channel drops the record and counts it.

use pdp::{Action, Reason};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// One answered decision.
#[derive(Debug, Clone)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub decision_id: String,
    /// The user as the caller named them (id, email or external id).
    pub user: String,
    /// The id of the user the engine resolved `user` to, in the snapshot that decided: what
    /// the decision is recorded under (never resolved again later, against another revision).
    pub user_id: Option<String>,
    pub agent: String,
    pub connector: String,
    pub tool: String,
    pub action: Action,
    pub reason: Reason,
    pub policy_id: Option<String>,
    /// The approval request the Check carried (`approval_id`), if any.
    pub approval_id: Option<String>,
    pub revision: u64,
    /// Time in the server from the call's arrival to its answer (any `min_revision` wait
    /// included): the very interval `portcullis_check_duration_seconds` observes for a Check. The
    /// checks of one BatchCheck share the batch's.
    pub latency: Duration,
}

/// The sending side, held by the decision service.
#[derive(Debug, Clone)]
pub struct Recorder {
    sender: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder whose channel holds up to `capacity` records, and its receiving end.
    pub fn channel(capacity: usize) -> (Recorder, mpsc::Receiver<Record>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let recorder = Recorder {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (recorder, receiver)
    }

    /// Hands `record` to the consumer, or drops it if the channel is full.
    pub(crate) fn record(&self, record: Record) {
        if self.sender.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the consumer fell behind (or is gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
