//! Okta's provisioning flow, with the dialect it speaks.

use crate::support::*;
use pdp::{Action, Model};
use serde_json::{Value, json};
use std::time::Instant;

fn okta_user(user_name: &str, first: &str, last: &str, active: bool) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{first} {last}"),
        "locale": "en-US",
        "externalId": format!("00u{}", user_name.len()),
        "groups": [],
        "password": "S3cret!",
        "active": active
    })
}

#[tokio::test]
async fn okta_provisions_updates_and_deactivates() {
    let h = Harness::start_with(company()).await;
    // Okta asks first, with paging parameters.
    let lookup = "/Users?filter=userName%20eq%20%22linus%40example.com%22&startIndex=1&count=100";
    assert_eq!(h.get(lookup).await.expect(200)["totalResults"], json!(0));
    let created = h
        .post("/Users", okta_user("linus@example.com", "Linus", "T", true))
        .await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    assert!(created.body.get("password").is_none());
    assert!(created.body.get("groups").is_none());
    let found = h.get(lookup).await;
    assert_eq!(found.expect(200)["Resources"][0]["id"], json!(id));
    let got = h.get(&format!("/Users/{id}")).await;
    assert_eq!(got.expect(200)["name"]["givenName"], json!("Linus"));

    // A profile change: Okta PUTs the whole user, id included.
    let mut whole = okta_user("linus@example.com", "Linus", "Torvalds", true);
    whole["id"] = json!(id);
    whole["title"] = json!("Maintainer");
    let put = h.put(&format!("/Users/{id}"), whole).await;
    let put = put.expect(200);
    assert_eq!(put["name"]["familyName"], json!("Torvalds"));
    assert_eq!(put["title"], json!("Maintainer"));
    let model = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(model.display_name, "Linus Torvalds");
    assert_eq!(model.family_name.as_deref(), Some("Torvalds"));

    // Group push: create, then PUT with members.
    let group = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Kernel", "members": []}),
        )
        .await;
    let group_id = group.expect(201)["id"].as_str().unwrap().to_owned();
    h.put(
        &format!("/Groups/{group_id}"),
        json!({
            "schemas": [GROUP],
            "id": group_id,
            "displayName": "Kernel",
            "members": [{"value": id, "display": "linus@example.com"}]
        }),
    )
    .await
    .expect(200);
    // Add the user to Engineering as well, where a policy allows them.
    h.patch(
        "/Groups/g-eng",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}),
    )
    .await
    .expect(200);
    assert_eq!(h.decide(&id), Action::Allow);

    // Deactivation: a PATCH without a path.
    let deactivated = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]}),
        )
        .await;
    assert_eq!(deactivated.expect(200)["active"], json!(false));
    assert_eq!(h.decide(&id), Action::Deny);
    // Reactivation.
    h.patch(
        &format!("/Users/{id}"),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": true}}]}),
    )
    .await
    .expect(200);
    assert_eq!(h.decide(&id), Action::Allow);
    // The group's rendering shows the user; the user's shows the groups.
    let user = h.get(&format!("/Users/{id}")).await;
    let groups: Vec<&str> = user.expect(200)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["display"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 2);
    assert!(groups.contains(&"Kernel") && groups.contains(&"Engineering"));
}

#[tokio::test]
async fn okta_moves_a_thousand_members_in_one_patch() {
    let mut model = Model::default();
    for i in 0..1500 {
        model.users.push(user(
            &format!("u{i:05}"),
            &format!("user{i}@example.com"),
            &format!("User {i}"),
        ));
    }
    model
        .groups
        .push(group("g-big", "Everyone", pdp::ManagedBy::External));
    for i in 0..500 {
        model.memberships.push(member("g-big", &format!("u{i:05}")));
    }
    let h = Harness::start_with(model).await;
    let add: Vec<Value> = (500..1500)
        .map(|i| json!({"value": format!("u{i:05}"), "display": format!("user{i}@example.com")}))
        .collect();
    let started = Instant::now();
    let reply = h
        .patch(
            "/Groups/g-big",
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": add}]}),
        )
        .await;
    assert_eq!(reply.expect(200)["members"].as_array().unwrap().len(), 1500);
    assert_eq!(h.live.view().unwrap().group("g-big").unwrap().members, 1500);
    // Okta removes one `members[value eq "…"]` operation per member.
    let remove: Vec<Value> = (0..1000)
        .map(|i| json!({"op": "remove", "path": format!("members[value eq \"u{i:05}\"]")}))
        .collect();
    let reply = h
        .patch(
            "/Groups/g-big",
            json!({"schemas": [PATCH_OP], "Operations": remove}),
        )
        .await;
    assert_eq!(reply.expect(200)["members"].as_array().unwrap().len(), 500);
    let elapsed = started.elapsed();
    // The answer is the group as it now reads.
    let got = h.get("/Groups/g-big").await;
    assert_eq!(got.expect(200), &reply.body);
    assert_eq!(got.header("etag"), reply.header("etag"));
    // Adding members already there changes nothing and records nothing.
    let revision = h.live.view().unwrap().revision();
    h.patch(
        "/Groups/g-big",
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u01000"}]},
            {"op": "remove", "path": "members[value eq \"u00000\"]"}
        ]}),
    )
    .await
    .expect(200);
    assert_eq!(h.live.view().unwrap().revision(), revision);
    let view = h.live.view().unwrap();
    assert_eq!(view.group("g-big").unwrap().members, 500);
    assert!(view.membership("g-big", "u00999").is_none());
    assert!(view.membership("g-big", "u01000").is_some());
    let events: Vec<_> = h
        .audit()
        .into_iter()
        .filter(|e| e.action == "group.patch")
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events[0].detail.contains("added 1000 member(s)"),
        "{}",
        events[0].detail
    );
    assert!(
        events[1].detail.contains("removed 1000 member(s)"),
        "{}",
        events[1].detail
    );
    // Generous: a debug build on a shared machine.
    assert!(elapsed.as_secs() < 20, "took {elapsed:?}");
}
