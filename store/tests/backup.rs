//! Backups ([`Store::backup_to`]) and restores ([`Store::restore`]): everything comes back at
//! the backup's revision, under writes too; damaged backups and non-empty targets are refused.

use crate::support::*;
use pdp::Timestamp;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use store::{ApiToken, AuditEvent, BackupError, JournalBatch, ScimConnection, ScimKind, Store};
use tempfile::TempDir;

/// A store with every kind of record: the model, a token, a SCIM connection and documents,
/// audit events (with a change and refused), a change log and a journal (entries and their
/// index, as the decision log keeps its blocks).
fn full_store(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    eng_and_ops(&store);
    store.put_policy(&policy("p1")).unwrap();
    store
        .transact(|tx| {
            tx.put_agent(&agent("claude", &["claude-oauth"]))?;
            tx.put_settings(&pdp::Settings {
                unregistered_agents: pdp::Unregistered::Deny,
            })?;
            tx.put_token(&ApiToken {
                id: "tok1".into(),
                name: "ci".into(),
                user_id: "alice".into(),
                secret_hash: "ab".repeat(32),
                created_by: "cli".into(),
                ..ApiToken::default()
            })?;
            tx.put_connection(&ScimConnection {
                id: "okta1".into(),
                name: "okta".into(),
                secret_hash: "cd".repeat(32),
                ..ScimConnection::default()
            })?;
            tx.put_scim(
                ScimKind::User,
                "alice",
                &serde_json::json!({"userName": "alice@example.com"}),
            )?;
            let mut locked = user("bob");
            locked.active = false;
            tx.put_user(&locked)?;
            tx.audit(AuditEvent {
                time: Timestamp(5),
                actor: "alice".into(),
                action: "user.update".into(),
                target_kind: "user".into(),
                target_id: "bob".into(),
                outcome: "ok".into(),
                ..AuditEvent::default()
            })?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
    store
        .append_audit(AuditEvent {
            actor: "mallory".into(),
            action: "auth.denied".into(),
            outcome: "denied".into(),
            ..AuditEvent::default()
        })
        .unwrap();
    let mut batch = JournalBatch::default();
    for seq in [1, 3] {
        batch.insert(seq, format!("entry {seq}").as_bytes());
        batch.index(b"i/alice\0", seq);
    }
    batch.index(b"k/nobody\0", 3);
    store.journal().apply(batch).unwrap();
    store
}

/// Everything a store holds that the API reads, to compare a restored store with its original.
#[derive(Debug, PartialEq)]
struct Everything {
    model: pdp::Model,
    tokens: Vec<ApiToken>,
    connections: Vec<ScimConnection>,
    scim: Option<serde_json::Value>,
    audit: Vec<AuditEvent>,
    touched: Option<store::Touched>,
    journal: Vec<(u64, Vec<u8>)>,
    alice_entries: Vec<u64>,
}

fn everything(store: &Store) -> Everything {
    let revision = store.revision();
    Everything {
        model: sorted(store.load().unwrap()),
        tokens: store.tokens().unwrap(),
        connections: store.connections().unwrap(),
        scim: store.get_scim(ScimKind::User, "alice").unwrap(),
        audit: store
            .audit_events(None, usize::MAX, |_| true, |_| false)
            .unwrap(),
        touched: store.touched_between(0, revision).unwrap(),
        journal: store
            .journal()
            .range(..)
            .map(|entry| entry.map(|(seq, value)| (seq, value.to_vec())).unwrap())
            .collect(),
        alice_entries: store
            .journal()
            .indexed(b"i/alice\0")
            .map(Result::unwrap)
            .collect(),
    }
}

#[test]
fn a_backup_restores_everything_at_its_revision_under_a_new_id() {
    let dir = TempDir::new().unwrap();
    let store = full_store(&dir.path().join("data"));
    let before = everything(&store);
    assert_eq!(before.journal.len(), 2);
    assert_eq!(before.alice_entries, [1, 3]);
    assert!(before.touched.is_some());

    let out = dir.path().join("backups/one");
    let summary = store.backup_to(&out).unwrap();
    let manifest = &summary.manifest;
    assert_eq!(manifest.revision, store.revision());
    assert_eq!(manifest.store_id, store.id());
    assert_eq!(
        (
            manifest.users,
            manifest.groups,
            manifest.memberships,
            manifest.policies,
            manifest.agents
        ),
        (2, 2, 3, 1, 1)
    );
    assert_eq!(before.model.agents, [agent("claude", &["claude-oauth"])]);
    assert_eq!(
        before.model.settings.unregistered_agents,
        pdp::Unregistered::Deny
    );
    assert!(manifest.decision_entries >= 1);
    assert_eq!(store::read_manifest(&out).unwrap(), *manifest);
    let files = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(files, 2);
    // The source keeps serving.
    store.put_user(&user("carol")).unwrap();

    let restored_dir = dir.path().join("restored");
    let restored = Store::restore(&out, &restored_dir).unwrap();
    assert_eq!(restored.revision, manifest.revision);
    let copy = Store::open(&restored_dir).unwrap();
    assert_eq!(copy.revision(), manifest.revision);
    assert_eq!(copy.id(), restored.store_id);
    // Its revisions after the backup's are its own, not the original's: another store to
    // followers.
    assert_ne!(copy.id(), store.id());
    assert_eq!(everything(&copy), before);
    assert_eq!(manifest.decision_entries, 2);
    // It takes writes, from the backup's revision on.
    assert_eq!(copy.put_user(&user("dave")).unwrap(), manifest.revision + 1);
}

#[test]
fn a_restored_store_survives_a_reopen() {
    let dir = TempDir::new().unwrap();
    let store = full_store(&dir.path().join("data"));
    let before = everything(&store);
    let out = dir.path().join("backup");
    store.backup_to(&out).unwrap();
    let restored_dir = dir.path().join("restored");
    let id = Store::restore(&out, &restored_dir).unwrap().store_id;
    for _ in 0..2 {
        let copy = Store::open(&restored_dir).unwrap();
        assert_eq!(copy.id(), id);
        assert_eq!(everything(&copy), before);
    }
}

#[test]
fn an_empty_store_backs_up_and_restores() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    let out = dir.path().join("backup");
    let summary = store.backup_to(&out).unwrap();
    assert_eq!(summary.manifest.revision, 0);
    let restored = Store::restore(&out, &dir.path().join("restored")).unwrap();
    assert_eq!(restored.revision, 0);
}

#[test]
fn backups_and_restores_refuse_a_target_that_is_not_empty() {
    let dir = TempDir::new().unwrap();
    let store = full_store(&dir.path().join("data"));
    let out = dir.path().join("backup");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let error = store.backup_to(&out).unwrap_err();
    assert!(matches!(error, BackupError::NotEmpty { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is not empty: a backup or a restore goes into a new or empty directory",
            out.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );

    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    store.backup_to(&empty).unwrap();

    // So is restoring into an empty one, and not into a store.
    let error = Store::restore(&empty, &dir.path().join("data")).unwrap_err();
    assert!(matches!(error, BackupError::NotEmpty { .. }), "{error}");
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    Store::restore(&empty, &target).unwrap();

    // Nor inside the data directory, where it would be part of the store it copies.
    let inside = dir.path().join("data/backup");
    let error = store.backup_to(&inside).unwrap_err();
    assert!(matches!(error, BackupError::InsideStore { .. }), "{error}");
    assert!(!inside.exists());
}

#[test]
fn a_damaged_backup_is_refused_and_leaves_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let store = full_store(&dir.path().join("data"));
    let out = dir.path().join("backup");
    store.backup_to(&out).unwrap();
    let records = out.join(store::BACKUP_RECORDS);
    let good = std::fs::read(&records).unwrap();

    let restore = |name: &str| {
        let target = dir.path().join(name);
        let error = Store::restore(&out, &target).unwrap_err();
        assert!(!target.exists(), "{name}: the target is removed");
        error
    };

    // One byte flipped inside a value.
    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x20;
    std::fs::write(&records, &flipped).unwrap();
    let error = restore("flipped");
    assert!(matches!(error, BackupError::Damaged { .. }), "{error}");
    assert!(
        error.to_string().contains("do not match the manifest")
            || error.to_string().contains("ends in the middle"),
        "{error}"
    );

    // Cut short, with the manifest's size fixed to match.
    let manifest_path = out.join(store::BACKUP_MANIFEST);
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    std::fs::write(&records, &good[..good.len() - 3]).unwrap();
    let error = restore("short");
    assert!(error.to_string().contains("holds"), "{error}");
    manifest["bytes"] = (good.len() as u64 - 3).into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = restore("short-fixed");
    assert!(
        error.to_string().contains("ends in the middle of a record"),
        "{error}"
    );

    // A manifest from a newer build.
    std::fs::write(&records, &good).unwrap();
    manifest["bytes"] = (good.len() as u64).into();
    manifest["store_format"] = 99.into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = restore("newer");
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is not a usable backup: it holds store format 99, this build reads format 1 \
             (restore it with the build that made it)",
            out.display()
        )
    );

    // No manifest: an unfinished backup.
    std::fs::remove_file(&manifest_path).unwrap();
    let error = restore("unfinished");
    assert!(
        error.to_string().contains("there is no `backup.json`"),
        "{error}"
    );

    // Put back as it was, it restores.
    std::fs::write(&manifest_path, manifest_text).unwrap();
    Store::restore(&out, &dir.path().join("good")).unwrap();
}

