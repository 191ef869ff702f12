//! The decision log ([`Writer`], [`Log`]): appends, a user's decisions newest first, retention
//! by age and by count, reopening; and that none of it touches the model's revision or change
//! log.

use crate::support::*;
use decision_log::{Log, LoggedDecision, Retention, Swept, Writer};
use std::time::Duration;
use store::Store;

fn tools(decisions: &[LoggedDecision]) -> Vec<&str> {
    decisions.iter().map(|d| d.tool.as_str()).collect()
}

fn keep(max_age_days: u64, max_records: u64) -> Retention {
    Retention {
        max_age: Duration::from_secs(max_age_days * 24 * 60 * 60),
        max_records,
    }
}

/// alice's keys besides her id, as GetUser passes them.
fn alice_keys() -> Vec<String> {
    let alice = user("alice");
    let mut keys = alice.emails.clone();
    keys.push(alice.user_name.clone());
    keys.extend(alice.external_id.clone());
    keys
}

fn of_alice(store: &Store, limit: usize) -> Vec<LoggedDecision> {
    let keys = alice_keys();
    Log::of(store)
        .decisions_of("alice", keys.iter().map(String::as_str), limit)
        .unwrap()
}

#[test]
fn a_users_decisions_come_back_newest_first_whatever_key_named_them() {
    let (_dir, store) = alice_and_bob();
    let revision = store.revision();
    let log = Writer::open(&store, Retention::default()).unwrap();
    let mut batch = vec![
        decision("alice", NOW, "by-id"),
        decision("bob", NOW + 1, "bob's"),
        decision("ALICE@example.com", NOW + 2, "by-email"),
        decision("ext-alice", NOW + 3, "by-external-id"),
        decision("Alice@Alt.Example.com", NOW + 4, "by-other-email"),
        // Named before alice existed (or when the key named nobody): kept under the key, never
        // resolved again against a later directory.
        unknown("alice@example.com", NOW + 5, "unknown-then"),
        unknown("nobody@example.com", NOW + 6, "nobody's"),
    ];
    log.append(&mut batch).unwrap();
    let seqs: Vec<u64> = batch.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    let resolved: Vec<Option<&str>> = batch.iter().map(|d| d.user_id.as_deref()).collect();
    assert_eq!(
        resolved,
        [
            Some("alice"),
            Some("bob"),
            Some("alice"),
            Some("alice"),
            Some("alice"),
            None,
            None
        ]
    );

    assert_eq!(
        tools(&of_alice(&store, 10)),
        [
            "unknown-then",
            "by-other-email",
            "by-external-id",
            "by-email",
            "by-id"
        ]
    );
    assert_eq!(
        tools(&of_alice(&store, 2)),
        ["unknown-then", "by-other-email"]
    );
    let got = &of_alice(&store, 10)[2];
    assert_eq!(got, &batch[3]);
    assert_eq!(
        tools(
            &Log::of(&store)
                .decisions_of("bob", ["bob@example.com"], 10)
                .unwrap()
        ),
        ["bob's"]
    );
    assert_eq!(Log::of(&store).count().unwrap(), 7);
    assert_eq!(
        Log::of(&store).decisions(None, 2).unwrap()[0].tool,
        "nobody's"
    );
    assert_eq!(
        tools(&Log::of(&store).decisions(Some(3), 10).unwrap()),
        ["bob's", "by-id"]
    );

    // The model did not move: same revision, nothing in the change log, same model.
    assert_eq!(store.revision(), revision);
    assert_eq!(store.load().unwrap().revision, revision);
    assert_eq!(
        store.touched_between(revision, revision).unwrap(),
        Some(Default::default())
    );

    // Once alice changes her email, her resolved decisions stay hers.
    let mut renamed = user("alice");
    renamed.emails = vec!["alice@new.example.com".into()];
    renamed.user_name = "alice@new.example.com".into();
    store.put_user(&renamed).unwrap();
    let found = Log::of(&store)
        .decisions_of("alice", ["alice@new.example.com"], 10)
        .unwrap();
    assert_eq!(
        tools(&found),
        ["by-other-email", "by-external-id", "by-email", "by-id"]
    );
}

