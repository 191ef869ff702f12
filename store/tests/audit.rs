//! The audit log's retention ([`Store::sweep_audit`]) and bounded listing
//! ([`Store::scan_audit`]), on real sled directories; and backups taken while it is swept.

use crate::support::*;
use pdp::Timestamp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{AuditEvent, AuditRetention, Store};
use tempfile::TempDir;

const DAY_MS: i64 = 86_400_000;
const NOW: i64 = 1_767_225_600_000;

fn event(time_ms: i64, action: &str, actor: &str) -> AuditEvent {
    AuditEvent {
        time: Timestamp(time_ms),
        actor: actor.into(),
        action: action.into(),
        target_kind: "user".into(),
        target_id: "alice".into(),
        outcome: "ok".into(),
        ..AuditEvent::default()
    }
}

fn seqs(store: &Store) -> Vec<u64> {
    store
        .audit_events(None, usize::MAX, |_| true, |_| false)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// Sweeps until nothing is left to remove, in steps of `limit`; returns how many steps.
fn sweep_all(store: &Store, retention: AuditRetention, limit: usize) -> usize {
    let mut steps = 0;
    loop {
        steps += 1;
        // Each step removes up to `limit` of at most a few thousand: never this many.
        assert!(steps < 100_000, "the sweep never ends");
        let swept = store.sweep_audit(retention, NOW, limit).unwrap();
        assert!(swept.removed <= limit as u64);
        if !swept.more {
            return steps;
        }
    }
}

#[test]
fn retention_keeps_the_newest_max_records_in_bounded_steps() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut appended = Vec::new();
    for _ in 0..100 {
        appended.push(store.append_audit(event(NOW, "user.lock", "u1")).unwrap());
    }
    let retention = AuditRetention {
        max_age: Duration::from_secs(3600),
        max_records: 10,
    };
    // 90 to remove, at most 25 a step: four steps.
    assert_eq!(sweep_all(&store, retention, 25), 4);
    let kept = seqs(&store);
    assert_eq!(kept.len(), 10);
    assert_eq!(kept[0], *appended.last().unwrap());
    assert_eq!(store.audit_span().unwrap(), 10);
    // Nothing more to do.
    assert_eq!(store.sweep_audit(retention, NOW, 25).unwrap().removed, 0);
}

#[test]
fn retention_removes_old_events_but_always_keeps_the_newest() {
    let dir = TempDir::new().unwrap();
    let newest = {
        let store = Store::open(dir.path()).unwrap();
        let mut newest = 0;
        for age_days in [400, 300, 200, 100, 10, 1] {
            newest = store
                .append_audit(event(NOW - age_days * DAY_MS, "user.lock", "u1"))
                .unwrap();
        }
        let year = AuditRetention {
            max_age: Duration::from_secs(365 * 86_400),
            max_records: 1_000,
        };
        assert_eq!(store.sweep_audit(year, NOW, 100).unwrap().removed, 1);
        let quarter = AuditRetention {
            max_age: Duration::from_secs(90 * 86_400),
            ..year
        };
        assert_eq!(store.sweep_audit(quarter, NOW, 100).unwrap().removed, 3);
        assert_eq!(seqs(&store).len(), 2);
        // Everything is too old: the newest stays, so numbering never goes back.
        let none = AuditRetention {
            max_age: Duration::from_millis(1),
            ..year
        };
        assert_eq!(store.sweep_audit(none, NOW, 100).unwrap().removed, 1);
        assert_eq!(seqs(&store), [newest]);
        newest
    };
    let store = Store::open(dir.path()).unwrap();
    let seq = store.append_audit(event(NOW, "user.unlock", "u1")).unwrap();
    assert_eq!(
        seq,
        newest + 1,
        "numbering continues after the newest kept event"
    );
}

