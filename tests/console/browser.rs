//! The console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver), against the real `serve`. Every page visited is checked with axe-core
//! (injected into the page; no serious or critical violation may remain) and photographed
//! into `target/tmp/console-screenshots/` for review.
//!
//! Chromium, chromedriver and axe-core are installed by `.ci/run` (Debian's `chromium` and
//! `chromium-driver`, `npm ci --prefix tests/browser`); where one is missing the test says so
//! in one line and passes without a browser.

use super::{Setup, XSS};
use crate::support::Deadline;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser/node_modules/axe-core/axe.min.js"
);

/// Where each page's screenshot goes.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// The first of `names` found on PATH (or the variable's value, when set).
fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A headless Chromium with its chromedriver, both gone when this is dropped.
pub struct Chromium {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    axe: String,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Chromium {
    /// Starts one, or says in one line why it cannot and returns None.
    pub async fn start() -> Option<Chromium> {
        let chromium = program("PORTCULLIS_CHROMIUM", &["chromium", "chromium-browser"]);
        let driver = program("PORTCULLIS_CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            eprintln!(
                "skipped: the console's browser tests need Debian's chromium and chromium-driver (.ci/run installs them)"
            );
            return None;
        };
        let Ok(axe) = std::fs::read_to_string(AXE) else {
            eprintln!(
                "skipped: the console's browser tests need axe-core: npm ci --prefix tests/browser (.ci/run does)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        Some(Chromium {
            client: connect(&url, capabilities).await,
            driver,
            _profile: profile,
            axe,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The page's path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Whether an element matches `css`.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// What the field `css` holds now (its `value` property: as typed, not as served).
    pub async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Chooses the option whose value is `value` in the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("no option `{value}` in `{css}`: {e}"));
    }

    /// Submits the form `form` through its submit button with the browser's own checks off
    /// (`required` boxes left unticked go out), as a browser that skips them would: what the
    /// server answers then is what a refused form looks like.
    pub async fn submit_unchecked(&self, form: &str) {
        let found = self
            .client
            .execute(
                "const form = document.querySelector(arguments[0]);
                 if (form) { form.noValidate = true; }
                 return form !== null;",
                vec![json!(form)],
            )
            .await
            .unwrap();
        assert_eq!(found, json!(true), "no form `{form}` on the page");
        self.click(&format!("{form} button[type=submit]")).await;
    }

    /// Opens `page` and follows its link to `to` (a path).
    pub async fn follow(&self, page: &str, to: &str) {
        self.goto(page).await;
        self.click(&format!("main a[href='{to}']")).await;
        wait_for_path(self, &format!("the page {to}"), |path| path == to).await;
    }

    /// Sends the confirmation form `form` with its box unticked: the server refuses and says
    /// why by the box; that page is reviewed as `name`.
    pub async fn refused_unticked(&self, form: &str, name: &str) {
        self.submit_unchecked(form).await;
        self.wait_for_text("#confirm-error", "the refusal by the box", |t| {
            t.contains("tick the confirmation box")
        })
        .await;
        self.show("#confirm-error").await;
        self.review(name).await;
    }

    /// Waits for a page showing a secret once (a new token, a rotated one) and returns it.
    pub async fn secret_shown_once(&self, what: &str) -> String {
        self.wait_for_text("main", what, |t| t.contains("Copy it now"))
            .await;
        self.value("#secret").await
    }

    /// Scrolls the first element matching `css` to the middle of the window, so the screenshot
    /// shows it (a refusal's message below the fold, say).
    pub async fn show(&self, css: &str) {
        let found = self
            .client
            .execute(
                "const element = document.querySelector(arguments[0]);
                 if (element) { element.scrollIntoView({ block: 'center' }); }
                 return element !== null;",
                vec![json!(css)],
            )
            .await
            .unwrap();
        assert_eq!(found, json!(true), "no `{css}` on the page");
    }