#[test]
fn retention_removes_the_oldest_by_count_then_by_age() {
    let (_dir, store) = alice_and_bob();
    let log = Writer::open(&store, keep(30, 5)).unwrap();
    // One append each: one block each.
    let mut appended: Vec<LoggedDecision> = (0..8)
        .map(|i| decision("alice", NOW - (40 - i) * DAY, &format!("t{i}")))
        .collect();
    appended.push(decision("alice", NOW - DAY, "recent"));
    appended.push(unknown("zed", NOW, "zed's"));
    for d in &mut appended {
        log.append(std::slice::from_mut(d)).unwrap();
    }
    assert_eq!(Log::of(&store).count().unwrap(), 10);

    // By count first, at most 3 per sweep: 10 → 5 takes two sweeps.
    assert_eq!(
        log.sweep(NOW - 100 * DAY, 3).unwrap(),
        Swept {
            removed: 3,
            more: true
        }
    );
    assert_eq!(
        log.sweep(NOW - 100 * DAY, 3).unwrap(),
        Swept {
            removed: 2,
            more: false
        }
    );
    assert_eq!(Log::of(&store).count().unwrap(), 5);
    assert_eq!(tools(&of_alice(&store, 10)), ["recent", "t7", "t6", "t5"]);
    assert_eq!(log.sweep(NOW - 100 * DAY, 3).unwrap(), Swept::default());

    // Then by age: what is older than 30 days at NOW goes, the rest stays.
    assert_eq!(log.sweep(NOW, 100).unwrap().removed, 3);
    assert_eq!(tools(&of_alice(&store, 10)), ["recent"]);
    assert_eq!(
        tools(&Log::of(&store).decisions(None, 10).unwrap()),
        ["zed's", "recent"]
    );
    // The index entries went with them.
    assert_eq!(
        tools(&Log::of(&store).decisions_of("zed", ["ZED"], 10).unwrap()),
        ["zed's"]
    );

    // Appends carry on after the last seq, and the count stays exact.
    let mut more = vec![decision("alice", NOW + 1, "later")];
    log.append(&mut more).unwrap();
    assert_eq!(more[0].seq, 11);
    assert_eq!(Log::of(&store).count().unwrap(), 3);
}

#[test]
fn large_appends_are_kept_and_removed_in_blocks() {
    let (_dir, store) = alice_and_bob();
    let log = Writer::open(&store, keep(30, 100)).unwrap();
    let users = ["alice", "BOB@example.com", "ext-alice", "nobody"];
    // 150 decisions: blocks of 64, 64 and 22; the first two blocks are 40 days old.
    let mut batch: Vec<LoggedDecision> = (0..150)
        .map(|i| {
            let time = if i < 128 { NOW - 40 * DAY } else { NOW } + i;
            decision(users[i as usize % 4], time, &format!("t{i}"))
        })
        .collect();
    log.append(&mut batch).unwrap();
    assert_eq!(batch[149].seq, 150);
    assert_eq!(Log::of(&store).count().unwrap(), 150);
    let of_alice_all = of_alice(&store, 500);
    assert_eq!(of_alice_all.len(), 75);
    assert_eq!(of_alice_all[0].tool, "t148");
    assert_eq!(of_alice_all[74].tool, "t0");
    // Newest first across blocks, and `limit` cuts inside one.
    let some = of_alice(&store, 12);
    assert_eq!(some.len(), 12);
    assert!(some.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(some[11].tool, "t126");
    assert_eq!(
        tools(&Log::of(&store).decisions(Some(66), 3).unwrap()),
        ["t64", "t63", "t62"]
    );

    // 50 too many: the oldest block goes whole, leaving 86.
    assert_eq!(log.sweep(NOW - 100 * DAY, 1).unwrap().removed, 64);
    assert_eq!(Log::of(&store).count().unwrap(), 86);
    // Then the second block is too old, the third is not.
    assert_eq!(
        log.sweep(NOW, 1_000).unwrap(),
        Swept {
            removed: 64,
            more: false
        }
    );
    assert_eq!(Log::of(&store).count().unwrap(), 22);
    assert_eq!(of_alice(&store, 500).len(), 11);
    let bob = Log::of(&store)
        .decisions_of("bob", ["bob@example.com"], 500)
        .unwrap();
    assert_eq!(bob.len(), 6);
    assert_eq!(
        Log::of(&store)
            .decisions_of("nobody", [], 500)
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn the_log_survives_reopening_and_numbering_carries_on() {
    let (dir, store) = alice_and_bob();
    let log = Writer::open(&store, Retention::default()).unwrap();
    log.append(&mut [decision("alice", NOW, "first"), decision("bob", NOW, "b")])
        .unwrap();
    // Not synced by the append: a later model write's sync makes it durable.
    let revision = store.put_user(&user("carol")).unwrap();
    drop((log, store));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.revision(), revision);
    assert_eq!(tools(&of_alice(&store, 10)), ["first"]);
    let log = Writer::open(&store, Retention::default()).unwrap();
    let mut next = [decision("alice@example.com", NOW + 1, "second")];
    log.append(&mut next).unwrap();
    assert_eq!(next[0].seq, 3);
    assert_eq!(tools(&of_alice(&store, 10)), ["second", "first"]);
    assert_eq!(store.revision(), revision);
}

#[test]
fn with_room_for_no_records_nothing_is_kept() {
    let (_dir, store) = alice_and_bob();
    Writer::open(&store, Retention::default())
        .unwrap()
        .append(&mut [decision("alice", NOW, "kept before")])
        .unwrap();
    let off = Writer::open(&store, keep(30, 0)).unwrap();
    let mut batch = [decision("alice", NOW, "dropped")];
    off.append(&mut batch).unwrap();
    // As the engine resolved it, for other sinks.
    assert_eq!(batch[0].user_id.as_deref(), Some("alice"));
    assert_eq!(Log::of(&store).count().unwrap(), 1);
    // And the sweep empties what an earlier setting kept.
    assert_eq!(off.sweep(NOW, 100).unwrap().removed, 1);
    assert_eq!(Log::of(&store).count().unwrap(), 0);
    assert!(of_alice(&store, 10).is_empty());
}
