//! Backups: a consistent copy of a store taken while it serves, and restoring one.
//!
//! A backup is every key of the store at one revision, written to a directory of two files:
//! `records` (each key and value, length-prefixed) and `backup.json` (the manifest: the revision,
//! the store's id and format, how many records and bytes, a checksum). The manifest is written
//! last, once `records` is synced: a directory without it is not a backup.
//!
//! **Why records and not sled's files.** Holding the write lock stops commits, not writes to
//! sled's files: sled 0.34's flusher thread rewrites pages out of fragmented segments every
//! 500 ms (`attempt_gc` in `flusher.rs`) whether or not anyone writes, the journal (the decision
//! log) is appended without the write lock on every answered decision, and refused attempts append
//! audit events without it too. A copy of `db` taken meanwhile may mix segments of different
//! moments, which sled does not promise to recover from. Reading the records through sled is
//! consistent by construction.
//!
//! **What is consistent.** Every key but the journal's and refused attempts' audit events
//! (the model, tokens, SCIM connections and documents, approval flows and requests, webhooks
//! and their outbox, the audit events of changes, the change log, the revision and counts) is
//! copied with its value at one revision R, the manifest's, without holding commits for the
//! copy:
//!
//! 1. Under the write lock for a moment, start noting every key a writer holding it writes
//!    ([`crate::written`] lists them, and the few writes that are not noted and why that is
//!    sound: every write under the lock outside `meta/` and `x/` is noted).
//! 2. Without the lock, copy every key but `meta/`, `x/` (a large change's undo log) and the
//!    journal, while commits go on: a key may be read before or after a commit wrote it.
//! 3. Under the lock again, at revision R, copy `meta/` and `x/` (a few keys; no large change is
//!    in flight) and read every key noted again: its value at R, or a [`REMOVED`] entry if it is
//!    gone. A restore applies entries in order, the last of a key winning, so every key
//!    written after step 1 ends at its value at R, and every other key was not written while
//!    step 2 read it.
//!
//! Commits wait only for steps 1 and 3, which cost in proportion to what was written during
//! the copy, not to the store (measured in BENCHMARKS.md, "Backup and restore"). If writers
//! note more than [`crate::written::MAX_WRITTEN`] keys (a bulk import during the backup), or
//! another backup is noting already, the backup drops what step 2 copied and copies everything
//! under the lock in step 3 instead ([`BackupSummary::copied_under_lock`]): the result is the
//! same, only the pause is longer.
//!
//! Designs not taken: a copy caught up from a `watch_prefix` subscriber deadlocks in sled 0.34
//! (it never completes the event of a write that stores the value already there, and a
//! subscriber stuck on one blocks every writer after 1,024 more events); writing the model from
//! the in-memory view would need the view loaded (an offline backup has none, and building it
//! costs more than the copy) and every record re-encoded exactly as stored, and would still
//! read the non-model trees (SCIM documents, one per user synced; the audit log, unbounded)
//! under the lock. The change log cannot serve as the list of keys written: it lists model
//! ids, not the memberships a user left, nor the tokens, documents or audit events.
//!
//! The journal ([`crate::Journal`]: the decision log) is written outside the revision, so it is
//! copied after the lock is released ([`journal::copy`]): its entries up to the newest, with
//! exactly their index entries, while appends go on and removals (retention) wait for the
//! copy. It holds every decision up to R, and maybe some after.
//! Refused attempts' audit events are appended without the lock too: one appended during the
//! copy may or may not be in it (one appended before the backup started is), as when the whole
//! copy is made under the lock.
//!
//! **Restore** writes the records into a new store in an empty directory, with `meta/format`
//! written last (an interrupted restore leaves a directory no build opens), then opens it (its
//! checks run: format, revision against the acknowledgment file) and loads it whole (every
//! record decodes, the counts match). The restored store gets a new [`Store::id`]: its
//! revisions after the backup's are not the original's, and a follower that followed the
//! original past the backup's revision must not be caught up from the restored store's change
//! log as if they were (`fleet` resyncs a follower in full when the id changes).

