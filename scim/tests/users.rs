//! `/Users`: create, read, replace, delete; mapping to the model; uniqueness, ETags, locks.

use crate::support::*;
use pdp::{Action, Lock, Mfa, Timestamp, UserStatus};
use serde_json::json;

fn ada() -> serde_json::Value {
    json!({
        "schemas": [USER, ENTERPRISE, PORTCULLIS, "urn:example:custom:2.0:User"],
        "externalId": "00u1ada",
        "userName": "Ada@Example.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
        "emails": [
            {"value": "ada.home@example.net", "type": "home"},
            {"value": "ada@example.com", "type": "work", "primary": true}
        ],
        "photos": [{"value": "https://example.com/ada.png", "type": "photo"}],
        "active": true,
        "title": "Analyst",
        "password": "hunter2",
        ENTERPRISE: {"department": "Engines", "manager": {"value": "u-charles"}},
        PORTCULLIS: {"mfaEnabled": true},
        "urn:example:custom:2.0:User": {"badge": 1815, "tags": ["a", "b"]}
    })
}

#[tokio::test]
async fn created_users_map_to_the_model_and_round_trip() {
    let h = Harness::start().await;
    let reply = h.post("/Users", ada()).await;
    let created = reply.expect(201).clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let location = format!("{}/Users/{id}", h.base());
    assert_eq!(reply.header("location"), Some(location.as_str()));
    assert_eq!(created["meta"]["location"], json!(location));
    assert_eq!(created["meta"]["resourceType"], json!("User"));
    let version = created["meta"]["version"].as_str().unwrap();
    assert!(
        version.starts_with("W/\"") && version.len() == 16 + 4,
        "{version}"
    );
    assert_eq!(reply.header("etag"), Some(version));
    // Unknown extensions and attributes are kept; the password is not.
    assert_eq!(
        created["urn:example:custom:2.0:User"],
        json!({"badge": 1815, "tags": ["a", "b"]})
    );
    assert_eq!(created[ENTERPRISE]["department"], json!("Engines"));
    assert_eq!(created["title"], json!("Analyst"));
    assert!(created.get("password").is_none());

    let user = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(user.user_name, "Ada@Example.com");
    assert_eq!(user.external_id.as_deref(), Some("00u1ada"));
    assert_eq!(user.emails, vec!["ada@example.com", "ada.home@example.net"]);
    assert_eq!(user.display_name, "Ada Lovelace");
    assert_eq!(user.given_name.as_deref(), Some("Ada"));
    assert_eq!(user.family_name.as_deref(), Some("Lovelace"));
    assert_eq!(
        user.avatar_url.as_deref(),
        Some("https://example.com/ada.png")
    );
    assert!(user.active);
    assert_eq!(user.mfa, Mfa::Enabled);
    assert!(user.created_at.0 > 0);

    let got = h.get(&format!("/Users/{id}")).await;
    assert_eq!(got.expect(200), &created);
    assert_eq!(got.header("etag"), Some(version));
    let stored = h
        .live
        .store()
        .get_scim(store::ScimKind::User, &id)
        .unwrap()
        .unwrap();
    assert!(stored.get("password").is_none() && stored.get("id").is_none());
    assert!(stored.get("meta").is_none());
}

#[tokio::test]
async fn display_name_falls_back_to_the_name() {
    let h = Harness::start().await;
    let formatted =
        json!({"schemas": [USER], "userName": "f", "name": {"formatted": "F. Ormatted"}});
    let joined = json!({"schemas": [USER], "userName": "j", "name": {"givenName": "Jo", "familyName": "Ined"}});
    let bare = json!({"schemas": [USER], "userName": "bare@example.com", "active": "False"});
    let f = h.post("/Users", formatted).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let j = h.post("/Users", joined).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = h.post("/Users", bare).await;
    let b_body = b.expect(201).clone();
    assert_eq!(b_body["active"], json!(false));
    let view = h.live.view().unwrap();
    assert_eq!(view.user(&f).unwrap().display_name, "F. Ormatted");
    assert_eq!(view.user(&j).unwrap().display_name, "Jo Ined");
    let bare = view.user(b_body["id"].as_str().unwrap()).unwrap();
    assert_eq!(bare.display_name, "bare@example.com");
    assert_eq!(bare.mfa, Mfa::Unknown);
    assert!(!bare.active);
}

