//! `serve`'s decision log: drains the decision service's records into the store's decision log
//! (crate `decision-log`, written as `::decision_log` here: what `GetUser` shows as recent
//! activity) and, optionally, a JSONL file.
//!
//! Check never waits for any of it. Records cross a bounded channel with `try_send`; when the
//! channel is full the record is dropped and counted (`portcullis_decision_records_dropped_total`).
//! One task takes them off the channel in batches (whatever is queued, then what arrives in the
//! next [`FLUSH_EVERY`], up to [`MAX_BATCH`]) and hands each batch to a blocking thread: one sled
//! batch, then the file's lines. While one batch is written the next is gathered. Nothing is
//! fsynced: a crash loses what sled had not flushed yet (at most about a second of decisions, see
//! `decision_log::Writer`) and what the file's page cache held. Another task applies retention every
//! [`SWEEP_EVERY`], at most [`SWEEP_MAX`] decisions at a time in batches of [`SWEEP_BATCH`], so a
//! backlog (a retention just shortened) is removed a little at a time beside the appends.

use crate::retention::{self, Pace};
use ::decision_log::{LoggedDecision, Retention, Writer};
use anyhow::Context;
use pdp_service::Record;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a batch waits for more records once it has one.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// The most records in one batch.
pub const MAX_BATCH: usize = 4096;
/// How often retention runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most decisions one retention run removes.
pub const SWEEP_MAX: usize = 200_000;
/// Decisions removed per sled batch.
pub const SWEEP_BATCH: usize = 10_000;
/// How long [`DecisionLog::finish`] waits for the last batches.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// The decision log's settings, flattened into `serve`'s.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "decision_log_args")]
pub struct Args {
    /// How long the decision log keeps a decision (GetUser's recent activity reads it): older
    /// ones are removed in the background.
    #[arg(
        long = "decision-log-retention",
        env = "PORTCULLIS_DECISION_LOG_RETENTION",
        default_value = "30d",
        value_parser = positive_duration
    )]
    pub decision_log_retention: Duration,
    /// The most decisions the decision log keeps, the oldest removed first (about 250 bytes each
    /// on disk); 0 keeps none.
    #[arg(
        long = "decision-log-max-records",
        env = "PORTCULLIS_DECISION_LOG_MAX_RECORDS",
        default_value_t = ::decision_log::DECISION_LOG_MAX_RECORDS
    )]
    pub decision_log_max_records: u64,
    /// Also append every logged decision to this file, one JSON object a line (created if
    /// missing; never rotated or synced by Portcullis).
    #[arg(long = "decision-log-file", env = "PORTCULLIS_DECISION_LOG_FILE")]
    pub decision_log_file: Option<PathBuf>,
    /// Decisions waiting for the decision log: past this many, a decision is dropped from the
    /// log (and counted in portcullis_decision_records_dropped_total), never waited for.
    #[arg(
        long = "decision-log-queue",
        env = "PORTCULLIS_DECISION_LOG_QUEUE",
        default_value_t = 16_384,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub decision_log_queue: u32,
}

impl Args {
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: self.decision_log_retention,
            max_records: self.decision_log_max_records,
        }
    }

    /// The capacity of the decision service's record channel (`Recorder::channel`).
    pub fn queue(&self) -> usize {
        self.decision_log_queue as usize
    }
}

pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than 0".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The running decision log: a writer and a sweeper task. Dropping it stops them as
/// [`DecisionLog::finish`] does, without waiting.
#[derive(Debug)]
#[must_use = "dropping the decision log stops it"]
pub struct DecisionLog {
    stop: watch::Sender<bool>,
    writer: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl DecisionLog {
    /// Opens the log of `store` (and the file, if any) and starts draining `records` into them,
    /// on the current tokio runtime. Fails if the file cannot be opened for appending.
    pub fn start(
        store: &Store,
        records: mpsc::Receiver<Record>,
        args: &Args,
    ) -> anyhow::Result<DecisionLog> {
        let log = Writer::open(store, args.retention()).context("cannot open the decision log")?;
        let file = match &args.decision_log_file {
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let cannot = || format!("cannot open the decision log file `{}`", path.display());
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(crate::file_modes::FILE_MODE)
                    .open(path)
                    .with_context(cannot)?;
                crate::file_modes::tighten_file(&file, path).with_context(cannot)?;
                Some(file)
            }
            None => None,
        };
        let sink = Arc::new(Sink {
            log,
            file: file.map(|f| Mutex::new(BufWriter::with_capacity(256 * 1024, f))),
            store_failing: AtomicBool::new(false),
            file_failing: AtomicBool::new(false),
        });
        let (stop, stopped) = watch::channel(false);
        let writer = tokio::spawn(drain(records, Arc::clone(&sink), stopped.clone()));
        let pace = Pace {
            every: SWEEP_EVERY,
            max: SWEEP_MAX,
        };
        let sweeper = tokio::spawn(retention::run("decision log", pace, stopped, move || {
            sink.log.sweep(now_ms(), SWEEP_BATCH)
        }));
        info!(
            retention = %humantime::format_duration(args.decision_log_retention),
            max_records = args.decision_log_max_records,
            file = args.decision_log_file.as_ref().map(|p| p.display().to_string()),
            "keeping a decision log"
        );
        Ok(DecisionLog {
            stop,
            writer,
            sweeper,
        })
    }

