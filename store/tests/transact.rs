//! Transactions, the in-memory view, the audit log and API tokens.

use crate::support::*;
use pdp::{Mfa, Model, Role, Timestamp};
use store::view::{GroupOrder, UserOrder};
use store::{ApiToken, AuditEvent, Error, Store};
use tempfile::TempDir;

fn event(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        time: Timestamp(1000),
        actor: "admin".into(),
        action: action.into(),
        target_kind: "user".into(),
        target_id: target.into(),
        outcome: "ok".into(),
        ..AuditEvent::default()
    }
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

#[test]
fn a_transaction_commits_its_writes_and_audit_as_one_revision() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let before = store.revision();
    let (revision, seen) = store
        .transact(|tx| {
            assert_eq!(tx.revision(), before + 1);
            let mut alice = tx.user("alice")?.unwrap();
            alice.display_name = "Alice L.".into();
            tx.put_user(&alice)?;
            tx.delete_group("ops")?;
            tx.put_policy(&policy("p1"))?;
            tx.audit(event("user.update", "alice"))?;
            // Reads see the state before the change.
            Ok::<_, Error>(tx.group("ops")?.is_some())
        })
        .unwrap();
    assert!(seen);
    assert_eq!(revision, before + 1);
    assert_eq!(store.revision(), revision);
    let model = store.load().unwrap();
    assert_eq!(model.users[0].display_name, "Alice L.");
    assert_eq!(model.groups.len(), 1);
    assert_eq!(model.memberships.len(), 2, "ops's membership went with it");
    let events = store.audit_events(None, 10, |_| true, |_| false).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].revision, events[0].action.as_str()),
        (revision, "user.update")
    );
}

#[test]
fn a_failed_transaction_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let view = store.view().unwrap();
    let before = store.load().unwrap();
    let result = store.transact(|tx| {
        tx.put_user(&user("carol"))?;
        tx.audit(event("user.create", "carol"))?;
        tx.delete_group("nope")
    });
    assert!(
        matches!(result, Err(Error::NotFound { kind: "group", .. })),
        "{result:?}"
    );
    // Writing one record twice in a change is refused too.
    let twice = store.transact(|tx| {
        tx.put_user(&user("carol"))?;
        tx.put_user(&user("carol"))
    });
    assert!(matches!(twice, Err(Error::Duplicate { .. })), "{twice:?}");
    assert_eq!(store.load().unwrap(), before);
    assert_eq!(store.view().unwrap().revision(), view.revision());
    assert!(
        store
            .audit_events(None, 10, |_| true, |_| false)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_transaction_that_changes_nothing_commits_nothing() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let before = store.revision();
    let (revision, ()) = store
        .transact(|tx| {
            let alice = tx.user("alice")?.unwrap();
            tx.put_user(&alice)?;
            tx.audit(event("user.update", "alice"))
        })
        .unwrap();
    assert_eq!(revision, before);
    assert!(
        store
            .audit_events(None, 10, |_| true, |_| false)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn audit_events_list_newest_first_filtered_and_paged_and_survive_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        eng_and_ops(&store);
        let revision = store.revision();
        for i in 0..5 {
            let seq = store
                .append_audit(event("auth.denied", &format!("t{i}")))
                .unwrap();
            assert!(seq > 0);
        }
        // Refused attempts do not bump the revision.
        assert_eq!(store.revision(), revision);
        let all = store.audit_events(None, 100, |_| true, |_| false).unwrap();
        let targets: Vec<&str> = all.iter().map(|e| e.target_id.as_str()).collect();
        assert_eq!(targets, ["t4", "t3", "t2", "t1", "t0"]);
        let page = store
            .audit_events(Some(all[1].seq), 2, |_| true, |_| false)
            .unwrap();
        assert_eq!(
            page.iter()
                .map(|e| e.target_id.as_str())
                .collect::<Vec<_>>(),
            ["t2", "t1"]
        );
        let one = store
            .audit_events(None, 100, |e| e.target_id == "t3", |_| false)
            .unwrap();
        assert_eq!(one.len(), 1);
        let stopped = store
            .audit_events(None, 100, |_| true, |e| e.target_id == "t2")
            .unwrap();
        assert_eq!(stopped.len(), 2);
    }
    let store = Store::open(dir.path()).unwrap();
    let seq = store.append_audit(event("auth.denied", "after")).unwrap();
    let all = store.audit_events(None, 100, |_| true, |_| false).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!((all[0].seq, all[0].target_id.as_str()), (seq, "after"));
    assert!(
        all[0].seq > all[1].seq,
        "sequence numbers continue after a reopen"
    );
}

