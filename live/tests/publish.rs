//! The publisher over a real store: a write is in decisions when it returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use live::Live;
use pdp::{
    Action, Lock, Model, NoAttributes, Policy, Reason, Request, Scope, Timestamp, Tools, User,
};
use store::Store;

fn model(users: usize) -> Model {
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 0,
        users: (0..users)
            .map(|i| User {
                id: format!("u{i}"),
                user_name: format!("u{i}@example.com"),
                emails: vec![format!("u{i}@example.com")],
                ..User::default()
            })
            .collect(),
        groups: Vec::new(),
        memberships: Vec::new(),
        policies: vec![Policy {
            id: "p".into(),
            name: "everyone".into(),
            connector: "github".into(),
            tools: Tools::All,
            scope: Scope {
                all_users: true,
                ..Scope::default()
            },
            action: Action::Allow,
            ..Policy::default()
        }],
    }
}

fn decide(live: &Live, user: &str) -> (Action, Reason) {
    let snapshot = live.engine().snapshot();
    let d = snapshot.decide(&Request {
        context: Default::default(),
        user,
        agent: "a",
        connector: "github",
        tool: "t",
        attributes: &NoAttributes,
    });
    (d.action, d.reason)
}

async fn lock(live: &Live, id: &str) -> u64 {
    let id = id.to_owned();
    let (revision, ()) = live
        .write(move |tx| {
            let mut user = tx.user(&id)?.unwrap();
            user.lock = Some(Lock {
                at: Timestamp(1),
                by: "test".into(),
                reason: "test".into(),
            });
            tx.put_user(&user)?;
            Ok::<_, live::Error>(())
        })
        .await
        .unwrap();
    revision
}