/// A write of the backup-under-writes test, as committed.
#[derive(Debug, Clone)]
enum Op {
    PutUser(pdp::User),
    DeleteUser(String),
    PutPolicy(pdp::Policy),
}

#[test]
fn a_backup_taken_under_writes_restores_exactly_one_revision() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    // Big enough that reading it overlaps many writes.
    store.import(&big_import("base", 20_000)).unwrap();
    let initial = store.load().unwrap();
    let stop = AtomicBool::new(false);
    // Each acknowledged revision and what it wrote, from both writers.
    let acked = std::sync::Mutex::new(BTreeMap::new());
    let (backups, acked_at_start) = std::thread::scope(|s| {
        for t in 0..2 {
            let (store, stop, acked) = (&store, &stop, &acked);
            s.spawn(move || {
                until_stopped(stop, |i| {
                    // New users, users read before the backup rewritten, users deleted (the
                    // last two land on keys the backup may have read already, or not yet).
                    let op = match i % 4 {
                        0 | 1 => {
                            let mut u = user(&format!("base-{:05}", (i * 7919 + t) % 20_000));
                            u.display_name = format!("renamed by {t} at {i}");
                            Op::PutUser(u)
                        }
                        2 => Op::DeleteUser(format!("base-{:05}", (i * 104_729 + t) % 20_000)),
                        _ => {
                            let mut p = policy(&format!("w{t}-{i}"));
                            p.name = format!("written by {t}");
                            Op::PutPolicy(p)
                        }
                    };
                    let done = op.clone();
                    let revision = store
                        .transact(move |tx| {
                            match &done {
                                Op::PutUser(u) => tx.put_user(u)?,
                                Op::DeleteUser(id) if tx.user(id)?.is_some() => {
                                    tx.delete_user(id)?
                                }
                                Op::DeleteUser(_) => {}
                                Op::PutPolicy(p) => tx.put_policy(p)?,
                            }
                            Ok::<_, store::Error>(())
                        })
                        .unwrap()
                        .0;
                    acked
                        .lock()
                        .unwrap()
                        .entry(revision)
                        .or_insert_with(Vec::new)
                        .push(op);
                })
            });
        }
        let _stop_writers = StopOnDrop(&stop);
        wait_for_entries(
            "20 acknowledged writes",
            std::time::Duration::from_secs(30),
            &acked,
            20,
        );
        let mut backups = Vec::new();
        let mut acked_at_start = Vec::new();
        for b in 0..3 {
            acked_at_start.push(*acked.lock().unwrap().keys().next_back().unwrap());
            let out = dir.path().join(format!("backup{b}"));
            backups.push((out.clone(), store.backup_to(&out).unwrap()));
        }
        (backups, acked_at_start)
    });
    let acked = acked.into_inner().unwrap();
    let mut overlapped = 0;
    for ((out, summary), acked_before) in backups.into_iter().zip(acked_at_start) {
        let revision = summary.manifest.revision;
        assert!(revision >= acked_before, "{revision} < {acked_before}");
        overlapped += acked.range(acked_before + 1..=revision).count();
        let restored_dir = out.with_extension("restored");
        assert_eq!(
            Store::restore(&out, &restored_dir).unwrap().revision,
            revision
        );
        let model = Store::open(&restored_dir).unwrap().load().unwrap();
        assert_eq!(model.revision, revision);
        // Exactly the store at that revision: the initial model and every write up to it.
        let mut expected = initial.clone();
        for ops in acked.range(..=revision).map(|(_, ops)| ops) {
            for op in ops {
                match op {
                    Op::PutUser(u) => {
                        expected.users.retain(|x| x.id != u.id);
                        expected.users.push(u.clone());
                    }
                    Op::DeleteUser(id) => {
                        expected.users.retain(|x| &x.id != id);
                        expected.memberships.retain(|m| &m.user_id != id);
                    }
                    Op::PutPolicy(p) => expected.policies.push(p.clone()),
                }
            }
        }
        expected.revision = revision;
        assert!(
            sorted(model) == sorted(expected),
            "backup at revision {revision}"
        );
    }
    // The backups ran while writes were committed, not between them.
    assert!(overlapped > 0, "no write landed while a backup ran");
}

