//! A backup carries the decision log (the store's journal) exactly: its blocks, each with
//! exactly its index entries, without a gap, while decisions are appended and swept.

use crate::support::*;
use decision_log::{Log, LoggedDecision, Retention, Writer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::Store;
use tempfile::TempDir;

/// Restores the backup in `out` next to it and opens the copy.
fn restored(out: &std::path::Path) -> Store {
    let restored_dir = out.with_extension("restored");
    Store::restore(out, &restored_dir).unwrap();
    Store::open(&restored_dir).unwrap()
}

#[test]
fn a_backup_restores_the_log_and_appends_carry_on_after_it() {
    let (_dir, store) = alice_and_bob();
    let log = Writer::open(&store, Retention::default()).unwrap();
    let mut decisions: Vec<LoggedDecision> = (0..5)
        .map(|i| match i % 2 {
            0 => decision("alice", NOW + i, "create_issue"),
            _ => unknown("nobody", NOW + i, "create_issue"),
        })
        .collect();
    log.append(&mut decisions).unwrap();
    let out = TempDir::new().unwrap();
    let backup = out.path().join("backup");
    let summary = store.backup_to(&backup).unwrap();
    assert_eq!(summary.manifest.decision_entries, 1, "one block");

    let copy = restored(&backup);
    let (before, after) = (Log::of(&store), Log::of(&copy));
    assert_eq!(
        after.decisions(None, usize::MAX).unwrap(),
        before.decisions(None, usize::MAX).unwrap()
    );
    let alice = after.decisions_of("alice", [], usize::MAX).unwrap();
    assert_eq!(alice, before.decisions_of("alice", [], usize::MAX).unwrap());
    assert_eq!(alice.len(), 3);
    assert_eq!(after.decisions_of("nobody", [], 10).unwrap().len(), 2);
    // Numbering carries on after the last decision backed up.
    let mut more = [decision("bob", NOW + 9, "later")];
    Writer::open(&copy, Retention::default())
        .unwrap()
        .append(&mut more)
        .unwrap();
    assert_eq!(more[0].seq, 6);
    assert_eq!(after.count().unwrap(), 6);
}

#[test]
fn the_decision_log_copied_while_appended_and_swept_has_no_gap() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    store.put_user(&user("alice")).unwrap();
    let log = Writer::open(
        &store,
        Retention {
            max_age: Duration::from_secs(3600),
            max_records: 2_000,
        },
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let outs: Vec<_> = (0..4)
        .map(|b| dir.path().join(format!("backup{b}")))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut appended = 0u64;
            while !stop.load(Ordering::Relaxed) || appended < 5_000 {
                let mut batch: Vec<LoggedDecision> = (0..100)
                    .map(|i| match i % 3 {
                        0 => decision("alice", NOW, &format!("t{appended}-{i}")),
                        _ => unknown("ghost", NOW, &format!("t{appended}-{i}")),
                    })
                    .collect();
                log.append(&mut batch).unwrap();
                appended += 100;
                while log.sweep(NOW, 10_000).unwrap().more {}
            }
        });
        let _stop_writer = StopOnDrop(&stop);
        test_support::wait_for(
            "1,000 logged decisions",
            test_support::PATIENCE,
            || match Log::of(&store).count().unwrap() {
                n if n >= 1_000 => Ok(()),
                n => Err(format!("{n} logged")),
            },
        );
        for out in &outs {
            store.backup_to(out).unwrap();
        }
    });
    for out in &outs {
        let copy = Log::of(&restored(out));
        let decisions = copy.decisions(None, usize::MAX).unwrap();
        assert!(!decisions.is_empty());
        assert_eq!(copy.count().unwrap(), decisions.len() as u64);
        for pair in decisions.windows(2) {
            assert_eq!(pair[1].seq + 1, pair[0].seq, "a gap in the copied log");
        }
        // Index entries of exactly what was copied: alice's decisions are all found by her
        // index, and the ghost's too.
        let alice = copy.decisions_of("alice", [], usize::MAX).unwrap();
        assert_eq!(
            alice.len(),
            decisions.iter().filter(|d| d.user == "alice").count()
        );
        let ghost = copy.decisions_of("ghost", [], usize::MAX).unwrap();
        assert_eq!(alice.len() + ghost.len(), decisions.len());
    }
}