use crate::codec::{self, Counts};
use crate::error::engine;
use crate::store::{Store, catch_panic};
use crate::written::Written;
use crate::{Error, journal, keys, lock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The backup's records, in `[key length: u32 BE][key][value length: u32 BE][value]` entries.
pub const BACKUP_RECORDS: &str = "records";
/// The backup's manifest ([`BackupManifest`] as JSON), written last.
pub const BACKUP_MANIFEST: &str = "backup.json";
/// The layout of a backup directory this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// Keys per sled batch when restoring, and batches between flushes. sled 0.34 holds far more
/// than the data for what a batch writes until it is flushed: at 100k users (670k keys),
/// batches of 10,000 keys peaked at 2 GB resident, batches of 1,000 flushed every 10 at 0.2 GB,
/// in the same time.
const RESTORE_BATCH: usize = 1_000;
const RESTORE_FLUSH_EVERY: usize = 10;
const BUFFER: usize = 1 << 20;

/// A value length that marks a removed key in `records`: a key read without the write lock
/// and removed before the backup's revision (see the module docs).
const REMOVED: u32 = u32::MAX;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] Error),

    #[error("cannot {doing} `{}`: {source}", .path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "`{}` is not empty: a backup or a restore goes into a new or empty directory",
        .path.display()
    )]
    NotEmpty { path: PathBuf },

    #[error(
        "cannot back up into `{}`: it is inside the data directory `{}`",
        .path.display(), .store.display()
    )]
    InsideStore { path: PathBuf, store: PathBuf },

    #[error("`{}` is not a usable backup: {reason}", .path.display())]
    Damaged { path: PathBuf, reason: String },
}

/// What `backup.json` says about the backup next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The backup's layout ([`BACKUP_FORMAT`]).
    pub format: u32,
    /// The store format of the records (`meta/format`).
    pub store_format: u32,
    /// The [`Store::id`] of the store backed up.
    pub store_id: String,
    /// The revision the records are at.
    pub revision: u64,
    /// When the backup was taken, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Entries in `records`, the journal's included (a key read again under the write
    /// lock comes twice; see the module docs).
    pub records: u64,
    /// Entries of the journal among them (`d/` keys: the decision log's blocks of decisions).
    pub decision_entries: u64,
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    pub policies: u64,
    /// Absent in backups taken before agents.
    #[serde(default)]
    pub agents: u64,
    /// The size of `records`.
    pub bytes: u64,
    /// A checksum of every key and value (16 hex digits): it finds damage, not tampering.
    pub checksum: String,
}

/// What [`Store::backup_to`] wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub manifest: BackupManifest,
    /// Both files.
    pub bytes: u64,
    /// How long commits waited: the write lock was held this long at the end of the copy,
    /// while the keys written during it were read again (it is held at the start too, only to
    /// begin noting keys).
    pub paused: Duration,
    /// Whether everything was copied under the write lock, `paused` then being the whole copy:
    /// more keys were written during the copy than are tracked, or another backup was running
    /// (see the module docs).
    pub copied_under_lock: bool,
    pub elapsed: Duration,
}

/// What [`Store::restore`] did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The backup's manifest.
    pub manifest: BackupManifest,
    /// The restored store's revision: the backup's.
    pub revision: u64,
    /// The restored store's id, new (see the module docs).
    pub store_id: String,
    pub elapsed: Duration,
}

impl Store {
    /// Writes a consistent copy of the store, at its current revision, into the directory
    /// `out`, which must not exist or be empty (it is created, with missing parents). Commits
    /// wait only while the keys written during the copy are read again
    /// ([`BackupSummary::paused`]; see the module docs); reads never wait. The revision backed
    /// up is durable here too when this returns.
    ///
    /// On failure whatever was written into `out` is removed.
    pub fn backup_to(&self, out: &Path) -> Result<BackupSummary, BackupError> {
        let started = Instant::now();
        self.inner.durability.check()?;
        let created = prepare_target(out)?;
        let written = (|| {
            let (canonical_out, canonical_dir) = (canonical(out)?, canonical(self.dir())?);
            if canonical_out.starts_with(&canonical_dir) {
                return Err(BackupError::InsideStore {
                    path: out.to_owned(),
                    store: self.dir().to_owned(),
                });
            }
            self.write_backup(out, started)
        })();
        if written.is_err() {
            clean_up(out, created);
        }
        written
    }

