//! `portcullis policies …` against a real server: export into a directory, edit it as a team
//! would in git, diff, apply as one audited change, the conflict and dry-run refusals, and
//! decision cases for CI.

use crate::support::{Server, admin_token, json as stdout_json, path, run, run_ok};
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
    server.audit(token, "policies.apply").await
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
    // The same for scripts: the export's counts, and an empty diff (--json wins over --quiet).
    let out = policies(&server, &token, &["export", path(&dir), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let exported = stdout_json(&out);
    assert_eq!(exported["policies"], 2, "{exported}");
    assert_eq!(exported["revision"], base["revision"], "{exported}");
    assert_eq!(
        (&exported["agents"], &exported["settings"]),
        (&json!(0), &json!(false)),
        "{exported}"
    );
    let out = policies(&server, &token, &["diff", path(&dir), "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        stdout_json(&out),
        json!({"changes": [], "created": 0, "updated": 0, "deleted": 0, "conflict": null})
    );

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
    // As JSON: the same changes, each field's values as JSON, and still exit code 3.
    let out = policies(&server, &token, &["diff", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let diff = stdout_json(&out);
    assert_eq!(
        (&diff["created"], &diff["updated"], &diff["deleted"]),
        (&json!(1), &json!(1), &json!(1)),
        "{diff}"
    );
    let changes = diff["changes"].as_array().unwrap();
    let update = changes.iter().find(|c| c["change"] == "update").unwrap();
    assert_eq!(
        (&update["kind"], &update["id"]),
        (&json!("policy"), &json!("pol-1")),
        "{diff}"
    );
    let fields = update["fields"].as_array().unwrap();
    assert!(
        fields.contains(&json!({"field": "action", "server": "allow", "directory": "deny"})),
        "{diff}"
    );
    assert!(
        fields.contains(
            &json!({"field": "description", "server": null, "directory": "frozen for the audit"})
        ),
        "{diff}"
    );
    let create = changes.iter().find(|c| c["change"] == "create").unwrap();
    assert_eq!(create["name"], "confluence for engineering", "{diff}");
    let delete = changes.iter().find(|c| c["change"] == "delete").unwrap();
    assert_eq!(delete["id"], "pol-2", "{diff}");
    assert_eq!(diff["conflict"], Value::Null, "{diff}");

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
    let out = run(&[
        "policies",
        "test",
        path(&offline),
        "--offline",
        path(&workload),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let tested = stdout_json(&out);
    assert_eq!(
        (&tested["passed"], &tested["failed"]),
        (&json!(0), &json!(2))
    );
    assert_eq!(tested["cases"][0]["name"], "github is frozen", "{tested}");
    assert_eq!(tested["cases"][0]["passed"], false, "{tested}");
    assert!(
        tested["cases"][0]["diffs"]
            .as_array()
            .unwrap()
            .contains(&json!({"field": "decision", "expected": "deny", "got": "allow"})),
        "{tested}"
    );

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
    let out = policies(
        &server,
        &token,
        &["apply", path(&dir), "--dry-run", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dry = stdout_json(&out);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["updated"], json!(["pol-1"]), "{dry}");
    assert_eq!(dry["deleted"], json!(["pol-2"]), "{dry}");
    assert_eq!(dry["created"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(
        (&dry["revision"], &dry["rewrote"]),
        (&Value::Null, &Value::Null)
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
    let out = policies(&server, &token, &["apply", path(&dir), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let again = stdout_json(&out);
    assert_eq!(
        (&again["dry_run"], &again["created"], &again["rewrote"]),
        (&json!(false), &json!([]), &Value::Null),
        "{again}"
    );
    assert!(again["revision"].as_u64().unwrap() > 0, "{again}");

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
    let out = policies(&server, &token, &["diff", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let diff = stdout_json(&out);
    let conflict = &diff["conflict"];
    assert!(
        conflict["what"]
            .as_str()
            .unwrap()
            .contains("policy `pol-1` (github for everyone) was changed"),
        "{diff}"
    );
    assert!(
        conflict["server_revision"].as_u64() > conflict["exported_revision"].as_u64(),
        "{diff}"
    );
    // A refusal stays an error on stderr, with nothing on stdout.
    let out = policies(&server, &token, &["apply", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));

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

/// Everything ExportPolicies answers (policies, agents, flows, roles, settings).
async fn server_export(server: &Server, token: &str) -> pb::ExportPoliciesResponse {
    let mut admin = server.admin(token).await;
    let mut export = admin
        .export_policies(pb::ExportPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    export.revision = 0;
    export
}

/// Registers agent `id` acting for everyone.
async fn create_agent(server: &Server, token: &str, id: &str, name: &str) {
    let mut admin = server.admin(token).await;
    admin
        .create_agent(pb::CreateAgentRequest {
            agent: Some(pb::Agent {
                id: id.into(),
                display_name: name.into(),
                scope: Some(pb::PolicyScope {
                    all_users: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_export_edit_apply_agents_flows_roles_and_settings_in_one_change() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = admin_token(&data, "u1");
    let server = Server::start(&data);
    let dir = root.path().join("repo");
    create_agent(&server, &token, "claude", "Claude").await;
    create_agent(&server, &token, "old-bot", "Old bot").await;
    let mut flows = server.flows(&token).await;
    let security = flows
        .create_approval_flow(pb::CreateApprovalFlowRequest {
            flow: Some(pb::ApprovalFlow {
                name: "security".into(),
                steps: vec![pb::ApprovalStep {
                    approvers: vec![pb::Approver {
                        approver: Some(pb::approver::Approver::GroupId("g-eng".into())),
                    }],
                    min_approvals: 1,
                    timeout: None,
                }],
                grant_mode: pb::GrantMode::Once.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap();

    let out = policies(&server, &token, &["export", path(&dir)]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("and 2 agents, 1 approval flows"), "{shown}");
    let agents = read(&dir.join("agents.json"));
    assert_eq!(
        agents["agents"][0],
        json!({"id": "claude", "display_name": "Claude", "enabled": true,
               "scope": {"all_users": true}}),
        "{agents}"
    );
    let flows_file = read(&dir.join("approval_flows.json"));
    assert_eq!(flows_file["approval_flows"][0]["id"], json!(security.id));
    assert!(flows_file["approval_flows"][0].get("updated_at").is_none());
    // Nothing holds a role and the settings are the defaults: no file for them.
    assert!(!dir.join("roles.json").exists());
    assert!(!dir.join("settings.json").exists());
    let base = read(&dir.join("export.json"));
    assert_eq!(base["agents"].as_array().unwrap().len(), 2, "{base}");
    assert_eq!(base["approval_flows"].as_array().unwrap().len(), 1);
    let out = policies(&server, &token, &["diff", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Edits in every file: claude gets an alias, old-bot goes; the flow is renamed and a new
    // one (with the id the team chose) comes, which the default and a policy name; engineering
    // gets Read Only; unregistered agents are denied.
    let mut agents = agents;
    agents["agents"][0]["aliases"] = json!(["claude-code"]);
    agents["agents"].as_array_mut().unwrap().truncate(1);
    write(&dir.join("agents.json"), &agents);
    let mut flows_file = flows_file;
    flows_file["approval_flows"][0]["name"] = json!("security review");
    flows_file["approval_flows"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "id": "flw-oncall",
            "name": "on-call",
            "steps": [{"approvers": [{"user": "alice@example.com"}], "min_approvals": 1}],
            "grant": {"window": {"seconds": 600}},
        }));
    write(&dir.join("approval_flows.json"), &flows_file);
    write(
        &dir.join("roles.json"),
        &json!({"group_roles": [{"group_id": "g-eng", "roles": ["read-only"]}]}),
    );
    write(
        &dir.join("settings.json"),
        &json!({"unregistered_agents": "deny", "default_approval_flow_id": "flw-oncall"}),
    );
    let mut file = read(&dir.join("policies.json"));
    file["policies"][0]["action"] = json!("require-approval");
    file["policies"][0]["approval_flow_id"] = json!("flw-oncall");
    file["policies"][0]["agents"] = json!(["claude"]);
    write(&dir.join("policies.json"), &file);

    let out = policies(&server, &token, &["diff", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    for line in [
        "~ update pol-1 \"github for everyone\"",
        "~ update agent claude \"Claude\"",
        "    aliases: null -> [\"claude-code\"]",
        "- delete agent old-bot \"Old bot\"",
        "    name: \"security\" -> \"security review\"",
        "+ create approval flow flw-oncall \"on-call\"",
        "~ update roles of group g-eng",
        "    roles: [] -> [\"read-only\"]",
        "~ update settings",
        "    unregistered_agents: \"allow\" -> \"deny\"",
        "7 changes: 1 to create, 5 to update, 1 to delete",
    ] {
        assert!(shown.contains(line), "{line}\n{shown}");
    }

    // A dry run checks everything and writes nothing.
    let before = server_export(&server, &token).await;
    let out = policies(&server, &token, &["apply", path(&dir), "--dry-run"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("would apply: 0 created, 1 updated, 0 deleted; 7 other changes"),
        "{shown}"
    );
    assert_eq!(server_export(&server, &token).await, before);
    assert!(apply_events(&server, &token).await.is_empty());

    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("- deleted agent old-bot"), "{shown}");
    assert!(
        shown.contains("+ created approval_flow flw-oncall"),
        "{shown}"
    );
    let after = server_export(&server, &token).await;
    assert_eq!(after.agents.len(), 1, "{after:?}");
    assert_eq!(after.agents[0].aliases, ["claude-code"]);
    let names: Vec<&str> = after
        .approval_flows
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["on-call", "security review"], "{after:?}");
    let oncall = &after.approval_flows[0];
    assert_eq!(oncall.id, "flw-oncall");
    // The approver given by email is stored by id, as CreateApprovalFlow stores it.
    assert_eq!(
        oncall.steps[0].approvers[0].approver,
        Some(pb::approver::Approver::UserId("u1".into()))
    );
    assert_eq!(after.default_approval_flow_id, "flw-oncall");
    assert_eq!(
        after.settings.unwrap().unregistered_agents(),
        pb::UnregisteredAgents::Deny
    );
    assert_eq!(after.group_roles.len(), 1);
    assert_eq!(after.group_roles[0].roles, [i32::from(pb::Role::ReadOnly)]);
    let github = after.policies.iter().find(|p| p.id == "pol-1").unwrap();
    assert_eq!(github.approval_flow_id, "flw-oncall");
    let events = apply_events(&server, &token).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].detail,
        "created 0, updated 1, deleted 0; agent: deleted 1, updated 1; approval_flow: \
         created 1, updated 1; group_roles: updated 1; settings: updated 2"
    );
    assert!(
        events[0].before_json.contains("agent:old-bot"),
        "{events:?}"
    );
    // Rewritten from the server: the directory and the server agree.
    let out = policies(&server, &token, &["diff", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dir.join("roles.json").exists() && dir.join("settings.json").exists());

    // A directory without the new files leaves those parts of the server alone.
    for name in [
        "agents.json",
        "approval_flows.json",
        "roles.json",
        "settings.json",
    ] {
        fs::remove_file(dir.join(name)).unwrap();
    }
    let out = policies(&server, &token, &["apply", path(&dir)]);
    assert!(text(&out).contains("nothing to apply"), "{}", text(&out));
    let mut now = server_export(&server, &token).await;
    now.revision = after.revision;
    assert_eq!(now, after);
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_apply_refuses_a_changed_agent_and_bad_agents_or_flows_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = admin_token(&data, "u1");
    let server = Server::start(&data);
    let dir = root.path().join("repo");
    create_agent(&server, &token, "claude", "Claude").await;
    run_ok(&[
        "policies",
        "--server",
        &server.addr,
        "--token",
        &token,
        "export",
        path(&dir),
    ]);
    let mut agents = read(&dir.join("agents.json"));
    agents["agents"][0]["vendor"] = json!("Anthropic");
    write(&dir.join("agents.json"), &agents);

    // Someone throws the kill switch after the export.
    let mut admin = server.admin(&token).await;
    admin
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id: "claude".into(),
            enabled: false,
            reason: "incident 42".into(),
        })
        .await
        .unwrap();
    let before = server_export(&server, &token).await;
    let out = policies(&server, &token, &["diff", path(&dir)]);
    let shown = text(&out);
    assert!(
        shown.contains("agent `claude` (Claude) was changed"),
        "{shown}"
    );
    for args in [
        vec!["apply", path(&dir)],
        vec!["apply", path(&dir), "--dry-run"],
    ] {
        let out = policies(&server, &token, &args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(
            shown.contains(
                "the server changed since the export: agent `claude` (Claude) was changed"
            ),
            "{shown}"
        );
        assert!(shown.contains("nothing was written"), "{shown}");
    }
    assert_eq!(server_export(&server, &token).await, before);

    // Exported again: re-enabling through the file is refused (the kill switch wants a reason).
    run_ok(&[
        "policies",
        "--server",
        &server.addr,
        "--token",
        &token,
        "export",
        path(&dir),
    ]);
    let mut agents = read(&dir.join("agents.json"));
    assert_eq!(agents["agents"][0]["enabled"], json!(false));
    agents["agents"][0]["enabled"] = json!(true);
    write(&dir.join("agents.json"), &agents);
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "agents.json: failed precondition: agents[0].enabled: agent `claude` is disabled"
        ),
        "{shown}"
    );

    // A new agent acting for a user who does not exist, with a good flow beside it: refused
    // naming the file and the field, and neither is written.
    agents["agents"][0]["enabled"] = json!(false);
    agents["agents"].as_array_mut().unwrap().push(json!({
        "id": "bot", "display_name": "Bot", "scope": {"user_ids": ["nobody"]}
    }));
    write(&dir.join("agents.json"), &agents);
    write(
        &dir.join("approval_flows.json"),
        &json!({"approval_flows": [{"name": "fine", "steps": [{"approvers": [{"user": "u1"}],
            "min_approvals": 1}]}]}),
    );
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("agents.json: not found: agents[1].scope: user `nobody` not found"),
        "{shown}"
    );
    assert_eq!(server_export(&server, &token).await, before);

    // A flow with no steps, then one with a field the model lacks.
    agents["agents"].as_array_mut().unwrap().truncate(1);
    write(&dir.join("agents.json"), &agents);
    write(
        &dir.join("approval_flows.json"),
        &json!({"approval_flows": [{"name": "empty", "steps": []}]}),
    );
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("approval_flows.json: invalid argument: approval_flows[0].steps"),
        "{shown}"
    );
    write(
        &dir.join("approval_flows.json"),
        &json!({"approval_flows": [{"name": "x", "steps": [{"approvers": ["admins"],
            "min_approvals": 1, "colour": "red"}]}]}),
    );
    let out = policies(&server, &token, &["diff", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("approval_flows.json: approval_flows[0].steps[0]: unknown field `colour`"),
        "{shown}"
    );
    assert_eq!(server_export(&server, &token).await, before);
    assert!(apply_events(&server, &token).await.is_empty());

    // An agent a policy selects cannot be left out unless the policy stops selecting it; both
    // in one apply, the policy written once.
    fs::remove_file(dir.join("approval_flows.json")).unwrap();
    let export = |dir: &Path| {
        run_ok(&[
            "policies",
            "--server",
            &server.addr,
            "--token",
            &token,
            "export",
            path(dir),
        ])
    };
    let mut file = read(&dir.join("policies.json"));
    file["policies"][0]["agents"] = json!(["claude"]);
    write(&dir.join("policies.json"), &file);
    let out = policies(&server, &token, &["apply", path(&dir)]);
    assert!(out.status.success(), "{}", text(&out));
    write(&dir.join("agents.json"), &json!({"agents": []}));
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "policies.json: failed precondition: policies[0].agents: agent `claude` is left out"
        ),
        "{shown}"
    );
    export(&dir);
    write(&dir.join("agents.json"), &json!({"agents": []}));
    let mut file = read(&dir.join("policies.json"));
    file["policies"][0]
        .as_object_mut()
        .unwrap()
        .remove("agents");
    file["policies"][0]["description"] = json!("any agent again");
    write(&dir.join("policies.json"), &file);
    let out = policies(&server, &token, &["apply", path(&dir)]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let after = server_export(&server, &token).await;
    assert!(after.agents.is_empty(), "{after:?}");
    let github = after.policies.iter().find(|p| p.id == "pol-1").unwrap();
    assert_eq!(
        (github.agents.as_ref(), github.description.as_str()),
        (None, "any agent again")
    );
    assert!(!dir.join("agents.json").exists(), "no agents left: no file");
}
