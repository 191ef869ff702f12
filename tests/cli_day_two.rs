//! Day-two CLI commands against a real server: the decision token from a file, groups by name,
//! groups update, allowed tools, who-can.

use crate::support::{Server, generated_and_imported, path, run, run_ok};

#[test]
fn check_and_replay_send_the_decision_token_from_a_file() {
    let root = tempfile::tempdir().unwrap();
    let (workload, data) = generated_and_imported(
        root.path(),
        &["--preset", "small", "--seed", "5", "--requests", "200"],
    );
    let token_file = root.path().join("decision-token");
    std::fs::write(&token_file, "a-long-random-decision-secret\n").unwrap();
    let wrong_file = root.path().join("wrong-token");
    std::fs::write(&wrong_file, "not-the-secret").unwrap();
    let server = Server::start_with(&data, &["--decision-token-file", path(&token_file)]);
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--server",
            &server.addr,
            "--user",
            "u0000001",
            "--connector",
            "github",
            "--tool",
            "create_issue",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    // Without the token, or with the wrong one: refused, saying so.
    for extra in [&[][..], &["--token-file", path(&wrong_file)][..]] {
        let output = check(extra);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.to_lowercase().contains("unauthenticated"),
            "{stderr}"
        );
    }
    // With it: an answer.
    let output = check(&["--token-file", path(&token_file)]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("reason"),
        "{output:?}"
    );
    // A missing token file is named.
    let missing = root.path().join("missing");
    let output = check(&["--token-file", path(&missing)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("decision token file") && stderr.contains(path(&missing)),
        "{stderr}"
    );

    // Replay: every answer matches with the token, none comes without it.
    let replay = [
        "workload",
        "replay",
        "--server",
        &server.addr,
        "--dir",
        path(&workload),
    ];
    let out = run_ok(&[&replay[..], &["--token-file", path(&token_file)]].concat());
    assert!(out.contains("200 matched, 0 mismatched"), "{out}");
    let mut batch = replay.to_vec();
    batch.extend(["--batch", "50", "--token-file", path(&token_file)]);
    assert!(run_ok(&batch).contains("200 matched"));
    let output = run(&replay);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nauthenticated"),
        "{output:?}"
    );
}

#[test]
fn the_sidecar_and_the_server_default_to_different_ports() {
    let grpc_addr = |subcommand: &str| {
        let output = crate::support::bin()
            .args(["config", "print", subcommand])
            .env("PORTCULLIS_UPSTREAM", "http://127.0.0.1:50051")
            .env_remove("PORTCULLIS_GRPC_ADDR")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let printed = String::from_utf8(output.stdout).unwrap();
        printed
            .lines()
            .find(|l| l.starts_with("grpc-addr = "))
            .unwrap_or_else(|| panic!("{printed}"))
            .to_owned()
    };
    assert_eq!(
        grpc_addr("serve"),
        "grpc-addr = \"127.0.0.1:50051\"   # default"
    );
    assert_eq!(
        grpc_addr("sidecar"),
        "grpc-addr = \"127.0.0.1:50061\"   # default"
    );
}

/// Three users; `engineering` (u2) and `contractors` (u3); github: Allow everyone, Deny the
/// contractors on `delete_repo`, Step up for u1 on `delete_repo`. The actions in older
/// spellings (`allow`, `POLICY_ACTION_DENY`, `step-up`), which import still reads.
fn company(root: &std::path::Path) -> std::path::PathBuf {
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    crate::support::write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u3", "carol@example.com", "Carol Chen", true),
        ],
    );
    std::fs::write(
        export.join("groups.jsonl"),
        concat!(
            r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2"]}"#,
            "\n",
            r#"{"id":"g-con","name":"contractors","roles":[],"members":["u3"]}"#,
            "\n"
        ),
    )
    .unwrap();
    std::fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"allow","enabled":true}"#,
            "\n",
            r#"{"id":"pol-2","name":"no deleting for contractors","connector":"github","tools":["delete_repo"],"#,
            r#""scope":{"all_users":false,"users":[],"groups":["g-con"]},"action":"POLICY_ACTION_DENY","enabled":true}"#,
            "\n",
            r#"{"id":"pol-3","name":"alice deletes after step-up","connector":"github","tools":["delete_repo"],"#,
            r#""scope":{"all_users":false,"users":["u1"],"groups":[]},"action":"step-up","enabled":true,"#,
            r#""step_up":{"acr_values":["phr"]}}"#,
            "\n",
            r#"{"id":"pol-4","name":"off","connector":"github","tools":["delete_repo"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"DENY","enabled":false}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn admin(server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["admin", "--server", &server.addr, "--token", token];
    all.extend_from_slice(args);
    run(&all)
}

