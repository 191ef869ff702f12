//! The decision log: every answered decision, kept for a while, outside the model.
//!
//! Decisions are not the model: appending them never bumps the revision, never enters the change
//! log or `meta/counts`, and never waits for the write lock or an fsync. A batch of decisions is
//! one sled batch; it survives a crash once sled's next flush has run (a model write's sync, or
//! sled's own flush every 500 ms), so a crash loses at most the last half second or so of the
//! log. Nobody was promised those records, so nothing else breaks.
//!
//! Decisions are numbered (`seq`) from 1 in the order they are appended, without gaps, and kept
//! in blocks of up to [`BLOCK`] consecutive ones: a sled insert costs about 10 µs, so one per
//! block rather than one per decision (plus one per decision for an index) is what lets a
//! single thread keep up with hundreds of thousands of decisions a second. Layout (see also
//! `keys.rs`):
//!
//! | key | value |
//! | --- | --- |
//! | `d/<seq of its first decision: u64 big-endian>` | a block of decisions (encoding below) |
//! | `e/i/<user id>\0<block's first seq>` | empty: the block holds decisions whose user resolved to this user id |
//! | `e/k/<user key, lower-cased>\0<block's first seq>` | empty: the block holds decisions whose user did not resolve, named by this key |
//!
//! Appends add blocks at the end and retention removes whole blocks from the front, so the log
//! holds exactly `last block's first seq + its length - first block's first seq` decisions, and
//! sizing it costs two key reads, not a scan. Crash recovery keeps a prefix of sled's batches, so
//! a crash cannot open a gap either. Numbering takes one writer per store: one [`DecisionLog`]
//! at a time.
//!
//! A user's recent decisions ([`Store::decisions_of`]) are a reverse scan of their index
//! prefixes, then a read of each block found, newest first, until enough: the cost of the
//! answer, whatever the size of the log.
//!
//! A block: `[1]`, the number of decisions (LEB128 varint), then each decision: the time (i64 ms
//! since the epoch, big-endian), LEB128 varints for the revision and the latency (ns), one byte
//! each for the action and the reason, the decision id, the user, the agent, the connector and
//! the tool as `[length][UTF-8]`, and the resolved user id and the policy id as
//! `[length + 1][UTF-8]` (`0`: none).

use crate::error::engine;
use crate::store::Store;
use crate::{Error, Result, keys, lock, varint};
use pdp::{Action, Reason};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// The default [`Retention::max_age`]: 30 days.
pub const DECISION_LOG_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The default [`Retention::max_records`].
pub const DECISION_LOG_MAX_RECORDS: u64 = 10_000_000;
/// The most decisions in one block. Retention removes whole blocks, and a user's decisions are
/// read a block at a time (a few kilobytes).
pub const BLOCK: usize = 64;

/// Blocks are written in version 2 (each decision ends with the approval it used, if any);
/// version 1 blocks (without) are still read.
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;

/// One logged decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDecision {
    /// Its place in the log, from 1, set by [`DecisionLog::append`] (what is passed in is
    /// ignored).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub decision_id: String,
    /// The user as the caller named them (id, email or external id).
    pub user: String,
    /// The id of the user `user` resolved to, if it did (see [`DecisionLog::append`]).
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

/// What one [`DecisionLog::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Decisions removed.
    pub removed: u64,
    /// Whether it stopped at its limit with more to remove.
    pub more: bool,
}

/// The writing end of a store's decision log: appends and retention. One per store at a time
/// (it numbers the decisions); clones of the [`Store`] read the log meanwhile.
#[derive(Debug)]
pub struct DecisionLog {
    store: Store,
    retention: Retention,
    /// The next decision's `seq`.
    next: Mutex<u64>,
}

