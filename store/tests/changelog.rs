//! The change log ([`Store::touched_between`]) and the store id ([`Store::id`]).

use crate::support::*;
use pdp::{Model, Role, Timestamp};
use std::path::Path;
use store::{ApiToken, Error, Options, Store, Touched};
use tempfile::TempDir;

fn touched(users: &[&str], groups: &[&str], policies: &[&str]) -> Touched {
    let set = |ids: &[&str]| ids.iter().map(|&id| id.to_owned()).collect();
    Touched {
        users: set(users),
        groups: set(groups),
        policies: set(policies),
        ..Touched::default()
    }
}

/// What the latest revision touched.
fn last(store: &Store) -> Touched {
    let revision = store.revision();
    store
        .touched_between(revision - 1, revision)
        .unwrap()
        .unwrap_or_else(|| panic!("revision {revision} is not in the log"))
}

fn token(id: &str) -> ApiToken {
    ApiToken {
        id: id.into(),
        name: "ci".into(),
        user_id: "alice".into(),
        role: Some(Role::Admin),
        secret_hash: "ab".repeat(32),
        created_at: Timestamp(5),
        created_by: "cli".into(),
        ..ApiToken::default()
    }
}

fn open_keeping(dir: &Path, revisions: u64) -> Store {
    Store::open_with(dir, Options::default().change_log_revisions(revisions)).unwrap()
}

/// Commits `n` revisions, each putting user `u<revision>`.
fn put_users(store: &Store, n: u64) {
    for _ in 0..n {
        store
            .put_user(&user(&format!("u{}", store.revision() + 1)))
            .unwrap();
    }
}

/// Writes a directory and a policy through every write method, one revision each, checking
/// what each logged; returns what they touched together.
fn write_everything(store: &Store) -> Touched {
    store.put_user(&user("alice")).unwrap();
    assert_eq!(last(store), touched(&["alice"], &[], &[]));
    store.put_user(&user("bob")).unwrap();
    store
        .put_group(
            &group("eng"),
            Some(&[member("eng", "alice"), member("eng", "bob")]),
        )
        .unwrap();
    assert_eq!(last(store), touched(&["alice", "bob"], &["eng"], &[]));
    store.put_group(&group("ops"), None).unwrap();
    assert_eq!(last(store), touched(&[], &["ops"], &[]));

    // A membership touches its user, not its group.
    store.add_members("ops", &[member("ops", "alice")]).unwrap();
    assert_eq!(last(store), touched(&["alice"], &[], &[]));
    store.remove_members("eng", &["bob"]).unwrap();
    assert_eq!(last(store), touched(&["bob"], &[], &[]));
    // The group record is rewritten as it is: only the members changed.
    store
        .put_group(&group("eng"), Some(&[member("eng", "bob")]))
        .unwrap();
    assert_eq!(last(store), touched(&["alice", "bob"], &[], &[]));

    store.delete_group("ops").unwrap();
    assert_eq!(last(store), touched(&["alice"], &["ops"], &[]));
    store.delete_user("bob").unwrap();
    assert_eq!(last(store), touched(&["bob"], &[], &[]));

    store.put_policy(&policy("p1")).unwrap();
    assert_eq!(last(store), touched(&[], &[], &["p1"]));
    store.delete_policy("p1").unwrap();
    assert_eq!(last(store), touched(&[], &[], &["p1"]));

    store
        .transact(|tx| {
            let mut alice = tx.user("alice")?.unwrap();
            alice.display_name = "Alice L.".into();
            tx.put_user(&alice)?;
            tx.put_user(&user("carol"))?;
            tx.put_group(&group("ops2"))?;
            tx.add_members("eng", &[member("eng", "alice")])?;
            tx.put_policy(&policy("p2"))?;
            tx.put_token(&token("t1"))
        })
        .unwrap();
    assert_eq!(
        last(store),
        touched(&["alice", "carol"], &["ops2"], &["p2"])
    );

    // A revision outside the model is logged, empty: a follower missed nothing.
    let before = store.revision();
    store.transact(|tx| tx.put_token(&token("t2"))).unwrap();
    assert_eq!(store.revision(), before + 1);
    assert_eq!(last(store), Touched::default());

    // A write that changes nothing commits no revision.
    let before = store.revision();
    store.put_user(&user("carol")).unwrap();
    assert_eq!(store.revision(), before);

    touched(
        &["alice", "bob", "carol"],
        &["eng", "ops", "ops2"],
        &["p1", "p2"],
    )
}

#[test]
fn each_write_logs_the_ids_it_touched() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_everything(&store);
}

#[test]
fn ranges_merge_and_the_log_survives_reopen() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = write_everything(&store);
    let latest = store.revision();
    let check = |store: &Store| {
        assert_eq!(store.touched_between(0, latest).unwrap(), Some(all.clone()));
        // Revisions 3..=4: eng with alice and bob, then ops.
        assert_eq!(
            store.touched_between(2, 4).unwrap(),
            Some(touched(&["alice", "bob"], &["eng", "ops"], &[]))
        );
        for at in [0, 5, latest] {
            assert_eq!(
                store.touched_between(at, at).unwrap(),
                Some(Touched::default())
            );
        }
        // Beyond the latest revision, or backwards: not covered.
        assert_eq!(store.touched_between(0, latest + 1).unwrap(), None);
        assert_eq!(store.touched_between(latest, latest + 1).unwrap(), None);
        assert_eq!(store.touched_between(4, 3).unwrap(), None);
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store);
    // And it goes on from there.
    store.put_policy(&policy("p3")).unwrap();
    assert_eq!(last(&store), touched(&[], &[], &["p3"]));
    assert!(store.touched_between(0, latest + 1).unwrap().is_some());
}