    fn write_backup(&self, out: &Path, started: Instant) -> Result<BackupSummary, BackupError> {
        let records_path = out.join(BACKUP_RECORDS);
        let file = File::create_new(&records_path).map_err(io("create", &records_path))?;
        let mut records = RecordWriter::new(file, &records_path);

        let (revision, counts, paused, copied_under_lock) =
            catch_panic::<_, BackupError>("backing up the store", || {
                self.copy_online(&mut records)
            })?;
        let decisions = catch_panic::<_, BackupError>("backing up the journal", || {
            journal::copy(self, |key, value| records.write(key, value))
        })?;
        let (count, bytes, checksum) = records.finish()?;

        let manifest = BackupManifest {
            format: BACKUP_FORMAT,
            store_format: codec::FORMAT_VERSION,
            store_id: self.id().to_owned(),
            revision,
            created_at_ms: now_ms(),
            records: count,
            decision_entries: decisions,
            users: counts.users,
            groups: counts.groups,
            memberships: counts.memberships,
            policies: counts.policies,
            agents: counts.agents,
            bytes,
            checksum: format!("{checksum:016x}"),
        };
        let manifest_path = out.join(BACKUP_MANIFEST);
        let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Encode {
            what: "the backup manifest",
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        File::create_new(&manifest_path)
            .and_then(|mut file| {
                file.write_all(&json)?;
                file.sync_all()
            })
            .map_err(io("write", &manifest_path))?;
        sync_dir(out)?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        // What we copied was applied; make it durable here too, so the backup never holds a
        // revision this store could still lose in a crash.
        self.sync(revision)?;
        Ok(BackupSummary {
            manifest,
            bytes: bytes + json.len() as u64,
            paused,
            copied_under_lock,
            elapsed: started.elapsed(),
        })
    }

    /// Copies every key but the journal's, at one revision (see the module docs): the
    /// store read without the write lock while the keys commits write are noted, then, under
    /// the lock, `meta/`, `x/` and the keys noted. Returns the revision, its counts, how long
    /// the write lock was held at the end (at the start it only begins the noting), and whether
    /// everything was copied under it instead.
    fn copy_online(
        &self,
        records: &mut RecordWriter,
    ) -> Result<(u64, Counts, Duration, bool), BackupError> {
        let inner = &self.inner;
        let db = &inner.db;
        let tracking = {
            let _writer = lock(&inner.writer)?;
            inner.durability.check()?;
            Tracking::start(&inner.written)
        };
        if tracking.on {
            for range in outside(&[keys::JOURNAL, keys::JOURNAL_INDEX, keys::META, keys::UNDO]) {
                copy_range(db.range(range), records)?;
            }
        }
        let writer = lock(&inner.writer)?;
        inner.durability.check()?;
        let locked = Instant::now();
        let written = tracking.stop();
        let copied_under_lock = written.is_none();
        match written {
            Some(written) => {
                copy_range(db.scan_prefix(keys::META), records)?;
                copy_range(db.scan_prefix(keys::UNDO), records)?;
                for key in written {
                    match db.get(&key).map_err(engine)? {
                        Some(value) => records.write(&key, &value)?,
                        None => records.removed(&key)?,
                    }
                }
            }
            // Too many writes to track (or another backup tracking): everything, under the lock.
            None => {
                records.restart()?;
                copy_revisioned(db, records)?;
            }
        }
        Ok((
            writer.revision,
            writer.counts,
            locked.elapsed(),
            copied_under_lock,
        ))
    }

    /// Makes online backups of this store track at most `keys` written keys before they fall
    /// back to copying everything under the write lock (normally 262,144): for tests of that
    /// fallback, which would otherwise need that many writes during one backup.
    #[doc(hidden)]
    pub fn set_backup_tracking_limit_for_tests(&self, keys: usize) {
        self.inner.written.set_limit(keys);
    }

    /// Restores the backup in `backup` into `dir`, which must not exist or be empty (nothing
    /// may have it open: stop `serve` first). Checks the backup's checksum, then opens and
    /// loads the restored store (every record, the counts). The restored store has the
    /// backup's records and revision, and a new [`Store::id`] (see the module docs).
    ///
    /// On failure whatever was written into `dir` is removed.
    pub fn restore(backup: &Path, dir: &Path) -> Result<RestoreSummary, BackupError> {
        let started = Instant::now();
        let manifest = read_manifest(backup)?;
        let records_path = backup.join(BACKUP_RECORDS);
        let file = File::open(&records_path).map_err(io("open", &records_path))?;
        let len = file.metadata().map_err(io("read", &records_path))?.len();
        if len != manifest.bytes {
            return Err(damaged(
                backup,
                format!(
                    "`{BACKUP_RECORDS}` holds {len} bytes, the manifest says {}",
                    manifest.bytes
                ),
            ));
        }
        let created = prepare_target(dir)?;
        let restored = restore_into(backup, file, &manifest, dir);
        match restored {
            Ok((revision, store_id)) => Ok(RestoreSummary {
                manifest,
                revision,
                store_id,
                elapsed: started.elapsed(),
            }),
            Err(error) => {
                clean_up(dir, created);
                Err(error)
            }
        }
    }
}

/// Writes the records of `file` into a new store in `dir`; returns its revision and id.
fn restore_into(
    backup: &Path,
    file: File,
    manifest: &BackupManifest,
    dir: &Path,
) -> Result<(u64, String), BackupError> {
    // A new, empty store, with an id of its own.
    let store = Store::open(dir)?;
    let db = &store.inner.db;
    // Until the last batch puts it back, no build opens this directory: an interrupted restore
    // is refused rather than served half done.
    db.remove(keys::FORMAT).map_err(engine)?;
    let mut reader = RecordReader::new(file);
    let mut meta = sled::Batch::default();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut batches = 0;
    let mut revision = None;
    let entries = catch_panic::<_, BackupError>("restoring the store", || {
        while let Some((key, value)) = reader.next_entry().map_err(|e| e.into_backup(backup))? {
            // Were a key to come twice, the last one holds.
            if key.starts_with(b"meta/") {
                if key == keys::REVISION {
                    revision = value
                        .as_deref()
                        .map(|v| codec::decode_u64("meta/revision", v))
                        .transpose()?;
                }
                // The restored store keeps its new id.
                if key != keys::ID {
                    match value {
                        Some(value) => meta.insert(key, value),
                        None => meta.remove(key),
                    }
                }
                continue;
            }
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
            in_batch += 1;
            if in_batch == RESTORE_BATCH {
                db.apply_batch(std::mem::take(&mut batch)).map_err(engine)?;
                in_batch = 0;
                batches += 1;
                if batches % RESTORE_FLUSH_EVERY == 0 {
                    db.flush().map_err(engine)?;
                }
            }
        }
        db.apply_batch(std::mem::take(&mut batch)).map_err(engine)?;
        Ok(())
    });
    entries.map_err(|e| match e {
        BackupError::Store(Error::Corrupt(reason)) => damaged(backup, reason),
        e => e,
    })?;
    let (records, checksum) = (reader.records, reader.checksum.finish());
    if format!("{checksum:016x}") != manifest.checksum || records != manifest.records {
        return Err(damaged(
            backup,
            format!(
                "its records do not match the manifest ({records} records, checksum \
                 {checksum:016x}; the manifest says {} and {})",
                manifest.records, manifest.checksum
            ),
        ));
    }
    if revision != Some(manifest.revision) {
        return Err(damaged(
            backup,
            format!(
                "its records are at revision {}, the manifest says {}",
                revision.map_or_else(|| "none".to_owned(), |r| r.to_string()),
                manifest.revision
            ),
        ));
    }
    db.apply_batch(meta).map_err(engine)?;
    db.flush().map_err(engine)?;
    // Closed (dropping it waits until sled lets go of the directory), then opened as any
    // store is: the format and the acknowledged revision are checked, and then every record.
    drop(store);
    let store = Store::open(dir)?;
    let model = store.load()?;
    if model.revision != manifest.revision {
        return Err(damaged(
            backup,
            format!(
                "the restored store opens at revision {}, the manifest says {}",
                model.revision, manifest.revision
            ),
        ));
    }
    let id = store.id().to_owned();
    drop(store);
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok((model.revision, id))
}

/// Reads a backup's manifest and checks this build can restore it.
pub fn read_manifest(backup: &Path) -> Result<BackupManifest, BackupError> {
    let path = backup.join(BACKUP_MANIFEST);
    let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => damaged(
            backup,
            format!("there is no `{BACKUP_MANIFEST}` (an unfinished or not a backup?)"),
        ),
        _ => BackupError::Io {
            doing: "read",
            path: path.clone(),
            source,
        },
    })?;
    let manifest: BackupManifest = serde_json::from_slice(&bytes)
        .map_err(|e| damaged(backup, format!("cannot read `{BACKUP_MANIFEST}`: {e}")))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(damaged(
            backup,
            format!(
                "it is in backup format {}, this build reads format {BACKUP_FORMAT}",
                manifest.format
            ),
        ));
    }
    if manifest.store_format != codec::FORMAT_VERSION {
        return Err(damaged(
            backup,
            format!(
                "it holds store format {}, this build reads format {} (restore it with the \
                 build that made it)",
                manifest.store_format,
                codec::FORMAT_VERSION
            ),
        ));
    }
    Ok(manifest)
}

