//! The bounds of SCIM writes (scim/src/limits.rs): operations per PATCH, values per attribute,
//! identifier and string lengths, member changes per request; and a large PATCH never holds
//! up another write.

use crate::support::*;
use pdp::{Action, Lock, Model, Timestamp};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn patch_body(operations: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// One `add` of one email per operation, as the probe sent them.
fn email_adds(count: usize, prefix: &str) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"op": "add", "path": "emails",
                   "value": [{"value": format!("{prefix}{i}@x.io")}]})
        })
        .collect()
}

async fn create_user(h: &Harness, name: &str) -> String {
    let reply = h
        .post("/Users", json!({"schemas": [USER], "userName": name}))
        .await;
    reply.expect(201)["id"].as_str().unwrap().to_owned()
}

fn user_events(h: &Harness) -> usize {
    h.audit()
        .iter()
        .filter(|e| e.action.starts_with("user."))
        .count()
}

#[tokio::test]
async fn sixty_thousand_operations_are_too_many_and_change_nothing() {
    let h = Harness::start().await;
    let id = create_user(&h, "ada@example.com").await;
    let before = h.get(&format!("/Users/{id}")).await.expect(200).clone();
    let body = patch_body(email_adds(60_000, "ada"));
    // The probe's request: under the 4 MiB body limit.
    assert!(body.to_string().len() < 4 * 1024 * 1024);
    let reply = h.patch(&format!("/Users/{id}"), body).await;
    let detail = reply.expect_error(400, Some("tooMany"));
    assert!(detail.contains("60000 operations"), "{detail}");
    assert!(detail.contains("1000"), "{detail}");
    assert_eq!(h.get(&format!("/Users/{id}")).await.expect(200), &before);
    assert_eq!(user_events(&h), 1);
}

#[tokio::test]
async fn a_patch_at_the_limit_is_applied_whole() {
    let h = Harness::start().await;
    let id = create_user(&h, "ada@example.com").await;
    let reply = h
        .patch(
            &format!("/Users/{id}"),
            patch_body(email_adds(1_000, "ada")),
        )
        .await;
    let user = reply.expect(200);
    assert_eq!(user["emails"].as_array().unwrap().len(), 1_000);
    let model = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(model.emails.len(), 1_000);
    assert_eq!(model.emails[999], "ada999@x.io");
    // One more value than the limit, in a request at the operation limit: refused, named.
    let reply = h
        .patch(&format!("/Users/{id}"), patch_body(email_adds(1, "more")))
        .await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("`emails` has 1001 values"), "{detail}");
    assert!(detail.contains("Operations[0]"), "{detail}");
    assert_eq!(
        h.live.view().unwrap().user(&id).unwrap().emails.len(),
        1_000
    );
}

#[tokio::test]
async fn too_many_values_in_one_attribute_are_refused() {
    let h = Harness::start().await;
    let many: Vec<Value> = (0..1_001)
        .map(|i| json!({"value": format!("+1 555 {i:04}"), "type": "work"}))
        .collect();
    let reply = h
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "ada@example.com", "phoneNumbers": many}),
        )
        .await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(
        detail.contains("`phoneNumbers` has 1001 values"),
        "{detail}"
    );
    assert_eq!(h.live.view().unwrap().user_count(), 0);
    // In one PATCH operation too, and in an extension's attribute.
    let id = create_user(&h, "ada@example.com").await;
    let emails: Vec<Value> = (0..1_001)
        .map(|i| json!({"value": format!("a{i}@example.com")}))
        .collect();
    let reply = h
        .patch(
            &format!("/Users/{id}"),
            patch_body(vec![
                json!({"op": "add", "path": "emails", "value": emails}),
            ]),
        )
        .await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("`emails`"), "{detail}");
    let tags: Vec<u32> = (0..1_001).collect();
    let reply = h
        .patch(
            &format!("/Users/{id}"),
            patch_body(vec![json!({"op": "add",
                                   "path": "urn:example:custom:2.0:User:tags",
                                   "value": tags})]),
        )
        .await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("tags"), "{detail}");
    assert!(h.live.view().unwrap().user(&id).unwrap().emails.is_empty());
    assert_eq!(user_events(&h), 1);
}

