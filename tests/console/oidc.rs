//! Sign-in with the company's identity provider: a real OpenID provider (node-oidc-provider,
//! `tests/oidc/`) started on a loopback port, driven over plain HTTP as a browser without
//! JavaScript would (its login form, then the redirects back to the console). Skipped, with
//! one line, where node or `tests/oidc/node_modules` is missing (`.ci/run` installs both).

use super::{Browser, Reply, Setup, token};
use crate::support::{Server, generated_and_imported, path, run, run_ok};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "console-client-secret-for-tests";

/// The provider, killed when dropped.
pub(super) struct Provider {
    child: Child,
    pub(super) issuer: String,
    /// The accounts file it reads at each sign-in: sub → claims.
    accounts: PathBuf,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider for `redirect_uri`, signing ID tokens with `alg` (RS256 or ES256),
    /// or says why it cannot and returns `None`.
    fn start(dir: &Path, redirect_uri: &str, alg: &str) -> Option<Provider> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        if !root.join("node_modules/oidc-provider").is_dir() {
            eprintln!(
                "skipping the OpenID Connect sign-in test: tests/oidc/node_modules is missing \
                 (run `npm ci --prefix tests/oidc`)"
            );
            return None;
        }
        let accounts = dir.join("accounts.json");
        std::fs::write(&accounts, "{}").unwrap();
        let child = Command::new("node")
            .arg(root.join("provider.mjs"))
            .args([redirect_uri, SECRET, path(&accounts)])
            .env("ID_TOKEN_ALG", alg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipping the OpenID Connect sign-in test: cannot run node: {e}");
                return None;
            }
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // The first line is the issuer; the rest is read to the end, so that the provider
        // never writes into a closed pipe (which would end it).
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            lines.for_each(drop);
        });
        let mut provider = Provider {
            child,
            issuer: String::new(),
            accounts,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the OpenID provider printed no issuer within 60 s");
        provider.issuer = line.trim().to_owned();
        assert!(
            provider.issuer.starts_with("http://127.0.0.1:"),
            "the provider's first line: {line:?}"
        );
        Some(provider)
    }

    /// The people the provider knows: (sub, email, email_verified).
    pub(super) fn accounts(&self, accounts: &[(&str, &str, bool)]) {
        let map: serde_json::Map<String, serde_json::Value> = accounts
            .iter()
            .map(|(sub, email, verified)| {
                (
                    (*sub).to_owned(),
                    serde_json::json!({ "email": email, "email_verified": verified }),
                )
            })
            .collect();
        std::fs::write(&self.accounts, serde_json::Value::Object(map).to_string()).unwrap();
    }
}

/// A served directory whose console signs in with `provider` (started first: the redirect
/// URI needs the HTTP port, so it is chosen before `serve` starts), which signs with `alg`.
fn setup(alg: &str) -> Option<(Setup, Provider)> {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(
        dir.path(),
        &["--preset", "small", "--seed", "1", "--agents"],
    );
    let admin = token(&data, "u0000193", "admin");
    let read_only = token(&data, "u0000002", "read-only");
    let scim = crate::support::scim_token(&data, "okta");
    let (server, provider) = serve_with_provider(dir.path(), &data, alg)?;
    Some((
        Setup {
            _dir: dir,
            server,
            admin,
            read_only,
            scim,
        },
        provider,
    ))
}

/// `serve` on `data` with its console signing in through a provider started for it (named
/// "Test IdP", signing with `alg`), its files in `dir`; `None` (said in one line) where the
/// provider cannot run.
pub(super) fn serve_with_provider(
    dir: &Path,
    data: &Path,
    alg: &str,
) -> Option<(Server, Provider)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");
    let provider = Provider::start(dir, &format!("{public}/console/sign-in/callback"), alg)?;
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let http_addr = format!("127.0.0.1:{port}");
    let server = Server::spawn(&[
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        &http_addr,
        "--data-dir",
        path(data),
        "--console-oidc-issuer",
        &provider.issuer,
        "--console-oidc-client-id",
        "portcullis-console",
        "--console-oidc-client-secret-file",
        path(&secret),
        "--console-public-url",
        &public,
        "--console-oidc-name",
        "Test IdP",
    ]);
    assert_eq!(server.http, public);
    Some((server, provider))
}

