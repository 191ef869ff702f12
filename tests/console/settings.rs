//! Settings pages: an admin token made in the console signs in and is refused once revoked; a
//! SCIM connection made in the console provisions a user over real SCIM, rotates and is
//! revoked; a webhook is added, disabled and deleted; organisation settings change what Check
//! answers; the audit viewer shows each change with its actor and filters them; a Read Only
//! person sees no write control and their forged writes get 403.

use super::{Browser, Setup, XSS, field_value};

/// The secret a page shows once, in its read-only `secret` field.
fn secret(body: &str) -> String {
    field_value(body, "secret").unwrap_or_else(|| panic!("no secret on the page: {body}"))
}

/// The `code` after `marker` in `body` (an id the page shows).
fn code_after(body: &str, marker: &str) -> String {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker}: {body}"));
    let rest = &body[at..];
    let start = rest.find("<code>").unwrap() + 6;
    let end = rest[start..].find("</code>").unwrap();
    rest[start..start + end].to_owned()
}

/// A SCIM user created with `token` at `base`: the answer's status and body.
async fn provision(setup: &Setup, token: &str, email: &str) -> (u16, String) {
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "displayName": "Provisioned Person",
        "emails": [{"value": email, "primary": true}],
        "active": true,
    });
    let auth = format!("Bearer {token}");
    let reply = Browser::new(&setup.server.http)
        .send(
            "POST",
            "/scim/v2/Users",
            &[
                ("content-type", "application/scim+json"),
                ("authorization", auth.as_str()),
            ],
            body.to_string().into_bytes(),
        )
        .await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn an_admin_token_made_in_the_console_signs_in_and_is_refused_once_revoked() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let landing = admin.get("/console/settings").await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    for link in ["organisation", "tokens", "scim", "webhooks", "audit"] {
        let href = format!("href=\"/console/settings/{link}\"");
        assert!(landing.body.contains(&href), "{href}: {}", landing.body);
    }

    // A duration that does not read is refused next to its field, and the form keeps its values.
    let refused = admin
        .submit(
            "/console/settings/tokens",
            "/console/settings/tokens",
            &[
                ("user", "u0000005"),
                ("name", "ci <bot>"),
                ("expires_in", "soon"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"expires_in-error\""),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("value=\"ci &lt;bot&gt;\""),
        "{}",
        refused.body
    );
    let unknown = admin
        .submit(
            "/console/settings/tokens",
            "/console/settings/tokens",
            &[
                ("user", "nobody@nowhere.example"),
                ("name", "x"),
                ("role", ""),
            ],
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown.body.contains("id=\"user-error\""),
        "{}",
        unknown.body
    );

    let created = admin
        .submit(
            "/console/settings/tokens",
            "/console/settings/tokens",
            &[
                ("user", "u0000005"),
                ("name", "ci <bot>"),
                ("expires_in", "90d"),
                ("role", "read_only"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(
        created
            .headers
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let token = secret(&created.body);
    let token_id = code_after(&created.body, "<dt>Id</dt>");
    assert!(
        created.body.contains("shown only this once"),
        "{}",
        created.body
    );

    // The list names it, never its secret.
    let list = admin.get("/console/settings/tokens").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&token_id), "{}", list.body);
    assert!(list.body.contains("ci &lt;bot&gt;"), "{}", list.body);
    assert!(!list.body.contains(&token), "the secret is shown once");

    // It works: someone signs in to the console with it, as u0000005 with Read Only.
    let holder = setup.signed_in(&token).await;
    let users = holder.get("/console/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("Read Only"), "{}", users.body);

    // Revoking asks for a confirmation, checked by the server too.
    let revoke = format!("/console/settings/tokens/{token_id}/revoke");
    let unconfirmed = admin.submit(&revoke, &revoke, &[]).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert_eq!(holder.get("/console/users").await.status, 200);
    let revoked = admin.submit(&revoke, &revoke, &[("confirm", "yes")]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(revoked.location(), "/console/settings/tokens");

    // Its session ends at the next request, and it no longer signs in.
    let ended = holder.get("/console/users").await;
    assert_eq!(ended.status, 303, "{}", ended.body);
    assert!(
        ended.location().starts_with("/console/sign-in"),
        "{}",
        ended.location()
    );
    let again = Browser::new(&setup.server.http).sign_in(&token).await;
    assert_ne!(
        again.status, 303,
        "a revoked token signs in: {}",
        again.body
    );

    // The audit viewer shows both changes by the admin, and filters them.
    let audit = admin
        .get(&format!(
            "/console/settings/audit?actor=u0000193&action=token.&target_id={token_id}"
        ))
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        audit.body.contains("<code>token.create</code>"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("<code>token.revoke</code>"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("<details>"),
        "before and after on demand: {}",
        audit.body
    );
    let only_revoke = admin
        .get(&format!(
            "/console/settings/audit?action=token.revoke&target_id={token_id}"
        ))
        .await;
    assert!(
        only_revoke.body.contains("<code>token.revoke</code>"),
        "{}",
        only_revoke.body
    );
    assert!(
        !only_revoke.body.contains("<code>token.create</code>"),
        "{}",
        only_revoke.body
    );
    let someone_else = admin
        .get(&format!(
            "/console/settings/audit?actor=u0000002&target_id={token_id}"
        ))
        .await;
    assert!(
        someone_else.body.contains("No event matches."),
        "{}",
        someone_else.body
    );
    let bad_time = admin.get("/console/settings/audit?since=yesterday").await;
    assert_eq!(bad_time.status, 400, "{}", bad_time.body);
    assert!(
        bad_time.body.contains("id=\"since-error\""),
        "{}",
        bad_time.body
    );
}

#[tokio::test]
async fn a_scim_connection_made_in_the_console_provisions_a_user_and_is_revoked() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let created = admin
        .submit(
            "/console/settings/scim",
            "/console/settings/scim",
            &[("name", "entra")],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let base = format!("{}/scim/v2", setup.server.http);
    assert!(
        created.body.contains(&format!("value=\"{base}\"")),
        "{base}: {}",
        created.body
    );
    let first = secret(&created.body);
    let id = code_after(&created.body, "<dt>Id</dt>");

    let (status, body) = provision(&setup, &first, "new.person@example.com").await;
    assert_eq!(status, 201, "{body}");
    let users = admin.get("/console/users?q=new.person").await;
    assert!(
        users.body.contains("new.person@example.com"),
        "{}",
        users.body
    );

    // Rotating with a grace period: both tokens work until it ends.
    let rotate = format!("/console/settings/scim/{id}/rotate");
    let bad = admin.submit(&rotate, &rotate, &[("grace", "30d")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("id=\"grace-error\""), "{}", bad.body);
    let rotated = admin.submit(&rotate, &rotate, &[("grace", "1h")]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second = secret(&rotated.body);
    assert_ne!(first, second);
    assert!(
        rotated.body.contains("Old token accepted until"),
        "{}",
        rotated.body
    );
    assert_eq!(
        provision(&setup, &first, "old.token@example.com").await.0,
        201
    );
    assert_eq!(
        provision(&setup, &second, "new.token@example.com").await.0,
        201
    );

    let revoke = format!("/console/settings/scim/{id}/revoke");
    assert_eq!(admin.submit(&revoke, &revoke, &[]).await.status, 400);
    let revoked = admin.submit(&revoke, &revoke, &[("confirm", "yes")]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(
        provision(&setup, &second, "after.revoke@example.com")
            .await
            .0,
        401
    );
    assert_eq!(
        provision(&setup, &first, "after.revoke@example.com")
            .await
            .0,
        401
    );

    let list = admin.get("/console/settings/scim").await;
    assert!(list.body.contains("Revoked"), "{}", list.body);
    assert!(!list.body.contains(&second), "the secret is shown once");
    let audit = admin
        .get(&format!(
            "/console/settings/audit?actor=u0000193&action=scim_connection.&target_id={id}"
        ))
        .await;
    for action in ["create", "rotate", "revoke"] {
        let code = format!("<code>scim_connection.{action}</code>");
        assert!(audit.body.contains(&code), "{code}: {}", audit.body);
    }
    // The users it made are audited as the connection's, by name.
    let by_idp = admin
        .get("/console/settings/audit?actor=scim:entra&action=user.create")
        .await;
    assert_eq!(
        by_idp.body.matches("<code>user.create</code>").count(),
        3,
        "{}",
        by_idp.body
    );
}

#[tokio::test]
async fn a_webhook_is_added_disabled_and_deleted_and_settings_change_what_check_answers() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let new = "/console/settings/webhooks/new";
    let refused = admin
        .submit(
            new,
            "/console/settings/webhooks",
            &[("url", "http://example.com/hook"), ("enabled", "yes")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"url-error\""),
        "{}",
        refused.body
    );

    let created = admin
        .submit(
            new,
            "/console/settings/webhooks",
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("description", XSS),
                ("events", "approval.created"),
                ("events", "approval.denied"),
                ("enabled", "yes"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(
        secret(&created.body).starts_with("whsec_"),
        "{}",
        created.body
    );
    let id = code_after(&created.body, "<dt>Id</dt>");
    let list = admin.get("/console/settings/webhooks").await;
    assert!(
        list.body.contains("http://127.0.0.1:9/hook"),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("approval.created, approval.denied"),
        "{}",
        list.body
    );
    assert!(list.body.contains("Enabled"), "{}", list.body);
    assert!(!list.body.contains(XSS), "escaped: {}", list.body);

    // Disable it: the form sent without the enabled box.
    let details = format!("/console/settings/webhooks/{id}");
    let disabled = admin
        .submit(
            &details,
            &details,
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "approval.created"),
            ],
        )
        .await;
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    let shown = admin.get(&details).await;
    assert!(shown.body.contains("Disabled"), "{}", shown.body);
    assert!(shown.body.contains("Recent deliveries"), "{}", shown.body);

    let delete = format!("{details}/delete");
    assert_eq!(admin.submit(&details, &delete, &[]).await.status, 400);
    let deleted = admin.submit(&details, &delete, &[("confirm", "yes")]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let list = admin.get("/console/settings/webhooks").await;
    assert!(!list.body.contains("127.0.0.1:9"), "{}", list.body);
    let audit = admin
        .get(&format!(
            "/console/settings/audit?actor=u0000193&target_id={id}"
        ))
        .await;
    for action in ["webhook.created", "webhook.updated", "webhook.deleted"] {
        assert!(
            audit.body.contains(&format!("<code>{action}</code>")),
            "{action}: {}",
            audit.body
        );
    }

    // Organisation settings: the generated company denies unregistered agents; let them go on
    // to the policies, and Check no longer says UNKNOWN_AGENT; deny them again, and it does.
    let check = || {
        setup.check(&[
            "--user",
            "u0000005",
            "--agent",
            "no-such-agent",
            "--connector",
            "slack",
            "--tool",
            "search_alert",
        ])
    };
    let org = "/console/settings/organisation";
    let shown = admin.get(org).await;
    assert!(
        shown.body.contains("value=\"deny\" checked"),
        "{}",
        shown.body
    );
    assert!(check().contains("UNKNOWN_AGENT"));
    let saved = admin
        .submit(org, org, &[("unregistered_agents", "allow")])
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    crate::support::wait_for(
        "unregistered agents allowed",
        crate::support::PATIENCE,
        || {
            let line = check();
            if line.contains("UNKNOWN_AGENT") {
                Err(line)
            } else {
                Ok(())
            }
        },
    );
    let unknown = admin
        .submit(org, org, &[("unregistered_agents", "maybe")])
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let saved = admin
        .submit(org, org, &[("unregistered_agents", "deny")])
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    crate::support::wait_for(
        "unregistered agents denied",
        crate::support::PATIENCE,
        || {
            let line = check();
            if line.contains("UNKNOWN_AGENT") {
                Ok(())
            } else {
                Err(line)
            }
        },
    );
    let page = admin.get(saved.location()).await;
    assert!(page.body.contains("Saved."), "{}", page.body);
    let audit = admin
        .get("/console/settings/audit?action=settings.update")
        .await;
    assert!(audit.body.contains("u0000193"), "{}", audit.body);
    assert!(
        audit
            .body
            .contains("&quot;unregistered_agents&quot;: &quot;deny&quot;"),
        "escaped JSON: {}",
        audit.body
    );
}

#[tokio::test]
async fn read_only_sees_no_write_control_and_forged_writes_get_403() {
    let setup = Setup::start();
    let reader = setup.signed_in(&setup.read_only).await;
    for path in [
        "/console/settings",
        "/console/settings/organisation",
        "/console/settings/scim",
        "/console/settings/webhooks",
        "/console/settings/audit",
    ] {
        let page = reader.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for control in [
            "method=\"post\" action=\"/console/settings",
            "Add webhook",
            "/revoke\"",
            "/rotate\"",
        ] {
            assert!(
                !page.body.contains(control),
                "{path} shows {control}: {}",
                page.body
            );
        }
    }
    // Tokens are the Admins' alone: the API refuses to list them.
    let tokens = reader.get("/console/settings/tokens").await;
    assert_eq!(tokens.status, 403, "{}", tokens.body);
    assert!(
        tokens
            .body
            .contains("Only Admins see and manage API tokens."),
        "{}",
        tokens.body
    );
    assert!(!tokens.body.contains("Create token"), "{}", tokens.body);
    assert_eq!(
        reader.get("/console/settings/webhooks/new").await.status,
        403
    );

    let csrf = reader.get("/console/settings").await.csrf();
    for (action, fields) in [
        (
            "/console/settings/organisation",
            vec![("unregistered_agents", "deny")],
        ),
        (
            "/console/settings/tokens",
            vec![("user", "u0000002"), ("name", "mine"), ("role", "admin")],
        ),
        ("/console/settings/scim", vec![("name", "rogue")]),
        (
            "/console/settings/webhooks",
            vec![("url", "http://127.0.0.1:9/x"), ("enabled", "yes")],
        ),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let forged = reader.post(action, &all).await;
        assert_eq!(forged.status, 403, "{action}: {}", forged.body);
    }
    // And without the CSRF token even an admin's form is refused before any service is called.
    let admin = setup.signed_in(&setup.admin).await;
    let no_csrf = admin
        .post("/console/settings/scim", &[("name", "forged")])
        .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let list = admin.get("/console/settings/scim").await;
    assert!(
        !list.body.contains("forged") && !list.body.contains("rogue"),
        "{}",
        list.body
    );
    let refused = admin
        .get("/console/settings/audit?actor=u0000002&action=auth.denied&target_id=UpdateSettings")
        .await;
    assert!(
        refused.body.contains("Denied"),
        "the refusal is audited: {}",
        refused.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_page_shows_its_deliveries_with_their_status() {
    let (_root, data) = crate::approvals::company();
    let token = crate::support::admin_token(&data, "admin");
    let server = crate::support::Server::start(&data);
    let admin = Browser::new(&server.http);
    assert_eq!(admin.sign_in(&token).await.status, 303);
    // Nothing listens on the discard port: each attempt fails and is retried.
    let created = admin
        .submit(
            "/console/settings/webhooks/new",
            "/console/settings/webhooks",
            &[("url", "http://127.0.0.1:9/hook"), ("enabled", "yes")],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let id = code_after(&created.body, "<dt>Id</dt>");
    let mut gateway = crate::approvals::approvals(&server, None).await;
    let request = gateway
        .create_approval_request(crate::approvals::create("acme/old"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();

    let details = format!("/console/settings/webhooks/{id}");
    let link = format!("href=\"/console/approvals/{}\"", request.id);
    let admin = &admin;
    let body = crate::support::wait_for_async(
        "a failed attempt in the deliveries",
        crate::support::PATIENCE,
        || {
            let (details, link) = (details.clone(), link.clone());
            async move {
                let page = admin.get(&details).await;
                let tried = page.body.contains(&link)
                    && page.body.contains("<td>approval.created</td>")
                    && !page.body.contains("Nothing delivered yet.")
                    && page.body.contains("next attempt");
                if tried {
                    Ok(page.body)
                } else {
                    Err(page.status)
                }
            }
        },
    )
    .await;
    assert!(body.contains("Pending"), "{body}");
    assert!(!body.contains("Delivered"), "{body}");
}