    /// Waits until the text of `css` satisfies `ready`. The element may be replaced while
    /// it is read (htmx swaps lists whole): that read counts as a miss.
    pub async fn wait_for_text(&self, css: &str, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Deadline::new(what, Duration::from_secs(15));
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ready(&text) {
                return;
            }
            deadline.tick(text).await;
        }
    }

    /// Runs axe-core on the page and fails on any serious or critical violation; then writes
    /// the page's screenshot as `name.png`.
    pub async fn review(&self, name: &str) {
        self.client
            .execute(&format!("{}\nreturn true;", self.axe), vec![])
            .await
            .unwrap();
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ["violations"] })
              .then(r => done(r.violations.map(v => ({
                  id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.slice(0, 3).map(n => n.html) }))))
              .catch(e => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));
        "#;
        let violations = self.client.execute_async(script, vec![]).await.unwrap();
        let serious: Vec<&Value> = violations
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(screenshots()).unwrap();
        std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
        assert!(
            serious.is_empty(),
            "accessibility violations on {name} ({}): {}",
            self.path().await,
            serde_json::to_string_pretty(&serious).unwrap()
        );
    }

    /// Signs in through the form with an admin token; lands on the users page.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/console/sign-in")).await;
        self.fill("#token", token).await;
        self.click("form[action='/console/sign-in'] button[type=submit]")
            .await;
        let deadline = Deadline::new("the console after sign-in", Duration::from_secs(15));
        loop {
            let path = self.path().await;
            if path.starts_with("/console/users") {
                return;
            }
            deadline.tick(path).await;
        }
    }

    pub async fn sign_out(&self) {
        self.click("form[action='/console/sign-out'] button").await;
    }
}

async fn connect(url: &str, capabilities: serde_json::Map<String, Value>) -> Client {
    // chromedriver takes a moment to listen.
    let deadline = Deadline::new("chromedriver", Duration::from_secs(30));
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(url)
            .await
        {
            Ok(client) => return client,
            Err(e) => deadline.tick(e.to_string()).await,
        }
    }
}

