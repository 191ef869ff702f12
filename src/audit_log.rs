//! `serve`'s audit log retention: by age and count, applied every [`SWEEP_EVERY`] in bounded
//! steps, like the decision log's.
//!
//! Each step ([`store::Store::sweep_audit`]) removes at most [`SWEEP_BATCH`] events in one
//! batch under the store's write lock, so a commit waits for one step at most, never for a whole
//! backlog (steps of 1,000 events of ~1 KB took 55–90 ms in a debug build, of 256 22–32 ms);
//! one run removes at most [`SWEEP_MAX`], so a retention just shortened is worked off a little at
//! a time.

use crate::retention::{self, Pace};
use std::time::Duration;
use store::{AuditRetention, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// How often retention runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most events one retention run removes.
pub const SWEEP_MAX: usize = 100_000;
/// Events removed per step, each one batch under the write lock.
pub const SWEEP_BATCH: usize = 256;

/// The audit log's settings, flattened into `serve`'s.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "audit_log_args")]
pub struct Args {
    /// How long the audit log keeps an event: older ones are removed in the background (the
    /// newest event is always kept).
    #[arg(
        long = "audit-retention",
        env = "PORTCULLIS_AUDIT_RETENTION",
        default_value = "365d",
        value_parser = crate::decision_log::positive_duration
    )]
    pub audit_retention: Duration,
    /// The most events the audit log keeps, the oldest removed first (a few hundred bytes each
    /// on disk, a few kilobytes for a change to a large policy).
    #[arg(
        long = "audit-max-records",
        env = "PORTCULLIS_AUDIT_MAX_RECORDS",
        default_value_t = store::AUDIT_MAX_RECORDS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub audit_max_records: u64,
}

impl Args {
    pub fn retention(&self) -> AuditRetention {
        AuditRetention {
            max_age: self.audit_retention,
            max_records: self.audit_max_records,
        }
    }
}

/// The running sweeper. Dropping it does not stop it: [`AuditLog::finish`] does.
#[derive(Debug)]
#[must_use = "finish it on shutdown"]
pub struct AuditLog {
    stop: watch::Sender<bool>,
    sweeper: JoinHandle<()>,
}

impl AuditLog {
    /// Starts applying `args`' retention to `store`'s audit log, on the current tokio runtime.
    pub fn start(store: &Store, args: &Args) -> AuditLog {
        let (stop, stopped) = watch::channel(false);
        let (store, retention) = (store.clone(), args.retention());
        let pace = Pace {
            every: SWEEP_EVERY,
            max: SWEEP_MAX,
        };
        let sweeper = tokio::spawn(retention::run("audit log", pace, stopped, move || {
            store.sweep_audit(retention, pdp::Timestamp::now().0, SWEEP_BATCH)
        }));
        info!(
            retention = %shown(args.audit_retention),
            max_records = args.audit_max_records,
            "keeping the audit log"
        );
        AuditLog { stop, sweeper }
    }

    /// Stops the sweeper, letting a step in progress finish.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.sweeper.await;
    }
}

/// A retention as it was most likely given: whole days as `365d` (humantime would show
/// `11months 30days 3h 50m 24s`), anything else as humantime shows it.
fn shown(retention: Duration) -> String {
    let secs = retention.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && retention.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(retention).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_show_as_given() {
        assert_eq!(shown(Duration::from_secs(365 * 86_400)), "365d");
        assert_eq!(shown(Duration::from_secs(90 * 60)), "1h 30m");
    }
}
