//! The journal: append-only data another crate keeps in the store, outside the model (the
//! decision log, crate `decision-log`, which owns what the entries mean).
//!
//! The store only keeps the bytes: entries numbered by a `u64` (`d/<seq>`), and an index of
//! them (`e/<name><seq>`, empty values: entry `seq` is filed under `name`). Writing them never
//! bumps the revision, never enters the change log or `meta/counts`, and never waits for the
//! write lock or an fsync: a [`JournalBatch`] is one sled batch, atomic, and survives a crash
//! once sled's next flush has run (a model write's sync, or sled's own flush every 500 ms).
//! Crash recovery keeps a prefix of sled's batches.
//!
//! The journal's owner adds entries at the end and removes them from the front, each with its
//! index entries in the same batch: a backup relies on it. A batch that removes waits while a
//! backup copies the journal ([`copy`]), so the copy is the entries up to the newest when it
//! began and exactly their index entries, while appends go on.

use crate::error::engine;
use crate::store::Store;
use crate::{Result, keys};
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The store's journal (see the module docs); cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Store,
}

/// Inserts and removals of journal entries and index entries, applied together by
/// [`Journal::apply`].
#[derive(Debug, Default)]
pub struct JournalBatch {
    batch: sled::Batch,
    removes: bool,
}

/// A value read from the store, shared with its cache rather than copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(sled::IVec);

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Held by a batch that removes journal entries and by a backup copying the journal; it
/// guards no data, only the order of the two.
#[derive(Debug, Default)]
pub(crate) struct Removals(Mutex<()>);

impl Removals {
    fn hold(&self) -> MutexGuard<'_, ()> {
        // Nothing it guards can be left half done by a panic: go on.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// The journal: append-only data kept for another crate (see [`Journal`]).
    pub fn journal(&self) -> Journal {
        Journal {
            store: self.clone(),
        }
    }
}

impl JournalBatch {
    /// Stores `value` as entry `seq`.
    pub fn insert(&mut self, seq: u64, value: &[u8]) {
        self.batch.insert(keys::journal(seq), value);
    }

    /// Removes entry `seq`.
    pub fn remove(&mut self, seq: u64) {
        self.batch.remove(keys::journal(seq));
        self.removes = true;
    }

    /// Files entry `seq` under `name`.
    pub fn index(&mut self, name: &[u8], seq: u64) {
        self.batch.insert(keys::journal_indexed(name, seq), &[][..]);
    }

    /// Removes entry `seq` from under `name`.
    pub fn unindex(&mut self, name: &[u8], seq: u64) {
        self.batch.remove(keys::journal_indexed(name, seq));
        self.removes = true;
    }
}

impl Journal {
    /// Applies `batch` atomically; not synced (see the module docs). A batch that removes waits
    /// while a backup copies the journal.
    pub fn apply(&self, batch: JournalBatch) -> Result<()> {
        let inner = &self.store.inner;
        inner.durability.check()?;
        let _removing = batch.removes.then(|| inner.journal_removals.hold());
        inner.db.apply_batch(batch.batch).map_err(engine)
    }

    /// Hands everything applied so far to the operating system (sled's flush, no fsync), so it
    /// outlives the process. Batches are otherwise flushed by sled every 500 ms, or by any
    /// model write.
    pub fn flush(&self) -> Result<()> {
        self.store.inner.db.flush().map_err(engine)?;
        Ok(())
    }

    /// Entry `seq`, if there is one.
    pub fn get(&self, seq: u64) -> Result<Option<Value>> {
        let value = self
            .store
            .inner
            .db
            .get(keys::journal(seq))
            .map_err(engine)?;
        Ok(value.map(Value))
    }