/// Copies every key but the journal's.
fn copy_revisioned(db: &sled::Db, out: &mut RecordWriter) -> Result<(), BackupError> {
    for range in outside(&[keys::JOURNAL, keys::JOURNAL_INDEX]) {
        copy_range(db.range(range), out)?;
    }
    Ok(())
}

fn copy_range(range: sled::Iter, out: &mut RecordWriter) -> Result<(), BackupError> {
    for item in range {
        let (key, value) = item.map_err(engine)?;
        out.write(&key, &value)?;
    }
    Ok(())
}

/// Tracking of the keys written ([`Written`]) for one backup; stopped when dropped, so a
/// backup that fails midway leaves no tracking behind.
struct Tracking<'s> {
    written: &'s Written,
    /// `false` if another backup tracks already: this one copies under the lock.
    on: bool,
}

impl<'s> Tracking<'s> {
    /// The caller holds the write lock.
    fn start(written: &'s Written) -> Tracking<'s> {
        Tracking {
            written,
            on: written.start(),
        }
    }

    /// The keys written since the start, or `None` if there is no set to go by; the caller
    /// holds the write lock.
    fn stop(mut self) -> Option<BTreeSet<Vec<u8>>> {
        let on = std::mem::replace(&mut self.on, false);
        on.then(|| self.written.stop()).flatten()
    }
}

impl Drop for Tracking<'_> {
    fn drop(&mut self) {
        if self.on {
            self.written.stop();
        }
    }
}

