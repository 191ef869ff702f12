//! Online backups ([`Store::backup_to`] while commits go on): the copy is read without the
//! write lock, so commits are not held for it, and is still exactly one revision.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{ApiToken, BackupSummary, ScimKind, Store};
use tempfile::TempDir;

const USERS: usize = 20_000;

/// A write of the test's writers, applied only if it changes something (so each one recorded
/// is exactly one revision, and replaying them in revision order commits the same revisions).
#[derive(Debug, Clone)]
enum Op {
    PutUser(pdp::User),
    DeleteUser(String),
    AddMember(&'static str, String),
    RemoveMember(&'static str, String),
    PutToken(ApiToken),
    PutScim(String, serde_json::Value),
}

impl Op {
    /// The `i`th write of writer `t`: keys the backup may have read already or not yet,
    /// memberships added and removed (their reverse-index entries with them), records outside
    /// the model.
    fn nth(t: usize, i: usize) -> Op {
        let some_user = |salt: usize| format!("base-{:05}", (i * salt + t) % USERS);
        let group = if i.is_multiple_of(2) { "base" } else { "two" };
        match i % 6 {
            0 => {
                let mut u = user(&some_user(7919));
                u.display_name = format!("renamed by {t} at {i}");
                Op::PutUser(u)
            }
            1 => Op::AddMember(group, some_user(31)),
            2 => Op::RemoveMember(group, some_user(37)),
            3 => Op::DeleteUser(some_user(104_729)),
            4 => Op::PutToken(ApiToken {
                id: format!("tok-{t}-{}", i % 50),
                name: format!("written at {i}"),
                user_id: some_user(13),
                secret_hash: "ab".repeat(32),
                created_by: "test".into(),
                ..ApiToken::default()
            }),
            _ => Op::PutScim(some_user(101), serde_json::json!({ "written": i })),
        }
    }

    /// Applies the write if it changes something; the revision it committed, if it did.
    fn apply(&self, store: &Store) -> Option<u64> {
        let (revision, applied) = store
            .transact(|tx| {
                Ok::<_, store::Error>(match self {
                    Op::PutUser(u) => {
                        tx.put_user(u)?;
                        true
                    }
                    Op::DeleteUser(id) if tx.user(id)?.is_some() => {
                        tx.delete_user(id)?;
                        true
                    }
                    Op::AddMember(group, id) if tx.user(id)?.is_some() => {
                        tx.add_members(group, &[member(group, id)])? == 1
                    }
                    Op::RemoveMember(group, id) => tx.remove_members(group, &[id])? == 1,
                    Op::PutToken(token) => {
                        tx.put_token(token)?;
                        true
                    }
                    Op::PutScim(id, document) => {
                        tx.put_scim(ScimKind::User, id, document)?;
                        true
                    }
                    Op::DeleteUser(_) | Op::AddMember(..) => false,
                })
            })
            .unwrap();
        applied.then_some(revision)
    }
}

/// Every key and value of a closed store but its id (a restored store has a new one).
fn records(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    raw_records(dir, b"")
        .into_iter()
        .filter(|(key, _)| key != b"meta/id")
        .collect()
}

/// A store with `USERS` users, group `base` holding a tenth of them and an empty group `two`.
fn seeded(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    store.import(&big_import("base", USERS)).unwrap();
    store.put_group(&group("two"), None).unwrap();
    store
}

/// Replays the writes `acked` one at a time into a store seeded alike, and checks that each
/// backup `backup{b}` in `dir` (its summary `summaries[b]`), restored, holds exactly the keys
/// and values of the replayed store at the backup's revision.
fn restored_as_replayed(dir: &Path, acked: &BTreeMap<u64, Op>, summaries: &[BackupSummary]) {
    let replayed_dir = dir.join("replayed");
    let mut replayed = seeded(&replayed_dir);
    let mut applied = acked.iter().peekable();
    let mut by_revision: Vec<_> = summaries.iter().enumerate().collect();
    by_revision.sort_by_key(|(_, summary)| summary.manifest.revision);
    for (b, summary) in by_revision {
        let revision = summary.manifest.revision;
        while let Some((&at, op)) = applied.next_if(|&(&at, _)| at <= revision) {
            assert_eq!(op.apply(&replayed), Some(at), "{op:?}");
        }
        assert_eq!(replayed.revision(), revision);
        drop(replayed);
        let restored_dir = dir.join(format!("restored{b}"));
        let restored = Store::restore(&dir.join(format!("backup{b}")), &restored_dir).unwrap();
        assert_eq!(restored.revision, revision);
        // Opened and loaded whole: its counts and every record check out.
        let copy = Store::open(&restored_dir).unwrap();
        assert_eq!(copy.load().unwrap().revision, revision);
        drop(copy);
        let (got, want) = (records(&restored_dir), records(&replayed_dir));
        let differ: Vec<_> = got
            .keys()
            .chain(want.keys())
            .filter(|key| got.get(*key) != want.get(*key))
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .collect();
        assert!(differ.is_empty(), "backup{b} at {revision}: {differ:?}");
        replayed = Store::open(&replayed_dir).unwrap();
    }
}

/// Runs `backups` while two writers commit [`Op::nth`] writes (50 of them first), and returns
/// its summaries, every write applied by its revision, and the last revision applied before
/// `backups` began.
fn under_writes(
    store: &Store,
    backups: impl FnOnce() -> Vec<BackupSummary>,
) -> (Vec<BackupSummary>, BTreeMap<u64, Op>, u64) {
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(BTreeMap::new());
    let (summaries, before) = std::thread::scope(|s| {
        for t in 0..2 {
            let (stop, acked) = (&stop, &acked);
            s.spawn(move || {
                until_stopped(stop, |i| {
                    let op = Op::nth(t, i);
                    if let Some(revision) = op.apply(store) {
                        assert!(acked.lock().unwrap().insert(revision, op).is_none());
                    }
                })
            });
        }
        let _stop_writers = StopOnDrop(&stop);
        wait_for_entries("50 applied writes", Duration::from_secs(60), &acked, 50);
        let before = *acked.lock().unwrap().keys().next_back().unwrap();
        (backups(), before)
    });
    (summaries, acked.into_inner().unwrap(), before)
}

/// Asserts that writes were applied after `before` and by the last backup's revision: while
/// the backups copied, and so in them.
fn writes_landed_during(summaries: &[BackupSummary], acked: &BTreeMap<u64, Op>, before: u64) {
    let last = summaries.iter().map(|s| s.manifest.revision).max().unwrap();
    assert!(
        acked.range(before + 1..=last).next().is_some(),
        "no write landed while the backups ran"
    );
}

#[test]
fn backups_taken_under_writes_hold_every_key_exactly_as_at_their_revision() {
    let dir = TempDir::new().unwrap();
    let store = seeded(&dir.path().join("data"));
    let (store, out) = (&store, dir.path());
    let (summaries, acked, before) = under_writes(store, || {
        // Two at once (the second finds the first tracking and copies under the lock), then
        // one alone.
        let mut summaries: Vec<_> = std::thread::scope(|s| {
            let together: Vec<_> = (0..2)
                .map(|b| s.spawn(move || store.backup_to(&out.join(format!("backup{b}"))).unwrap()))
                .collect();
            together.into_iter().map(|h| h.join().unwrap()).collect()
        });
        summaries.push(store.backup_to(&out.join("backup2")).unwrap());
        summaries
    });
    // Alone, it tracked the writes made meanwhile rather than copy under the lock.
    assert!(!summaries[2].copied_under_lock);
    restored_as_replayed(out, &acked, &summaries);
    writes_landed_during(&summaries, &acked, before);
}

#[test]
fn a_backup_with_more_writes_than_it_tracks_copies_under_the_lock_at_one_revision() {
    let dir = TempDir::new().unwrap();
    let store = seeded(&dir.path().join("data"));
    // A write notes at least two keys (its record and its change-log record), so two writes
    // during the copy overflow this, where 262,144 keys would otherwise be needed.
    store.set_backup_tracking_limit_for_tests(2);
    let (summaries, acked, before) = under_writes(&store, || {
        vec![store.backup_to(&dir.path().join("backup0")).unwrap()]
    });
    assert!(
        summaries[0].copied_under_lock,
        "the backup tracked every write: {summaries:?}"
    );
    restored_as_replayed(dir.path(), &acked, &summaries);
    writes_landed_during(&summaries, &acked, before);
}

#[test]
fn a_commit_made_while_a_backup_copies_is_not_held_until_it_ends() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    // Big enough that copying it takes many writes of the 1 MiB output buffer.
    store.import(&big_import("base", 50_000)).unwrap();
    let out = dir.path().join("backup");
    let records = out.join(store::BACKUP_RECORDS);
    let finished = AtomicBool::new(false);
    let (summary, committed, finished_first) = std::thread::scope(|s| {
        let backup = s.spawn(|| {
            let summary = store.backup_to(&out).unwrap();
            finished.store(true, Ordering::SeqCst);
            summary
        });
        // Records on disk: the copy is under way (a backup that held the write lock for it
        // would hold this commit until the copy ended).
        wait_for(
            "the backup's first records on disk",
            Duration::from_secs(120),
            || match std::fs::metadata(&records) {
                Ok(meta) if meta.len() > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        let committed = store.put_user(&user("written-meanwhile")).unwrap();
        let finished_first = finished.load(Ordering::SeqCst);
        (backup.join().unwrap(), committed, finished_first)
    });
    assert!(
        !finished_first,
        "the backup finished before the commit returned"
    );
    // The commit is in the backup: it was made while the copy went on, not after it.
    assert!(
        committed <= summary.manifest.revision,
        "committed at {committed}, the backup is at {}",
        summary.manifest.revision
    );
    let restored_dir = dir.path().join("restored");
    Store::restore(&out, &restored_dir).unwrap();
    let copy = Store::open(&restored_dir).unwrap();
    let model = copy.load().unwrap();
    assert_eq!(model.users.len(), 50_001);
    assert!(model.users.iter().any(|u| u.id == "written-meanwhile"));
}
