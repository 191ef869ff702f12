//! The decision log: every answered decision, kept for a while, outside the model.
//!
//! It owns what the log means: the record ([`LoggedDecision`]), its encoding in blocks, the
//! per-user index, retention ([`Retention`], [`Writer::sweep`]) and the queries ([`Log`]). The
//! store only keeps the bytes, in its [`store::Journal`]; this crate must not touch sled, speak
//! a protocol or start an async runtime (its methods block). It is a crate of its own, not a
//! module of `serve` or of the admin API, because both use it: the binary's writer
//! (`src/decision_log.rs`) appends and sweeps, the admin API (`admin/src/activity.rs`) reads a
//! user's latest decisions and the activity summary.
//!
//! Decisions are not the model: appending them never bumps the revision, never enters the change
//! log or `meta/counts`, and never waits for the write lock or an fsync. A batch of decisions is
//! one journal batch (one sled batch); it survives a crash once sled's next flush has run (a
//! model write's sync, or sled's own flush every 500 ms), so a crash loses at most the last half
//! second or so of the log. Nobody was promised those records, so nothing else breaks.
//!
//! Decisions are numbered (`seq`) from 1 in the order they are appended, without gaps, and kept
//! in blocks of up to [`BLOCK`] consecutive ones: a sled insert costs about 10 µs, so one per
//! block rather than one per decision (plus one per decision for an index) is what lets a
//! single thread keep up with hundreds of thousands of decisions a second. Layout (the store's
//! `keys.rs` has the rest):
//!
//! | key | value |
//! | --- | --- |
//! | `d/<seq of its first decision: u64 big-endian>` | a block of decisions (encoding below): a journal entry |
//! | `e/i/<user id>\0<block's first seq>` | empty: the block holds decisions whose user resolved to this user id |
//! | `e/k/<user key, lower-cased>\0<block's first seq>` | empty: the block holds decisions whose user did not resolve, named by this key |
//!
//! Appends add blocks at the end and retention removes whole blocks from the front, so the log
//! holds exactly `last block's first seq + its length - first block's first seq` decisions, and
//! sizing it costs two key reads, not a scan. Crash recovery keeps a prefix of sled's batches, so
//! a crash cannot open a gap either. Numbering takes one writer per store: one [`Writer`] at a
//! time.
//!
//! A user's recent decisions ([`Log::decisions_of`]) are a reverse scan of their index
//! prefixes, then a read of each block found, newest first, until enough: the cost of the
//! answer, whatever the size of the log.
//!
//! A block: `[2]`, the number of decisions (LEB128 varint, [`store::varint`]), then each
//! decision: the time (i64 ms since the epoch, big-endian), LEB128 varints for the revision and
//! the latency (ns), one byte each for the action and the reason, the decision id, the user, the
//! agent, the connector and the tool as `[length][UTF-8]`, and the resolved user id, the policy
//! id and the approval id as `[length + 1][UTF-8]` (`0`: none). Version 1 blocks (`[1]`, without
//! the approval id) are still read.

mod block;
mod index;
mod read;
mod writer;

pub use read::Log;
/// The log's errors are the store's (a block that does not decode is [`Error::Corrupt`]), so
/// callers handle one error type; [`Swept`] is what a sweep of either log removed.
pub use store::{Error, Result, Swept};
pub use writer::Writer;

use pdp::{Action, Reason};
use std::time::Duration;

/// The default [`Retention::max_age`]: 30 days.
pub const DECISION_LOG_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The default [`Retention::max_records`].
pub const DECISION_LOG_MAX_RECORDS: u64 = 10_000_000;
/// The most decisions in one block. Retention removes whole blocks, and a user's decisions are
/// read a block at a time (a few kilobytes).
pub const BLOCK: usize = 64;

/// One logged decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDecision {
    /// Its place in the log, from 1, set by [`Writer::append`] (what is passed in is ignored).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub decision_id: String,
    /// The user as the caller named them (id, email or external id).
    pub user: String,
    /// The id of the user `user` resolved to, if it did (see [`Writer::append`]).
    pub user_id: Option<String>,
    pub agent: String,
    pub connector: String,
    pub tool: String,
    pub action: Action,
    pub reason: Reason,
    pub policy_id: Option<String>,
    /// The revision of the snapshot that answered.
    pub revision: u64,
    /// Time in the server, from the call's arrival to its answer, in nanoseconds.
    pub latency_ns: u64,
    /// The approval request whose grant the Check carried (`approval_id`), if it carried one.
    pub approval_id: Option<String>,
}

/// How much of the log to keep: whatever is older than `max_age` or beyond the newest
/// `max_records` goes, oldest first, a block at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    /// 0 keeps nothing: the log is off.
    pub max_records: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age: DECISION_LOG_MAX_AGE,
            max_records: DECISION_LOG_MAX_RECORDS,
        }
    }
}
