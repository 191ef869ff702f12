//! The keys written while an online backup reads the store without the write lock
//! ([`crate::backup`]): the backup reads them again under the lock, at the revision it ends at.
//!
//! **Who notes.** Every write to sled made while a [`Store`](crate::Store) is open, but those
//! listed below, holds the write lock and notes each key it writes before it applies it: a
//! change when it stages a key (records, memberships and their reverse entries, tokens, SCIM
//! connections and documents, approval flows and requests, webhooks and their outbox
//! deliveries, the audit events of the change), its change-log record and the one it drops
//! ([`crate::changelog::record`]), and the bookkeeping outside changes: a SCIM connection's last
//! use, a delivery attempt, the outbox prune and the audit sweep. Since tracking starts and
//! stops under the write lock too, the set holds every key such a writer wrote in between, so
//! every key not in it holds, all through the unlocked pass, its value at the backup's
//! revision. A key noted by a change that then failed or wrote nothing is read again for
//! nothing, which is harmless. When no backup runs, a note is one atomic load.
//!
//! **Who does not, and why that is sound.**
//! - `meta/` (revision, counts, the large-change marker) and `x/` (a large change's undo
//!   entries, and a rollback deleting them) are copied under the lock in the backup's last step,
//!   not during the unlocked pass. A rollback's other writes put back keys its change noted
//!   when it staged them.
//! - The journal (`d/`, `e/`: the decision log) is written without the lock and copied separately, after.
//! - A refused attempt's audit event ([`Store::append_audit`](crate::Store::append_audit)) is
//!   appended without the lock, at a `seq` no other write uses, and is never rewritten (only
//!   the sweep removes it, noting it). Its key is either read with its value at the backup's
//!   revision or missed; noting it would not change that, since it can be appended after the
//!   noted keys are read again. Nothing else refers to it, so one missed is just absent, as it
//!   is from a backup taken under the lock a moment earlier.
//! - Writes while the store opens (undo recovery, the change-log prune, a new store's `meta/`,
//!   its id) happen before any backup of that `Store` can start.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Keys tracked at most: past this, writes have rewritten so much of the store during the
/// backup that it copies everything again under the lock (as a backup without tracking
/// would), and the set stops growing. 256k keys are some 30 MB at most.
pub(crate) const MAX_WRITTEN: usize = 1 << 18;

pub(crate) struct Written {
    tracking: AtomicBool,
    keys: Mutex<Tracked>,
    /// [`MAX_WRITTEN`], lowered only by tests ([`Written::set_limit`]).
    limit: AtomicUsize,
}

impl Default for Written {
    fn default() -> Written {
        Written {
            tracking: AtomicBool::default(),
            keys: Mutex::default(),
            limit: AtomicUsize::new(MAX_WRITTEN),
        }
    }
}

#[derive(Default)]
struct Tracked {
    keys: BTreeSet<Vec<u8>>,
    overflowed: bool,
}

impl Written {
    /// Notes that `key` is being written; the caller holds the write lock.
    pub(crate) fn note(&self, key: &[u8]) {
        if !self.tracking.load(Ordering::Acquire) {
            return;
        }
        let mut tracked = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if tracked.overflowed {
            return;
        }
        if tracked.keys.len() >= self.limit.load(Ordering::Relaxed) {
            tracked.overflowed = true;
            tracked.keys = BTreeSet::new();
            return;
        }
        tracked.keys.insert(key.to_vec());
    }

    /// Starts tracking; the caller holds the write lock. `false` if another backup tracks
    /// already (that one then copies under the lock as it would without tracking).
    pub(crate) fn start(&self) -> bool {
        if self.tracking.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = Tracked::default();
        true
    }

    /// Stops tracking and returns the keys written since [`Written::start`], in key order, or
    /// `None` if there were more than the limit ([`MAX_WRITTEN`]); the caller holds the write
    /// lock.
    pub(crate) fn stop(&self) -> Option<BTreeSet<Vec<u8>>> {
        let tracked = std::mem::take(&mut *self.keys.lock().unwrap_or_else(|e| e.into_inner()));
        self.tracking.store(false, Ordering::Release);
        (!tracked.overflowed).then_some(tracked.keys)
    }

    /// Tracks at most `keys` keys instead of [`MAX_WRITTEN`], so a test can make a backup
    /// overflow with a few writes.
    pub(crate) fn set_limit(&self, keys: usize) {
        self.limit.store(keys, Ordering::Relaxed);
    }
}
