//! Every record type through the API: round trips, revisions, member sets, deletes, ids.

use crate::support::*;
use pdp::{Action, Lock, ManagedBy, MembershipSource, Mfa, Model, Role, Scope, Timestamp, Tools};
use store::{Error, Store};
use tempfile::TempDir;

#[test]
fn every_record_type_round_trips_through_load() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut alice = user("alice");
    alice.lock = Some(Lock {
        at: Timestamp(5),
        by: "admin".into(),
        reason: "lost laptop".into(),
    });
    alice.mfa = Mfa::Unknown;
    let mut bob = user("bob");
    bob.active = false;
    let mut local = group("local");
    local.managed_by = ManagedBy::Local;
    local.roles = vec![Role::Admin, Role::ReadOnly];
    let mut local_member = member("local", "bob");
    local_member.source = MembershipSource::Local;
    local_member.joined_at = Timestamp(-1);
    let mut deny = policy("p2");
    deny.tools = Tools::All;
    deny.scope = Scope {
        all_users: true,
        ..Scope::default()
    };
    deny.action = Action::Deny;
    deny.enabled = false;

    store.put_user(&alice).unwrap();
    store.put_user(&bob).unwrap();
    store
        .put_group(
            &group("eng"),
            Some(&[member("eng", "alice"), member("eng", "bob")]),
        )
        .unwrap();
    store
        .put_group(&local, Some(&[local_member.clone()]))
        .unwrap();
    store.put_policy(&policy("p1")).unwrap();
    store.put_policy(&deny).unwrap();

    let expected = sorted(Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 6,
        users: vec![alice.clone(), bob.clone()],
        groups: vec![group("eng"), local.clone()],
        memberships: vec![
            member("eng", "alice"),
            member("eng", "bob"),
            local_member.clone(),
        ],
        policies: vec![policy("p1"), deny.clone()],
    });
    assert_eq!(sorted(store.load().unwrap()), expected);

    assert_eq!(store.get_user("alice").unwrap(), Some(alice));
    assert_eq!(store.get_user("carol").unwrap(), None);
    assert_eq!(store.get_group("local").unwrap(), Some(local));
    assert_eq!(store.get_policy("p2").unwrap(), Some(deny));
    assert_eq!(
        user_ids(&store.group_members("eng").unwrap()),
        ["alice", "bob"]
    );
    assert_eq!(
        store.user_groups("bob").unwrap(),
        [member("eng", "bob"), local_member]
    );

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(sorted(store.load().unwrap()), expected);
}

#[test]
fn each_committed_change_bumps_the_revision_by_one_and_reopen_keeps_it() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.revision(), 0);
    assert_eq!(store.load().unwrap().revision, 0);

    let writes: Vec<fn(&Store) -> store::Result<u64>> = vec![
        |s| s.put_user(&user("alice")),
        |s| s.put_user(&user("bob")),
        |s| s.put_group(&group("eng"), None),
        |s| s.add_members("eng", &[member("eng", "alice")]),
        |s| s.put_group(&group("eng"), Some(&[member("eng", "bob")])),
        |s| s.remove_members("eng", &["bob"]),
        |s| s.put_policy(&policy("p1")),
        |s| s.delete_policy("p1"),
        |s| s.delete_user("bob"),
        |s| s.delete_group("eng"),
        |s| {
            s.import(&Model {
                users: vec![user("carol")],
                ..Model::default()
            })
            .map(|i| i.revision)
        },
    ];
    for (i, write) in writes.iter().enumerate() {
        let expected = i as u64 + 1;
        assert_eq!(write(&store).unwrap(), expected, "write {i}");
        assert_eq!(store.revision(), expected);
        assert_eq!(store.load().unwrap().revision, expected);
    }
    let last = store.revision();

    // A failed write and a write that changes nothing commit nothing.
    assert!(store.delete_user("nobody").is_err());
    assert_eq!(store.put_user(&user("alice")).unwrap(), last);
    assert_eq!(
        store
            .add_members("eng2", &[])
            .map_err(|e| e.to_string())
            .unwrap_err(),
        "no group with id `eng2`"
    );
    assert_eq!(store.revision(), last);

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.revision(), last);
    assert_eq!(store.load().unwrap().revision, last);
    assert_eq!(store.put_user(&user("dave")).unwrap(), last + 1);
}