impl DecisionLog {
    /// The log of `store`, appending after its last decision.
    pub fn open(store: &Store, retention: Retention) -> Result<DecisionLog> {
        let next = match store.decision_bounds()? {
            Some((_, last)) => last + 1,
            None => 1,
        };
        Ok(DecisionLog {
            store: store.clone(),
            retention,
            next: Mutex::new(next),
        })
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Appends `decisions` in one batch, in order, setting each one's `seq`; not synced (see
    /// the module docs). Each is filed under its `user_id`, the user the engine resolved when
    /// it decided (so a user's decisions stay theirs when their email changes, and a user
    /// created a moment later never inherits them), else under the key it named. With
    /// `max_records` 0 nothing is written.
    pub fn append(&self, decisions: &mut [LoggedDecision]) -> Result<()> {
        if decisions.is_empty() {
            return Ok(());
        }
        self.store.inner.durability.check()?;
        if self.retention.max_records == 0 {
            return Ok(());
        }
        let mut next = lock(&self.next)?;
        let mut seq = *next;
        for decision in decisions.iter_mut() {
            decision.seq = seq;
            seq += 1;
        }
        let mut batch = sled::Batch::default();
        let mut block = Vec::new();
        for chunk in decisions.chunks(BLOCK) {
            let first = chunk[0].seq;
            encode_block(chunk, &mut block);
            batch.insert(keys::decision(first), &block[..]);
            let indexed: BTreeSet<IndexKey<'_>> = chunk
                .iter()
                .map(|d| IndexKey::of(d.user_id.as_deref(), &d.user))
                .collect();
            for key in indexed {
                batch.insert(key.key(first), &[][..]);
            }
        }
        self.store.inner.db.apply_batch(batch).map_err(engine)?;
        *next = seq;
        Ok(())
    }

    /// Hands everything appended so far to the operating system (sled's flush, no fsync), so it
    /// outlives the process: for a clean shutdown, after the last append. Appends are otherwise
    /// flushed by sled every 500 ms, or by any model write.
    pub fn flush(&self) -> Result<()> {
        self.store.inner.db.flush().map_err(engine)?;
        Ok(())
    }

    /// Removes the oldest blocks that retention no longer keeps: while the log holds more than
    /// `max_records`, or the block's newest decision is older than `max_age` before `now_ms`;
    /// at most `limit` decisions (whole blocks, at least one), in one batch. Call it again
    /// while [`Swept::more`].
    pub fn sweep(&self, now_ms: i64, limit: usize) -> Result<Swept> {
        self.store.inner.durability.check()?;
        let Some((first, last)) = self.store.decision_bounds()? else {
            return Ok(Swept::default());
        };
        let age_ms = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age_ms);
        let mut excess = (last - first + 1).saturating_sub(self.retention.max_records);
        let mut batch = sled::Batch::default();
        let mut swept = Swept::default();
        for item in self.store.inner.db.scan_prefix(keys::DECISION) {
            let (key, value) = item.map_err(engine)?;
            let first = keys::decision_seq(&key)?;
            let block = raw_block(first, &value)?;
            let newest = block.iter().map(|d| d.time_ms).max().unwrap_or(i64::MIN);
            if excess == 0 && newest >= cutoff {
                break;
            }
            if swept.removed > 0 && swept.removed + block.len() as u64 > limit as u64 {
                swept.more = true;
                break;
            }
            let indexed: BTreeSet<IndexKey<'_>> = block
                .iter()
                .map(|d| IndexKey::of(d.user_id, d.user))
                .collect();
            for index in indexed {
                batch.remove(index.key(first));
            }
            batch.remove(key);
            excess = excess.saturating_sub(block.len() as u64);
            swept.removed += block.len() as u64;
        }
        if swept.removed > 0 {
            self.store.inner.db.apply_batch(batch).map_err(engine)?;
        }
        Ok(swept)
    }
}

impl Store {
    /// How many decisions the decision log holds.
    pub fn decision_count(&self) -> Result<u64> {
        Ok(self
            .decision_bounds()?
            .map_or(0, |(first, last)| last - first + 1))
    }

