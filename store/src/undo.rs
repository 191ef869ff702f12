//! Changes too large for one sled batch, kept atomic with an undo log.
//!
//! sled 0.34 pins its epoch-based garbage collector for the whole of an `apply_batch` and
//! copies a leaf for every write, so a batch keeps every page version it replaces alive until
//! it ends: an import of a million users and 2.5 million memberships in one batch goes past
//! 20 GiB. A change with more than [`CHUNK`] writes is therefore applied in chunks:
//!
//! 1. each chunk is one batch holding its writes, an undo entry `x/<n>` with the old values of
//!    the keys it writes, and the marker `meta/pending`;
//! 2. the last batch holds the remaining writes, the new revision and counts, and removes the
//!    marker: this is the commit point;
//! 3. the undo entries are then deleted.
//!
//! sled recovers a prefix of its log and each batch whole, so after a crash the marker says
//! whether the change committed. If not, [`recover`] puts every old value back before the store
//! is used; if so, it deletes leftover undo entries. Readers must not see a change half applied
//! either: while one is in flight ([`InFlight`]), they wait for the writer.

use crate::error::engine;
use crate::{Result, codec, keys};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes staged before a change spills a chunk. Larger chunks are barely faster and make
/// sled's transient garbage (and glibc's arenas) grow sharply: 1024 keeps an import's peak
/// memory to what the model itself takes.
pub(crate) const CHUNK: usize = 1024;

/// Counts large changes: odd while one is being applied or rolled back. Readers compare it before
/// and after a read, as with a seqlock.
#[derive(Default)]
pub(crate) struct InFlight {
    epoch: AtomicU64,
}

impl InFlight {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether a large change was in flight at `epoch`.
    pub(crate) fn active(epoch: u64) -> bool {
        epoch % 2 == 1
    }

    /// Called by the writer before its first chunk is applied.
    pub(crate) fn begin(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Called by the writer once the change committed or was rolled back.
    pub(crate) fn end(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// Finishes what a crash interrupted: rolls back an uncommitted large change, or deletes the
/// undo entries a committed one left.
pub(crate) fn recover(db: &sled::Db) -> Result<()> {
    if db.contains_key(keys::PENDING).map_err(engine)? {
        roll_back(db)
    } else {
        discard(db)
    }
}

/// Puts back every value an uncommitted large change overwrote, then drops its marker. Each
/// batch restores one chunk's keys and deletes its undo entry, so a rollback interrupted by a
/// crash resumes where it stopped.
pub(crate) fn roll_back(db: &sled::Db) -> Result<()> {
    for item in db.scan_prefix(keys::UNDO) {
        let (undo, entry) = item.map_err(engine)?;
        let mut batch = sled::Batch::default();
        for (key, old) in codec::decode_undo(&entry)? {
            match old {
                Some(old) => batch.insert(key, old),
                None => batch.remove(key),
            }
        }
        batch.remove(undo);
        db.apply_batch(batch).map_err(engine)?;
    }
    db.remove(keys::PENDING).map_err(engine)?;
    Ok(())
}

/// Deletes the undo entries of a committed large change (one per chunk: a few thousand at most).
pub(crate) fn discard(db: &sled::Db) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut any = false;
    for item in db.scan_prefix(keys::UNDO) {
        let (undo, _) = item.map_err(engine)?;
        batch.remove(undo);
        any = true;
    }
    if any {
        db.apply_batch(batch).map_err(engine)?;
    }
    Ok(())
}