#[tokio::test]
async fn imported_users_render_from_the_model() {
    let h = Harness::start_with(company()).await;
    let alice = h.get("/Users/u-alice").await;
    let alice = alice.expect(200);
    assert_eq!(alice["userName"], json!("alice@example.com"));
    assert_eq!(alice["externalId"], json!("ext-u-alice"));
    assert_eq!(alice["displayName"], json!("Alice Example"));
    assert_eq!(alice["active"], json!(true));
    assert_eq!(alice["emails"][0]["value"], json!("alice@example.com"));
    assert_eq!(alice["emails"][0]["primary"], json!(true));
    assert_eq!(alice[PORTCULLIS]["mfaEnabled"], json!(true));
    assert!(
        alice["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(PORTCULLIS))
    );
    assert_eq!(alice["meta"]["created"], json!("2023-11-14T22:13:20Z"));
    // Groups: only those the IdP manages.
    let base = h.base();
    assert_eq!(
        alice["groups"],
        json!([{"value": "g-eng", "display": "Engineering", "$ref": format!("{base}/Groups/g-eng")}])
    );
    let bob = h.get("/Users/u-bob").await;
    assert!(bob.expect(200).get("groups").is_none());
}

#[tokio::test]
async fn put_replaces_the_whole_user_and_keeps_the_lock() {
    let h = Harness::start().await;
    let id = h.post("/Users", ada()).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lock = Lock {
        at: Timestamp(1_700_000_000_000),
        by: "u-admin".into(),
        reason: "laptop stolen".into(),
    };
    let locked = lock.clone();
    let lock_id = id.clone();
    h.live
        .write(move |tx| {
            let mut user = tx.user(&lock_id)?.unwrap();
            user.lock = Some(locked);
            tx.put_user(&user)?;
            Ok::<_, scim::ScimError>(())
        })
        .await
        .unwrap();
    let created_at = h.live.view().unwrap().user(&id).unwrap().created_at;
    let replaced = h
        .put(
            &format!("/Users/{id}"),
            json!({
                "schemas": [USER],
                "id": id,
                "userName": "ada.lovelace@example.com",
                "displayName": "Countess Lovelace",
                "emails": [{"value": "ada.lovelace@example.com", "primary": true}],
                "active": true
            }),
        )
        .await;
    let body = replaced.expect(200).clone();
    assert_eq!(body["userName"], json!("ada.lovelace@example.com"));
    // Replaced whole: what the new document lacks is gone.
    assert!(body.get("title").is_none());
    assert!(body.get(ENTERPRISE).is_none());
    assert!(body.get("externalId").is_none());
    let user = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(user.lock, Some(lock));
    assert_eq!(user.status(), UserStatus::Locked);
    assert_eq!(user.created_at, created_at);
    assert_eq!(user.external_id, None);
    assert_eq!(user.mfa, Mfa::Unknown);
    assert_eq!(user.display_name, "Countess Lovelace");
    // A PUT of the same document changes nothing and records nothing.
    let revision = h.live.view().unwrap().revision();
    let events = h.audit().len();
    let again = h
        .put(
            &format!("/Users/{id}"),
            json!({
                "schemas": [USER],
                "userName": "ada.lovelace@example.com",
                "displayName": "Countess Lovelace",
                "emails": [{"value": "ada.lovelace@example.com", "primary": true}],
                "active": true
            }),
        )
        .await;
    assert_eq!(
        again.expect(200)["meta"]["version"],
        body["meta"]["version"]
    );
    assert_eq!(h.live.view().unwrap().revision(), revision);
    assert_eq!(h.audit().len(), events);
    h.put(
        "/Users/nobody",
        json!({"schemas": [USER], "userName": "x@example.com"}),
    )
    .await
    .expect_error(404, None);
}

#[tokio::test]
async fn deactivating_a_user_denies_at_once() {
    let h = Harness::start_with(company()).await;
    assert_eq!(h.decide("u-alice"), Action::Allow);
    let reply = h
        .put(
            "/Users/u-alice",
            json!({"schemas": [USER], "userName": "alice@example.com", "active": "false"}),
        )
        .await;
    assert_eq!(reply.expect(200)["active"], json!(false));
    // The write answered: the decision already reflects it.
    assert_eq!(h.decide("u-alice"), Action::Deny);
    assert_eq!(
        h.live.view().unwrap().user("u-alice").unwrap().status(),
        UserStatus::Inactive
    );
}

#[tokio::test]
async fn user_names_and_external_ids_are_unique() {
    let h = Harness::start_with(company()).await;
    let taken = h
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "ALICE@example.com"}),
        )
        .await;
    let detail = taken.expect_error(409, Some("uniqueness"));
    assert!(detail.contains("u-alice"), "{detail}");
    h.post(
        "/Users",
        json!({"schemas": [USER], "userName": "new@example.com", "externalId": "ext-u-bob"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    // External ids compare exactly.
    h.post(
        "/Users",
        json!({"schemas": [USER], "userName": "new@example.com", "externalId": "EXT-U-BOB"}),
    )
    .await
    .expect(201);
    // Replacing a user with another's name is refused; keeping one's own is fine.
    h.put(
        "/Users/u-bob",
        json!({"schemas": [USER], "userName": "Alice@Example.com"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    h.put(
        "/Users/u-bob",
        json!({"schemas": [USER], "userName": "BOB@example.com", "externalId": "ext-u-bob"}),
    )
    .await
    .expect(200);
    assert_eq!(h.live.view().unwrap().user_count(), 3);
}

#[tokio::test]
async fn if_match_guards_writes() {
    let h = Harness::start().await;
    let created = h.post("/Users", ada()).await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    let etag = created.header("etag").unwrap().to_owned();
    let bearer = format!("Bearer {}", h.secret);
    let put = |title: &str| {
        json!({"schemas": [USER], "userName": "ada@example.com", "title": title})
            .to_string()
            .into_bytes()
    };
    let body = put("stale");
    let stale = h
        .raw(
            "PUT",
            &format!("/Users/{id}"),
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/scim+json"),
                ("if-match", "W/\"0000000000000000\""),
            ],
            Some(body),
        )
        .await;
    stale.expect_error(412, None);
    let body = put("fresh");
    let fresh = h
        .raw(
            "PUT",
            &format!("/Users/{id}"),
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/scim+json"),
                ("if-match", etag.as_str()),
            ],
            Some(body),
        )
        .await;
    let new_etag = fresh.header("etag").unwrap().to_owned();
    assert_eq!(fresh.expect(200)["title"], json!("fresh"));
    assert_ne!(new_etag, etag);
    // The old tag is stale now, for DELETE too; `*` matches anything.
    h.raw(
        "DELETE",
        &format!("/Users/{id}"),
        &[
            ("authorization", bearer.as_str()),
            ("if-match", etag.as_str()),
        ],
        None,
    )
    .await
    .expect_error(412, None);
    let body = put("star");
    h.raw(
        "PUT",
        &format!("/Users/{id}"),
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/scim+json"),
            ("if-match", "*"),
        ],
        Some(body),
    )
    .await
    .expect(200);
    let current = h
        .get(&format!("/Users/{id}"))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let gone = h
        .raw(
            "DELETE",
            &format!("/Users/{id}"),
            &[
                ("authorization", bearer.as_str()),
                ("if-match", current.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(gone.status, 204);
}

#[tokio::test]
async fn delete_removes_the_user_from_groups_and_policies() {
    let h = Harness::start_with(company()).await;
    let reply = h.delete("/Users/u-alice").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty());
    let view = h.live.view().unwrap();
    assert!(view.user("u-alice").is_none());
    assert_eq!(view.members_of("g-eng").count(), 0);
    assert_eq!(
        view.policy("p-people").unwrap().scope.users,
        vec!["u-bob".to_owned()]
    );
    assert_eq!(h.decide("u-alice"), Action::Deny);
    h.get("/Users/u-alice").await.expect_error(404, None);
    h.delete("/Users/u-alice").await.expect_error(404, None);
    let events = h.audit();
    let delete = events.iter().find(|e| e.action == "user.delete").unwrap();
    assert_eq!(delete.actor, "scim:entra");
    assert_eq!(delete.via.as_deref(), Some(h.connection.id.as_str()));
    assert_eq!(delete.target_id, "u-alice");
    assert!(delete.before.is_some() && delete.after.is_none());
    let policy = events.iter().find(|e| e.action == "policy.update").unwrap();
    assert_eq!(policy.target_id, "p-people");
    assert_eq!(policy.revision, delete.revision);
}

#[tokio::test]
async fn writes_are_audited_with_the_connection() {
    let h = Harness::start().await;
    let id = h.post("/Users", ada()).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.put(
        &format!("/Users/{id}"),
        json!({"schemas": [USER], "userName": "ada@example.com"}),
    )
    .await
    .expect(200);
    let events: Vec<_> = h
        .audit()
        .into_iter()
        .filter(|e| e.target_id == id)
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["user.create", "user.replace"]);
    for e in &events {
        assert_eq!(e.actor, "scim:entra");
        assert_eq!(e.via.as_deref(), Some(h.connection.id.as_str()));
        assert_eq!(e.target_kind, "user");
        assert_eq!(e.outcome, "ok");
        assert!(e.revision > 0);
    }
    assert!(events[0].before.is_none());
    assert_eq!(
        events[0].after.as_ref().unwrap()["user_name"],
        json!("Ada@Example.com")
    );
    assert_eq!(
        events[1].before.as_ref().unwrap()["user_name"],
        json!("Ada@Example.com")
    );
    assert_eq!(
        events[1].after.as_ref().unwrap()["user_name"],
        json!("ada@example.com")
    );
    let created = h
        .audit()
        .into_iter()
        .find(|e| e.action == "scim_connection.create")
        .unwrap();
    assert_eq!(created.actor, "cli");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_make_one_user() {
    let h = std::sync::Arc::new(Harness::start().await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let h = std::sync::Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            let user_name = if i % 2 == 0 {
                // The same name in different cases.
                if i % 4 == 0 {
                    "same@example.com".to_owned()
                } else {
                    "SAME@example.com".to_owned()
                }
            } else {
                format!("user{i}@example.com")
            };
            let reply = h
                .post("/Users", json!({"schemas": [USER], "userName": user_name}))
                .await;
            (i % 2 == 0, reply.status)
        }));
    }
    let mut same = Vec::new();
    for task in tasks {
        let (is_same, status) = task.await.unwrap();
        if is_same {
            same.push(status);
        } else {
            assert_eq!(status, 201);
        }
    }
    same.sort();
    assert_eq!(same, vec![201, 409, 409, 409, 409, 409]);
    let view = h.live.view().unwrap();
    assert_eq!(view.user_count(), 7);
    assert_eq!(view.users_named("same@example.com").count(), 1);
}

#[tokio::test]
async fn the_enterprise_manager_sets_replaces_patches_and_clears_the_users_manager() {
    let h = Harness::start().await;
    let manager_of = |id: &str| h.live.view().unwrap().user(id).unwrap().manager.clone();
    let created = h.post("/Users", ada()).await.expect(201).clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(manager_of(&id).as_deref(), Some("u-charles"));
    assert_eq!(created[ENTERPRISE]["manager"]["value"], json!("u-charles"));

    // A replace naming another manager sets it; its other attributes stay.
    let mut replaced = ada();
    replaced[ENTERPRISE] = json!({"department": "Engines", "manager": {"value": "u-babbage"}});
    let got = h
        .put(&format!("/Users/{id}"), replaced)
        .await
        .expect(200)
        .clone();
    assert_eq!(manager_of(&id).as_deref(), Some("u-babbage"));
    assert_eq!(got[ENTERPRISE]["department"], json!("Engines"));

    // PATCH: by URN path (a bare id, as Entra sends it), then removed.
    let patch = |ops: serde_json::Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    h.patch(
        &format!("/Users/{id}"),
        patch(json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": "u-menabrea"}])),
    )
    .await
    .expect(200);
    assert_eq!(manager_of(&id).as_deref(), Some("u-menabrea"));
    h.patch(
        &format!("/Users/{id}"),
        patch(json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager")}])),
    )
    .await
    .expect(200);
    assert_eq!(manager_of(&id), None);

    // Set again, then a replace without the extension clears it.
    h.patch(
        &format!("/Users/{id}"),
        patch(json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": "u-charles"}}])),
    )
    .await
    .expect(200);
    assert_eq!(manager_of(&id).as_deref(), Some("u-charles"));
    let mut without = ada();
    without.as_object_mut().unwrap().remove(ENTERPRISE);
    let got = h
        .put(&format!("/Users/{id}"), without)
        .await
        .expect(200)
        .clone();
    assert_eq!(manager_of(&id), None);
    assert!(got[ENTERPRISE].get("manager").is_none(), "{got}");

    // A manager of the wrong shape is refused, and the user is unchanged.
    let mut bad = ada();
    bad[ENTERPRISE] = json!({"manager": 42});
    h.put(&format!("/Users/{id}"), bad)
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(manager_of(&id), None);
}

#[tokio::test]
async fn patch_remove_of_display_name_or_active_removes_them_from_the_document() {
    let h = Harness::start().await;
    let created = h
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "grace@example.com", "displayName": "Grace",
                   "name": {"givenName": "Grace", "familyName": "Hopper"}, "active": false}),
        )
        .await
        .expect(201)
        .clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&created["displayName"], &created["active"]),
        (&json!("Grace"), &json!(false))
    );
    let patch = |ops: serde_json::Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let got = h
        .patch(
            &format!("/Users/{id}"),
            patch(json!([{"op": "remove", "path": "displayName"}, {"op": "remove", "path": "active"}])),
        )
        .await
        .expect(200)
        .clone();
    // Gone from what the client reads back, now and later.
    assert!(
        got.get("displayName").is_none() && got.get("active").is_none(),
        "{got}"
    );
    let again = h.get(&format!("/Users/{id}")).await.expect(200).clone();
    assert!(
        again.get("displayName").is_none() && again.get("active").is_none(),
        "{again}"
    );
    // The model fills them in: a name to show, and active (a user is active unless told not).
    let user = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(
        (user.display_name.as_str(), user.active),
        ("Grace Hopper", true)
    );
    // Sent again, they show again.
    let got = h
        .patch(
            &format!("/Users/{id}"),
            patch(json!([{"op": "add", "path": "active", "value": false}])),
        )
        .await
        .expect(200)
        .clone();
    assert_eq!(got["active"], json!(false));
    assert!(!h.live.view().unwrap().user(&id).unwrap().active);
}