/// A range of keys, as `sled::Tree::range` takes it.
type KeyRange = (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>);

/// The ranges of keys outside every prefix of `skip`.
fn outside(skip: &[&[u8]]) -> Vec<KeyRange> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let mut skip: Vec<&[u8]> = skip.to_vec();
    skip.sort();
    let mut ranges = Vec::new();
    let mut start = Unbounded;
    for prefix in skip {
        ranges.push((start, Excluded(prefix.to_vec())));
        start = match prefix_end(prefix) {
            Some(end) => Included(end),
            None => return ranges,
        };
    }
    ranges.push((start, Unbounded));
    ranges
}

/// The first key after every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Streams entries into `records`, with their checksum.
struct RecordWriter {
    out: BufWriter<File>,
    path: PathBuf,
    checksum: Checksum,
    records: u64,
    bytes: u64,
}

impl RecordWriter {
    fn new(file: File, path: &Path) -> RecordWriter {
        RecordWriter {
            out: BufWriter::with_capacity(BUFFER, file),
            path: path.to_owned(),
            checksum: Checksum::default(),
            records: 0,
            bytes: 0,
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        let value_len = length(value)?;
        self.entry(key, &value_len.to_be_bytes(), value)?;
        self.checksum.update(value);
        Ok(())
    }

    /// A key removed since an earlier entry of it.
    fn removed(&mut self, key: &[u8]) -> Result<(), BackupError> {
        self.entry(key, &REMOVED.to_be_bytes(), &[])?;
        self.checksum.removed();
        Ok(())
    }

    /// Drops everything written so far, to start over.
    fn restart(&mut self) -> Result<(), BackupError> {
        (|| {
            self.out.flush()?;
            let file = self.out.get_mut();
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0)).map(drop)
        })()
        .map_err(io("rewrite", &self.path))?;
        self.checksum = Checksum::default();
        self.records = 0;
        self.bytes = 0;
        Ok(())
    }

    fn entry(&mut self, key: &[u8], value_len: &[u8; 4], value: &[u8]) -> Result<(), BackupError> {
        let key_len = length(key)?;
        (|| {
            self.out.write_all(&key_len.to_be_bytes())?;
            self.out.write_all(key)?;
            self.out.write_all(value_len)?;
            self.out.write_all(value)
        })()
        .map_err(io("write", &self.path))?;
        self.checksum.update(key);
        self.records += 1;
        self.bytes += 8 + key.len() as u64 + value.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the file; returns the records, bytes and checksum.
    fn finish(self) -> Result<(u64, u64, u64), BackupError> {
        let file = self.out.into_inner().map_err(|e| BackupError::Io {
            doing: "write",
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io("sync", &self.path))?;
        Ok((self.records, self.bytes, self.checksum.finish()))
    }
}

/// A key's or value's length as written; [`REMOVED`] is taken.
fn length(bytes: &[u8]) -> Result<u32, BackupError> {
    u32::try_from(bytes.len())
        .ok()
        .filter(|&len| len != REMOVED)
        .ok_or_else(|| {
            Error::Encode {
                what: "a backup record",
                reason: format!("{} bytes do not fit a u32 length", bytes.len()),
            }
            .into()
        })
}

/// Reads the entries of `records` back, with their checksum.
struct RecordReader {
    input: BufReader<File>,
    checksum: Checksum,
    records: u64,
}

/// A key and its value, or `None` for a key removed.
type Entry = (Vec<u8>, Option<Vec<u8>>);

/// Why an entry could not be read.
enum ReadError {
    Io(std::io::Error),
    Truncated,
}

impl ReadError {
    fn into_backup(self, backup: &Path) -> BackupError {
        match self {
            ReadError::Io(source) => BackupError::Io {
                doing: "read",
                path: backup.join(BACKUP_RECORDS),
                source,
            },
            ReadError::Truncated => damaged(
                backup,
                format!("`{BACKUP_RECORDS}` ends in the middle of a record"),
            ),
        }
    }
}

impl RecordReader {
    fn new(file: File) -> RecordReader {
        RecordReader {
            input: BufReader::with_capacity(BUFFER, file),
            checksum: Checksum::default(),
            records: 0,
        }
    }

    /// The next entry, or `None` at the end of the file.
    /// The next entry (a key and its value, or `None` if it was removed), or `None` at the end
    /// of the file.
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        let mut len = [0u8; 4];
        // The end of the file between entries is the end; anywhere else it is damage.
        let mut read = 0;
        while read < len.len() {
            match self.input.read(&mut len[read..]) {
                Ok(0) if read == 0 => return Ok(None),
                Ok(0) => return Err(ReadError::Truncated),
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        let key = self.field(u32::from_be_bytes(len))?;
        self.exact(&mut len)?;
        self.checksum.update(&key);
        self.records += 1;
        let value = match u32::from_be_bytes(len) {
            REMOVED => {
                self.checksum.removed();
                None
            }
            len => {
                let value = self.field(len)?;
                self.checksum.update(&value);
                Some(value)
            }
        };
        Ok(Some((key, value)))
    }

    fn field(&mut self, len: u32) -> Result<Vec<u8>, ReadError> {
        let mut bytes = Vec::new();
        // Read through `take`, so a damaged length cannot make us allocate it up front.
        let read = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if read != len as usize {
            return Err(ReadError::Truncated);
        }
        Ok(bytes)
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadError::Truncated,
            _ => ReadError::Io(e),
        })
    }
}