#[test]
fn approval_flows_and_the_default_flow_survive_a_backup_and_restore() {
    let dir = TempDir::new().unwrap();
    let store = full_store(&dir.path().join("data"));
    let flow = pdp::ApprovalFlow {
        id: "flw_1".into(),
        name: "Deploys".into(),
        steps: vec![pdp::ApprovalStep {
            approvers: vec![pdp::Approver::Manager, pdp::Approver::Group("eng".into())],
            min_approvals: 2,
            timeout_secs: Some(1800),
        }],
        grant: pdp::GrantMode::Window { seconds: 3600 },
        ..pdp::ApprovalFlow::default()
    };
    store
        .transact(|tx| {
            tx.put_flow(&flow)?;
            tx.put_default_flow(Some("flw_1"))
        })
        .unwrap();
    let out = dir.path().join("backup");
    store.backup_to(&out).unwrap();
    let restored_dir = dir.path().join("restored");
    Store::restore(&out, &restored_dir).unwrap();
    let copy = Store::open(&restored_dir).unwrap();
    assert_eq!(copy.flows().unwrap(), std::slice::from_ref(&flow));
    assert_eq!(copy.get_flow("flw_1").unwrap(), Some(flow));
    assert_eq!(copy.default_flow().unwrap().as_deref(), Some("flw_1"));
}
