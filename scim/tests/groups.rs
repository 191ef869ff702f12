//! `/Groups`: External groups and their members; Local groups stay invisible.

use crate::support::*;
use pdp::{ManagedBy, MembershipSource, Role};
use serde_json::json;

#[tokio::test]
async fn created_groups_keep_their_document_and_members() {
    let h = Harness::start_with(company()).await;
    let reply = h
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8f3c-entra-group",
                "displayName": "Data Science",
                "members": [{"value": "u-bob"}, {"value": "u-alice", "display": "ignored"}]
            }),
        )
        .await;
    let group = reply.expect(201).clone();
    let id = group["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let base = h.base();
    assert_eq!(
        reply.header("location"),
        Some(format!("{base}/Groups/{id}").as_str())
    );
    assert_eq!(reply.header("etag"), group["meta"]["version"].as_str());
    assert_eq!(
        group["schemas"][1],
        json!("http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group")
    );
    assert_eq!(
        group["members"],
        json!([
            {"value": "u-alice", "display": "Alice Example", "$ref": format!("{base}/Users/u-alice")},
            {"value": "u-bob", "display": "Bob Example", "$ref": format!("{base}/Users/u-bob")},
        ])
    );
    assert_eq!(group["meta"]["resourceType"], json!("Group"));
    let view = h.live.view().unwrap();
    let entry = view.group(&id).unwrap();
    assert_eq!(entry.group.managed_by, ManagedBy::External);
    assert_eq!(entry.group.external_id.as_deref(), Some("8f3c-entra-group"));
    assert_eq!(entry.members, 2);
    assert_eq!(
        view.membership(&id, "u-bob").unwrap().source,
        MembershipSource::Idp
    );
    let stored = h
        .live
        .store()
        .get_scim(store::ScimKind::Group, &id)
        .unwrap()
        .unwrap();
    assert!(stored.get("members").is_none());
    assert_eq!(h.get(&format!("/Groups/{id}")).await.expect(200), &group);
    // Display names need not be unique; external ids must.
    h.post(
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "Data Science"}),
    )
    .await
    .expect(201);
    h.post(
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "Other", "externalId": "8f3c-entra-group"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    h.post("/Groups", json!({"schemas": [GROUP]}))
        .await
        .expect_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn unknown_members_are_refused_by_id() {
    let h = Harness::start_with(company()).await;
    let reply = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": "u-alice"}, {"value": "u-ghost"}]}),
        )
        .await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("u-ghost"), "{detail}");
    h.post(
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": "g-eng", "type": "Group"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    h.put(
        "/Groups/g-eng",
        json!({"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": "u-ghost"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Nothing changed.
    let view = h.live.view().unwrap();
    assert_eq!(view.group_count(), 2);
    assert_eq!(view.members_of("g-eng").count(), 1);
}

#[tokio::test]
async fn put_sets_members_exactly_and_keeps_admin_fields() {
    let h = Harness::start_with(company()).await;
    h.live
        .write(|tx| {
            let mut group = tx.group("g-eng")?.unwrap();
            group.description = "Builds things".into();
            group.roles = vec![Role::ReadOnly];
            tx.put_group(&group)?;
            Ok::<_, scim::ScimError>(())
        })
        .await
        .unwrap();
    let reply = h
        .put(
            "/Groups/g-eng",
            json!({
                "schemas": [GROUP],
                "displayName": "Engineering (all)",
                "externalId": "okta-eng",
                "members": [{"value": "u-bob"}]
            }),
        )
        .await;
    let body = reply.expect(200);
    assert_eq!(body["displayName"], json!("Engineering (all)"));
    assert_eq!(body["members"][0]["value"], json!("u-bob"));
    assert_eq!(body["members"].as_array().unwrap().len(), 1);
    let view = h.live.view().unwrap();
    let group = &view.group("g-eng").unwrap().group;
    assert_eq!(group.description, "Builds things");
    assert_eq!(group.roles, vec![Role::ReadOnly]);
    assert_eq!(group.external_id.as_deref(), Some("okta-eng"));
    let members: Vec<String> = view
        .members_of("g-eng")
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(members, vec!["u-bob"]);
    let event = h
        .audit()
        .into_iter()
        .find(|e| e.action == "group.replace")
        .unwrap();
    assert_eq!(event.actor, "scim:entra");
    assert!(event.detail.contains("added 1") && event.detail.contains("removed 1"));
    // Empty members empty the group.
    h.put(
        "/Groups/g-eng",
        json!({"schemas": [GROUP], "displayName": "Engineering (all)", "externalId": "okta-eng"}),
    )
    .await
    .expect(200);
    assert_eq!(h.live.view().unwrap().members_of("g-eng").count(), 0);
}

#[tokio::test]
async fn local_groups_are_invisible() {
    let h = Harness::start_with(company()).await;
    h.get("/Groups/g-admins").await.expect_error(404, None);
    h.put(
        "/Groups/g-admins",
        json!({"schemas": [GROUP], "displayName": "Admins"}),
    )
    .await
    .expect_error(404, None);
    h.patch(
        "/Groups/g-admins",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "X"}]}),
    )
    .await
    .expect_error(404, None);
    h.delete("/Groups/g-admins").await.expect_error(404, None);
    let all = h.get("/Groups").await;
    let all = all.expect(200);
    assert_eq!(all["totalResults"], json!(1));
    assert_eq!(all["Resources"][0]["id"], json!("g-eng"));
    for filter in [
        "displayName%20eq%20%22Admins%22",
        "id%20eq%20%22g-admins%22",
        "members.value%20eq%20%22u-bob%22",
        "displayName%20sw%20%22A%22",
    ] {
        let found = h.get(&format!("/Groups?filter={filter}")).await;
        assert_eq!(found.expect(200)["totalResults"], json!(0), "{filter}");
    }
    let view = h.live.view().unwrap();
    assert!(view.group("g-admins").is_some());
    assert_eq!(view.members_of("g-admins").count(), 1);
}

#[tokio::test]
async fn delete_removes_the_group_from_policies() {
    let h = Harness::start_with(company()).await;
    let reply = h.delete("/Groups/g-eng").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let view = h.live.view().unwrap();
    assert!(view.group("g-eng").is_none());
    assert!(view.user("u-alice").is_some());
    assert_eq!(
        view.policy("p-eng").unwrap().scope.groups,
        vec!["g-admins".to_owned()]
    );
    // alice is still allowed through p-people.
    let alice = h.get("/Users/u-alice").await;
    assert!(alice.expect(200).get("groups").is_none());
    let events = h.audit();
    let delete = events.iter().find(|e| e.action == "group.delete").unwrap();
    assert_eq!(delete.actor, "scim:entra");
    assert!(delete.detail.contains("p-eng"), "{}", delete.detail);
}
