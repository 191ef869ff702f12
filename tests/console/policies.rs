//! Policies pages: create through the form, list, "Test this policy" against `portcullis
//! check`, a bad condition refused next to its field, edit, disable, delete; Read Only.

use super::{Browser, Reply, Setup};

/// The connector the tests' policies are on: no generated policy uses it.
pub const CONNECTOR: &str = "console-test";

/// An agent the directory lets act for u0000005 (registered, enabled, in scope): the first of
/// the well-known ones whose answer on a connector without policies is the policies' own.
pub fn working_agent(setup: &Setup) -> &'static str {
    [
        "claude", "chatgpt", "copilot", "gemini", "cursor", "devin", "codex",
    ]
    .into_iter()
    .find(|agent| check(setup, agent, "open_door").contains("NO_MATCHING_POLICY"))
    .expect("an agent that may act for u0000005")
}

/// `portcullis check` for u0000005 on the tests' connector: the decision line.
pub fn check(setup: &Setup, agent: &str, tool: &str) -> String {
    setup.check(&[
        "--user",
        "u0000005",
        "--agent",
        agent,
        "--connector",
        CONNECTOR,
        "--tool",
        tool,
    ])
}

/// (decision, reason) of a `portcullis check` line: `DENY  reason POLICY  policy …`.
fn decision_and_reason(line: &str) -> (String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"reason"), "{line}");
    (words[0].to_owned(), words[2].to_owned())
}

/// The answer part of a tested policy page.
fn answer(page: &Reply) -> &str {
    let at = page
        .body
        .find("id=\"answer\"")
        .unwrap_or_else(|| panic!("no answer on the page: {}", page.body));
    &page.body[at..]
}

/// The form fields of a Deny policy on the tests' connector for u0000005.
fn deny_form<'a>(name: &'a str, expression: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("description", "made by the console tests"),
        ("connector", CONNECTOR),
        ("tools_mode", "listed"),
        ("tools", "open_door, close_door"),
        ("scope_mode", "listed"),
        ("users", "u0000005"),
        ("groups", ""),
        ("agents_mode", "all"),
        ("action", "deny"),
        ("acr", ""),
        ("amr", ""),
        ("max_age", ""),
        ("approval_flow", ""),
        ("expression", expression),
        ("conditions", ""),
        ("enabled", "yes"),
    ]
}

