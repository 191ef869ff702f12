//! Imports: validation before any write, upsert semantics, and changes too large for one batch.

use crate::support::*;
use pdp::{Model, Timestamp};
use store::{Error, Store};
use tempfile::TempDir;

#[test]
fn import_writes_nothing_when_anything_is_wrong() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    store
        .put_group(&group("eng"), Some(&[member("eng", "alice")]))
        .unwrap();
    let before = store.load().unwrap();

    let good = Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 0,
        users: vec![user("bob"), user("carol")],
        groups: vec![group("eng"), group("ops")],
        memberships: vec![member("eng", "bob"), member("ops", "alice")],
        policies: vec![policy("p1")],
    };
    /// Makes a good model bad.
    type Spoil = fn(&mut Model);
    let cases: Vec<(&str, Spoil)> = vec![
        ("unknown user", |m| {
            m.memberships.push(member("ops", "mallory"))
        }),
        ("unknown group", |m| {
            m.memberships.push(member("nope", "bob"))
        }),
        ("duplicate user", |m| m.users.push(user("bob"))),
        ("duplicate group", |m| m.groups.push(group("ops"))),
        ("duplicate policy", |m| m.policies.push(policy("p1"))),
        ("duplicate membership", |m| {
            m.memberships.push(member("eng", "bob"))
        }),
        ("empty user id", |m| m.users.push(user(""))),
        ("nul in group id", |m| m.groups.push(group("a\0b"))),
        ("long policy id", |m| {
            m.policies.push(policy(&"p".repeat(257)))
        }),
        ("bad membership user id", |m| {
            m.memberships.push(member("eng", ""))
        }),
    ];
    for (case, spoil) in cases {
        let mut bad = good.clone();
        spoil(&mut bad);
        let error = store.import(&bad).unwrap_err();
        assert_eq!(store.load().unwrap(), before, "{case}: {error}");
        assert_eq!(store.revision(), before.revision, "{case}");
    }

    let summary = store.import(&good).unwrap();
    assert_eq!(summary.revision, before.revision + 1);
    assert_eq!(
        (
            summary.users,
            summary.groups,
            summary.memberships,
            summary.policies
        ),
        (2, 2, 2, 1)
    );
}

#[test]
fn import_error_messages_name_what_is_wrong() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let message = |model: Model| store.import(&model).unwrap_err().to_string();
    assert_eq!(
        message(Model {
            users: vec![user("a\0b")],
            ..Model::default()
        }),
        "invalid user id `a\\0b`: must not contain a NUL character"
    );
    assert_eq!(
        message(Model {
            groups: vec![group("")],
            ..Model::default()
        }),
        "invalid group id ``: must not be empty"
    );
    assert_eq!(
        message(Model {
            users: vec![user("x"), user("x")],
            ..Model::default()
        }),
        "duplicate user `x`"
    );
    assert_eq!(
        message(Model {
            groups: vec![group("g")],
            memberships: vec![member("g", "ghost")],
            ..Model::default()
        }),
        "the membership of user `ghost` in group `g` names a user that does not exist"
    );
}

#[test]
fn import_upserts_and_replaces_member_sets_of_imported_groups_only() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    store
        .put_group(&group("empty-me"), Some(&[member("empty-me", "bob")]))
        .unwrap();
    store.put_policy(&policy("keep")).unwrap();

    let mut alice = user("alice");
    alice.display_name = "Alice Renamed".into();
    let mut eng = group("eng");
    eng.description = "new".into();
    let mut rejoined = member("ops", "alice");
    rejoined.joined_at = Timestamp(7);
    store
        .import(&Model {
            agents: Vec::new(),
            settings: Default::default(),
            revision: 999,
            users: vec![alice.clone(), user("carol")],
            groups: vec![eng.clone(), group("empty-me")],
            memberships: vec![
                member("eng", "carol"),
                member("ops", "carol"),
                rejoined.clone(),
            ],
            policies: vec![policy("new")],
        })
        .unwrap();

    assert_eq!(store.get_user("alice").unwrap(), Some(alice));
    assert_eq!(
        store.get_user("bob").unwrap(),
        Some(user("bob")),
        "users not in the model stay"
    );
    assert_eq!(store.get_group("eng").unwrap(), Some(eng));
    assert_eq!(
        user_ids(&store.group_members("eng").unwrap()),
        ["carol"],
        "replaced"
    );
    assert!(
        store.group_members("empty-me").unwrap().is_empty(),
        "replaced by none"
    );
    assert_eq!(
        store.group_members("ops").unwrap(),
        [rejoined, member("ops", "carol")],
        "groups not in the model keep their members and gain the model's"
    );
    assert_eq!(
        group_ids(&store.user_groups("bob").unwrap()),
        Vec::<&str>::new()
    );
    assert_eq!(
        group_ids(&store.user_groups("carol").unwrap()),
        ["eng", "ops"]
    );
    let model = store.load().unwrap();
    assert_eq!(model.users.len(), 3);
    assert_eq!(model.policies.len(), 2);
    assert_eq!(model.memberships.len(), 3);

    // Importing the same model again changes nothing, so commits nothing.
    let revision = store.revision();
    let again = Model {
        agents: Vec::new(),
        settings: Default::default(),
        users: model.users.clone(),
        groups: model.groups.clone(),
        memberships: model.memberships.clone(),
        policies: model.policies.clone(),
        revision: 0,
    };
    assert_eq!(store.import(&again).unwrap().revision, revision);
}