/// A decision for `user` by any agent and tool, as `portcullis check` prints it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_signs_in_searches_locks_and_stays_inert_and_accessible() {
    let Some(chromium) = Chromium::start().await else {
        return;
    };
    let setup = Setup::start();
    setup.scim_user("mallory@example.com", XSS).await;
    let base = setup.server.http.clone();

    // Not signed in: the sign-in page.
    chromium.goto(&format!("{base}/console/users")).await;
    assert!(chromium.path().await.starts_with("/console/sign-in"));
    chromium.review("sign-in").await;

    chromium.sign_in(&base, &setup.admin).await;
    chromium.review("users").await;

    // Search updates the list in place (htmx) and the address follows it.
    chromium.fill("#q", "mallory").await;
    chromium
        .wait_for_text("#users", "the search result in place", |t| {
            t.contains("mallory@example.com") && !t.contains("Goldwasser")
        })
        .await;
    // The display name is text, not markup: no image element, no alert.
    assert!(chromium.text("#users").await.contains(XSS));
    let images = chromium
        .client
        .execute(
            "return document.querySelectorAll('main img').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(images, json!(0));
    assert!(chromium.client.get_alert_text().await.is_err(), "no alert");
    chromium.review("users-search").await;

    // Every other page an admin opens passes axe too.
    for (path, name) in [
        ("/console/groups", "groups"),
        ("/console/groups/new", "group-new"),
        ("/console/approvals", "approvals"),
        ("/console/policies", "policies"),
        ("/console/policies/new", "policy-new"),
        ("/console/agents", "agents"),
        ("/console/activity", "activity"),
        ("/console/settings", "settings"),
        ("/console/settings/organisation", "settings-organisation"),
        ("/console/settings/tokens", "settings-tokens"),
        ("/console/settings/scim", "settings-scim"),
        ("/console/settings/webhooks", "settings-webhooks"),
        ("/console/settings/webhooks/new", "settings-webhook-new"),
        ("/console/settings/audit", "settings-audit"),
    ] {
        chromium.goto(&format!("{base}{path}")).await;
        chromium.review(name).await;
    }
    // A webhook added in the browser: the page with its secret shown once, then its details.
    chromium
        .goto(&format!("{base}/console/settings/webhooks/new"))
        .await;
    chromium.fill("#url", "http://127.0.0.1:9/hook").await;
    chromium.click("main form button[type=submit]").await;
    let secret = chromium.secret_shown_once("the new webhook's secret").await;
    assert!(!secret.is_empty());
    chromium.review("settings-webhook-secret").await;
    chromium
        .click("main a[href^='/console/settings/webhooks/wh_']")
        .await;
    chromium
        .wait_for_text("main", "the webhook's details", |t| {
            t.contains("Recent deliveries")
        })
        .await;
    chromium.review("settings-webhook").await;
    chromium.goto(&format!("{base}/console/groups")).await;
    chromium.click("#groups tbody a").await;
    let group = chromium.path().await;
    assert!(group.starts_with("/console/groups/"), "{group}");
    chromium.review("group").await;
    for (suffix, name) in [("/assign", "group-assign"), ("/settings", "group-settings")] {
        chromium.goto(&format!("{base}{group}{suffix}")).await;
        chromium.review(name).await;
    }
    // The confirmation pages and an error page.
    chromium.goto(&format!("{base}{group}")).await;
    chromium.click("a[href$='/remove']").await;
    chromium.review("group-remove-member").await;
    chromium
        .goto(&format!("{base}/console/settings/tokens"))
        .await;
    chromium.click("a[href$='/revoke']").await;
    assert!(chromium.path().await.ends_with("/revoke"));
    chromium.review("settings-token-revoke").await;
    chromium.goto(&format!("{base}/console/no-such-page")).await;
    assert!(chromium.text("main").await.contains("404"));
    chromium.review("not-found").await;

    chromium.goto(&format!("{base}/console/policies")).await;
    chromium.click("main table tbody td a").await;
    let policy = chromium.path().await;
    assert!(policy.starts_with("/console/policies/"), "{policy}");
    chromium.review("policy").await;
    chromium.goto(&format!("{base}{policy}/edit")).await;
    chromium.review("policy-edit").await;

    // Lock a user from their page: the next gRPC Check is denied.
    chromium
        .goto(&format!("{base}/console/users/u0000005"))
        .await;
    chromium.review("user").await;
    assert!(!decision(&setup, "u0000005").contains("USER_LOCKED"));
    chromium.fill("#reason", "laptop stolen").await;
    chromium.click("#confirm").await;
    chromium.click("button.danger").await;
    chromium
        .wait_for_text("main h1", "the user shown locked", |t| t.contains("Locked"))
        .await;
    let after = decision(&setup, "u0000005");
    assert!(after.contains("USER_LOCKED"), "{after}");
    chromium.review("user-locked").await;

    // A Read Only person sees no write control.
    chromium.sign_out().await;
    chromium.sign_in(&base, &setup.read_only).await;
    chromium
        .goto(&format!("{base}/console/users/u0000005"))
        .await;
    assert!(chromium.text("main").await.contains("laptop stolen"));
    assert!(!chromium.has("form[action$='/unlock']").await);
    assert!(!chromium.has("button.danger").await);
    chromium.review("user-read-only").await;
}

