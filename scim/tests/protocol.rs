//! The protocol around resources: authentication, discovery, errors, limits.

use crate::support::*;
use live::refusals::{Port, Reason};
use serde_json::json;

#[tokio::test]
async fn every_request_needs_a_connection_token() {
    let h = Harness::start().await;
    let none = h.raw("GET", "/Users", &[], None).await;
    none.expect_error(401, None);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    for auth in [
        "Bearer nonsense".to_owned(),
        format!("Bearer {}0", h.secret),
        format!("Basic {}", h.secret),
        format!("Bearer scim_{}_{}", h.connection.id, "00".repeat(32)),
        format!("Bearer scim_ffffffffffffffff_{}", "00".repeat(32)),
    ] {
        let reply = h
            .raw("GET", "/Users", &[("authorization", auth.as_str())], None)
            .await;
        reply.expect_error(401, None);
        assert!(reply.header("www-authenticate").is_some());
    }
    // Discovery too, and unknown endpoints: nothing is said without a token.
    h.raw("GET", "/ServiceProviderConfig", &[], None)
        .await
        .expect_error(401, None);
    h.raw("GET", "/Nothing", &[], None)
        .await
        .expect_error(401, None);
    // The lower-case scheme works.
    let auth = format!("bearer {}", h.secret);
    h.raw("GET", "/Users", &[("authorization", auth.as_str())], None)
        .await
        .expect(200);
    // Refusals name no one: they are counted, not audited, so nobody can fill the audit log
    // from outside.
    assert!(h.audit().iter().all(|e| e.action != "auth.denied"));
    let refusals = h.live.refusals();
    let count = |reason| refusals.count(Port::Scim, reason);
    // No header, `Basic`, and the two discovery calls; `nonsense`; the rest.
    assert_eq!(
        [Reason::Missing, Reason::Malformed, Reason::Unknown].map(count),
        [4, 1, 3]
    );
}

#[tokio::test]
async fn a_revoked_connection_is_refused() {
    let h = Harness::start().await;
    h.get("/Users").await.expect(200);
    let mut revoked = h.connection.clone();
    revoked.revoked_at = Some(pdp::Timestamp(1));
    h.live
        .write(move |tx| {
            tx.put_connection(&revoked)?;
            Ok::<_, scim::ScimError>(())
        })
        .await
        .unwrap();
    let detail = h.get("/Users").await.expect_error(401, None).to_owned();
    assert!(detail.contains("revoked"), "{detail}");
    assert_eq!(h.live.refusals().count(Port::Scim, Reason::Revoked), 1);
}

