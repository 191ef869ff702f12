//! `portcullis policies …` against a real server: export into a directory, edit it as a team
//! would in git, diff, apply as one audited change, the conflict and dry-run refusals, and
//! decision cases for CI.

use crate::support::{Server, admin_token, path, run, run_ok};
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;
use std::process::Output;

/// Two users, one group, two policies: github allowed to everyone, jira allowed to u2.
fn company(root: &Path) -> std::path::PathBuf {
    let export = root.join("export");
    fs::create_dir_all(&export).unwrap();
    crate::support::write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
        ],
    );
    fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2"]}
"#,
    )
    .unwrap();
    fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n",
            r#"{"id":"pol-2","name":"jira for bob","connector":"jira","tools":["*"],"#,
            r#""scope":{"all_users":false,"users":["u2"],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn policies(server: &Server, token: &str, args: &[&str]) -> Output {
    let mut all = vec!["policies", "--server", &server.addr, "--token", token];
    all.extend_from_slice(args);
    run(&all)
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// The server's policies by id, in full.
async fn server_policies(server: &Server, token: &str) -> Vec<pb::Policy> {
    let mut admin = server.admin(token).await;
    admin
        .export_policies(pb::ExportPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies
}

/// The `policies.apply` events in the audit log.
async fn apply_events(server: &Server, token: &str) -> Vec<pb::AuditEvent> {
    let mut admin = server.admin(token).await;
    admin
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "policies.apply".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_export_edit_diff_apply_round_trip_with_one_audit_event() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = admin_token(&data, "u1");
    let server = Server::start(&data);
    let dir = root.path().join("repo");

    let out = policies(&server, &token, &["export", path(&dir)]);
    assert!(out.status.success(), "{}", text(&out));
    let file = read(&dir.join("policies.json"));
    let names: Vec<&str> = file["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["github for everyone", "jira for bob"], "{file}");
    assert!(file["policies"][0].get("updated_at").is_none(), "{file}");
    let base = read(&dir.join("export.json"));
    assert!(base["revision"].as_u64().unwrap() > 0, "{base}");
    assert_eq!(base["policies"].as_array().unwrap().len(), 2, "{base}");
    // Exported and unedited: nothing to change.
    let out = policies(&server, &token, &["diff", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no changes"), "{}", text(&out));

    // Edit: github becomes deny, jira's policy goes, a new confluence policy comes.
    let mut file = file;
    file["policies"][0]["action"] = json!("deny");
    file["policies"][0]["description"] = json!("frozen for the audit");
    file["policies"].as_array_mut().unwrap().truncate(1);
    file["policies"].as_array_mut().unwrap().push(json!({
        "name": "confluence for engineering",
        "connector": "confluence",
        "all_tools": true,
        "scope": {"group_ids": ["g-eng"]},
        "action": "allow",
    }));
    write(&dir.join("policies.json"), &file);

    let out = policies(&server, &token, &["diff", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("~ update pol-1 \"github for everyone\""),
        "{shown}"
    );
    assert!(shown.contains("action: \"allow\" -> \"deny\""), "{shown}");
    assert!(
        shown.contains("description: null -> \"frozen for the audit\""),
        "{shown}"
    );
    assert!(
        shown.contains("+ create \"confluence for engineering\""),
        "{shown}"
    );
    assert!(shown.contains("- delete pol-2 \"jira for bob\""), "{shown}");
    assert!(
        shown.contains("3 changes: 1 to create, 1 to update, 1 to delete"),
        "{shown}"
    );

    // The edits tested offline before applying: the workload directory's users and groups with
    // the edited policies; then with the workload's own policies, where github is still allowed.
    let offline = root.path().join("offline.yaml");
    fs::write(
        &offline,
        r#"cases:
  - name: github is frozen
    user: bob@example.com
    connector: github
    tool: create_issue
    expect: {decision: deny, reason: policy, policy: github for everyone}
  - name: engineering reads confluence
    user: u2
    connector: confluence
    tool: search
    expect: {decision: allow, policy: confluence for engineering}
"#,
    )
    .unwrap();
    let workload = root.path().join("export");
    let out = run(&[
        "policies",
        "test",
        path(&offline),
        "--offline",
        path(&workload),
        "--policies",
        path(&dir),
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("2 passed, 0 failed"), "{shown}");
    let out = run(&[
        "policies",
        "test",
        path(&offline),
        "--offline",
        path(&workload),
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("FAIL github is frozen"), "{shown}");
    assert!(
        shown.contains("    decision: expected deny, got allow"),
        "{shown}"
    );
    assert!(
        shown.contains("    policy: expected confluence for engineering, got none"),
        "{shown}"
    );
    assert!(shown.contains("0 passed, 2 failed"), "{shown}");

    // A dry run validates and reports, and writes nothing (nor the directory).
    let before = server_policies(&server, &token).await;
    let edited = fs::read_to_string(dir.join("policies.json")).unwrap();
    let out = policies(&server, &token, &["apply", path(&dir), "--dry-run"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("would apply: 1 created, 1 updated, 1 deleted"),
        "{shown}"
    );
    assert_eq!(server_policies(&server, &token).await, before);
    assert_eq!(
        fs::read_to_string(dir.join("policies.json")).unwrap(),
        edited
    );
    assert!(apply_events(&server, &token).await.is_empty());

    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("applied: 1 created, 1 updated, 1 deleted"),
        "{shown}"
    );
    let after = server_policies(&server, &token).await;
    assert_eq!(after.len(), 2, "{after:?}");
    let github = after.iter().find(|p| p.id == "pol-1").unwrap();
    assert_eq!(github.action(), pb::PolicyAction::Deny);
    assert_eq!(github.description, "frozen for the audit");
    let confluence = after.iter().find(|p| p.connector == "confluence").unwrap();
    assert_eq!(confluence.scope.as_ref().unwrap().group_ids, ["g-eng"]);
    assert!(after.iter().all(|p| p.id != "pol-2"));
    let events = apply_events(&server, &token).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "u1");
    assert_eq!(events[0].detail, "created 1, updated 1, deleted 1");
    // The directory was rewritten from the server: the new policy has its id, nothing differs.
    let file = read(&dir.join("policies.json"));
    assert!(
        file["policies"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("pol_"),
        "{file}"
    );
    let out = policies(&server, &token, &["diff", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Applying again changes nothing and audits nothing.
    let out = policies(&server, &token, &["apply", path(&dir)]);
    assert!(text(&out).contains("nothing to apply"), "{}", text(&out));
    assert_eq!(apply_events(&server, &token).await.len(), 1);

    // Decision cases for CI: passing, then failing with what was expected and what came back.
    let cases = root.path().join("cases.json");
    write(
        &cases,
        &json!({"cases": [
            {"name": "github is frozen", "user": "u2", "agent": "cli", "connector": "github",
             "tool": "create_issue", "expect": {"decision": "deny", "reason": "policy",
             "policy": "github for everyone"}},
            {"name": "engineering reads confluence", "user": "bob@example.com",
             "connector": "confluence", "tool": "search", "arguments": {"q": "runbook"},
             "expect": {"decision": "allow"}},
        ]}),
    );
    let out = policies(&server, &token, &["test", path(&cases)]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("2 passed, 0 failed"), "{shown}");
    // YAML too, as CI files usually are.
    let cases = root.path().join("cases.yaml");
    fs::write(
        &cases,
        r#"cases:
  - name: alice still on github
    user: u1
    connector: github
    tool: create_issue
    expect:
      decision: allow
      policy: pol-1
  - name: alice reads confluence
    user: u1
    connector: confluence
    tool: search
    authentication: {acr: phr, amr: [pwd], auth_time: 5m}
    expect: {decision: allow}
"#,
    )
    .unwrap();
    let out = policies(&server, &token, &["test", path(&cases)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("FAIL alice still on github"), "{shown}");
    assert!(
        shown.contains("    decision: expected allow, got deny"),
        "{shown}"
    );
    assert!(shown.contains("FAIL alice reads confluence"), "{shown}");
    assert!(shown.contains("0 passed, 2 failed"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_apply_refuses_when_the_server_changed_since_the_export() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = admin_token(&data, "u1");
    let server = Server::start(&data);
    let dir = root.path().join("repo");
    run_ok(&[
        "policies",
        "--server",
        &server.addr,
        "--token",
        &token,
        "export",
        path(&dir),
    ]);
    let mut file = read(&dir.join("policies.json"));
    file["policies"][1]["name"] = json!("jira for bob, renamed");
    write(&dir.join("policies.json"), &file);

    // Someone disables github's policy on the server after the export.
    let mut admin = server.admin(&token).await;
    admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "pol-1".into(),
            enabled: false,
        })
        .await
        .unwrap();
    let before = server_policies(&server, &token).await;

    let out = policies(&server, &token, &["diff", path(&dir)]);
    let shown = text(&out);
    assert!(
        shown.contains("the server changed since the export"),
        "{shown}"
    );
    assert!(
        shown.contains("policy `pol-1` (github for everyone) was changed"),
        "{shown}"
    );

    for args in [
        vec!["apply", path(&dir)],
        vec!["apply", path(&dir), "--dry-run"],
    ] {
        let out = policies(&server, &token, &args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(shown.contains("failed precondition"), "{shown}");
        assert!(
            shown.contains("policy `pol-1` (github for everyone) was changed"),
            "{shown}"
        );
        assert!(shown.contains("nothing was written"), "{shown}");
    }
    assert_eq!(server_policies(&server, &token).await, before);
    assert!(apply_events(&server, &token).await.is_empty());

    // Bad input is refused naming the entry, and writes nothing either.
    run_ok(&[
        "policies",
        "--server",
        &server.addr,
        "--token",
        &token,
        "export",
        path(&dir),
    ]);
    let mut file = read(&dir.join("policies.json"));
    file["policies"][1]["scope"] = json!({"user_ids": ["nobody"]});
    write(&dir.join("policies.json"), &file);
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("policies[1]: user `nobody` not found"),
        "{shown}"
    );
    assert_eq!(server_policies(&server, &token).await, before);
}