#[test]
fn retention_counts_the_events_of_changes_too() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..20 {
        store
            .transact(|tx| {
                tx.put_user(&user(&format!("u{i}")))?;
                tx.audit(event(NOW, "user.create", "admin"))?;
                Ok::<_, store::Error>(())
            })
            .unwrap();
    }
    let retention = AuditRetention {
        max_age: Duration::from_secs(3600),
        max_records: 5,
    };
    sweep_all(&store, retention, 1_000);
    let kept = store
        .audit_events(None, usize::MAX, |_| true, |_| false)
        .unwrap();
    assert_eq!(kept.len(), 5);
    assert!(kept.iter().all(|e| e.action == "user.create"));
    // The model is untouched.
    assert_eq!(store.load().unwrap().users.len(), 20);
}

#[test]
fn a_listing_examines_a_bounded_number_of_events_and_says_where_to_go_on() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let needle = store.append_audit(event(NOW, "user.lock", "okta")).unwrap();
    for _ in 0..95 {
        store
            .append_audit(event(NOW, "user.update", "okta"))
            .unwrap();
    }
    let wanted = |e: &AuditEvent| e.action == "user.lock";
    let mut before = None;
    let mut pages = 0;
    let found = loop {
        pages += 1;
        assert!(pages <= 5, "no needle in 5 pages");
        let scan = store.scan_audit(before, 10, 20, wanted, |_| false).unwrap();
        if !scan.events.is_empty() {
            assert!(scan.more.is_none(), "the needle is the oldest event");
            break scan.events;
        }
        before = Some(scan.more.expect("more to read"));
    };
    assert_eq!(pages, 5);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].seq, needle);
    // A filter matching nothing ends, with no token, once the log is read.
    let mut before = None;
    for _ in 0..5 {
        let scan = store
            .scan_audit(before, 10, 20, |_| false, |_| false)
            .unwrap();
        assert!(scan.events.is_empty());
        before = scan.more;
    }
    assert_eq!(before, None);
    // The page bound still applies.
    let page = store
        .scan_audit(None, 3, 1_000, |_| true, |_| false)
        .unwrap();
    assert_eq!(page.events.len(), 3);
    assert_eq!(page.more, Some(page.events[2].seq));
}

#[test]
fn a_backup_taken_while_the_audit_log_is_swept_has_no_gap() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    eng_and_ops(&store);
    let retention = AuditRetention {
        max_age: Duration::from_secs(3600),
        max_records: 2_000,
    };
    let stop = AtomicBool::new(false);
    let outs: Vec<_> = (0..4)
        .map(|b| dir.path().join(format!("backup{b}")))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut appended = 0u64;
            while !stop.load(Ordering::Relaxed) || appended < 5_000 {
                for _ in 0..100 {
                    // Big events, so reading the log overlaps many sweeps.
                    let mut big = event(NOW, "auth.denied", "u1");
                    big.detail = "x".repeat(500);
                    store.append_audit(big).unwrap();
                }
                appended += 100;
                // Small steps, so sweeps interleave with the backups' reads.
                while store.sweep_audit(retention, NOW, 50).unwrap().more {}
            }
        });
        let _stop_writer = StopOnDrop(&stop);
        wait_for(
            "an audit span of 1,000",
            std::time::Duration::from_secs(30),
            || match store.audit_span().unwrap() {
                n if n >= 1_000 => Ok(()),
                n => Err(format!("a span of {n}")),
            },
        );
        for out in &outs {
            store.backup_to(out).unwrap();
        }
    });
    assert!(store.audit_span().unwrap() <= 2_000);
    for out in &outs {
        let restored_dir = out.with_extension("restored");
        Store::restore(out, &restored_dir).unwrap();
        let copy = Store::open(&restored_dir).unwrap();
        let kept = seqs(&copy);
        assert!(kept.len() >= 1_000, "{}", kept.len());
        for pair in kept.windows(2) {
            assert_eq!(pair[1] + 1, pair[0], "a gap in the copied audit log");
        }
    }
}