#[tokio::test]
async fn over_long_attributes_are_refused_naming_them() {
    let h = Harness::start().await;
    let long = |n: usize| "a".repeat(n);
    let cases = [
        (
            json!({"schemas": [USER], "userName": long(1_025)}),
            "`userName`",
        ),
        (
            json!({"schemas": [USER], "userName": "ada", "externalId": long(1_025)}),
            "`externalId`",
        ),
        (
            json!({"schemas": [USER], "userName": "ada",
                   "emails": [{"value": "ada@example.com"}, {"value": long(1_025)}]}),
            "`emails[1].value`",
        ),
        (
            json!({"schemas": [USER], "userName": "ada", "displayName": long(2_049)}),
            "`displayName`",
        ),
        (
            json!({"schemas": [USER], "userName": "ada",
                   "name": {"familyName": long(2_049)}}),
            "`name.familyName`",
        ),
        (
            json!({"schemas": [USER], "userName": "ada", "title": long(3_900_000)}),
            "`title`",
        ),
    ];
    for (body, attribute) in cases {
        let reply = h.post("/Users", body).await;
        let detail = reply.expect_error(400, Some("invalidValue"));
        assert!(detail.contains(attribute), "{attribute}: {detail}");
        assert!(detail.contains("limit"), "{detail}");
    }
    assert_eq!(h.live.view().unwrap().user_count(), 0);
    assert_eq!(user_events(&h), 0);

    // At the bounds: accepted.
    let at_limit = long(1_024);
    let reply = h
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": at_limit, "externalId": long(1_024),
                   "displayName": long(2_048)}),
        )
        .await;
    let id = reply.expect(201)["id"].as_str().unwrap().to_owned();
    // A PATCH or PUT that would make one too long changes nothing.
    let reply = h
        .patch(
            &format!("/Users/{id}"),
            patch_body(vec![
                json!({"op": "replace", "path": "userName", "value": long(1_025)}),
            ]),
        )
        .await;
    assert!(
        reply
            .expect_error(400, Some("invalidValue"))
            .contains("`userName`")
    );
    let reply = h
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER], "userName": "ada", "externalId": long(5_000)}),
        )
        .await;
    assert!(
        reply
            .expect_error(400, Some("invalidValue"))
            .contains("`externalId`")
    );
    let user = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(user.user_name, at_limit);
    assert_eq!(user_events(&h), 1);
}

#[tokio::test]
async fn group_attributes_and_member_changes_are_bounded() {
    let model = Model {
        users: (0..6)
            .map(|i| user(&format!("u{i}"), &format!("u{i}@example.com"), "U"))
            .collect(),
        ..Model::default()
    };
    let limits = scim::Limits {
        scim_max_member_changes: 3,
        ..scim::Limits::default()
    };
    let h = Harness::start_limited(model, limits).await;
    let members =
        |ids: &[&str]| -> Vec<Value> { ids.iter().map(|id| json!({"value": id})).collect() };
    let long = |n: usize| "g".repeat(n);
    for (body, attribute) in [
        (
            json!({"schemas": [GROUP], "displayName": long(2_049)}),
            "`displayName`",
        ),
        (
            json!({"schemas": [GROUP], "displayName": "Eng", "externalId": long(1_025)}),
            "`externalId`",
        ),
        (
            json!({"schemas": [GROUP], "displayName": "Eng",
                   "members": members(&["u0", "u1", "u2", "u3"])}),
            "`members`",
        ),
    ] {
        let reply = h.post("/Groups", body).await;
        let detail = reply.expect_error(400, Some("invalidValue"));
        assert!(detail.contains(attribute), "{attribute}: {detail}");
    }
    assert_eq!(h.live.view().unwrap().group_count(), 0);

    let reply = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Eng", "members": members(&["u0", "u1", "u2"])}),
        )
        .await;
    let id = reply.expect(201)["id"].as_str().unwrap().to_owned();
    // A PATCH adding two and removing two changes four memberships: refused, nothing moves.
    let reply = h
        .patch(
            &format!("/Groups/{id}"),
            patch_body(vec![
                json!({"op": "add", "path": "members", "value": members(&["u3", "u4"])}),
                json!({"op": "remove", "path": "members", "value": members(&["u0", "u1"])}),
            ]),
        )
        .await;
    assert!(
        reply
            .expect_error(400, Some("invalidValue"))
            .contains("`members`")
    );
    // A PUT listing the three kept and three new ones: three changes, accepted.
    let reply = h
        .put(
            &format!("/Groups/{id}"),
            json!({"schemas": [GROUP], "displayName": "Eng",
                   "members": members(&["u0", "u1", "u2", "u3", "u4", "u5"])}),
        )
        .await;
    assert_eq!(reply.expect(200)["members"].as_array().unwrap().len(), 6);
    // A PUT keeping one of them removes five: refused.
    let reply = h
        .put(
            &format!("/Groups/{id}"),
            json!({"schemas": [GROUP], "displayName": "Eng", "members": members(&["u0"])}),
        )
        .await;
    assert!(
        reply
            .expect_error(400, Some("invalidValue"))
            .contains("removes 5")
    );
    assert_eq!(h.live.view().unwrap().members_of(&id).count(), 6);
    // The existing members do not count against the values bound of a PATCH.
    let limits = scim::Limits {
        scim_max_values: 2,
        ..scim::Limits::default()
    };
    let model = Model {
        users: (0..4)
            .map(|i| user(&format!("u{i}"), &format!("u{i}@example.com"), "U"))
            .collect(),
        groups: ["g", "g2", "g3"]
            .map(|id| group(id, id, pdp::ManagedBy::External))
            .to_vec(),
        memberships: (0..3)
            .map(|i| member("g", &format!("u{i}")))
            .chain(["g2", "g3"].map(|g| member(g, "u0")))
            .collect(),
        ..Model::default()
    };
    let h = Harness::start_limited(model, limits).await;
    let reply = h
        .patch(
            "/Groups/g",
            patch_body(vec![
                json!({"op": "add", "path": "members", "value": members(&["u3"])}),
            ]),
        )
        .await;
    assert_eq!(reply.expect(200)["members"].as_array().unwrap().len(), 4);
    // Nor do the groups of a user in more groups than the values bound.
    let reply = h
        .patch(
            "/Users/u0",
            patch_body(vec![
                json!({"op": "replace", "path": "title", "value": "Chief"}),
            ]),
        )
        .await;
    let user = reply.expect(200);
    assert_eq!(user["groups"].as_array().unwrap().len(), 3);
    assert_eq!(user["title"], "Chief");
}

