//! Making committed changes survive a crash, with group commit.
//!
//! sled 0.34 returns from `apply_batch` before writing anything, and its `flush` ends with
//! `sync_file_range` on Linux, which neither flushes the drive's cache nor persists metadata. So a
//! change is acknowledged only after `flush` and an `fsync` of every file in the data directory
//! and of the directories themselves. sled writes a large value to a file of its own under
//! `blobs/` once, in full, while the change is applied, and never rewrites it; a store holds
//! thousands of them, so each is fsynced until a sync covers the change that wrote it, and not
//! again. (A sync may list a blob that a change applied after the one being synced is still
//! writing; at most one change is being applied at a time, so a blob seen while revision `r` is
//! the last applied one is complete once `r + 1` is.)
//!
//! Writers that arrive while a sync runs share the next one: whoever takes the sync lock makes
//! everything applied so far durable, and the others find their revision already covered.
//!
//! sled 0.34 also recovers silently from a damaged log: it treats the first bad message as the
//! end and opens an earlier (consistent) state, losing acknowledged changes without a word. So
//! after each sync the durable revision is written to a small file beside sled's, [`ACK_FILE`];
//! on open, a store whose recovered revision is behind it is reported corrupt.

use crate::error::engine;
use crate::{Error, Result, lock};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The latest acknowledged revision, in the data directory (sled ignores files it doesn't know).
pub(crate) const ACK_FILE: &str = "portcullis.ack";

pub(crate) struct Durability {
    dir: PathBuf,
    /// Held while syncing, so one sync at a time covers every writer waiting on it.
    sync: Mutex<Syncing>,
    /// The last revision sled has applied (set by the writer under the write lock, so it only
    /// grows and every revision up to it has been applied).
    applied: AtomicU64,
    /// Every revision up to this one survives a crash.
    durable: AtomicU64,
    /// Set when a write or sync failed: after a failed fsync the kernel may have dropped the dirty
    /// pages, so a later successful fsync proves nothing. Only reopening recovers.
    failed: AtomicBool,
}

/// What a sync needs between runs.
struct Syncing {
    /// The open acknowledgment file.
    ack: File,
    /// Blob files by name → the revision after which they are complete (see the module docs);
    /// 0 once a sync covered that revision.
    blobs: HashMap<OsString, u64>,
}

impl Durability {
    /// For a store just opened at `revision`: makes what sled recovered durable (the previous
    /// process may have died before syncing it) and acknowledges it.
    pub(crate) fn open(dir: PathBuf, db: &sled::Db, revision: u64) -> Result<Durability> {
        db.flush().map_err(engine)?;
        sync_tree(&dir)?;
        let path = dir.join(ACK_FILE);
        let ack = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::Sync {
                path: path.clone(),
                source,
            })?;
        acknowledge(&ack, &path, revision)?;
        // A new file's directory entry must be durable too.
        sync_dir(&dir)?;
        Ok(Durability {
            dir,
            sync: Mutex::new(Syncing {
                ack,
                blobs: HashMap::new(),
            }),
            applied: AtomicU64::new(revision),
            durable: AtomicU64::new(revision),
            failed: AtomicBool::new(false),
        })
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The last revision sled has applied: readers may see it, though it may not be durable yet.
    pub(crate) fn last_applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Records that sled has applied `revision`; called by the writer holding the write lock.
    pub(crate) fn applied(&self, revision: u64) {
        self.applied.store(revision, Ordering::Release);
    }

    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Refuses to go on after an earlier failure.
    pub(crate) fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            Err(Error::Failed)
        } else {
            Ok(())
        }
    }

    /// Returns once `revision` (already applied) survives a crash.
    pub(crate) fn sync_through(&self, db: &sled::Db, revision: u64) -> Result<()> {
        if self.durable() >= revision {
            return Ok(());
        }
        let mut syncing = lock(&self.sync)?;
        // Another writer's sync may have covered us while we waited.
        if self.durable() >= revision {
            return Ok(());
        }
        self.check()?;
        // Read before flushing: everything up to `target` was applied, so this flush covers it.
        let target = self.applied.load(Ordering::Acquire);
        // The acknowledgment goes last: it must never claim a revision sled has not made durable.
        let Syncing { ack, blobs } = &mut *syncing;
        let synced = db
            .flush()
            .map_err(engine)
            .and_then(|_| sync_store_dir(&self.dir, blobs, target, &self.applied))
            .and_then(|()| acknowledge(ack, &self.dir.join(ACK_FILE), target));
        if let Err(error) = synced {
            self.fail();
            return Err(error);
        }
        self.durable.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

/// `fsync`s the files of sled's directory (`db`, `conf`, `snap.*`) and the blobs under
/// `blobs/` no earlier sync completed, then the directories, so new and renamed files are
/// durable too. `target` is the revision this sync makes durable.
fn sync_store_dir(
    dir: &Path,
    blobs: &mut HashMap<OsString, u64>,
    target: u64,
    applied: &AtomicU64,
) -> Result<()> {
    sync_entries(dir, |path| {
        if path.file_name() == Some(std::ffi::OsStr::new("blobs")) {
            sync_blobs(path, blobs, target, applied)
        } else {
            sync_tree(path)
        }
    })
}

fn sync_blobs(
    dir: &Path,
    synced: &mut HashMap<OsString, u64>,
    target: u64,
    applied: &AtomicU64,
) -> Result<()> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Sync { path, source }
    };
    let mut present = HashMap::with_capacity(synced.len());
    let mut new_files = false;
    for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
        let entry = entry.map_err(failed(dir))?;
        let name = entry.file_name();
        let complete_after = match synced.get(&name) {
            Some(&0) => {
                present.insert(name, 0);
                continue;
            }
            Some(&after) => after,
            None => {
                new_files = true;
                // Read after listing it: the change writing it is at most the next one.
                applied.load(Ordering::Acquire) + 1
            }
        };
        sync_file(&entry.path())?;
        present.insert(
            name,
            if target >= complete_after {
                0
            } else {
                complete_after
            },
        );
    }
    // Blobs sled removed are forgotten.
    *synced = present;
    if new_files {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_file(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all().map_err(|source| Error::Sync {
            path: path.to_owned(),
            source,
        }),
        // sled removes old snapshots and blobs while we list: gone files need no sync.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Sync {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// `fsync`s every file under `dir`, then the directories, so new and renamed files are
/// durable too.
pub(crate) fn sync_tree(dir: &Path) -> Result<()> {
    sync_entries(dir, sync_tree)
}

/// `fsync`s the files directly in `dir`, hands its subdirectories to `subdir`, then `fsync`s
/// `dir` itself.
fn sync_entries(dir: &Path, mut subdir: impl FnMut(&Path) -> Result<()>) -> Result<()> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Sync { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
        let entry = entry.map_err(failed(dir))?;
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            // sled removes old snapshots while we list: gone files need no sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(&path)(e)),
        };
        if kind.is_dir() {
            subdir(&path)?;
        } else if kind.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Sync {
            path: dir.to_owned(),
            source,
        })
}