fn start(users: usize) -> (tempfile::TempDir, Live) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import(&model(users)).unwrap();
    let live = Live::start(store).unwrap();
    (dir, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_live_when_it_returns() {
    let (_dir, live) = start(10);
    assert_eq!(decide(&live, "u3"), (Action::Allow, Reason::Policy));
    let revision = lock(&live, "u3").await;
    assert!(live.engine().revision() >= revision);
    assert_eq!(
        decide(&live, "u3@example.com"),
        (Action::Deny, Reason::UserLocked)
    );
    // A write that changes nothing returns the current revision at once.
    let again = live
        .write(|tx| {
            let user = tx.user("u3")?.unwrap();
            tx.put_user(&user)?;
            Ok::<_, live::Error>(())
        })
        .await
        .unwrap()
        .0;
    assert_eq!(again, revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_published() {
    let (_dir, live) = start(200);
    let start = live.engine().revision();
    let writes: Vec<_> = (0..100)
        .map(|i| {
            let live = live.clone();
            tokio::spawn(async move {
                let revision = lock(&live, &format!("u{i}")).await;
                // Each writer sees its own write the moment it returns.
                assert_eq!(decide(&live, &format!("u{i}")).1, Reason::UserLocked);
                revision
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for w in writes {
        revisions.push(w.await.unwrap());
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 100, "one revision per write");
    assert_eq!(live.engine().revision(), start + 100);
    for i in 0..200 {
        let expected = if i < 100 {
            Reason::UserLocked
        } else {
            Reason::Policy
        };
        assert_eq!(decide(&live, &format!("u{i}")).1, expected, "u{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_last_acknowledged_revision() {
    let dir = tempfile::tempdir().unwrap();
    let revision = {
        let store = Store::open(dir.path()).unwrap();
        store.import(&model(5)).unwrap();
        let live = Live::start(store).unwrap();
        lock(&live, "u1").await
    };
    // The publisher thread lets go of the store once the handles are gone.
    let mut reopened = None;
    for _ in 0..100 {
        match Store::open(dir.path()) {
            Ok(store) => {
                reopened = Some(store);
                break;
            }
            Err(store::Error::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let live = Live::start(reopened.expect("the store is released")).unwrap();
    assert_eq!(live.engine().revision(), revision);
    assert_eq!(decide(&live, "u1").1, Reason::UserLocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_is_applied_over_the_last_build() {
    let (_dir, live) = start(20);
    lock(&live, "u1").await;
    lock(&live, "u2").await;
    assert_eq!(decide(&live, "u1").1, Reason::UserLocked);
    assert_eq!(decide(&live, "u3").1, Reason::Policy);

    // A new email, a new user, a deleted user and a new policy: none needs a full build.
    let (revision, ()) = live
        .write(|tx| {
            let mut user = tx.user("u3")?.unwrap();
            user.emails = vec!["renamed@example.com".into()];
            user.user_name = "renamed@example.com".into();
            tx.put_user(&user)?;
            tx.put_user(&User {
                id: "new".into(),
                user_name: "new@example.com".into(),
                ..User::default()
            })?;
            tx.delete_user("u4")?;
            tx.put_policy(&Policy {
                id: "q".into(),
                name: "deny new on slack".into(),
                connector: "slack".into(),
                tools: Tools::All,
                scope: Scope {
                    users: vec!["new".into()],
                    ..Scope::default()
                },
                action: Action::Deny,
                ..Policy::default()
            })?;
            Ok::<_, live::Error>(())
        })
        .await
        .unwrap();
    let snapshot = live.engine().snapshot();
    assert_eq!(snapshot.revision(), revision);
    assert!(snapshot.pending_changes() > 0, "applied, not rebuilt");
    assert_eq!(live.folds(), 0);
    assert_eq!(snapshot.user_count(), 20);
    assert_eq!(snapshot.policy_count(), 2);
    assert_eq!(decide(&live, "u1").1, Reason::UserLocked);
    assert_eq!(decide(&live, "renamed@example.com").1, Reason::Policy);
    assert_eq!(decide(&live, "u3@example.com").1, Reason::UnknownUser);
    assert_eq!(decide(&live, "NEW@example.com").1, Reason::Policy);
    assert_eq!(decide(&live, "u4").1, Reason::UnknownUser);
    let slack = snapshot.decide(&Request {
        context: Default::default(),
        user: "new",
        agent: "a",
        connector: "slack",
        tool: "post",
        attributes: &NoAttributes,
    });
    assert_eq!((slack.action, slack.policy_id), (Action::Deny, Some("q")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_changes_fold_into_a_new_base_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import(&model(50)).unwrap();
    let live = Live::start_with(store, live::Settings { fold_at: 8 }).unwrap();
    let mut locked = Vec::new();
    for i in 0..30 {
        let id = format!("u{i}");
        lock(&live, &id).await;
        locked.push(id);
        // Every lock is in decisions when its write returns, fold or no fold.
        for id in &locked {
            assert_eq!(decide(&live, id).1, Reason::UserLocked, "{id}");
        }
        assert_eq!(decide(&live, "u40").1, Reason::Policy);
    }
    // Folds happened, and each left fewer changes pending than the bound let pile up.
    for _ in 0..100 {
        if live.folds() > 0 && live.engine().snapshot().pending_changes() < 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(live.folds() > 0, "no fold");
    assert!(live.engine().snapshot().pending_changes() < 30);
    for id in &locked {
        assert_eq!(decide(&live, id).1, Reason::UserLocked, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_applied_over_the_last_build() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut m = model(10);
    m.groups.push(pdp::Group {
        id: "eng".into(),
        display_name: "Eng".into(),
        ..pdp::Group::default()
    });
    // The policy grants github to the group only.
    m.policies[0].scope = Scope {
        groups: vec!["eng".into()],
        ..Scope::default()
    };
    store.import(&m).unwrap();
    let live = Live::start(store).unwrap();
    assert_eq!(decide(&live, "u1").1, Reason::NoMatchingPolicy);
    let join = |user: &'static str| {
        let live = live.clone();
        async move {
            live.write(move |tx| {
                let mut group = tx.group("eng")?.unwrap();
                group.updated_at = Timestamp(group.updated_at.0 + 1);
                tx.put_group(&group)?;
                tx.add_members(
                    "eng",
                    &[pdp::Membership {
                        group_id: "eng".into(),
                        user_id: user.into(),
                        joined_at: Timestamp(5),
                        source: pdp::MembershipSource::Idp,
                    }],
                )?;
                Ok::<_, live::Error>(())
            })
            .await
            .unwrap()
        }
    };
    join("u1").await;
    join("u2").await;
    assert_eq!(decide(&live, "u1"), (Action::Allow, Reason::Policy));
    assert_eq!(decide(&live, "u3").1, Reason::NoMatchingPolicy);
    let (revision, _) = live
        .write(|tx| Ok::<_, live::Error>(tx.remove_members("eng", &["u1"])?))
        .await
        .unwrap();
    assert_eq!(live.engine().snapshot().revision(), revision);
    assert_eq!(decide(&live, "u1").1, Reason::NoMatchingPolicy);
    assert_eq!(decide(&live, "u2").1, Reason::Policy);
    // Deleting the group takes the grant away from its members at once.
    live.write(|tx| Ok::<_, live::Error>(tx.delete_group("eng")?))
        .await
        .unwrap();
    assert_eq!(decide(&live, "u2").1, Reason::NoMatchingPolicy);
    assert_eq!(live.folds(), 0);
}