/// `portcullis admin --json …` with the Admin token.
fn admin(setup: &Setup, rest: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "admin",
        "--server",
        &setup.server.addr,
        "--token",
        &setup.admin,
        "--json",
    ];
    args.extend_from_slice(rest);
    serde_json::from_str(&run_ok(&args)).unwrap()
}

fn email_of(setup: &Setup, user: &str) -> String {
    let got = admin(setup, &["users", "get", user]);
    let first = &got["user"]["emails"][0];
    first
        .as_str()
        .or_else(|| first["value"].as_str())
        .unwrap_or_else(|| panic!("no email: {got}"))
        .to_owned()
}

/// Creates a user over SCIM, as the identity provider provisions one; returns its id.
async fn scim_user(setup: &Setup, user_name: &str, external_id: &str, email: &str) -> String {
    let bearer = format!("Bearer {}", setup.scim);
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name, "externalId": external_id,
        "emails": [{"value": email, "primary": true}],
        "active": true
    });
    let created = Browser::new(&setup.server.http)
        .send(
            "POST",
            "/scim/v2/Users",
            &[
                ("authorization", &bearer),
                ("content-type", "application/scim+json"),
            ],
            user.to_string().into_bytes(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// `url` relative to `base` (the provider's redirects may be either).
fn relative<'a>(url: &'a str, base: &str) -> &'a str {
    url.strip_prefix(base).unwrap_or(url)
}

/// Goes through the provider as `login`: from the console's "Sign in with" link to the
/// provider's login form and back. Returns the callback's path (with its code and state),
/// not yet opened.
async fn through_provider(provider: &Provider, console: &Browser, login: &str) -> String {
    through(provider, console, Some(login)).await
}