#[test]
fn a_large_import_is_invisible_until_it_commits() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    store
        .put_group(&group("big"), Some(&[member("big", "alice")]))
        .unwrap();
    let model = big_import("big", 5000);
    let done = std::sync::atomic::AtomicBool::new(false);

    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                // The first user is in the first chunk, the last in the last batch: seeing the
                // first without the last (read after it) would be seeing half the import.
                let first = store.get_user("big-00000").unwrap().is_some();
                let last = store.get_user("big-04999").unwrap().is_some();
                assert!(
                    !first || last,
                    "saw the first chunk of an uncommitted import"
                );
                let members = store.group_members("big").unwrap().len();
                assert!(members == 1 || members == 500, "saw {members} members");
                reads += 1;
            }
            reads
        });
        // Stops the reader even if the import panics, or the scope would wait for it forever.
        let stop_reader = StopOnDrop(&done);
        store.import(&model).unwrap();
        drop(stop_reader);
        reader.join().unwrap()
    });
    assert!(reads > 0);

    let loaded = store.load().unwrap();
    assert_eq!(loaded.users.len(), 5001);
    assert_eq!(loaded.memberships.len(), 500, "alice was replaced");
    drop(store);
    assert!(
        raw_keys(dir.path(), b"x/").is_empty(),
        "undo entries are deleted once committed"
    );
    assert!(raw_keys(dir.path(), b"meta/pending").is_empty());
}

#[test]
fn a_large_change_that_fails_midway_is_rolled_back() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    store
        .put_group(&group("big"), Some(&[member("big", "alice")]))
        .unwrap();
    let revision = store.revision();
    drop(store);
    // Claim there are no memberships, so removing alice's fails (as corrupt) only after the
    // import's users were applied in chunks.
    let mut counts = vec![1];
    for n in [1u64, 1, 0, 0] {
        counts.extend_from_slice(&n.to_be_bytes());
    }
    raw_insert(dir.path(), b"meta/counts", &counts);

    let store = Store::open(dir.path()).unwrap();
    let mut model = big_import("new", 3000);
    model.groups = vec![group("big")];
    model.memberships.clear();
    let error = store.import(&model).unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error}");

    assert_eq!(store.revision(), revision);
    assert_eq!(
        store.get_user("new-00000").unwrap(),
        None,
        "the applied chunks were undone"
    );
    assert_eq!(user_ids(&store.group_members("big").unwrap()), ["alice"]);
    assert_eq!(
        store.put_user(&user("bob")).unwrap(),
        revision + 1,
        "the store still writes"
    );
    drop(store);
    assert!(raw_keys(dir.path(), b"x/").is_empty());
    assert!(raw_keys(dir.path(), b"meta/pending").is_empty());
    assert_eq!(raw_keys(dir.path(), b"u/").len(), 2);
}

#[test]
fn import_writes_approval_flows_in_the_same_change() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let model = Model {
        users: vec![user("alice")],
        ..Model::default()
    };
    let flow = |id: &str| pdp::ApprovalFlow {
        id: id.into(),
        name: id.into(),
        steps: vec![pdp::ApprovalStep {
            approvers: vec![pdp::Approver::User("alice".into())],
            min_approvals: 1,
            timeout_secs: None,
        }],
        ..pdp::ApprovalFlow::default()
    };
    let revision = store.revision();
    // A repeated id: nothing written.
    assert!(matches!(
        store.import_with_flows(&model, &[flow("f1"), flow("f1")]),
        Err(Error::Duplicate { .. })
    ));
    assert_eq!(store.revision(), revision);
    assert_eq!(store.flows().unwrap(), []);

    let summary = store
        .import_with_flows(&model, &[flow("f1"), flow("f2")])
        .unwrap();
    assert_eq!(summary.flows, 2);
    assert_eq!(store.revision(), summary.revision);
    assert_eq!(store.flows().unwrap(), [flow("f1"), flow("f2")]);
    assert!(store.load().unwrap().users.iter().any(|u| u.id == "alice"));
}

/// An import inside a transaction commits with the transaction's audit event, one revision, even
/// when it spans several batches; a transaction that wrote before it refuses it.
#[test]
fn an_import_in_a_transaction_commits_with_its_audit_event() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let model = big_import("big", 5000);
    let (revision, summary) = store
        .transact(|tx| -> store::Result<store::ImportSummary> {
            let summary = tx.import(&model, &[])?;
            tx.audit(store::AuditEvent {
                action: "directory.import".into(),
                ..Default::default()
            })?;
            Ok(summary)
        })
        .unwrap();
    assert_eq!(summary.revision, revision);
    assert_eq!(summary.users, 5000);
    assert_eq!(store.revision(), revision);
    assert_eq!(store.load().unwrap().users.len(), 5000);
    let events = store
        .audit_events(None, 10, |e| e.action == "directory.import", |_| false)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].revision, revision);

    let refused = store.transact(|tx| -> store::Result<()> {
        tx.put_user(&user("alice"))?;
        tx.import(&model, &[])?;
        Ok(())
    });
    assert!(
        matches!(refused, Err(Error::Duplicate { .. })),
        "{refused:?}"
    );
    assert_eq!(store.revision(), revision, "nothing written");
    assert!(store.get_user("alice").unwrap().is_none());
}
