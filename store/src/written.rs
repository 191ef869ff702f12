//! The keys written under the write lock while an online backup reads the store without it
//! ([`crate::backup`]): the backup reads them again under the lock, at the revision it ends at.
//!
//! Every writer that holds the write lock notes each key it writes (a change when it stages
//! it, the bookkeeping writes outside changes when they apply them), so the set is complete
//! for every revision committed while tracking is on. A key noted by a change that then failed
//! is read again for nothing, which is harmless. When no backup runs, a note is one atomic
//! load.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Keys tracked at most: past this, writes have rewritten so much of the store during the
/// backup that it copies everything again under the lock (as a backup without tracking
/// would), and the set stops growing. 256k keys are some 30 MB at most.
pub(crate) const MAX_WRITTEN: usize = 1 << 18;

#[derive(Default)]
pub(crate) struct Written {
    tracking: AtomicBool,
    keys: Mutex<Tracked>,
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
        if tracked.keys.len() >= MAX_WRITTEN {
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
    /// `None` if there were more than [`MAX_WRITTEN`]; the caller holds the write lock.
    pub(crate) fn stop(&self) -> Option<BTreeSet<Vec<u8>>> {
        let tracked = std::mem::take(&mut *self.keys.lock().unwrap_or_else(|e| e.into_inner()));
        self.tracking.store(false, Ordering::Release);
        (!tracked.overflowed).then_some(tracked.keys)
    }
}
