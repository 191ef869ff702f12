//! The writing end of a store's decision log: appends and retention.

use crate::index;
use crate::{BLOCK, Error, Log, LoggedDecision, Result, Retention, Swept, block};
use std::sync::Mutex;
use store::{Journal, JournalBatch, Store};

/// Appends to a store's decision log and applies its retention. One per store at a time (it
/// numbers the decisions); a [`Log`] of the same store reads the log meanwhile.
#[derive(Debug)]
pub struct Writer {
    journal: Journal,
    retention: Retention,
    /// The next decision's `seq`.
    next: Mutex<u64>,
}

impl Writer {
    /// The log of `store`, appending after its last decision.
    pub fn open(store: &Store, retention: Retention) -> Result<Writer> {
        let next = match Log::of(store).bounds()? {
            Some((_, last)) => last + 1,
            None => 1,
        };
        Ok(Writer {
            journal: store.journal(),
            retention,
            next: Mutex::new(next),
        })
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Appends `decisions` in one batch, in order, setting each one's `seq`; not synced (see
    /// the crate docs). Each is filed under its `user_id`, the user the engine resolved when
    /// it decided (so a user's decisions stay theirs when their email changes, and a user
    /// created a moment later never inherits them), else under the key it named. With
    /// `max_records` 0 nothing is written.
    pub fn append(&self, decisions: &mut [LoggedDecision]) -> Result<()> {
        if decisions.is_empty() || self.retention.max_records == 0 {
            return Ok(());
        }
        // A panic holding it may have numbered a batch it did not append: reopen.
        let mut next = self.next.lock().map_err(|_| Error::Failed)?;
        let mut seq = *next;
        for decision in decisions.iter_mut() {
            decision.seq = seq;
            seq += 1;
        }
        let mut batch = JournalBatch::default();
        let mut bytes = Vec::new();
        for chunk in decisions.chunks(BLOCK) {
            let first = chunk[0].seq;
            block::encode(chunk, &mut bytes);
            batch.insert(first, &bytes);
            for name in index::names(chunk.iter().map(|d| (d.user_id.as_deref(), &*d.user))) {
                batch.index(&name, first);
            }
        }
        self.journal.apply(batch)?;
        *next = seq;
        Ok(())
    }

    /// Hands everything appended so far to the operating system (sled's flush, no fsync), so it
    /// outlives the process: for a clean shutdown, after the last append. Appends are otherwise
    /// flushed by sled every 500 ms, or by any model write.
    pub fn flush(&self) -> Result<()> {
        self.journal.flush()
    }

    /// Removes the oldest blocks that retention no longer keeps: while the log holds more than
    /// `max_records`, or the block's newest decision is older than `max_age` before `now_ms`;
    /// at most `limit` decisions (whole blocks, at least one), in one batch. Call it again
    /// while [`Swept::more`].
    pub fn sweep(&self, now_ms: i64, limit: usize) -> Result<Swept> {
        let Some((first, last)) = Log::of_journal(self.journal.clone()).bounds()? else {
            return Ok(Swept::default());
        };
        let age_ms = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age_ms);
        let mut excess = (last - first + 1).saturating_sub(self.retention.max_records);
        let mut batch = JournalBatch::default();
        let mut swept = Swept::default();
        for item in self.journal.range(..) {
            let (first, value) = item?;
            let decisions = block::decode_raw(first, &value)?;
            let newest = decisions
                .iter()
                .map(|d| d.time_ms)
                .max()
                .unwrap_or(i64::MIN);
            if excess == 0 && newest >= cutoff {
                break;
            }
            if swept.removed > 0 && swept.removed + decisions.len() as u64 > limit as u64 {
                swept.more = true;
                break;
            }
            for name in index::names(decisions.iter().map(|d| (d.user_id, d.user))) {
                batch.unindex(&name, first);
            }
            batch.remove(first);
            excess = excess.saturating_sub(decisions.len() as u64);
            swept.removed += decisions.len() as u64;
        }
        if swept.removed > 0 {
            self.journal.apply(batch)?;
        }
        Ok(swept)
    }
}