#[tokio::test]
async fn service_provider_config_says_what_is_supported() {
    let h = Harness::start().await;
    let reply = h.get("/ServiceProviderConfig").await;
    let config = reply.expect(200);
    assert_eq!(reply.header("content-type"), Some("application/scim+json"));
    assert_eq!(
        config["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(config["patch"]["supported"], json!(true));
    assert_eq!(
        config["filter"],
        json!({"supported": true, "maxResults": 200})
    );
    assert_eq!(config["bulk"]["supported"], json!(false));
    assert_eq!(config["changePassword"]["supported"], json!(false));
    assert_eq!(config["sort"]["supported"], json!(false));
    assert_eq!(config["etag"]["supported"], json!(true));
    assert_eq!(
        config["authenticationSchemes"][0]["type"],
        json!("oauthbearertoken")
    );
}

#[tokio::test]
async fn resource_types_and_schemas() {
    let h = Harness::start().await;
    let types = h.get("/ResourceTypes").await;
    let types = types.expect(200);
    assert_eq!(types["schemas"], json!([LIST]));
    assert_eq!(types["totalResults"], json!(2));
    let user = h.get("/ResourceTypes/User").await;
    let user = user.expect(200);
    assert_eq!(user["endpoint"], json!("/Users"));
    assert_eq!(user["schema"], json!(USER));
    let extensions: Vec<&str> = user["schemaExtensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["schema"].as_str().unwrap())
        .collect();
    assert_eq!(extensions, vec![ENTERPRISE, PORTCULLIS]);
    assert_eq!(
        h.get("/ResourceTypes/Group").await.expect(200)["schema"],
        json!(GROUP)
    );
    h.get("/ResourceTypes/Printer")
        .await
        .expect_error(404, None);

    let schemas = h.get("/Schemas").await;
    let ids: Vec<&str> = schemas.expect(200)["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![USER, GROUP, ENTERPRISE, PORTCULLIS]);
    let portcullis = h.get(&format!("/Schemas/{PORTCULLIS}")).await;
    let attributes = &portcullis.expect(200)["attributes"];
    assert_eq!(attributes[0]["name"], json!("mfaEnabled"));
    assert_eq!(attributes[0]["type"], json!("boolean"));
    let user = h.get(&format!("/Schemas/{USER}")).await;
    let user_name = user.expect(200)["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap()
        .clone();
    assert_eq!(user_name["required"], json!(true));
    assert_eq!(user_name["uniqueness"], json!("server"));
    h.get("/Schemas/urn:nothing").await.expect_error(404, None);
}

#[tokio::test]
async fn bulk_and_me_are_not_implemented() {
    let h = Harness::start().await;
    let body =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []});
    h.post("/Bulk", body).await.expect_error(501, None);
    h.get("/Me").await.expect_error(501, None);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_scim_errors() {
    let h = Harness::start().await;
    h.get("/Printers").await.expect_error(404, None);
    h.get("/Users/x/y").await.expect_error(404, None);
    let reply = h.call("DELETE", "/Users", None).await;
    reply.expect_error(405, None);
    assert!(reply.header("allow").is_some_and(|a| a.contains("GET")));
    h.call("POST", "/ServiceProviderConfig", Some(json!({})))
        .await
        .expect_error(405, None);
    h.call("PATCH", "/Groups", Some(json!({})))
        .await
        .expect_error(405, None);
}

#[tokio::test]
async fn malformed_bodies() {
    let h = Harness::start().await;
    let bearer = format!("Bearer {}", h.secret);
    let auth = ("authorization", bearer.as_str());
    let scim = ("content-type", "application/scim+json");
    let bad = h
        .raw(
            "POST",
            "/Users",
            &[auth, scim],
            Some(b"{\"userName\": ".to_vec()),
        )
        .await;
    bad.expect_error(400, Some("invalidSyntax"));
    let array = h
        .raw("POST", "/Users", &[auth, scim], Some(b"[1, 2]".to_vec()))
        .await;
    array.expect_error(400, Some("invalidSyntax"));
    let empty = h.raw("POST", "/Users", &[auth, scim], None).await;
    empty.expect_error(400, Some("invalidSyntax"));
    // The core schema is required.
    h.post("/Users", json!({"userName": "a@example.com"}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    h.post("/Groups", json!({"schemas": [USER], "displayName": "G"}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    // userName is required.
    h.post(
        "/Users",
        json!({"schemas": [USER], "displayName": "No Name"}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    h.post("/Users", json!({"schemas": [USER], "userName": 42}))
        .await
        .expect_error(400, Some("invalidValue"));
    h.post(
        "/Users",
        json!({"schemas": [USER], "userName": "a@example.com", "active": "maybe"}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Plain JSON and no content type are fine; text is not.
    let json_type = ("content-type", "application/json; charset=utf-8");
    let body = json!({"schemas": [USER], "userName": "plain@example.com"}).to_string();
    h.raw(
        "POST",
        "/Users",
        &[auth, json_type],
        Some(body.clone().into_bytes()),
    )
    .await
    .expect(201);
    let body2 = json!({"schemas": [USER], "userName": "untyped@example.com"}).to_string();
    h.raw("POST", "/Users", &[auth], Some(body2.into_bytes()))
        .await
        .expect(201);
    h.raw(
        "POST",
        "/Users",
        &[auth, ("content-type", "text/plain")],
        Some(body.into_bytes()),
    )
    .await
    .expect_error(415, None);
    // Nothing was half-written: the two good users only.
    assert_eq!(h.live.view().unwrap().user_count(), 2);
}

#[tokio::test]
async fn bodies_over_4_mib_are_refused_with_a_scim_body() {
    let h = Harness::start().await;
    let big = format!(
        "{{\"schemas\": [\"{USER}\"], \"userName\": \"big@example.com\", \"title\": \"{}\"}}",
        "x".repeat(4 * 1024 * 1024 + 1)
    );
    let reply = h.call_raw_body("POST", "/Users", big.into_bytes()).await;
    reply.expect_error(413, None);
    assert_eq!(h.live.view().unwrap().user_count(), 0);
    // Just under the limit is read, then refused by the attribute's own bound (limits.rs).
    let fits = format!(
        "{{\"schemas\": [\"{USER}\"], \"userName\": \"fits@example.com\", \"title\": \"{}\"}}",
        "x".repeat(4 * 1024 * 1024 - 200)
    );
    let reply = h.call_raw_body("POST", "/Users", fits.into_bytes()).await;
    let detail = reply.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("`title`"), "{detail}");
    assert_eq!(h.live.view().unwrap().user_count(), 0);
}

#[tokio::test]
async fn the_entra_test_connection_probe_finds_nobody() {
    let h = Harness::start_with(company()).await;
    let reply = h
        .get("/Users?filter=userName%20eq%20%226b3a2f7e-1d7c-4c55-9e8b-0a7f4a1c2b3d%22")
        .await;
    assert_eq!(
        reply.expect(200),
        &json!({
            "schemas": [LIST],
            "totalResults": 0,
            "Resources": [],
            "startIndex": 1,
            "itemsPerPage": 0,
        })
    );
    assert_eq!(reply.header("content-type"), Some("application/scim+json"));
}

#[tokio::test]
async fn bad_query_strings_are_scim_errors() {
    let h = Harness::start().await;
    h.get("/Users?filter=userName%20eq")
        .await
        .expect_error(400, Some("invalidFilter"));
    h.get("/Users?filter=shoeSize%20eq%20%229%22")
        .await
        .expect_error(400, Some("invalidFilter"));
    h.get("/Users?count=many")
        .await
        .expect_error(400, Some("invalidValue"));
    h.get("/Users?startIndex=%ZZ")
        .await
        .expect_error(400, Some("invalidValue"));
    let not_found = h.get("/Users/nobody").await;
    let detail = not_found.expect_error(404, None);
    assert!(detail.contains("nobody"));
    h.get("/Groups/nobody").await.expect_error(404, None);
}