#[test]
fn tokens_are_stored_outside_the_model() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let model = store.load().unwrap();
    let (revision, ()) = store.transact(|tx| tx.put_token(&token("t1"))).unwrap();
    assert_eq!(revision, model.revision + 1);
    store.transact(|tx| tx.put_token(&token("t2"))).unwrap();
    let mut revoked = token("t1");
    revoked.revoked_at = Some(Timestamp(9));
    store.transact(|tx| tx.put_token(&revoked)).unwrap();
    assert_eq!(store.get_token("t1").unwrap(), Some(revoked.clone()));
    assert!(!revoked.usable_at(Timestamp(10)));
    let mut expiring = token("t2");
    expiring.expires_at = Some(Timestamp(100));
    assert!(expiring.usable_at(Timestamp(99)) && !expiring.usable_at(Timestamp(100)));
    assert_eq!(store.tokens().unwrap().len(), 2);
    assert_eq!(store.get_token("nope").unwrap(), None);
    // The model (and its integrity counts) are untouched: load still checks out.
    let mut after = store.load().unwrap();
    after.revision = model.revision;
    assert_eq!(after, model);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.tokens().unwrap().len(), 2);
}

/// A small deterministic random source, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// The view, kept up by every commit, always equals the store read afresh, and its orders
/// hold every record once, in order.
#[test]
fn the_view_follows_every_kind_of_write() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    store.view().unwrap();
    let mut rng = Lcg(7);
    let id = |prefix: &str, rng: &mut Lcg| format!("{prefix}{}", rng.below(12));
    for step in 0..300 {
        let result = match rng.below(10) {
            0 | 1 => {
                let mut u = user(&id("u", &mut rng));
                u.emails = vec![format!(
                    "{}@Example.com",
                    ["Zed", "amy", "Bob", "cy"][rng.below(4)]
                )];
                u.created_at = Timestamp(rng.below(5) as i64);
                u.mfa = [Mfa::Enabled, Mfa::Disabled, Mfa::Unknown][rng.below(3)];
                store.put_user(&u).map(drop)
            }
            2 => store.delete_user(&id("u", &mut rng)).map(drop),
            3 => {
                let mut g = group(&id("g", &mut rng));
                g.display_name = ["Ops", "eng", "Sales"][rng.below(3)].into();
                store.put_group(&g, None).map(drop)
            }
            4 => store.delete_group(&id("g", &mut rng)).map(drop),
            5 | 6 => {
                let g = id("g", &mut rng);
                store
                    .add_members(&g, &[member(&g, &id("u", &mut rng))])
                    .map(drop)
            }
            7 => {
                let g = id("g", &mut rng);
                store.remove_members(&g, &[&id("u", &mut rng)]).map(drop)
            }
            8 => store.put_policy(&policy(&id("p", &mut rng))).map(drop),
            _ => store.delete_policy(&id("p", &mut rng)).map(drop),
        };
        if let Err(e) = result {
            assert!(
                matches!(e, Error::NotFound { .. } | Error::Dangling { .. }),
                "step {step}: {e}"
            );
        }
        if step % 50 == 49 {
            // A change too large for one batch reloads the view instead.
            let big = big_import("big", 700);
            store.import(&big).unwrap();
        }
        let view = store.view().unwrap();
        assert_eq!(view.revision(), store.revision());
        assert_eq!(
            sorted(view.to_model()),
            store.load().unwrap(),
            "step {step}"
        );
        check_orders(&view);
    }
}