/// `[revision: u64 big-endian][its bitwise complement]`: 16 bytes, written in place within one
/// sector, and self-checking.
fn acknowledge(ack: &File, path: &Path, revision: u64) -> Result<()> {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&revision.to_be_bytes());
    bytes[8..].copy_from_slice(&(!revision).to_be_bytes());
    let mut ack = ack;
    ack.seek(SeekFrom::Start(0))
        .and_then(|_| ack.write_all(&bytes))
        .and_then(|()| ack.sync_data())
        .map_err(|source| Error::Sync {
            path: path.to_owned(),
            source,
        })
}

/// The revision acknowledged in `dir`, or `None` if there is no acknowledgment file.
pub(crate) fn acknowledged(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(ACK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Open {
                path,
                reason: e.to_string(),
            });
        }
    };
    let read = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (read(0..8), read(8..16)) {
        (Some(revision), Some(check)) if check == !revision && bytes.len() == 16 => {
            Ok(Some(revision))
        }
        _ => Err(Error::Corrupt(format!("`{}` is damaged", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_blob_is_synced_until_a_sync_covers_the_change_that_may_be_writing_it() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("a"), b"x").unwrap();
        let applied = AtomicU64::new(5);
        let mut synced = HashMap::new();
        // Syncing revision 4 while 5 is applied: `a` may belong to 6, still being written.
        sync_blobs(&blobs, &mut synced, 4, &applied).unwrap();
        assert_eq!(synced.get(OsStr::new("a")), Some(&6));
        // Syncing 5 does not cover it yet; syncing 6 does.
        sync_blobs(&blobs, &mut synced, 5, &applied).unwrap();
        assert_eq!(synced.get(OsStr::new("a")), Some(&6));
        std::fs::write(blobs.join("b"), b"y").unwrap();
        applied.store(7, Ordering::Release);
        sync_blobs(&blobs, &mut synced, 6, &applied).unwrap();
        assert_eq!(synced.get(OsStr::new("a")), Some(&0));
        assert_eq!(synced.get(OsStr::new("b")), Some(&8));
        // Removed blobs are forgotten.
        std::fs::remove_file(blobs.join("a")).unwrap();
        sync_blobs(&blobs, &mut synced, 8, &applied).unwrap();
        assert_eq!(synced.len(), 1);
        assert_eq!(synced.get(OsStr::new("b")), Some(&0));
    }
}