    /// The log's decisions with `seq` below `before` (all if `None`), newest first, at most
    /// `limit`.
    pub fn decisions(&self, before: Option<u64>, limit: usize) -> Result<Vec<LoggedDecision>> {
        let before = before.unwrap_or(u64::MAX);
        let mut decisions = Vec::new();
        for item in self
            .inner
            .db
            .range(keys::DECISION.to_vec()..keys::decision(before))
            .rev()
        {
            if decisions.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(engine)?;
            let block = decode_block(keys::decision_seq(&key)?, &value)?;
            decisions.extend(
                block
                    .into_iter()
                    .rev()
                    .filter(|d| d.seq < before)
                    .take(limit - decisions.len()),
            );
        }
        Ok(decisions)
    }

    /// The latest decisions about one user, newest first, at most `limit`: those whose user
    /// resolved to `user_id`, and those whose user did not resolve but was named by `user_id`
    /// or one of `keys` (their emails, user name, external id), ignoring case.
    pub fn decisions_of<'k>(
        &self,
        user_id: &str,
        keys: impl IntoIterator<Item = &'k str>,
        limit: usize,
    ) -> Result<Vec<LoggedDecision>> {
        let named: BTreeSet<String> = keys
            .into_iter()
            .map(str::to_lowercase)
            .chain(std::iter::once(user_id.to_lowercase()))
            .filter(|k| !k.is_empty())
            .collect();
        let prefixes = std::iter::once(keys::decisions_of_user(user_id))
            .chain(named.iter().map(|k| keys::decisions_named(k)));
        // Each block listed holds at least one of the user's decisions, so `limit` blocks per
        // prefix are enough.
        let mut blocks = BTreeSet::new();
        for prefix in prefixes {
            for item in self.inner.db.scan_prefix(&prefix).rev().take(limit) {
                let (key, _) = item.map_err(engine)?;
                // Longer keys belong to a user key that contains `\0` and begins with this one.
                if let Some(seq) = keys::indexed_seq(&prefix, &key) {
                    blocks.insert(seq);
                }
            }
        }
        let theirs = |d: &Raw<'_>| match d.user_id {
            Some(id) => id == user_id,
            None => named.contains(&d.user.to_lowercase()),
        };
        let mut decisions = Vec::new();
        for first in blocks.into_iter().rev() {
            if decisions.len() >= limit {
                break;
            }
            // Gone if retention removed it since the index was read.
            let Some(value) = self.inner.db.get(keys::decision(first)).map_err(engine)? else {
                continue;
            };
            let block = raw_block(first, &value)?;
            decisions.extend(
                block
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, d)| theirs(d))
                    .take(limit - decisions.len())
                    .map(|(i, d)| d.owned(first + i as u64)),
            );
        }
        Ok(decisions)
    }

    /// The first and last `seq` in the log, if it holds any.
    fn decision_bounds(&self) -> Result<Option<(u64, u64)>> {
        let mut all = self.inner.db.scan_prefix(keys::DECISION);
        let first = match all.next() {
            Some(item) => keys::decision_seq(&item.map_err(engine)?.0)?,
            None => return Ok(None),
        };
        let (last_first, last_len) = match all.next_back() {
            Some(item) => {
                let (key, value) = item.map_err(engine)?;
                let seq = keys::decision_seq(&key)?;
                (seq, block_len(seq, &value)?)
            }
            None => {
                let value = self
                    .inner
                    .db
                    .get(keys::decision(first))
                    .map_err(engine)?
                    .ok_or_else(|| Error::Corrupt("a decision block vanished".to_owned()))?;
                (first, block_len(first, &value)?)
            }
        };
        Ok(Some((first, last_first + last_len - 1)))
    }
}