fn admin_ok(server: &Server, token: &str, args: &[&str]) -> String {
    let output = admin(server, token, args);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn admin_json(server: &Server, token: &str, args: &[&str]) -> serde_json::Value {
    let out = admin_ok(server, token, &[&["--json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn groups_are_updated_and_taken_by_name() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = crate::support::admin_token(&data, "u1");
    let server = Server::start(&data);

    // By name (any case), as by id.
    let got = admin_json(&server, &token, &["groups", "get", "Engineering"]);
    assert_eq!(got["group"]["id"], "g-eng");
    let out = admin_ok(
        &server,
        &token,
        &[
            "groups",
            "update",
            "engineering",
            "--name",
            "platform",
            "--description",
            "builds it",
            "--role",
            "read-only",
        ],
    );
    assert!(out.contains("updated group g-eng (platform)"), "{out}");
    let got = admin_json(&server, &token, &["groups", "get", "g-eng"]);
    assert_eq!(got["group"]["name"], "platform");
    assert_eq!(got["group"]["description"], "builds it");
    assert_eq!(
        got["group"]["roles"],
        serde_json::json!(["read-only"]),
        "{got}"
    );
    // Only what is given changes.
    admin_ok(
        &server,
        &token,
        &["groups", "update", "platform", "--no-roles"],
    );
    let got = admin_json(&server, &token, &["groups", "get", "platform"]);
    assert_eq!(got["group"]["roles"], serde_json::json!([]), "{got}");
    assert_eq!(got["group"]["description"], "builds it");

    // The old name is gone; nothing to change is refused before any call.
    let output = admin(&server, &token, &["groups", "get", "engineering"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no group has the id or the name `engineering`"),
        "{stderr}"
    );
    assert!(
        !admin(&server, &token, &["groups", "update", "platform"])
            .status
            .success()
    );
    // A name clash is the server's clear refusal, and changes nothing.
    let output = admin(
        &server,
        &token,
        &["groups", "update", "platform", "--name", "CONTRACTORS"],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("failed precondition"),
        "{output:?}"
    );
    assert_eq!(
        admin_json(&server, &token, &["groups", "get", "g-eng"])["group"]["name"],
        "platform"
    );

    // Members and policies take the name too.
    admin_ok(
        &server,
        &token,
        &["groups", "assign", "platform", "carol@example.com"],
    );
    let members = admin_json(&server, &token, &["groups", "members", "platform"]);
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    let created = admin_json(
        &server,
        &token,
        &[
            "policies",
            "create",
            "--name",
            "p",
            "--connector",
            "jira",
            "--all-tools",
            "--group",
            "contractors",
            "--action",
            "ALLOW",
        ],
    );
    assert_eq!(created["policy"]["action"], "ALLOW", "{created}");
    assert_eq!(
        created["policy"]["scope"]["group_ids"],
        serde_json::json!(["g-con"]),
        "{created}"
    );
}

#[test]
fn who_can_and_allowed_tools_answer_from_the_policies() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = crate::support::admin_token(&data, "u1");
    let server = Server::start(&data);

    // delete_repo: Deny for the contractors first, then Step up for u1, then Allow for everyone;
    // the disabled policy is not there.
    let who = admin_json(&server, &token, &["who-can", "github", "delete_repo"]);
    let rules: Vec<(String, String, String, String)> = who["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("who"), s("id"), s("policy_id"))
        })
        .collect();
    let expected = [
        ("DENY", "group", "g-con", "pol-2"),
        ("STEP_UP", "user", "u1", "pol-3"),
        ("ALLOW", "everyone", "*", "pol-1"),
    ];
    let expected: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(rules, expected, "{who}");
    let table = admin_ok(&server, &token, &["who-can", "github", "delete_repo"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ACTION",
            "WHO",
            "ID",
            "NAME",
            "AGENTS",
            "CONDITION",
            "POLICY"
        ]
    );
    assert!(
        table.lines().nth(1).unwrap().contains("contractors"),
        "{table}"
    );
    assert!(table.contains("step up: acr phr"), "{table}");
    // Another tool: only the Allow; another connector: nobody.
    let who = admin_json(&server, &token, &["who-can", "github", "create_issue"]);
    assert_eq!(who["rules"].as_array().unwrap().len(), 1, "{who}");
    let none = admin_ok(&server, &token, &["who-can", "slack", "post"]);
    assert!(
        none.contains("no enabled policy covers slack post"),
        "{none}"
    );

    // allowed-tools: everything of github for bob (`*`), with the step-up for alice's delete.
    let tools = |user: &str| {
        let answer = admin_json(&server, &token, &["users", "allowed-tools", user]);
        let mut rows: Vec<(String, String)> = answer["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tool"].as_str().unwrap().to_owned(),
                    t["decision"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let allow = |tool: &str| (tool.to_owned(), "ALLOW".to_owned());
    assert_eq!(tools("bob@example.com"), [allow("*"), allow("delete_repo")]);
    let alice = tools("u1");
    assert!(
        alice.contains(&("delete_repo".to_owned(), "STEP_UP".to_owned())),
        "{alice:?}"
    );
    let carol = tools("carol@example.com");
    assert!(
        !carol.iter().any(|(tool, _)| tool == "delete_repo"),
        "{carol:?}"
    );
    let table = admin_ok(
        &server,
        &token,
        &["users", "allowed-tools", "u2", "--connector", "github"],
    );
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["CONNECTOR", "TOOL", "DECISION", "CONDITIONAL", "POLICY"]
    );
}

#[test]
fn policies_update_changes_only_what_is_given() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = crate::support::admin_token(&data, "u1");
    let server = Server::start(&data);

    let out = admin_ok(
        &server,
        &token,
        &[
            "policies",
            "update",
            "pol-1",
            "--name",
            "github, some of it",
            "--tool",
            "create_issue",
            "--tool",
            "list_repos",
            "--group",
            "ENGINEERING",
            "--user",
            "carol@example.com",
            "--action",
            "STEP_UP",
            "--acr",
            "phr",
        ],
    );
    assert!(
        out.contains("updated policy pol-1 (github, some of it)"),
        "{out}"
    );
    let p = &admin_json(&server, &token, &["policies", "get", "pol-1"])["policy"];
    assert_eq!(p["name"], "github, some of it", "{p}");
    assert_eq!(
        p["tools"],
        serde_json::json!(["create_issue", "list_repos"]),
        "{p}"
    );
    assert_eq!(p["scope"]["all_users"], false, "{p}");
    assert_eq!(p["scope"]["group_ids"], serde_json::json!(["g-eng"]), "{p}");
    assert_eq!(p["scope"]["user_ids"], serde_json::json!(["u3"]), "{p}");
    assert_eq!(p["action"], "STEP_UP", "{p}");
    assert_eq!(p["connector"], "github", "{p}");
    assert_eq!(p["enabled"], true, "{p}");

    // Back to everyone and every tool, as an Allow without the requirement.
    admin_ok(
        &server,
        &token,
        &[
            "policies",
            "update",
            "pol-1",
            "--all-tools",
            "--all-users",
            "--action",
            "allow",
            "--no-step-up",
        ],
    );
    let p = &admin_json(&server, &token, &["policies", "get", "pol-1"])["policy"];
    assert_eq!(
        (p["all_tools"].clone(), p["scope"]["all_users"].clone()),
        (true.into(), true.into()),
        "{p}"
    );
    assert_eq!(p["action"], "ALLOW", "{p}");
    assert_eq!(p["name"], "github, some of it", "{p}");

    // Nothing to change, or an unknown group: refused, nothing changed.
    let output = admin(&server, &token, &["policies", "update", "pol-1"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nothing to change"),
        "{output:?}"
    );
    let output = admin(
        &server,
        &token,
        &["policies", "update", "pol-1", "--group", "nobody"],
    );
    assert!(!output.status.success());
    let p2 = &admin_json(&server, &token, &["policies", "get", "pol-1"])["policy"];
    assert_eq!(p, p2);
}