    /// Stops taking records (later ones are dropped and counted), writes what was queued and
    /// waits for it, at most a few seconds. For a clean shutdown, after the servers stopped.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let both = async {
            let _ = self.writer.await;
            let _ = self.sweeper.await;
        };
        if tokio::time::timeout(FINISH_WITHIN, both).await.is_err() {
            warn!("the decision log did not finish writing in time; its last decisions are lost");
        }
    }
}

/// Where batches go, on a blocking thread.
struct Sink {
    log: Writer,
    file: Option<Mutex<BufWriter<File>>>,
    /// Whether the last write failed, so a failure is logged once, not per batch.
    store_failing: AtomicBool,
    file_failing: AtomicBool,
}

impl Sink {
    fn write(&self, records: Vec<Record>) {
        let mut batch: Vec<LoggedDecision> =
            records.into_iter().map(admin::activity::logged).collect();
        let stored = self.log.append(&mut batch);
        report(&self.store_failing, "the decision log in the store", stored);
        if let Some(file) = &self.file {
            let written = match file.lock() {
                Ok(mut file) => append_lines(&mut *file, &batch),
                Err(_) => Err(std::io::Error::other("a writer panicked")),
            };
            report(&self.file_failing, "the decision log file", written);
        }
    }

    /// Hands what the store was given to the operating system (see `decision_log::Writer::flush`).
    fn flush(&self) {
        report(
            &self.store_failing,
            "the decision log in the store",
            self.log.flush(),
        );
    }
}

/// Logs the first failure of a run of them, and the recovery.
fn report<E: std::fmt::Display>(failing: &AtomicBool, what: &str, result: Result<(), E>) {
    match result {
        Ok(()) => {
            if failing.swap(false, Ordering::Relaxed) {
                info!("writing {what} works again");
            }
        }
        Err(error) => {
            if !failing.swap(true, Ordering::Relaxed) {
                warn!(%error, "cannot write {what}; its decisions are lost until it works again");
            }
        }
    }
}

/// One JSON object a line per decision, flushed to the file (not synced).
fn append_lines(out: &mut impl Write, batch: &[LoggedDecision]) -> std::io::Result<()> {
    for decision in batch {
        serde_json::to_writer(&mut *out, &json(decision))?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A decision as its JSONL line has it.
pub fn json(d: &LoggedDecision) -> serde_json::Value {
    let time = pdp::Timestamp(d.time_ms).rfc3339();
    serde_json::json!({
        "decision_id": d.decision_id,
        "time": time,
        "user": d.user,
        "user_id": d.user_id,
        "agent": d.agent,
        "connector": d.connector,
        "tool": d.tool,
        "decision": workload::action_name(d.action),
        "reason": workload::reason_name(d.reason),
        "policy_id": d.policy_id,
        "approval_id": d.approval_id,
        "revision": d.revision,
        "latency_ns": d.latency_ns,
    })
}

/// Takes records off the channel in batches and writes each on a blocking thread, gathering the
/// next meanwhile. Once told to stop it closes the channel, writes what was queued, and ends.
async fn drain(
    mut records: mpsc::Receiver<Record>,
    sink: Arc<Sink>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut writing: Option<JoinHandle<()>> = None;
    let mut stopping = false;
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if !stopping {
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => {
                    stopping = true;
                    records.close();
                }
                _ = records.recv_many(&mut batch, MAX_BATCH) => {}
            }
        }
        if stopping {
            // Closed: whatever is still queued, then 0.
            records.recv_many(&mut batch, MAX_BATCH).await;
        } else if !batch.is_empty() {
            let deadline = Instant::now() + FLUSH_EVERY;
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    biased;
                    _ = stopped.wait_for(|stop| *stop) => {
                        stopping = true;
                        records.close();
                        break;
                    }
                    got = records.recv_many(&mut batch, room) => if got == 0 { break },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let done = batch.is_empty();
        if let Some(previous) = writing.take() {
            let _ = previous.await;
        }
        if done {
            // The channel is closed and empty (stopped, or every sender is gone): make what was
            // written outlive the process.
            let _ = tokio::task::spawn_blocking(move || sink.flush()).await;
            return;
        }
        let sink = Arc::clone(&sink);
        writing = Some(tokio::task::spawn_blocking(move || sink.write(batch)));
    }
}

fn now_ms() -> i64 {
    pdp::Timestamp::now().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp::{Action, Reason};

    #[test]
    fn a_line_names_every_field() {
        let decision = LoggedDecision {
            seq: 1,
            time_ms: 1_767_225_600_123,
            decision_id: "abc".into(),
            user: "Alice@Example.com".into(),
            user_id: Some("u1".into()),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "create_issue".into(),
            action: Action::RequireApproval,
            reason: Reason::Policy,
            policy_id: Some("p1".into()),
            revision: 7,
            latency_ns: 12_500,
            approval_id: Some("apr_1".into()),
        };
        let mut out = Vec::new();
        append_lines(&mut out, std::slice::from_ref(&decision)).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "decision_id": "abc", "time": "2026-01-01T00:00:00.123Z",
                "user": "Alice@Example.com", "user_id": "u1", "agent": "claude",
                "connector": "github", "tool": "create_issue",
                "decision": "REQUIRE_APPROVAL", "reason": "POLICY", "policy_id": "p1",
                "approval_id": "apr_1", "revision": 7, "latency_ns": 12_500,
            })
        );
        assert!(out.ends_with(b"}\n"));
    }

    #[test]
    fn retention_must_be_positive() {
        assert_eq!(
            positive_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("soon").is_err());
    }
}