    /// The entries with `seq` in `range`, in order of `seq` (reverse the iterator for newest
    /// first).
    pub fn range<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Result<(u64, Value)>> + use<R> {
        let bound = |bound: Bound<&u64>| match bound {
            Bound::Included(&seq) => Bound::Included(keys::journal(seq)),
            Bound::Excluded(&seq) => Bound::Excluded(keys::journal(seq)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (start, end) = (range.start_bound(), range.end_bound());
        // Unbounded ends stay within the prefix.
        let start = match start {
            Bound::Unbounded => Bound::Included(keys::JOURNAL.to_vec()),
            start => bound(start),
        };
        let end = match end {
            Bound::Unbounded => Bound::Included(keys::journal(u64::MAX)),
            end => bound(end),
        };
        self.store
            .inner
            .db
            .range::<Vec<u8>, _>((start, end))
            .map(|item| {
                let (key, value) = item.map_err(engine)?;
                Ok((keys::journal_seq(&key)?, Value(value)))
            })
    }

    /// The first entry, if there is one.
    pub fn first(&self) -> Result<Option<(u64, Value)>> {
        self.range(..).next().transpose()
    }

    /// The last entry, if there is one.
    pub fn last(&self) -> Result<Option<(u64, Value)>> {
        self.range(..).next_back().transpose()
    }

    /// The `seq` of every entry filed under exactly `name`, ascending (reverse the iterator for
    /// newest first). Entries filed under a longer name that begins with `name` are not listed.
    pub fn indexed(&self, name: &[u8]) -> impl DoubleEndedIterator<Item = Result<u64>> + use<> {
        let prefix = keys::journal_index(name);
        self.store
            .inner
            .db
            .scan_prefix(&prefix)
            .filter_map(move |item| match item {
                Ok((key, _)) => keys::indexed_seq(&prefix, &key).map(Ok),
                Err(error) => Some(Err(engine(error))),
            })
    }
}

/// Copies the journal as it is now, for a backup, handing each key and value to `copy`: the
/// entries up to the newest, then the index entries of those. Appends go on meanwhile (their
/// entries come after the newest, and are left out); removals wait, so the index entries copied
/// are exactly the entries'. Returns how many entries it copied.
pub(crate) fn copy<E: From<crate::Error>>(
    store: &Store,
    mut copy: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<u64, E> {
    let inner = &store.inner;
    let _removals = inner.journal_removals.hold();
    let journal = store.journal();
    let Some((last, _)) = journal.last()? else {
        return Ok(0);
    };
    let mut copied = 0;
    for item in journal.range(..=last) {
        let (seq, value) = item?;
        copy(&keys::journal(seq), &value)?;
        copied += 1;
    }
    for item in inner.db.scan_prefix(keys::JOURNAL_INDEX) {
        let (key, value) = item.map_err(engine)?;
        if keys::index_entry_seq(&key)? <= last {
            copy(&key, &value)?;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_the_entries_up_to_the_newest_and_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let copied = |store: &Store| {
            let mut keys = Vec::new();
            let n = copy::<crate::Error>(store, |key, _| {
                keys.push(key.to_vec());
                Ok(())
            })
            .unwrap();
            (n, keys)
        };
        assert_eq!(copied(&store), (0, Vec::new()));
        let journal = store.journal();
        let mut batch = JournalBatch::default();
        for seq in [1, 65] {
            batch.insert(seq, b"block");
            batch.index(b"k/alice\0", seq);
        }
        batch.index(b"i/u1\0", 65);
        journal.apply(batch).unwrap();
        assert_eq!(
            copied(&store),
            (
                2,
                vec![
                    keys::journal(1),
                    keys::journal(65),
                    keys::journal_indexed(b"i/u1\0", 65),
                    keys::journal_indexed(b"k/alice\0", 1),
                    keys::journal_indexed(b"k/alice\0", 65),
                ]
            )
        );
        // An index entry past the newest entry (which an append in flight never leaves, as its
        // batch is atomic) is not copied.
        let mut ahead = JournalBatch::default();
        ahead.index(b"i/u1\0", 71);
        journal.apply(ahead).unwrap();
        assert_eq!(copied(&store).1.len(), 5);
    }

    #[test]
    fn a_removal_waits_for_a_copy_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let journal = store.journal();
        let mut batch = JournalBatch::default();
        for seq in [1, 2] {
            batch.insert(seq, b"entry");
            batch.index(b"n\0", seq);
        }
        journal.apply(batch).unwrap();
        let mut copied = Vec::new();
        std::thread::scope(|s| {
            let mut remover = None;
            copy::<crate::Error>(&store, |key, _| {
                if remover.is_none() {
                    // Retention removes the first entry and its index entry while the copy is
                    // between the entries and the index.
                    remover = Some(s.spawn(|| {
                        let mut removal = JournalBatch::default();
                        removal.remove(1);
                        removal.unindex(b"n\0", 1);
                        store.journal().apply(removal).unwrap();
                    }));
                    let window = std::time::Instant::now() + std::time::Duration::from_millis(300);
                    while std::time::Instant::now() < window {
                        assert!(journal.get(1).unwrap().is_some(), "removed during the copy");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                copied.push(key.to_vec());
                Ok(())
            })
            .unwrap();
            remover.unwrap().join().unwrap();
        });
        // The copy holds the entry with its index entry; the removal went through after it.
        assert!(copied.contains(&keys::journal_indexed(b"n\0", 1)));
        assert_eq!(copied.len(), 4);
        assert_eq!(journal.get(1).unwrap(), None);
    }

    #[test]
    fn entries_are_read_in_order_either_way_and_indexed_by_exact_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let journal = store.journal();
        assert_eq!(journal.first().unwrap(), None);
        let mut batch = JournalBatch::default();
        for seq in [3, 256, 255, u64::MAX] {
            batch.insert(seq, &seq.to_be_bytes());
        }
        batch.index(b"a\0", 3);
        batch.index(b"a\0", 255);
        batch.index(b"a\0b\0", 256);
        journal.apply(batch).unwrap();
        let seqs = |range: Vec<Result<(u64, Value)>>| -> Vec<u64> {
            range.into_iter().map(|item| item.unwrap().0).collect()
        };
        assert_eq!(seqs(journal.range(..).collect()), [3, 255, 256, u64::MAX]);
        assert_eq!(seqs(journal.range(4..256).rev().collect()), [255]);
        assert_eq!(journal.first().unwrap().unwrap().0, 3);
        let (last, value) = journal.last().unwrap().unwrap();
        assert_eq!((last, &*value), (u64::MAX, &u64::MAX.to_be_bytes()[..]));
        assert_eq!(&*journal.get(255).unwrap().unwrap(), &255u64.to_be_bytes());
        assert_eq!(journal.get(4).unwrap(), None);
        let indexed: Vec<u64> = journal.indexed(b"a\0").rev().map(Result::unwrap).collect();
        assert_eq!(indexed, [255, 3]);

        let mut removal = JournalBatch::default();
        removal.remove(3);
        removal.unindex(b"a\0", 3);
        journal.apply(removal).unwrap();
        assert_eq!(journal.first().unwrap().unwrap().0, 255);
        assert_eq!(journal.indexed(b"a\0").count(), 1);
    }
}
