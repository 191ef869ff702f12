//! Users pages, sign-in and the console's safety rules: sessions, CSRF, Read Only, escaping,
//! security headers.

use super::{Browser, Setup, XSS};

/// A decision for `user` by any agent and tool: the decision line `portcullis check` prints.
fn decision(setup: &Setup, user: &str) -> String {
    setup.check(&[
        "--user",
        user,
        "--agent",
        "gemini",
        "--connector",
        "slack",
        "--tool",
        "search_alert",
    ])
}

#[tokio::test]
async fn an_admin_finds_a_user_and_locks_them_and_the_next_check_is_denied() {
    let setup = Setup::start();
    let browser = setup.signed_in(&setup.admin).await;

    let list = browser.get("/console/users").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Alan Goldwasser"), "{}", list.body);
    let found = browser
        .get("/console/users?q=goldwasser193&sort=created&desc=1")
        .await;
    assert_eq!(found.status, 200);
    assert!(
        found.body.contains("/console/users/u0000193"),
        "{}",
        found.body
    );
    assert!(
        !found.body.contains("/console/users/u0000363"),
        "filtered out"
    );
    // By display name, in any case: the space is in the name, not in any email.
    assert!(list.body.contains("Search by email or name"));
    let by_name = browser.get("/console/users?q=alan+GOLDWASSER").await;
    assert_eq!(by_name.status, 200, "{}", by_name.body);
    assert!(
        by_name.body.contains("Alan Goldwasser") && !by_name.body.contains("No user matches."),
        "{}",
        by_name.body
    );

    let before = decision(&setup, "u0000005");
    assert!(!before.contains("USER_LOCKED"), "{before}");
    let details = browser.get("/console/users/u0000005").await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert!(
        details.body.contains("Lock user"),
        "an admin sees the lock form"
    );

    // Without the confirmation the lock is refused and nothing changes.
    let unconfirmed = browser
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/lock",
            &[("reason", "laptop stolen")],
        )
        .await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert!(!decision(&setup, "u0000005").contains("USER_LOCKED"));

    let locked = browser
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/lock",
            &[("reason", "laptop stolen"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(locked.status, 303, "{}", locked.body);
    assert_eq!(locked.location(), "/console/users/u0000005");
    // The write returns once decisions reflect it: the very next Check is denied.
    let after = decision(&setup, "u0000005");
    assert!(
        after.contains("DENY") && after.contains("USER_LOCKED"),
        "{after}"
    );
    let shown = browser.get("/console/users/u0000005").await;
    assert!(shown.body.contains("laptop stolen") && shown.body.contains("Unlock"));

    let unlocked = browser
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/unlock",
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(unlocked.status, 303, "{}", unlocked.body);
    assert!(!decision(&setup, "u0000005").contains("USER_LOCKED"));
}

#[tokio::test]
async fn forged_and_read_only_writes_are_refused() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    // A form without its CSRF token, or with another's, is refused before anything runs.
    let bare = admin
        .post(
            "/console/users/u0000005/lock",
            &[("reason", "forged"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(bare.status, 403, "{}", bare.body);
    let wrong = admin
        .post(
            "/console/users/u0000005/lock",
            &[
                ("csrf", "not-the-token"),
                ("reason", "forged"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);

    // A Read Only person sees no write control, and a forged write with their own valid
    // token is refused by the admin service.
    let reader = setup.signed_in(&setup.read_only).await;
    let page = reader.get("/console/users/u0000005").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("Lock user"), "{}", page.body);
    assert!(!page.body.contains("/lock\""), "no lock form action");
    let forged = reader
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/lock",
            &[("reason", "forged"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("Admin role"), "{}", forged.body);
    assert!(!decision(&setup, "u0000005").contains("USER_LOCKED"));
}

#[tokio::test]
async fn sessions_end_on_sign_out_and_when_their_user_is_locked() {
    let setup = Setup::start();
    // No session: to the sign-in page.
    let anonymous = Browser::new(&setup.server.http);
    let refused = anonymous.get("/console/users").await;
    assert_eq!(refused.status, 303);
    assert!(refused.location().starts_with("/console/sign-in"));
    // A sign-in form posted without the form's own cookie (from another site) is refused.
    let cross_site = Browser::new(&setup.server.http)
        .post(
            "/console/sign-in",
            &[("csrf", "guess"), ("token", setup.admin.as_str())],
        )
        .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    // A wrong token is refused with the service's words.
    let wrong = Browser::new(&setup.server.http)
        .sign_in("pcl_0000000000000000_nope")
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("invalid token"), "{}", wrong.body);

    let reader = setup.signed_in(&setup.read_only).await;
    assert_eq!(reader.get("/console/users").await.status, 200);
    let admin = setup.signed_in(&setup.admin).await;
    let locked = admin
        .submit(
            "/console/users/u0000002",
            "/console/users/u0000002/lock",
            &[("reason", "incident"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(locked.status, 303, "{}", locked.body);
    // The locked person's very next request ends their session.
    let after = reader.get("/console/users").await;
    assert_eq!(after.status, 303, "{}", after.body);
    assert!(after.location().contains("locked"), "{}", after.location());

    let signed_out = admin
        .submit("/console/users", "/console/sign-out", &[])
        .await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(admin.get("/console/users").await.status, 303);
}

#[tokio::test]
async fn directory_data_is_escaped_and_pages_carry_a_strict_policy() {
    let setup = Setup::start();
    setup.scim_user("mallory@example.com", XSS).await;

    let browser = setup.signed_in(&setup.admin).await;
    let list = browser.get("/console/users?q=mallory").await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<img"), "{}", list.body);
    let csp = list.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(list.headers["x-frame-options"], "DENY");
    assert_eq!(list.headers["cache-control"], "no-store");
    // No inline script: every script element loads the console's own file.
    for (at, _) in list.body.match_indices("<script") {
        let tag = &list.body[at..at + list.body[at..].find('>').unwrap()];
        assert!(tag.contains("src=\"/console/assets/"), "{tag}");
    }
    let cookie = setup_cookie_flags(&setup).await;
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

/// The session cookie's attributes, as a sign-in sets them.
async fn setup_cookie_flags(setup: &Setup) -> String {
    let browser = Browser::new(&setup.server.http);
    let reply = browser.sign_in(&setup.admin).await;
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("portcullis-console="))
        .expect("a session cookie")
}