/// Waits until the page's path satisfies `ready`.
async fn wait_for_path(chromium: &Chromium, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Deadline::new(what, Duration::from_secs(15));
    loop {
        let path = chromium.path().await;
        if ready(&path) {
            return path;
        }
        deadline.tick(path).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_signs_in_through_the_provider_and_approves_by_clicking() {
    let Some(chromium) = Chromium::start().await else {
        return;
    };
    let (root, data) = crate::approvals::company();
    let Some((server, provider)) = super::oidc::serve_with_provider(root.path(), &data, "RS256")
    else {
        return;
    };
    // Bob (an approver of the Admins' flow) is `idp-bob` at the provider.
    provider.accounts(&[("idp-bob", "bob@example.com", true)]);
    let request = crate::approvals::approvals(&server, None)
        .await
        .create_approval_request(crate::approvals::create("acme/old"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let base = server.http.clone();

    // The request's link (as a webhook sends it), not signed in: the sign-in page, offering
    // the provider.
    let page = format!("/console/approvals/{}", request.id);
    chromium.goto(&format!("{base}{page}")).await;
    assert!(chromium.path().await.starts_with("/console/sign-in?"));
    let to_provider = "a[href^='/console/sign-in/provider']";
    assert!(chromium.text(to_provider).await.contains("Test IdP"));
    chromium.review("sign-in-provider").await;

    // The provider's login form, filled and submitted in the browser; its redirects lead back
    // to the console, signed in, on the request's page.
    chromium.click(to_provider).await;
    let deadline = Deadline::new("the provider's login form", Duration::from_secs(15));
    while !chromium.has("input[name=login]").await {
        deadline.tick(chromium.path().await).await;
    }
    let at = chromium.client.current_url().await.unwrap();
    assert!(at.as_str().starts_with(&provider.issuer), "{at}");
    chromium.fill("input[name=login]", "idp-bob").await;
    chromium.fill("input[name=password]", "any").await;
    chromium.click("button[type=submit]").await;
    wait_for_path(&chromium, "the request's page after the provider", |path| {
        path == page
    })
    .await;
    assert!(chromium.text("main").await.contains("acme/old"));
    chromium.review("approval").await;
    chromium
        .fill("#approve-comment", "archived since 2019")
        .await;
    chromium
        .click(&format!(
            "form[action='{page}/approve'] button[type=submit]"
        ))
        .await;
    chromium
        .wait_for_text("main", "the request shown approved", |t| {
            t.contains("Approved") && !t.contains("Approve this exact call")
        })
        .await;
    assert!(chromium.text("main").await.contains("archived since 2019"));
    chromium.review("approval-approved").await;

    // The approval is the real one: the retried call passes.
    assert_eq!(
        super::approvals::retried(&server, &request.id).await,
        portcullis_proto::v1::Decision::Allow
    );
}

/// A Chromium signed in as the Admin on a server of its own, and the server's address; None
/// (said in one line) where there is no browser.
async fn admin_in_browser() -> Option<(Chromium, Setup, String)> {
    let chromium = Chromium::start().await?;
    let setup = Setup::start();
    let base = setup.server.http.clone();
    chromium.sign_in(&base, &setup.admin).await;
    Some((chromium, setup, base))
}

/// The group `id` is named in the page's heading, and read back over gRPC it is stored as
/// the form set it.
async fn shown_and_stored(
    chromium: &Chromium,
    setup: &Setup,
    id: &str,
    (name, description): (&str, &str),
    role: portcullis_proto::v1::Role,
) {
    assert!(chromium.text("main h1").await.contains(name));
    let stored = super::groups::group(setup, id).await.unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.description.as_str()),
        (name, description)
    );
    assert_eq!(stored.roles, vec![role as i32]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_created_given_users_renamed_and_deleted_by_clicking() {
    use portcullis_proto::v1 as pb;
    let Some((chromium, setup, base)) = admin_in_browser().await else {
        return;
    };

    // Created through the form.
    chromium.goto(&format!("{base}/console/groups/new")).await;
    chromium.fill("#name", "Incident responders").await;
    chromium.fill("#description", "on call this week").await;
    chromium.click("#role-read_only").await;
    chromium
        .click("main form[method=post][action='/console/groups'] button[type=submit]")
        .await;
    let page = wait_for_path(&chromium, "the new group's page", |path| {
        path.starts_with("/console/groups/") && path != "/console/groups/new"
    })
    .await;
    let id = page.trim_start_matches("/console/groups/").to_owned();
    assert!(chromium.text("main").await.contains("No member yet."));
    shown_and_stored(
        &chromium,
        &setup,
        &id,
        ("Incident responders", "on call this week"),
        pb::Role::ReadOnly,
    )
    .await;
    chromium.review("group-created").await;

    // Assign Users: a search narrows the candidates in place, several are ticked and sent.
    chromium.click("main a[href$='/assign']").await;
    wait_for_path(&chromium, "the Assign Users page", |path| {
        path.ends_with("/assign")
    })
    .await;
    chromium.fill("#q", "contractors.example.net").await;
    chromium
        .wait_for_text("#candidates", "the contractors, in place", |t| {
            t.contains("@contractors.example.net") && !t.contains("@example.com")
        })
        .await;
    let mut picked = Vec::new();
    for i in 0..3 {
        let pick = format!("#candidates #pick-{i}");
        chromium.click(&pick).await;
        picked.push(chromium.value(&pick).await);
    }
    chromium.review("group-assign-picked").await;
    chromium
        .click("#candidates form[method=post] button[type=submit]")
        .await;
    wait_for_path(&chromium, "the group's page with the new members", |path| {
        path == format!("{page}?added=3")
    })
    .await;
    assert!(chromium.text("main").await.contains("3 users added."));
    for user in &picked {
        assert!(
            chromium
                .has(&format!("#members a[href='/console/users/{user}']"))
                .await,
            "{user} is listed: {}",
            chromium.text("#members").await
        );
    }
    picked.sort();
    assert_eq!(super::groups::member_ids(&setup, &id).await, picked);
    chromium.review("group-members").await;

    // Settings: renamed, described anew, Admin instead of Read Only.
    chromium.click("main a[href$='/settings']").await;
    wait_for_path(&chromium, "the group's settings", |path| {
        path.ends_with("/settings")
    })
    .await;
    assert_eq!(chromium.value("#group-id").await, id, "the id, read-only");
    chromium.fill("#name", "Incident commanders").await;
    chromium.fill("#description", "lead the response").await;
    chromium.click("#role-admin").await;
    chromium.click("#role-read_only").await;
    chromium
        .click(&format!(
            "form[action='{page}/settings'] button[type=submit]"
        ))
        .await;
    chromium
        .wait_for_text("main", "the settings saved", |t| t.contains("Saved."))
        .await;
    shown_and_stored(
        &chromium,
        &setup,
        &id,
        ("Incident commanders", "lead the response"),
        pb::Role::Admin,
    )
    .await;
    chromium.review("group-settings-saved").await;

    // Delete: the page says what happens; sent without the tick, the server asks for it and
    // deletes nothing.
    let delete = format!("form[action='{page}/delete']");
    let said = chromium.text(&delete).await;
    assert!(
        said.contains("3 users stay in the directory") && said.contains("ends at once"),
        "{said}"
    );
    chromium
        .refused_unticked(&delete, "group-delete-unconfirmed")
        .await;
    assert!(
        super::groups::group(&setup, &id).await.is_ok(),
        "not deleted"
    );
    chromium.click("#confirm-delete").await;
    chromium.click(&format!("{delete} button.danger")).await;
    wait_for_path(&chromium, "the groups after the delete", |path| {
        path == "/console/groups"
    })
    .await;
    chromium.fill("#q", "incident").await;
    chromium
        .wait_for_text("#groups", "the search for the deleted group", |t| {
            t.contains("No group matches.")
        })
        .await;
    chromium.review("groups-after-delete").await;
    assert_eq!(
        super::groups::group(&setup, &id).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // Its users stay in the directory, without it.
    chromium
        .goto(&format!("{base}/console/users/{}", picked[0]))
        .await;
    let user = chromium.text("main").await;
    assert!(
        user.contains(&picked[0]) && !user.contains("Incident"),
        "{user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_refused_then_created_and_tested_by_clicking() {
    let Some((chromium, setup, base)) = admin_in_browser().await else {
        return;
    };
    let agent = super::policies::working_agent(&setup);
    // On a connector no generated policy uses, so this policy alone decides there.
    let connector = super::policies::CONNECTOR;
    let check = |tool: &str| super::policies::check(&setup, agent, tool);
    assert!(check("open_door").contains("NO_MATCHING_POLICY"));

    chromium.goto(&format!("{base}/console/policies/new")).await;
    chromium.fill("#name", "Doors closed").await;
    chromium.fill("#connector", connector).await;
    chromium.click("#tools_mode-listed").await;
    chromium.fill("#tools", "open_door, close_door").await;
    chromium.click("#scope_mode-listed").await;
    chromium.fill("#users", "u0000005").await;
    chromium.select("#action", "deny").await;
    // A condition that does not compile: the error next to the field, what was typed kept.
    let broken = r#"request.arguments.repo.startsWith("acme/"#;
    chromium.fill("#expression", broken).await;
    let create = "main form[action='/console/policies'] button[type=submit]";
    chromium.click(create).await;
    chromium
        .wait_for_text(
            "#expression-error",
            "the condition refused by its field",
            |t| !t.is_empty(),
        )
        .await;
    assert_eq!(
        chromium
            .client
            .execute(
                "return document.getElementById('expression').getAttribute('aria-describedby');",
                vec![]
            )
            .await
            .unwrap(),
        json!("expression-error")
    );
    assert_eq!(chromium.value("#expression").await, broken);
    assert_eq!(chromium.value("#name").await, "Doors closed");
    assert!(
        check("open_door").contains("NO_MATCHING_POLICY"),
        "nothing saved"
    );
    chromium.show("#expression-error").await;
    chromium.review("policy-condition-refused").await;

    chromium
        .fill("#expression", r#"request.tool != "ring_bell""#)
        .await;
    chromium.click(create).await;
    let page = wait_for_path(&chromium, "the new policy's page", |path| {
        path.starts_with("/console/policies/pol_")
    })
    .await;
    let id = page.trim_start_matches("/console/policies/").to_owned();
    let shown = chromium.text("main").await;
    assert!(
        shown.contains("Doors closed") && shown.contains("open_door, close_door"),
        "{shown}"
    );
    chromium.review("policy-created").await;

    // Decisions use it at once: the gRPC Check names it.
    let decided = check("open_door");
    assert!(
        decided.starts_with("DENY") && decided.contains("reason POLICY") && decided.contains(&id),
        "{decided}"
    );

    // "Test this policy": the engine's explained answer, naming this policy.
    chromium.fill("#test-user", "u0000005").await;
    chromium.fill("#test-agent", agent).await;
    chromium.fill("#test-tool", "open_door").await;
    chromium.click("#test form button[type=submit]").await;
    chromium
        .wait_for_text("#answer", "the tested answer", |t| {
            t.contains("This policy")
        })
        .await;
    let answer = chromium.text("#answer").await;
    assert!(
        answer.contains("Deny") && answer.contains("POLICY"),
        "{answer}"
    );
    let weighed = chromium.text("#test table").await;
    assert!(weighed.contains("Doors closed (this policy)"), "{weighed}");
    chromium.review("policy-tested").await;
    // A tool it does not list: no policy matches, here and over gRPC.
    chromium.fill("#test-tool", "ring_bell").await;
    chromium.click("#test form button[type=submit]").await;
    chromium
        .wait_for_text("#answer", "the answer for another tool", |t| {
            t.contains("NO_MATCHING_POLICY")
        })
        .await;
    assert!(
        chromium
            .text("#test table")
            .await
            .contains("Tool not covered")
    );
    assert!(check("ring_bell").contains("NO_MATCHING_POLICY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_confirmations_and_the_forbidden_page_pass_axe_by_clicking() {
    let Some((chromium, setup, base)) = admin_in_browser().await else {
        return;
    };

    // A new admin token: its secret, once, and it works over gRPC.
    chromium
        .goto(&format!("{base}/console/settings/tokens"))
        .await;
    chromium.fill("#user", "u0000193").await;
    chromium.fill("#name", "browser test").await;
    chromium.select("#role", "read_only").await;
    chromium
        .click("main form[action='/console/settings/tokens'] button[type=submit]")
        .await;
    let secret = chromium.secret_shown_once("the new token's secret").await;
    let mut admin = setup.server.admin(&secret).await;
    admin
        .list_groups(portcullis_proto::v1::ListGroupsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("the new token reads: {e}"));
    chromium.review("settings-token-secret").await;

    // A new SCIM connection: its token, once, which the SCIM endpoint takes.
    let scim = super::Browser::new(&base);
    let scim_users = |token: String| {
        let scim = &scim;
        async move {
            let auth = format!("Bearer {token}");
            scim.send(
                "GET",
                "/scim/v2/Users?count=1",
                &[("authorization", auth.as_str())],
                Vec::new(),
            )
            .await
            .status
        }
    };
    chromium
        .goto(&format!("{base}/console/settings/scim"))
        .await;
    chromium.fill("#name", "entra-browser").await;
    chromium
        .click("main form[action='/console/settings/scim'] button[type=submit]")
        .await;
    let first = chromium
        .secret_shown_once("the new connection's token")
        .await;
    assert_eq!(scim_users(first.clone()).await, 200);
    let connection = chromium.text("main dl.facts code").await;
    chromium.review("settings-scim-secret").await;

    // Rotated: the confirmation, then the new token, once.
    let at = format!("/console/settings/scim/{connection}");
    chromium
        .follow(
            &format!("{base}/console/settings/scim"),
            &format!("{at}/rotate"),
        )
        .await;
    chromium.review("settings-scim-rotate").await;
    chromium.fill("#grace", "1h").await;
    chromium
        .click(&format!("form[action='{at}/rotate'] button[type=submit]"))
        .await;
    let rotated = chromium.secret_shown_once("the rotated token").await;
    assert_ne!(rotated, first);
    assert_eq!(scim_users(rotated.clone()).await, 200);
    assert!(
        chromium
            .text("main")
            .await
            .contains("Old token accepted until")
    );
    chromium.review("settings-scim-rotated-secret").await;

    // Revoked: the confirmation says what happens; then neither token works.
    chromium
        .follow(
            &format!("{base}/console/settings/scim"),
            &format!("{at}/revoke"),
        )
        .await;
    chromium.show("#confirm").await;
    chromium.review("settings-scim-revoke").await;
    chromium.click("#confirm").await;
    chromium
        .click(&format!("form[action='{at}/revoke'] button.danger"))
        .await;
    wait_for_path(&chromium, "the connections after the revoke", |path| {
        path == "/console/settings/scim"
    })
    .await;
    assert!(chromium.text("main table").await.contains("Revoked"));
    assert_eq!(scim_users(rotated).await, 401);
    assert_eq!(scim_users(first).await, 401);

    // A webhook's delete: refused without its tick (the page says why), then done.
    chromium
        .goto(&format!("{base}/console/settings/webhooks/new"))
        .await;
    chromium.fill("#url", "http://127.0.0.1:9/doomed").await;
    chromium.click("main form button[type=submit]").await;
    let secret = chromium.secret_shown_once("the new webhook's secret").await;
    assert!(!secret.is_empty());
    chromium
        .click("main a[href^='/console/settings/webhooks/wh_']")
        .await;
    let webhook = wait_for_path(&chromium, "the webhook's details", |path| {
        path.starts_with("/console/settings/webhooks/wh_")
    })
    .await;
    let delete = format!("form[action='{webhook}/delete']");
    assert!(chromium.text(&delete).await.contains("cannot be restored"));
    chromium
        .refused_unticked(&delete, "settings-webhook-delete-unconfirmed")
        .await;
    chromium.click("#confirm").await;
    chromium.click(&format!("{delete} button.danger")).await;
    wait_for_path(&chromium, "the webhooks after the delete", |path| {
        path == "/console/settings/webhooks"
    })
    .await;
    assert!(!chromium.text("main").await.contains("/doomed"));

    // A Read Only person opening a write page: 403, said plainly.
    chromium.sign_out().await;
    chromium.sign_in(&base, &setup.read_only).await;
    chromium.goto(&format!("{base}/console/groups/new")).await;
    let said = chromium.text("main").await;
    assert!(
        said.contains("403") && said.contains("Admin role"),
        "{said}"
    );
    chromium.review("forbidden").await;
}