/// The decision log as it is now, for a backup: its blocks from the newest back to the oldest
/// still contiguous with it (retention may remove the oldest meanwhile, and appends go on: it
/// takes no lock), then the index entries of those blocks, each handed to `copy` as (key,
/// value). Returns how many decisions it copied.
#[allow(
    dead_code,
    reason = "for the store's backup (`backup.rs`, written alongside): blocks are not one key per decision"
)]
pub(crate) fn copy_log<E: From<Error>>(
    db: &sled::Db,
    mut copy: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let Some(newest) = db.scan_prefix(keys::DECISION).next_back() else {
        return Ok(0);
    };
    let (newest, _) = newest.map_err(engine)?;
    let mut first: Option<u64> = None;
    let mut copied = 0;
    for item in db.range(keys::DECISION.to_vec()..=newest.to_vec()).rev() {
        let (key, value) = item.map_err(engine)?;
        let seq = keys::decision_seq(&key)?;
        let len = block_len(seq, &value)?;
        if first.is_some_and(|first| seq + len != first) {
            break;
        }
        copy(&key, &value)?;
        first = Some(seq);
        copied += len;
    }
    let (Some(first), last) = (first, keys::decision_seq(&newest)?) else {
        return Ok(0);
    };
    for prefix in [keys::DECISION_BY_USER, keys::DECISION_BY_KEY] {
        for item in db.scan_prefix(prefix) {
            let (key, value) = item.map_err(engine)?;
            let block = key
                .len()
                .checked_sub(8)
                .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
                .map(u64::from_be_bytes);
            if block.is_some_and(|block| (first..=last).contains(&block)) {
                copy(&key, &value)?;
            }
        }
    }
    Ok(copied)
}

/// The index entries of the block stored under `d/<first>` with `bytes`: what [`DecisionLog::append`]
/// wrote beside it (a backup derives them from the blocks it copied, so the two always agree).
pub(crate) fn index_entries(first: u64, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let block = raw_block(first, bytes)?;
    let indexed: BTreeSet<IndexKey<'_>> = block
        .iter()
        .map(|d| IndexKey::of(d.user_id, d.user))
        .collect();
    Ok(indexed.iter().map(|index| index.key(first)).collect())
}

/// The index a decision is listed under: its resolved user's id, else the key it named.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum IndexKey<'d> {
    User(&'d str),
    Named(String),
}

impl<'d> IndexKey<'d> {
    fn of(user_id: Option<&'d str>, user: &str) -> IndexKey<'d> {
        match user_id {
            Some(id) => IndexKey::User(id),
            None => IndexKey::Named(user.to_lowercase()),
        }
    }

    fn key(&self, block: u64) -> Vec<u8> {
        match self {
            IndexKey::User(id) => keys::decision_of_user(id, block),
            IndexKey::Named(key) => keys::decision_named(key, block),
        }
    }
}

fn action_code(action: Action) -> u8 {
    match action {
        Action::Allow => 1,
        Action::StepUp => 2,
        Action::RequireApproval => 3,
        Action::Deny => 4,
    }
}

fn action_of(code: u8) -> Option<Action> {
    Some(match code {
        1 => Action::Allow,
        2 => Action::StepUp,
        3 => Action::RequireApproval,
        4 => Action::Deny,
        _ => return None,
    })
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Policy => 1,
        Reason::NoMatchingPolicy => 2,
        Reason::UserLocked => 3,
        Reason::UserInactive => 4,
        Reason::UnknownUser => 5,
        Reason::AmbiguousUser => 6,
        Reason::UnknownAgent => 7,
        Reason::AgentDisabled => 8,
        Reason::AgentNotAllowed => 9,
        Reason::StepUpMet => 10,
        Reason::Approved => 11,
    }
}

fn reason_of(code: u8) -> Option<Reason> {
    Some(match code {
        1 => Reason::Policy,
        2 => Reason::NoMatchingPolicy,
        3 => Reason::UserLocked,
        4 => Reason::UserInactive,
        5 => Reason::UnknownUser,
        6 => Reason::AmbiguousUser,
        7 => Reason::UnknownAgent,
        8 => Reason::AgentDisabled,
        9 => Reason::AgentNotAllowed,
        10 => Reason::StepUpMet,
        11 => Reason::Approved,
        _ => return None,
    })
}