#[test]
fn put_group_with_members_is_one_change() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in ["alice", "bob", "carol"] {
        store.put_user(&user(id)).unwrap();
    }
    store
        .put_group(
            &group("eng"),
            Some(&[member("eng", "alice"), member("eng", "bob")]),
        )
        .unwrap();
    let before = store.load().unwrap();

    let mut renamed = group("eng");
    renamed.display_name = "Engineering".into();
    let failures = [
        store.put_group(
            &renamed,
            Some(&[member("eng", "carol"), member("eng", "ghost")]),
        ),
        store.put_group(
            &renamed,
            Some(&[member("eng", "carol"), member("ops", "bob")]),
        ),
        store.put_group(
            &renamed,
            Some(&[member("eng", "carol"), member("eng", "carol")]),
        ),
        store.put_group(&group("new"), Some(&[member("new", "ghost")])),
    ];
    for failure in failures {
        assert!(failure.is_err());
    }
    assert_eq!(
        store.load().unwrap(),
        before,
        "neither the group nor its members changed"
    );
    assert_eq!(store.get_group("new").unwrap(), None);

    let revision = store
        .put_group(
            &renamed,
            Some(&[member("eng", "bob"), member("eng", "carol")]),
        )
        .unwrap();
    assert_eq!(
        revision,
        before.revision + 1,
        "group and members in one revision"
    );
    assert_eq!(store.get_group("eng").unwrap(), Some(renamed.clone()));
    assert_eq!(
        user_ids(&store.group_members("eng").unwrap()),
        ["bob", "carol"]
    );
    assert!(store.user_groups("alice").unwrap().is_empty());

    // Without members, the member set stays as it is.
    renamed.description = "again".into();
    store.put_group(&renamed, None).unwrap();
    assert_eq!(
        user_ids(&store.group_members("eng").unwrap()),
        ["bob", "carol"]
    );
}

#[test]
fn deletes_take_memberships_with_them() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    store.put_policy(&policy("p1")).unwrap();

    store.delete_user("alice").unwrap();
    assert_eq!(user_ids(&store.group_members("eng").unwrap()), ["bob"]);
    assert!(store.group_members("ops").unwrap().is_empty());
    assert!(matches!(
        store.user_groups("alice"),
        Err(Error::NotFound { .. })
    ));

    store.delete_group("eng").unwrap();
    assert_eq!(
        store.get_user("bob").unwrap(),
        Some(user("bob")),
        "users outlive their groups"
    );
    assert!(store.user_groups("bob").unwrap().is_empty());
    assert!(matches!(
        store.group_members("eng"),
        Err(Error::NotFound { .. })
    ));

    // Policies naming deleted users and groups are left alone.
    assert_eq!(store.get_policy("p1").unwrap(), Some(policy("p1")));

    for result in [
        store.delete_user("alice"),
        store.delete_group("eng"),
        store.delete_policy("nope"),
    ] {
        assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    }
    assert_eq!(
        store.delete_user("alice").unwrap_err().to_string(),
        "no user with id `alice`"
    );

    let model = store.load().unwrap();
    assert_eq!(
        (
            model.users.len(),
            model.groups.len(),
            model.memberships.len()
        ),
        (1, 1, 0)
    );
}

#[test]
fn adding_and_removing_members_is_all_or_nothing_and_idempotent() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in ["alice", "bob"] {
        store.put_user(&user(id)).unwrap();
    }
    store.put_group(&group("eng"), None).unwrap();

    let first = store.add_members("eng", &[member("eng", "alice")]).unwrap();
    let mut later = member("eng", "alice");
    later.joined_at = Timestamp(99);
    assert_eq!(
        store.add_members("eng", &[later]).unwrap(),
        first,
        "already a member: no change"
    );
    assert_eq!(
        store.group_members("eng").unwrap(),
        [member("eng", "alice")]
    );

    assert!(
        store
            .add_members("eng", &[member("eng", "bob"), member("eng", "ghost")])
            .is_err()
    );
    assert!(store.add_members("eng", &[member("ops", "bob")]).is_err());
    assert!(store.add_members("ops", &[member("ops", "bob")]).is_err());
    assert_eq!(user_ids(&store.group_members("eng").unwrap()), ["alice"]);

    store.add_members("eng", &[member("eng", "bob")]).unwrap();
    let removed = store
        .remove_members("eng", &["alice", "alice", "carol"])
        .unwrap();
    assert_eq!(
        store.remove_members("eng", &["alice"]).unwrap(),
        removed,
        "idempotent"
    );
    assert!(store.remove_members("eng", &["bob", ""]).is_err());
    assert_eq!(user_ids(&store.group_members("eng").unwrap()), ["bob"]);
    assert_eq!(store.load().unwrap().memberships.len(), 1);
}

#[test]
fn ids_are_checked_and_errors_name_the_field() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let long = "x".repeat(257);
    let message = |r: store::Result<u64>| r.unwrap_err().to_string();
    assert_eq!(
        message(store.put_user(&user(""))),
        "invalid user id ``: must not be empty"
    );
    assert!(message(store.put_group(&group(&long), None)).starts_with("invalid group id `xxxx"));
    assert!(
        message(store.put_group(&group(&long), None)).ends_with("…`: must be at most 256 bytes")
    );
    assert_eq!(
        message(store.put_policy(&policy("a\0"))),
        "invalid policy id `a\\0`: must not contain a NUL character"
    );
    assert!(matches!(
        store.get_user(""),
        Err(Error::InvalidId {
            field: "user id",
            ..
        })
    ));
    store.put_user(&user(&"y".repeat(256))).unwrap();
    store.put_user(&user("unicode ✓ / slash")).unwrap();
    assert_eq!(store.load().unwrap().users.len(), 2);
}