fn check_orders(view: &store::View) {
    let model: Model = view.to_model();
    for order in [UserOrder::Email, UserOrder::Created, UserOrder::Mfa] {
        let listed: Vec<_> = view.users_from(order, false, None).collect();
        assert_eq!(listed.len(), model.users.len(), "{order:?}");
        let reversed: Vec<_> = view.users_from(order, true, None).collect();
        assert_eq!(reversed.len(), listed.len());
        let keys: Vec<_> = listed
            .iter()
            .map(|u| {
                let k = store::view::UserKey::of(u);
                match order {
                    UserOrder::Email => (k.email, 0, 0, k.id),
                    UserOrder::Created => (String::new(), k.created.0, 0, k.id),
                    UserOrder::Mfa => (k.email, 0, k.mfa, k.id),
                }
            })
            .collect();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_by(|a, b| match order {
            UserOrder::Mfa => (a.2, &a.0, &a.3).cmp(&(b.2, &b.0, &b.3)),
            _ => a.cmp(b),
        });
        assert_eq!(keys, sorted_keys, "{order:?}");
    }
    let sizes: Vec<usize> = view
        .groups_from(GroupOrder::Size, false, None)
        .map(|g| g.members)
        .collect();
    assert_eq!(sizes.len(), model.groups.len());
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    for g in view.groups() {
        assert_eq!(
            g.members,
            view.members_of(&g.group.id).count(),
            "{}",
            g.group.id
        );
        assert_eq!(
            g.members,
            model
                .memberships
                .iter()
                .filter(|m| m.group_id == g.group.id)
                .count()
        );
    }
    for g in &model.groups {
        assert!(
            view.groups_named(&g.display_name.to_uppercase())
                .any(|found| found.group.id == g.id)
        );
    }
    let names: Vec<String> = view
        .groups_from(GroupOrder::Name, false, None)
        .map(|g| g.group.display_name.to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    for u in &model.users {
        let named: Vec<&str> = view
            .users_named(&u.user_name.to_uppercase())
            .map(|n| n.id.as_str())
            .collect();
        assert!(named.contains(&u.id.as_str()), "{}", u.user_name);
        if let Some(external) = &u.external_id {
            assert!(
                view.users_with_external_id(external)
                    .any(|found| found.id == u.id)
            );
        }
        let mine = view.groups_of(&u.id).count();
        assert_eq!(
            mine,
            model
                .memberships
                .iter()
                .filter(|m| m.user_id == u.id)
                .count()
        );
    }
}

#[test]
fn scim_documents_and_connections_live_beside_the_model() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let doc = serde_json::json!({"userName": "alice@example.com", "x-unknown": {"kept": true}});
    store
        .transact(|tx| {
            tx.put_scim(store::ScimKind::User, "alice", &doc)?;
            tx.put_scim(
                store::ScimKind::Group,
                "eng",
                &serde_json::json!({"displayName": "Eng"}),
            )?;
            tx.put_connection(&store::ScimConnection {
                id: "c1".into(),
                name: "okta".into(),
                secret_hash: "00".repeat(32),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(
        store.get_scim(store::ScimKind::User, "alice").unwrap(),
        Some(doc)
    );
    assert_eq!(store.connections().unwrap().len(), 1);
    assert_eq!(store.get_connection("c1").unwrap().unwrap().name, "okta");
    // Deleting the record takes its document with it, in the same change.
    let revision = store.revision();
    assert_eq!(store.delete_user("alice").unwrap(), revision + 1);
    assert_eq!(
        store.get_scim(store::ScimKind::User, "alice").unwrap(),
        None
    );
    store.delete_group("eng").unwrap();
    assert_eq!(store.get_scim(store::ScimKind::Group, "eng").unwrap(), None);
    // The model still checks out against its counts.
    store.load().unwrap();
}

/// A change of a few thousand writes (a large group push) is applied in chunks, and the view
/// follows it record by record: no reload, so it keeps sharing structure with earlier views.
#[test]
fn a_chunked_change_updates_the_view_without_reloading_it() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let generation = store.view().unwrap().generation();
    let big = big_import("big", 3000);
    store.import(&big).unwrap();
    let view = store.view().unwrap();
    assert_eq!(view.generation(), generation, "listed, not reloaded");
    assert_eq!(view.revision(), store.revision());
    assert_eq!(sorted(view.to_model()), store.load().unwrap());
    assert_eq!(view.members_of("big").count(), 300);
    check_orders(&view);
}