/// Encodes consecutive decisions into `out` (cleared first).
fn encode_block(decisions: &[LoggedDecision], out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    varint::put(out, decisions.len() as u64);
    for d in decisions {
        out.extend_from_slice(&d.time_ms.to_be_bytes());
        varint::put(out, d.revision);
        varint::put(out, d.latency_ns);
        out.push(action_code(d.action));
        out.push(reason_code(d.reason));
        for s in [&d.decision_id, &d.user, &d.agent, &d.connector, &d.tool] {
            varint::put(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        for s in [&d.user_id, &d.policy_id, &d.approval_id] {
            match s {
                Some(s) => {
                    varint::put(out, s.len() as u64 + 1);
                    out.extend_from_slice(s.as_bytes());
                }
                None => varint::put(out, 0),
            }
        }
    }
}

fn corrupt(first: u64) -> Error {
    Error::Corrupt(format!(
        "the decision log's block at {first} does not decode"
    ))
}

/// The number of decisions in a block, from its header.
fn block_len(first: u64, bytes: &[u8]) -> Result<u64> {
    let mut rest = bytes;
    match rest.split_first() {
        Some((&(VERSION | VERSION_1), tail)) => rest = tail,
        _ => return Err(corrupt(first)),
    }
    match varint::take(&mut rest) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(corrupt(first)),
    }
}

fn decode_block(first: u64, bytes: &[u8]) -> Result<Vec<LoggedDecision>> {
    Ok((first..)
        .zip(raw_block(first, bytes)?)
        .map(|(seq, d)| d.owned(seq))
        .collect())
}

/// A decision as its block holds it: decoded in place, copied out only when wanted.
struct Raw<'b> {
    time_ms: i64,
    revision: u64,
    latency_ns: u64,
    action: Action,
    reason: Reason,
    decision_id: &'b str,
    user: &'b str,
    agent: &'b str,
    connector: &'b str,
    tool: &'b str,
    user_id: Option<&'b str>,
    policy_id: Option<&'b str>,
    approval_id: Option<&'b str>,
}

impl Raw<'_> {
    fn owned(&self, seq: u64) -> LoggedDecision {
        LoggedDecision {
            seq,
            time_ms: self.time_ms,
            decision_id: self.decision_id.to_owned(),
            user: self.user.to_owned(),
            user_id: self.user_id.map(str::to_owned),
            agent: self.agent.to_owned(),
            connector: self.connector.to_owned(),
            tool: self.tool.to_owned(),
            action: self.action,
            reason: self.reason,
            policy_id: self.policy_id.map(str::to_owned),
            revision: self.revision,
            latency_ns: self.latency_ns,
            approval_id: self.approval_id.map(str::to_owned),
        }
    }
}

/// The decisions of a block, in order, checked whole.
fn raw_block(first: u64, bytes: &[u8]) -> Result<Vec<Raw<'_>>> {
    let len = block_len(first, bytes)?;
    let version = bytes.first().copied();
    let mut rest = &bytes[1..];
    varint::take(&mut rest);
    let mut decisions = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(BLOCK));
    for _ in 0..len {
        let decision = raw(&mut rest, version == Some(VERSION)).ok_or_else(|| corrupt(first))?;
        decisions.push(decision);
    }
    if !rest.is_empty() {
        return Err(corrupt(first));
    }
    Ok(decisions)
}