/// A 64-bit checksum over a sequence of byte strings, a word at a time. Each step is a
/// bijection of the state for a given word, so changing any one word (or a length) always
/// changes the result; it detects damage, not tampering.
#[derive(Default)]
struct Checksum(u64);

impl Checksum {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(state: u64, word: u64) -> u64 {
        let h = (state ^ word).wrapping_mul(Self::MULTIPLIER);
        h ^ (h >> 29)
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut h = Self::mix(self.0, bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            h = Self::mix(h, u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = Self::mix(h, u64::from_le_bytes(w));
        }
        self.0 = h;
    }

    /// In place of a value, for a key removed: no length of a value is `u64::MAX`.
    fn removed(&mut self) {
        self.0 = Self::mix(self.0, u64::MAX);
    }

    fn finish(&self) -> u64 {
        Self::mix(self.0, 0)
    }
}

/// Makes sure `dir` is a new or empty directory; returns whether it was created.
fn prepare_target(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(false),
            Some(_) => Err(BackupError::NotEmpty {
                path: dir.to_owned(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io("create the directory", dir))?;
            Ok(true)
        }
        Err(e) => Err(BackupError::Io {
            doing: "use as a directory",
            path: dir.to_owned(),
            source: e,
        }),
    }
}

/// Removes what a failed backup or restore wrote into `dir` (new or empty before it started).
fn clean_up(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

fn canonical(path: &Path) -> Result<PathBuf, BackupError> {
    path.canonicalize().map_err(io("resolve", path))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io {
        doing,
        path,
        source,
    }
}

fn damaged(backup: &Path, reason: String) -> BackupError {
    BackupError::Damaged {
        path: backup.to_owned(),
        reason,
    }
}

fn now_ms() -> i64 {
    pdp::Timestamp::now().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_outside_prefixes_cover_everything_else() {
        let ranges = outside(&[b"e/k/", b"d/", b"e/i/"]);
        let inside = |key: &[u8]| {
            ranges
                .iter()
                .any(|r| std::ops::RangeBounds::contains(r, &key.to_vec()))
        };
        for key in [
            &b"a/1"[..],
            b"c",
            b"d",
            b"d0",
            b"e/",
            b"e/j",
            b"e/l",
            b"meta/id",
            b"x/",
        ] {
            assert!(inside(key), "{key:?}");
        }
        for key in [&b"d/"[..], b"d/\xff\xff", b"e/i/u\0x", b"e/k/", b"e/k/\xff"] {
            assert!(!inside(key), "{key:?}");
        }
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }

    #[test]
    fn the_checksum_sees_any_changed_byte_or_boundary() {
        let sum = |parts: &[&[u8]]| {
            let mut c = Checksum::default();
            for p in parts {
                c.update(p);
            }
            c.finish()
        };
        let base = sum(&[b"u/alice", b"{\"id\":\"alice\"}"]);
        assert_ne!(base, sum(&[b"u/alice", b"{\"id\":\"alicf\"}"]));
        assert_ne!(base, sum(&[b"u/alic", b"e{\"id\":\"alice\"}"]));
        assert_ne!(sum(&[b"", b"x"]), sum(&[b"x", b""]));
        assert_ne!(sum(&[b"a\0"]), sum(&[b"a"]));
    }
}