#[tokio::test]
async fn an_admin_creates_tests_edits_disables_and_deletes_a_policy() {
    let setup = Setup::start();
    let agent = working_agent(&setup);
    let browser = setup.signed_in(&setup.admin).await;

    let new = browser.get("/console/policies/new").await;
    assert_eq!(new.status, 200, "{}", new.body);
    assert!(new.body.contains("Create policy"), "{}", new.body);

    // A condition that does not compile: refused next to its field, the form keeping what
    // was typed, and nothing written.
    let broken = r#"request.arguments.repo.startsWith("acme/"#;
    let refused = browser
        .submit(
            "/console/policies/new",
            "/console/policies",
            &deny_form("Doors closed", broken),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let error_at = refused
        .body
        .find("id=\"expression-error\"")
        .unwrap_or_else(|| panic!("no error by the condition: {}", refused.body));
    let field_at = refused.body.find("id=\"expression\"").unwrap();
    assert!(field_at < error_at, "the error follows its field");
    assert!(
        refused
            .body
            .contains("request.arguments.repo.startsWith(&quot;acme/"),
        "what was typed is kept: {}",
        refused.body
    );
    assert!(refused.body.contains("value=\"Doors closed\""));
    let none = browser
        .get(&format!("/console/policies?connector={CONNECTOR}"))
        .await;
    assert!(none.body.contains("No policy matches."), "{}", none.body);

    // Created through the form.
    let created = browser
        .submit(
            "/console/policies/new",
            "/console/policies",
            &deny_form("Doors closed", r#"request.tool != "ring_bell""#),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let page = created.location().to_owned();
    assert!(page.starts_with("/console/policies/pol_"), "{page}");
    let id = page.trim_start_matches("/console/policies/").to_owned();

    // Listed under its connector, with its action, scope, tools, agents and state.
    let listed = browser
        .get(&format!("/console/policies?connector={CONNECTOR}"))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    for shown in [
        "Doors closed",
        CONNECTOR,
        "open_door, close_door",
        "1 user",
        "Every agent",
        "badge deny",
        "badge enabled",
    ] {
        assert!(listed.body.contains(shown), "{shown}: {}", listed.body);
    }
    let searched = browser.get("/console/policies?q=doors+CLOSED").await;
    assert!(searched.body.contains(&page), "{}", searched.body);

    // Tested: the console's answer is the gRPC Check's.
    let expected = check(&setup, agent, "open_door");
    let (decision, reason) = decision_and_reason(&expected);
    assert_eq!(
        (decision.as_str(), reason.as_str()),
        ("DENY", "POLICY"),
        "{expected}"
    );
    assert!(expected.contains(&id), "{expected}");
    let tested = browser
        .get(&format!(
            "{page}?test=1&user=u0000005&agent={agent}&tool=open_door&arguments=%7B%22door%22%3A+%22front%22%7D"
        ))
        .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    let shown = answer(&tested);
    assert!(shown.contains("badge deny"), "{shown}");
    assert!(shown.contains(&format!("<code>{reason}</code>")), "{shown}");
    assert!(shown.contains("This policy"), "{shown}");
    assert!(
        shown.contains("(this policy)"),
        "the explanation row: {shown}"
    );
    // A tool the policy does not list: no policy matches, here and over gRPC.
    let other = browser
        .get(&format!(
            "{page}?test=1&user=u0000005&agent={agent}&tool=ring_bell"
        ))
        .await;
    let (_, reason) = decision_and_reason(&check(&setup, agent, "ring_bell"));
    assert_eq!(reason, "NO_MATCHING_POLICY");
    assert!(answer(&other).contains("<code>NO_MATCHING_POLICY</code>"));
    assert!(
        answer(&other).contains("Tool not covered"),
        "{}",
        answer(&other)
    );
    // Arguments that are not a JSON object are refused next to their field.
    let bad = browser
        .get(&format!(
            "{page}?test=1&user=u0000005&tool=open_door&arguments=%5B1%5D"
        ))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"test-arguments-error\""),
        "{}",
        bad.body
    );

    // Edited: an Allow now, for every tool.
    let edit = browser.get(&format!("{page}/edit")).await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert!(
        edit.body.contains("value=\"Doors closed\""),
        "{}",
        edit.body
    );
    let mut fields = deny_form("Doors open", "");
    for (name, value) in &mut fields {
        match *name {
            "action" => *value = "allow",
            "tools_mode" => *value = "all",
            _ => {}
        }
    }
    let saved = browser
        .submit(&format!("{page}/edit"), &page, &fields)
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.location(), page);
    let after = check(&setup, agent, "ring_bell");
    assert!(after.starts_with("ALLOW") && after.contains(&id), "{after}");
    let shown = browser.get(&page).await;
    assert!(shown.body.contains("Doors open") && shown.body.contains("Every tool"));

    // Disabled: decisions stop considering it.
    let disabled = browser
        .submit(
            &page,
            &format!("{page}/enabled"),
            &[("enabled", "false"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    let after = check(&setup, agent, "ring_bell");
    assert!(after.contains("NO_MATCHING_POLICY"), "{after}");
    assert!(browser.get(&page).await.body.contains("badge disabled"));

    // Deleted, only with the confirmation.
    let unconfirmed = browser.submit(&page, &format!("{page}/delete"), &[]).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert_eq!(browser.get(&page).await.status, 200);
    let deleted = browser
        .submit(&page, &format!("{page}/delete"), &[("confirm", "yes")])
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(deleted.location(), "/console/policies");
    assert_eq!(browser.get(&page).await.status, 404);
}

#[tokio::test]
async fn read_only_sees_policies_without_write_controls_and_forged_writes_get_403() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let created = admin
        .submit(
            "/console/policies/new",
            "/console/policies",
            &deny_form("Read only sees this <img src=x onerror=alert(1)>", ""),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let page = created.location().to_owned();

    let reader: Browser = setup.signed_in(&setup.read_only).await;
    let list = reader.get("/console/policies?q=read+only+sees").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Read only sees this"), "{}", list.body);
    // What an Admin typed renders as text.
    assert!(
        list.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<img"), "{}", list.body);
    assert!(!list.body.contains("New policy"), "{}", list.body);
    let details = reader.get(&page).await;
    assert_eq!(details.status, 200, "{}", details.body);
    for control in ["Edit policy", "/enabled\"", "/delete\"", "Delete policy"] {
        assert!(
            !details.body.contains(control),
            "{control}: {}",
            details.body
        );
    }
    // Testing is a read: Read Only may.
    assert!(details.body.contains("Test this policy"));
    assert_eq!(reader.get("/console/policies/new").await.status, 403);

    let forged = reader
        .submit(&page, "/console/policies", &deny_form("Forged", ""))
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = reader
        .submit(&page, &format!("{page}/delete"), &[("confirm", "yes")])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = reader
        .submit(
            &page,
            &format!("{page}/enabled"),
            &[("enabled", "false"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    // Without a CSRF token even an Admin's post is refused.
    let bare = admin
        .post(&format!("{page}/delete"), &[("confirm", "yes")])
        .await;
    assert_eq!(bare.status, 403, "{}", bare.body);

    let still = admin.get(&page).await;
    assert_eq!(still.status, 200);
    assert!(still.body.contains("badge enabled"), "{}", still.body);
    let all = admin.get("/console/policies?q=forged").await;
    assert!(all.body.contains("No policy matches."), "{}", all.body);
}

/// The text of `html` between `start` and the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {html}"))
        + start.len();
    let rest = &html[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn a_scope_names_users_by_email_and_groups_by_name() {
    let setup = Setup::start();
    let agent = working_agent(&setup);
    let browser = setup.signed_in(&setup.admin).await;
    let user = browser.get("/console/users/u0000005").await;
    let email = between(&user.body, "<dt>Email</dt><dd>", "<")
        .split(", ")
        .next()
        .unwrap()
        .to_owned();
    let cell = between(
        between(&user.body, "<h2>Groups</h2>", "</table>"),
        "<tbody><tr><td>",
        "</td>",
    );
    // The name, linked to the group's page.
    let group = match cell.strip_prefix("<a ") {
        Some(link) => between(link, ">", "<"),
        None => cell,
    }
    .to_owned();
    assert!(email.contains('@') && !group.is_empty(), "{}", user.body);
    assert!(!group.contains('&'), "a plain name: {group}");

    let mut fields = deny_form("By email and name", "");
    for (name, value) in &mut fields {
        match *name {
            "users" => *value = &email,
            "groups" => *value = "No group has this name",
            _ => {}
        }
    }
    let refused = browser
        .submit("/console/policies/new", "/console/policies", &fields)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let problem = between(&refused.body, "id=\"scope-error\"", "</p>");
    assert!(problem.contains("No group has this name"), "{problem}");
    assert!(refused.body.contains(&email), "the users typed are kept");
    assert!(check(&setup, agent, "open_door").contains("NO_MATCHING_POLICY"));

    for (name, value) in &mut fields {
        if *name == "groups" {
            *value = &group;
        }
    }
    let created = browser
        .submit("/console/policies/new", "/console/policies", &fields)
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let page = browser.get(created.location()).await;
    // Stored by id: the user's page is linked, the group is named by its id.
    assert!(
        page.body.contains("href=\"/console/users/u0000005\""),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&format!("<dd>{group}</dd>")),
        "{}",
        page.body
    );
    let answer = check(&setup, agent, "open_door");
    assert!(
        answer.starts_with("DENY") && answer.contains("reason POLICY "),
        "{answer}"
    );
}

#[tokio::test]
async fn step_up_and_approval_parts_count_only_with_their_action() {
    let setup = Setup::start();
    let agent = working_agent(&setup);
    let browser = setup.signed_in(&setup.admin).await;
    let form = |action: &'static str, max_age: &'static str| {
        let mut fields = deny_form("Doors by action", "");
        for (name, value) in &mut fields {
            match *name {
                "action" => *value = action,
                "acr" => *value = "phr phrh",
                "max_age" => *value = max_age,
                _ => {}
            }
        }
        fields
    };
    let refused = browser
        .submit(
            "/console/policies/new",
            "/console/policies",
            &form("step_up", "soon"),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let problem = between(&refused.body, "id=\"step_up-error\"", "</p>");
    assert!(problem.contains("`soon`"), "{problem}");

    let created = browser
        .submit(
            "/console/policies/new",
            "/console/policies",
            &form("step_up", "300"),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let page = browser.get(created.location()).await;
    assert!(
        page.body
            .contains("acr one of phr, phrh; signed in within 300 s"),
        "{}",
        page.body
    );
    let answer = check(&setup, agent, "open_door");
    assert!(answer.starts_with("STEP_UP"), "{answer}");

    // Changed to Require approval (the default flow): what the step-up fields still hold is
    // not sent, so the service does not refuse a step-up requirement on another action.
    let location = created.location().to_owned();
    let saved = browser
        .submit(
            &format!("{location}/edit"),
            &location,
            &form("require_approval", "300"),
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let answer = check(&setup, agent, "open_door");
    assert!(answer.starts_with("REQUIRE_APPROVAL"), "{answer}");
    let page = browser.get(&location).await;
    assert!(page.body.contains("The default flow"), "{}", page.body);
    assert!(!page.body.contains("Step-up requirement"), "{}", page.body);
}