/// One decision; `approval` when the block's version has the approval id.
fn raw<'b>(rest: &mut &'b [u8], approval: bool) -> Option<Raw<'b>> {
    let (time, tail) = rest.split_first_chunk::<8>()?;
    *rest = tail;
    let revision = varint::take(rest)?;
    let latency_ns = varint::take(rest)?;
    let (&[action, reason], tail) = rest.split_first_chunk::<2>()?;
    *rest = tail;
    fn string<'b>(rest: &mut &'b [u8]) -> Option<&'b str> {
        let len = usize::try_from(varint::take(rest)?).ok()?;
        let (s, tail) = rest.split_at_checked(len)?;
        *rest = tail;
        std::str::from_utf8(s).ok()
    }
    fn optional<'b>(rest: &mut &'b [u8]) -> Option<Option<&'b str>> {
        let len = usize::try_from(varint::take(rest)?).ok()?;
        if len == 0 {
            return Some(None);
        }
        let (s, tail) = rest.split_at_checked(len - 1)?;
        *rest = tail;
        std::str::from_utf8(s).ok().map(Some)
    }
    Some(Raw {
        time_ms: i64::from_be_bytes(*time),
        revision,
        latency_ns,
        action: action_of(action)?,
        reason: reason_of(reason)?,
        decision_id: string(rest)?,
        user: string(rest)?,
        agent: string(rest)?,
        connector: string(rest)?,
        tool: string(rest)?,
        user_id: optional(rest)?,
        policy_id: optional(rest)?,
        approval_id: if approval { optional(rest)? } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> LoggedDecision {
        LoggedDecision {
            seq,
            time_ms: 1_767_225_600_123,
            decision_id: "00000000deadbeef0000000000000001".into(),
            user: "Alice@Example.com".into(),
            user_id: Some("u1".into()),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "create_issue".into(),
            action: Action::RequireApproval,
            reason: Reason::Policy,
            policy_id: Some("p-1".into()),
            revision: 1 << 40,
            latency_ns: 12_345,
            approval_id: Some("apr_0001".into()),
        }
    }

    #[test]
    fn version_1_blocks_still_decode() {
        // A version 1 block: the same layout without the approval id.
        let mut old = sample(3);
        old.approval_id = None;
        let mut bytes = Vec::new();
        encode_block(std::slice::from_ref(&old), &mut bytes);
        bytes[0] = VERSION_1;
        assert_eq!(
            bytes.pop(),
            Some(0),
            "the absent approval id is the last byte"
        );
        assert_eq!(decode_block(3, &bytes).unwrap(), vec![old]);
    }

    #[test]
    fn blocks_round_trip() {
        let bare = LoggedDecision {
            user_id: None,
            policy_id: None,
            action: Action::Deny,
            reason: Reason::UnknownUser,
            time_ms: -1,
            revision: 0,
            latency_ns: u64::MAX,
            agent: String::new(),
            approval_id: None,
            ..sample(8)
        };
        let block = [sample(7), bare];
        let mut bytes = Vec::new();
        encode_block(&block, &mut bytes);
        assert_eq!(decode_block(7, &bytes).unwrap(), block);
        assert_eq!(block_len(7, &bytes).unwrap(), 2);
    }

    #[test]
    fn bad_blocks_are_corrupt() {
        let mut bytes = Vec::new();
        encode_block(&[sample(1), sample(2)], &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode_block(1, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_block(1, &longer).is_err());
        let mut version = bytes;
        version[0] = 9;
        let error = decode_block(3, &version).unwrap_err().to_string();
        assert!(error.contains("block at 3"), "{error}");
        assert!(block_len(1, &[VERSION, 0]).is_err());
    }

    #[test]
    fn a_copy_of_the_log_is_its_contiguous_blocks_and_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let copied = |store: &Store| {
            let mut keys = Vec::new();
            let n = copy_log::<Error>(&store.inner.db, |key, _| {
                keys.push(key.to_vec());
                Ok(())
            })
            .unwrap();
            (n, keys)
        };
        assert_eq!(copied(&store), (0, Vec::new()));
        let log = DecisionLog::open(&store, Retention::default()).unwrap();
        let mut first = vec![sample(0); 70];
        for d in &mut first {
            d.user_id = None;
        }
        log.append(&mut first).unwrap();
        log.append(&mut [sample(0)]).unwrap();
        let (n, keys) = copied(&store);
        assert_eq!(n, 71);
        // Blocks at 71, 65 and 1 (newest first), then the index: u1's block 71, Alice's 1 and 65.
        assert_eq!(
            keys,
            [
                keys::decision(71),
                keys::decision(65),
                keys::decision(1),
                keys::decision_of_user("u1", 71),
                keys::decision_named("alice@example.com", 1),
                keys::decision_named("alice@example.com", 65),
            ]
        );
        // A gap (which only a concurrent sweep leaves) ends the copy.
        store.inner.db.remove(keys::decision(65)).unwrap();
        let (n, keys) = copied(&store);
        assert_eq!(n, 1);
        assert_eq!(keys, [keys::decision(71), keys::decision_of_user("u1", 71)]);
    }
}
