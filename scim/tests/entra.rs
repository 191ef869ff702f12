//! Microsoft Entra ID's provisioning flow, with the dialect it speaks.

use crate::support::*;
use pdp::{Action, Mfa, UserStatus};
use serde_json::json;

const ENTRA_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

#[tokio::test]
async fn entra_provisions_users_and_groups() {
    let h = Harness::start_with(company()).await;

    // "Test connection".
    let probe = h
        .get("/Users?filter=userName+eq+%22d1f4b2a0-5d8e-4f7a-9c3b-2e6f8a1b0c9d%22")
        .await;
    assert_eq!(probe.expect(200)["totalResults"], json!(0));

    // Does the user exist? No: create them.
    let query = "/Users?filter=userName%20eq%20%22Grace.Hopper%40contoso.com%22";
    assert_eq!(h.get(query).await.expect(200)["totalResults"], json!(0));
    let created = h
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7b2a8c2f2f2a",
                "userName": "Grace.Hopper@contoso.com",
                "active": true,
                "displayName": "Grace Hopper",
                "emails": [{"primary": true, "type": "work", "value": "grace.hopper@contoso.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "Grace Hopper", "familyName": "Hopper", "givenName": "Grace"},
                "roles": [],
                ENTERPRISE: {"employeeNumber": "1906", "department": "Navy"},
                "urn:contoso:params:scim:schemas:extension:badge:2.0:User": {"badge": "B-12", "floor": 3}
            }),
        )
        .await;
    let user = created.expect(201).clone();
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(
        user["urn:contoso:params:scim:schemas:extension:badge:2.0:User"],
        json!({"badge": "B-12", "floor": 3})
    );
    let found = h.get(query).await;
    let found = found.expect(200);
    assert_eq!(found["totalResults"], json!(1));
    assert_eq!(found["Resources"][0]["id"], json!(id));
    // Entra also looks users up by externalId.
    let by_external = h
        .get("/Users?filter=externalId%20eq%20%220a21f0f2-8d2a-4f8e-bf98-7b2a8c2f2f2a%22")
        .await;
    assert_eq!(by_external.expect(200)["Resources"][0]["id"], json!(id));
    // And by work email, a sub-attribute tested after a value filter (not in RFC 7644's grammar).
    let by_email = h
        .get("/Users?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22grace.hopper%40contoso.com%22")
        .await;
    assert_eq!(by_email.expect(200)["Resources"][0]["id"], json!(id));
    let not_home = h
        .get("/Users?filter=emails%5Btype%20eq%20%22home%22%5D.value%20eq%20%22grace.hopper%40contoso.com%22")
        .await;
    assert_eq!(not_home.expect(200)["totalResults"], json!(0));

    // Put grace in Engineering so a policy allows her.
    h.patch(
        "/Groups/g-eng",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "Add", "path": "members", "value": [{"value": id}]}]}),
    )
    .await
    .expect(200);
    assert_eq!(h.decide(&id), Action::Allow);

    // Entra's PATCH: capitalised ops, "False", a value-filtered path, the manager as a bare id.
    let patched = h
        .patch(
            &format!("/Users/{id}"),
            json!({
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "Replace", "path": "active", "value": "False"},
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "grace@contoso.com"},
                    {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "u-alice"},
                    {"op": "Replace", "path": "displayName", "value": "Rear Admiral Hopper"},
                    {"op": "Add", "path": PORTCULLIS_MFA, "value": "True"}
                ]
            }),
        )
        .await;
    let body = patched.expect(200).clone();
    assert_eq!(body["active"], json!(false));
    assert_eq!(body["emails"][0]["value"], json!("grace@contoso.com"));
    assert_eq!(body[ENTERPRISE]["manager"]["value"], json!("u-alice"));
    assert_eq!(body[ENTERPRISE]["employeeNumber"], json!("1906"));
    assert_eq!(body[PORTCULLIS]["mfaEnabled"], json!(true));
    assert!(
        body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(PORTCULLIS))
    );
    assert_eq!(
        body["urn:contoso:params:scim:schemas:extension:badge:2.0:User"]["floor"],
        json!(3)
    );
    // Deactivated: every decision is Deny at once.
    assert_eq!(h.decide(&id), Action::Deny);
    let model = h.live.view().unwrap().user(&id).unwrap().clone();
    assert_eq!(model.status(), UserStatus::Inactive);
    assert_eq!(model.emails, vec!["grace@contoso.com"]);
    assert_eq!(model.display_name, "Rear Admiral Hopper");
    assert_eq!(model.mfa, Mfa::Enabled);
    // What was patched is what is read back.
    assert_eq!(h.get(&format!("/Users/{id}")).await.expect(200), &body);

    // Groups: Entra sends its own schema URN along.
    let group = h
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, ENTRA_GROUP],
                "externalId": "5e2b7d1c-entra",
                "displayName": "Contoso Sailors",
                "meta": {"resourceType": "Group"}
            }),
        )
        .await;
    let group = group.expect(201).clone();
    let group_id = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["schemas"], json!([GROUP, ENTRA_GROUP]));
    let lookup = h
        .get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22Contoso%20Sailors%22")
        .await;
    let lookup = lookup.expect(200);
    assert_eq!(lookup["totalResults"], json!(1));
    assert!(lookup["Resources"][0].get("members").is_none());

    // Add members, then remove them by value list and by value path.
    h.patch(
        &format!("/Groups/{group_id}"),
        json!({"schemas": [PATCH_OP], "Operations": [{
            "op": "Add", "path": "members",
            "value": [{"value": id}, {"value": "u-alice"}, {"value": "u-bob"}]
        }]}),
    )
    .await
    .expect(200);
    assert_eq!(h.live.view().unwrap().group(&group_id).unwrap().members, 3);
    let removed = h
        .patch(
            &format!("/Groups/{group_id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{
                "op": "Remove", "path": "members", "value": [{"value": "u-alice"}]
            }]}),
        )
        .await;
    let members: Vec<&str> = removed.expect(200)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    let mut expected = vec![id.as_str(), "u-bob"];
    expected.sort();
    assert_eq!(members, expected);
    h.patch(
        &format!("/Groups/{group_id}"),
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "Remove", "path": "members[value eq \"u-bob\"]"},
            {"op": "Replace", "path": "displayName", "value": "Contoso Navy"}
        ]}),
    )
    .await
    .expect(200);
    let view = h.live.view().unwrap();
    let entry = view.group(&group_id).unwrap();
    assert_eq!(entry.group.display_name, "Contoso Navy");
    let left: Vec<String> = view
        .members_of(&group_id)
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(left, vec![id.clone()]);
    // A broken path is refused.
    let ghost = h
        .patch(
            &format!("/Groups/{group_id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Remove", "path": "members[value eq \"" }
            ]}),
        )
        .await;
    ghost.expect_error(400, Some("invalidPath"));
    // Unknown users are refused, naming them, and nothing changes.
    let ghost = h
        .patch(
            &format!("/Groups/{group_id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Add", "path": "members", "value": [{"value": "u-bob"}, {"value": "u-ghost"}]}
            ]}),
        )
        .await;
    let detail = ghost.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("u-ghost"), "{detail}");
    assert_eq!(h.live.view().unwrap().group(&group_id).unwrap().members, 1);

    // Deprovisioning.
    let gone = h.delete(&format!("/Users/{id}")).await;
    assert_eq!(gone.status, 204);
    assert_eq!(h.live.view().unwrap().group(&group_id).unwrap().members, 0);
    assert_eq!(h.decide(&id), Action::Deny);

    // Everything was audited as the connection.
    let actions: Vec<String> = h
        .audit()
        .into_iter()
        .filter(|e| e.actor == "scim:entra" && e.outcome == "ok")
        .map(|e| e.action)
        .collect();
    for action in [
        "user.create",
        "user.patch",
        "user.delete",
        "group.create",
        "group.patch",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

const PORTCULLIS_MFA: &str =
    "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User:mfaEnabled";

#[tokio::test]
async fn patch_errors_change_nothing() {
    let h = Harness::start_with(company()).await;
    let before = h.get("/Users/u-alice").await.expect(200).clone();
    // All or nothing: the second operation fails, so the first does not apply.
    let reply = h
        .patch(
            "/Users/u-alice",
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "remove"}
            ]}),
        )
        .await;
    reply.expect_error(400, Some("noTarget"));
    // Removing userName leaves the user without one.
    h.patch(
        "/Users/u-alice",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "userName"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Renaming into another user's name.
    h.patch(
        "/Users/u-alice",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "BOB@example.com"}]}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    // Not a PatchOp.
    h.patch(
        "/Users/u-alice",
        json!({"schemas": [USER], "Operations": []}),
    )
    .await
    .expect_error(400, Some("invalidSyntax"));
    h.patch(
        "/Users/nobody",
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await
    .expect_error(404, None);
    assert_eq!(h.get("/Users/u-alice").await.expect(200), &before);
}