#[test]
fn the_log_keeps_the_last_revisions_only() {
    let dir = TempDir::new().unwrap();
    let store = open_keeping(dir.path(), 5);
    put_users(&store, 12);
    // Revisions 8..=12 are kept.
    assert_eq!(raw_log_len(store, dir.path()), 5);
    let store = open_keeping(dir.path(), 5);
    assert_eq!(
        store.touched_between(7, 12).unwrap(),
        Some(touched(&["u8", "u9", "u10", "u11", "u12"], &[], &[]))
    );
    for after in [0, 5, 6] {
        assert_eq!(store.touched_between(after, 12).unwrap(), None, "{after}");
    }
    assert_eq!(store.touched_between(6, 7).unwrap(), None);

    // A smaller window prunes on open.
    drop(store);
    let store = open_keeping(dir.path(), 2);
    assert_eq!(raw_log_len(store, dir.path()), 2);
    let store = open_keeping(dir.path(), 2);
    assert_eq!(store.touched_between(9, 12).unwrap(), None);
    assert_eq!(
        store.touched_between(10, 12).unwrap(),
        Some(touched(&["u11", "u12"], &[], &[]))
    );
    put_users(&store, 1);
    assert_eq!(store.touched_between(10, 13).unwrap(), None);
    assert!(store.touched_between(11, 13).unwrap().is_some());

    // A larger one fills up as revisions come; what was pruned stays gone.
    drop(store);
    let store = open_keeping(dir.path(), 4);
    put_users(&store, 3);
    assert!(store.touched_between(12, 16).unwrap().is_some());
    assert_eq!(store.touched_between(11, 16).unwrap(), None);
    put_users(&store, 2);
    assert!(store.touched_between(14, 18).unwrap().is_some());
    assert_eq!(store.touched_between(13, 18).unwrap(), None);
    assert_eq!(raw_log_len(store, dir.path()), 4);

    // No window, no log.
    let store = open_keeping(dir.path(), 0);
    put_users(&store, 1);
    assert_eq!(store.touched_between(18, 19).unwrap(), None);
    assert_eq!(raw_log_len(store, dir.path()), 0);
}

/// Closes `store` and counts its change log records.
fn raw_log_len(store: Store, dir: &Path) -> usize {
    drop(store);
    raw_keys(dir, b"l/").len()
}

#[test]
fn a_change_too_large_to_list_needs_a_resync() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    // One id more than a record lists, in chunks.
    let users = (0..50_001).map(|i| user(&format!("big-{i:05}"))).collect();
    let big = store
        .import(&Model {
            users,
            ..Model::default()
        })
        .unwrap()
        .revision;
    store.put_policy(&policy("p1")).unwrap();
    assert_eq!(store.touched_between(big - 1, big).unwrap(), None);
    assert_eq!(store.touched_between(0, big + 1).unwrap(), None);
    assert_eq!(
        store.touched_between(0, big - 1).unwrap(),
        Some(touched(&["alice"], &[], &[]))
    );
    assert_eq!(
        store.touched_between(big, big + 1).unwrap(),
        Some(touched(&[], &[], &["p1"]))
    );
}

#[test]
fn a_chunked_change_is_logged_whole() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let revision = store.import(&big_import("mid", 3000)).unwrap().revision;
    let logged = store.touched_between(0, revision).unwrap().unwrap();
    assert_eq!(logged.users.len(), 3000);
    assert_eq!(logged.groups, touched(&[], &["mid"], &[]).groups);
    drop(store);
    assert_eq!(raw_keys(dir.path(), b"l/").len(), 1);
}

fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn a_store_has_an_id_of_its_own_for_good() {
    let (one, two) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let id = Store::open(one.path()).unwrap().id().to_owned();
    assert!(is_id(&id), "{id}");
    let store = Store::open(one.path()).unwrap();
    assert_eq!(store.id(), id);
    store.put_user(&user("alice")).unwrap();
    drop(store);
    assert_eq!(Store::open(one.path()).unwrap().id(), id);
    let other = Store::open(two.path()).unwrap().id().to_owned();
    assert!(is_id(&other), "{other}");
    assert_ne!(other, id);
}

#[test]
fn a_store_without_an_id_gets_one_on_open() {
    let dir = TempDir::new().unwrap();
    let old = Store::open(dir.path()).unwrap().id().to_owned();
    // As a store created before ids existed.
    raw_remove(dir.path(), b"meta/id");
    let id = Store::open(dir.path()).unwrap().id().to_owned();
    assert!(is_id(&id), "{id}");
    assert_ne!(id, old);
    assert_eq!(Store::open(dir.path()).unwrap().id(), id);
}

#[test]
fn a_damaged_id_is_corrupt() {
    let dir = TempDir::new().unwrap();
    drop(Store::open(dir.path()).unwrap());
    raw_insert(dir.path(), b"meta/id", b"not an id");
    assert!(matches!(Store::open(dir.path()), Err(Error::Corrupt(_))));
}

#[test]
fn a_damaged_log_record_is_corrupt() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put_users(&store, 2);
    drop(store);
    let mut key = b"l/".to_vec();
    key.extend_from_slice(&2u64.to_be_bytes());
    raw_insert(dir.path(), &key, b"\x01u\x09short");
    let store = Store::open(dir.path()).unwrap();
    assert!(store.touched_between(0, 1).unwrap().is_some());
    assert!(matches!(
        store.touched_between(0, 2),
        Err(Error::Corrupt(_))
    ));
}