/// A large PATCH is worked out outside the store's write lock: other writes (an admin's lock)
/// commit while PATCHes at the limits run. A PATCH that keeps losing the race to other writes
/// answers 503 (documented: the IdP tries again); once they stop, it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_commit_while_large_patches_run() {
    let h = Arc::new(Harness::start_with(company()).await);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create_user(&h, &format!("user{i}@example.com")).await);
    }
    // 1,000 operations: adds (one run) and filtered removes (each on its own) alternating,
    // so each remove works through the values added so far.
    let operations: Vec<Value> = (0..500)
        .flat_map(|i| {
            [
                json!({"op": "add", "path": "emails", "value": [{"value": format!("e{i}@x.io")}]}),
                json!({"op": "remove", "path": "emails[value eq \"nobody@x.io\"]"}),
            ]
        })
        .collect();
    let body = patch_body(operations);
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let patching: Vec<_> = ids
        .iter()
        .map(|id| {
            let (h, body, path) = (Arc::clone(&h), body.clone(), format!("/Users/{id}"));
            let (stop, in_flight) = (Arc::clone(&stop), Arc::clone(&in_flight));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    statuses.push(h.patch(&path, body.clone()).await.status);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                statuses
            })
        })
        .collect();
    // Lock writes while the PATCHes run, each with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while in_flight.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no PATCH in flight after 30 s; the patchers ended: {}",
            patching.iter().all(|p| p.is_finished())
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut alongside = 0;
    for round in 0..40i64 {
        let write = h.live.write(move |tx| {
            let mut user = tx.user("u-alice")?.unwrap();
            user.lock = Some(Lock {
                at: Timestamp(1_700_000_000_000 + round),
                by: "u-admin".into(),
                reason: format!("round {round}"),
            });
            tx.put_user(&user)?;
            Ok::<_, scim::ScimError>(())
        });
        let before = in_flight.load(Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("a lock waited more than 5 s for SCIM PATCHes")
            .unwrap();
        if before > 0 && in_flight.load(Ordering::SeqCst) > 0 {
            alongside += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(alongside > 0, "no lock landed while PATCHes were in flight");
    assert_eq!(h.decide("u-alice"), Action::Deny);
    stop.store(true, Ordering::SeqCst);
    for patching in patching {
        let statuses = patching.await.unwrap();
        assert!(!statuses.is_empty(), "no PATCH ran alongside the locks");
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 503),
            "{statuses:?}"
        );
    }
    // Quiet again: every PATCH lands whole.
    for id in &ids {
        h.patch(&format!("/Users/{id}"), body.clone())
            .await
            .expect(200);
        assert_eq!(h.live.view().unwrap().user(id).unwrap().emails.len(), 500);
    }
}