/// [`through_provider`], logging in as `login`, or cancelling at the login form when `None`.
async fn through(provider: &Provider, console: &Browser, login: Option<&str>) -> String {
    let sign_in = console.get("/console/sign-in").await;
    assert!(
        sign_in
            .body
            .contains(r#"href="/console/sign-in/provider">Sign in with Test IdP"#),
        "{}",
        sign_in.body
    );
    let start = console.get("/console/sign-in/provider").await;
    assert_eq!(start.status, 303, "{}", start.body);
    let authorize = start.location().to_owned();
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    // The sign-in's own cookie must come back on the provider's cross-site redirect: Lax.
    let binding = start.headers["set-cookie"].to_str().unwrap();
    assert!(
        binding.starts_with("portcullis-sign-in-provider=")
            && binding.contains("HttpOnly")
            && binding.contains("SameSite=Lax"),
        "{binding}"
    );
    for part in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "code_challenge=",
    ] {
        assert!(authorize.contains(part), "{authorize}");
    }
    // A fresh browser at the provider each time, so that each sign-in logs in anew.
    let idp = Browser::new(&provider.issuer);
    let to_login = idp.get(relative(&authorize, &provider.issuer)).await;
    assert_eq!(to_login.status, 303, "{}", to_login.body);
    let login_page = relative(to_login.location(), &provider.issuer).to_owned();
    let form = idp.get(&login_page).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(r#"name="login""#), "{}", form.body);
    let posted = match login {
        Some(login) => {
            idp.post(
                &login_page,
                &[("prompt", "login"), ("login", login), ("password", "any")],
            )
            .await
        }
        None => idp.get(&format!("{login_page}/abort")).await,
    };
    assert_eq!(posted.status, 303, "{}", posted.body);
    let resumed = idp.get(relative(posted.location(), &provider.issuer)).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let callback = resumed.location().to_owned();
    let base = format!("{}/console/sign-in/callback?", console_base(console));
    assert!(callback.starts_with(&base), "{callback}");
    relative(&callback, &console_base(console)).to_owned()
}

fn console_base(browser: &Browser) -> String {
    browser.base.clone()
}

/// The sign-in page's alert, as text.
fn refusal(reply: &Reply) -> &str {
    let at = reply
        .body
        .find(r#"role="alert">"#)
        .unwrap_or_else(|| panic!("no alert: {}", reply.body));
    let rest = &reply.body[at + 13..];
    &rest[..rest.find('<').unwrap()]
}

#[tokio::test]
async fn an_admin_signs_in_through_the_provider_and_the_audit_names_the_session() {
    // ES256 here, RS256 (the provider's default) in the other test.
    let Some((setup, provider)) = setup("ES256") else {
        return;
    };
    // A group with the Admin role makes u0000010 an administrator.
    admin(
        &setup,
        &["groups", "create", "console-admins", "--role", "admin"],
    );
    admin(&setup, &["groups", "assign", "console-admins", "u0000010"]);
    let email = email_of(&setup, "u0000010");
    provider.accounts(&[("idp-ada", &email, true)]);

    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "idp-ada").await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status, 200, "{}", back.body);
    // The session cookie is set here, and the page moves on by itself (SameSite=Strict: the
    // cookie is sent from the next, same-site navigation).
    assert!(
        back.body
            .contains(r#"<meta http-equiv="refresh" content="0;url=/console">"#),
        "{}",
        back.body
    );
    assert!(back.body.contains(r#"href="/console""#));
    let cookies: Vec<&str> = back
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("portcullis-console=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );

    let users = browser.get("/console/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("Lock") || users.body.contains("Users"));
    let details = browser.get("/console/users/u0000005").await;
    assert!(
        details.body.contains("Lock user"),
        "an admin: {}",
        details.body
    );

    // Their writes are audited as the console session.
    let locked = browser
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/lock",
            &[("reason", "signed in through the IdP"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(locked.status, 303, "{}", locked.body);
    let audit = admin(&setup, &["audit", "--action", "user.lock", "--limit", "1"]);
    let lock = &audit["events"][0];
    assert_eq!(lock["actor"], "u0000010", "{audit}");
    let via = lock["via"].as_str().unwrap().to_owned();
    assert!(via.starts_with("console:") && via.len() > 8, "{via}");
    let signed_in = admin(&setup, &["audit", "--action", "console.sign_in"]);
    let event = &signed_in["events"][0];
    assert_eq!(event["actor"], "u0000010", "{signed_in}");
    assert_eq!(
        event["via"],
        via.as_str(),
        "the sign-in and the lock name one session"
    );
    assert!(
        event["detail"].as_str().unwrap().contains("idp-ada"),
        "{signed_in}"
    );

    // Signing out ends the session.
    let out = browser
        .submit("/console/users", "/console/sign-out", &[])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.get("/console/users").await.status, 303);

    // A user the identity provider provisioned over SCIM is matched by the ID token's subject
    // (their external id) whatever email the token carries...
    let grace = scim_user(
        &setup,
        "grace@corp.example",
        "00u-grace",
        "grace@corp.example",
    )
    .await;
    admin(&setup, &["groups", "assign", "console-admins", &grace]);
    provider.accounts(&[("00u-grace", "grace.personal@elsewhere.example", true)]);
    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "00u-grace").await;
    assert_eq!(browser.get(&callback).await.status, 200);
    let users = browser.get("/console/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("grace@corp.example"), "{}", users.body);
    // Locking them ends their session at the next click.
    admin(
        &setup,
        &["users", "lock", &grace, "--reason", "left the company"],
    );
    let after = browser.get("/console/users").await;
    assert_eq!(after.status, 303, "{}", after.body);
    assert!(after.location().starts_with("/console/sign-in"));
    admin(&setup, &["users", "unlock", &grace]);

    // ...unless that email names another user: the two claims disagree, and nobody gets in.
    let other = email_of(&setup, "u0000012");
    provider.accounts(&[("00u-grace", &other, true)]);
    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "00u-grace").await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refusal(&refused).contains("name different users"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn people_the_console_may_not_let_in_are_refused_with_a_clear_page() {
    let Some((setup, provider)) = setup("RS256") else {
        return;
    };
    admin(
        &setup,
        &["groups", "create", "console-admins", "--role", "admin"],
    );
    admin(
        &setup,
        &["groups", "assign", "console-admins", "u0000010", "u0000011"],
    );
    admin(
        &setup,
        &["users", "lock", "u0000011", "--reason", "incident"],
    );
    let (admin_email, locked_email) = (email_of(&setup, "u0000010"), email_of(&setup, "u0000011"));
    let no_role = email_of(&setup, "u0000012");
    // Two users share this email (emails may repeat): it names neither.
    let shared = email_of(&setup, "u0000013");
    scim_user(&setup, "twin@corp.example", "00u-twin", &shared).await;
    provider.accounts(&[
        ("idp-shared", &shared, true),
        ("idp-no-role", &no_role, true),
        ("idp-locked", &locked_email, true),
        ("idp-nobody", "nobody@nowhere.example", true),
        // An email the provider has not verified is not matched.
        ("idp-unverified", &admin_email, false),
        ("idp-ada", &admin_email, true),
    ]);

    let cases = [
        ("idp-locked", "is locked"),
        ("idp-nobody", "no directory user matches"),
        ("idp-unverified", "no directory user matches"),
        ("idp-shared", "several directory users match"),
    ];
    for (login, why) in cases {
        let browser = Browser::new(&setup.server.http);
        let callback = through_provider(&provider, &browser, login).await;
        let refused = browser.get(&callback).await;
        assert_eq!(refused.status, 403, "{login}: {}", refused.body);
        assert!(
            refusal(&refused).contains(why),
            "{login}: {}",
            refusal(&refused)
        );
        assert!(
            refused.body.contains("Sign in with Test IdP"),
            "the sign-in page again"
        );
        assert_eq!(
            browser.get("/console/users").await.status,
            303,
            "{login}: no session"
        );
    }
    // A known user's refusal is audited; nobody's is not (it names no one).
    let denied = admin(
        &setup,
        &[
            "audit",
            "--action",
            "auth.denied",
            "--target",
            "ConsoleSignIn",
        ],
    );
    let actors: Vec<&str> = denied["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["u0000011"], "{denied}");

    // An active user without a role gets in: they approve what flows name them for. They land
    // on their approvals inbox, the nav offers nothing else, and the admin services refuse
    // them the rest.
    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "idp-no-role").await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status, 200, "{}", back.body);
    let home = browser.get("/console").await;
    assert_eq!(home.status, 303, "{}", home.body);
    assert_eq!(home.location(), "/console/approvals");
    let inbox = browser.get("/console/approvals").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert!(
        !inbox.body.contains(r#"href="/console/users""#),
        "{}",
        inbox.body
    );
    assert_eq!(browser.get("/console/users").await.status, 403);
    let signed_in = admin(&setup, &["audit", "--action", "console.sign_in"]);
    assert_eq!(signed_in["events"][0]["actor"], "u0000012", "{signed_in}");

    // A wrong state, a replayed callback and a callback opened in another browser are refused.
    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "idp-ada").await;
    let (before, state_and_after) = callback.split_once("state=").unwrap();
    let wrong = format!("{before}state=x{state_and_after}");
    let refused = browser.get(&wrong).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refusal(&refused).contains("unknown"), "{}", refused.body);

    let elsewhere = Browser::new(&setup.server.http);
    let stolen = elsewhere.get(&callback).await;
    assert_eq!(stolen.status, 400, "{}", stolen.body);
    assert!(
        refusal(&stolen).contains("another browser"),
        "{}",
        stolen.body
    );
    // That try used the sign-in up: its own browser cannot finish it now either.
    let late = browser.get(&callback).await;
    assert_eq!(late.status, 400, "{}", late.body);

    // Someone who cancels at the provider comes back with its error, and no session.
    let browser = Browser::new(&setup.server.http);
    let callback = through(&provider, &browser, None).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let cancelled = browser.get(&callback).await;
    assert_eq!(cancelled.status, 401, "{}", cancelled.body);
    assert!(
        refusal(&cancelled).contains("did not sign you in: access_denied"),
        "{}",
        cancelled.body
    );
    assert_eq!(browser.get("/console/users").await.status, 303);

    let browser = Browser::new(&setup.server.http);
    let callback = through_provider(&provider, &browser, "idp-ada").await;
    assert_eq!(browser.get(&callback).await.status, 200);
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert!(
        refusal(&replayed).contains("already used"),
        "{}",
        replayed.body
    );
}

#[test]
fn a_half_configured_provider_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "serve",
        "--data-dir",
        path(dir.path()),
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--console-oidc-issuer",
        "https://idp.example.com",
        "--console-oidc-client-id",
        "portcullis",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--console-oidc-client-secret-file")
            && stderr.contains("--console-public-url"),
        "{stderr}"
    );
}