/// The work of a PATCH (reading, patching, checking) needs no write lock: while another writer
/// holds it, a PATCH that fails its checks is answered at once, and a good one commits as soon
/// as the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_are_worked_out_outside_the_write_lock() {
    let h = Arc::new(Harness::start().await);
    let id = create_user(&h, "ada@example.com").await;
    let (held, holding) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let store = h.live.store().clone();
    let writer = std::thread::spawn(move || {
        store.transact_applied(|_| {
            let _ = held.send(());
            // Held until the test says so (or gives up: the sender is dropped).
            let _ = released.recv_timeout(Duration::from_secs(60));
            Ok::<_, store::Error>(())
        })
    });
    holding.recv_timeout(Duration::from_secs(10)).unwrap();
    let path = format!("/Users/{id}");
    let deadline = Duration::from_secs(10);
    let one_op_too_many = patch_body(vec![json!({"op": "add", "path": "emails",
        "value": (0..1_001).map(|i| json!({"value": format!("{i}@x.io")})).collect::<Vec<_>>()})]);
    let reply = tokio::time::timeout(deadline, h.patch(&path, one_op_too_many))
        .await
        .expect("a refused PATCH waited for the write lock");
    reply.expect_error(400, Some("invalidValue"));
    let reply = tokio::time::timeout(
        deadline,
        h.patch(&path, patch_body(email_adds(60_000, "a"))),
    )
    .await
    .expect("a refused PATCH waited for the write lock");
    reply.expect_error(400, Some("tooMany"));
    let bearer = format!("Bearer {}", h.secret);
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/scim+json"),
        ("if-match", "W/\"0000000000000000\""),
    ];
    let body = patch_body(email_adds(1_000, "a")).to_string().into_bytes();
    let reply = tokio::time::timeout(deadline, h.raw("PATCH", &path, &headers, Some(body)))
        .await
        .expect("a refused PATCH waited for the write lock");
    reply.expect_error(412, None);
    // A good one waits for the lock, then lands.
    let good = {
        let (h, path) = (Arc::clone(&h), path.clone());
        tokio::spawn(async move { h.patch(&path, patch_body(email_adds(1_000, "a"))).await })
    };
    // An absence, over a bounded window: for 200 ms while the lock is held, it has not landed.
    let window = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < window {
        assert!(
            !good.is_finished(),
            "a write committed while another held the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !good.is_finished(),
        "a write committed while another held the lock"
    );
    release.send(()).unwrap();
    writer.join().unwrap().unwrap();
    let reply = tokio::time::timeout(deadline, good).await.unwrap().unwrap();
    assert_eq!(reply.expect(200)["emails"].as_array().unwrap().len(), 1_000);
}

/// Deleting a group with more members than a request may change empties it in bounded steps
/// first, each audited, then deletes it; `If-Match` is checked before the first.
#[tokio::test]
async fn deleting_a_large_group_removes_its_members_in_bounded_steps() {
    let model = Model {
        users: (0..5)
            .map(|i| user(&format!("u{i}"), &format!("u{i}@example.com"), "U"))
            .collect(),
        groups: vec![group("g", "G", pdp::ManagedBy::External)],
        memberships: (0..5).map(|i| member("g", &format!("u{i}"))).collect(),
        ..Model::default()
    };
    let limits = scim::Limits {
        scim_max_member_changes: 2,
        ..scim::Limits::default()
    };
    let h = Harness::start_limited(model, limits).await;
    let version = h.get("/Groups/g").await.expect(200)["meta"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {}", h.secret);
    let stale = [
        ("authorization", bearer.as_str()),
        ("if-match", "W/\"0000000000000000\""),
    ];
    h.raw("DELETE", "/Groups/g", &stale, None)
        .await
        .expect_error(412, None);
    assert_eq!(h.live.view().unwrap().members_of("g").count(), 5);
    let current = [
        ("authorization", bearer.as_str()),
        ("if-match", version.as_str()),
    ];
    let reply = h.raw("DELETE", "/Groups/g", &current, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let view = h.live.view().unwrap();
    assert!(view.group("g").is_none());
    assert_eq!(view.members_of("g").count(), 0);
    let actions: Vec<String> = h
        .audit()
        .into_iter()
        .filter(|e| e.target_id == "g")
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["group.remove_member", "group.remove_member", "group.delete"]
    );
}

#[tokio::test]
async fn a_body_past_scim_max_body_bytes_is_413_naming_it_and_one_at_it_is_read() {
    const BODY: usize = 1024;
    let limits = scim::Limits {
        scim_max_body_bytes: BODY as u32,
        ..scim::Limits::default()
    };
    let h = Harness::start_limited(Model::default(), limits).await;
    // Trailing whitespace pads a valid document to the size wanted.
    let body = |bytes: usize| {
        let doc = json!({"schemas": [USER], "userName": "fits@example.com"}).to_string();
        format!("{doc}{}", " ".repeat(bytes - doc.len())).into_bytes()
    };
    let reply = h.call_raw_body("POST", "/Users", body(BODY + 1)).await;
    let detail = reply.expect_error(413, None);
    assert!(
        detail.contains("larger than 1024 bytes (`scim-max-body-bytes`)"),
        "{detail}"
    );
    assert_eq!(h.live.view().unwrap().user_count(), 0);
    let reply = h.call_raw_body("POST", "/Users", body(BODY)).await;
    reply.expect(201);
    assert_eq!(h.live.view().unwrap().user_count(), 1);
}
