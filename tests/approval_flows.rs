//! `portcullis admin approval-flows …` against the real binary: create, list, show, the default
//! flow, a refused delete and a bad step, as an operator would.

use crate::support::{Server, admin_token, path, run, run_ok};
use serde_json::Value;
use std::fs;

#[test]
fn admin_cli_creates_lists_and_defaults_approval_flows() {
    let root = tempfile::tempdir().unwrap();
    let export = root.path().join("export");
    fs::create_dir_all(&export).unwrap();
    crate::support::write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u3", "carol@example.com", "Carol Chen", true),
        ],
    );
    fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2","u3"]}"#.to_owned() + "\n",
    )
    .unwrap();
    // Bob's manager is Alice, named by her email (the import stores her id).
    let users = fs::read_to_string(export.join("users.jsonl"))
        .unwrap()
        .replacen(
            r#""id":"u2","#,
            r#""id":"u2","manager":"ALICE@example.com","#,
            1,
        );
    fs::write(export.join("users.jsonl"), users).unwrap();
    fs::write(export.join("policies.jsonl"), "").unwrap();
    let data = root.path().join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    let token = admin_token(&data, "alice@example.com");
    let server = Server::start(&data);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--server", &server.addr, "--token", &token];
        all.extend_from_slice(args);
        run(&all)
    };
    let ok = |args: &[&str]| {
        let output = admin(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let bob: Value =
        serde_json::from_str(&ok(&["--json", "users", "get", "bob@example.com"])).unwrap();
    assert_eq!(bob["user"]["manager_id"], "u1");
    assert!(ok(&["users", "get", "bob@example.com"]).contains("manager      u1"));

    let created: Value = serde_json::from_str(&ok(&[
        "--json",
        "approval-flows",
        "create",
        "--name",
        "Deploys",
        "--step",
        "approvers=manager;timeout=30m",
        "--step",
        "approvers=group:g-eng,user:alice@example.com;min=2",
        "--ttl",
        "12h",
        "--window",
        "1h",
    ]))
    .unwrap();
    let id = created["flow"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("flw_"), "{created}");
    assert_eq!(created["flow"]["steps"][1]["approvers"][1], "user:u1");
    assert_eq!(created["flow"]["grant"], "window");

    let table = ok(&["approval-flows", "list"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "STEPS", "TTL", "GRANT", "DEFAULT"]
    );
    assert!(
        rows[1].starts_with("builtin-admins") && rows[1].ends_with("yes"),
        "{table}"
    );
    assert!(rows[2].starts_with(&format!("{id}  Deploys")), "{table}");
    let shown = ok(&["approval-flows", "show", &id]);
    assert!(
        shown.contains("approvers=group:g-eng,user:u1;min=2"),
        "{shown}"
    );
    assert!(
        shown.contains("approvers=manager;min=1;timeout=30m"),
        "{shown}"
    );

    ok(&["approval-flows", "default", &id]);
    assert_eq!(ok(&["approval-flows", "default"]).trim(), id);
    let refused = admin(&["approval-flows", "delete", &id]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("failed precondition") && stderr.contains("default"),
        "{stderr}"
    );

    // A step the server refuses: its field named, nothing written.
    let bad = admin(&[
        "approval-flows",
        "create",
        "--name",
        "Too many",
        "--step",
        "approvers=user:bob@example.com;min=2",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("flow.steps[0].min_approvals"), "{stderr}");
    let listed: Value = serde_json::from_str(&ok(&["--json", "approval-flows", "list"])).unwrap();
    assert_eq!(listed["flows"].as_array().unwrap().len(), 2);
    assert_eq!(listed["default_flow_id"], id.as_str());

    ok(&["approval-flows", "default", "builtin-admins"]);
    ok(&["approval-flows", "delete", &id]);
    let listed: Value = serde_json::from_str(&ok(&["--json", "approval-flows", "list"])).unwrap();
    assert_eq!(listed["flows"].as_array().unwrap().len(), 1);
}

#[test]
fn generated_flows_are_imported_and_bad_ones_refused_writing_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (workload, data) =
        crate::support::generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);
    // A flow whose step cannot get its approvals: refused, naming it, the store unchanged.
    let bad = r#"{"id":"flow-bad","name":"Impossible","steps":[{"approvers":["user:u0000001"],"min_approvals":2}],"grant":"once","any_arguments":false}"#;
    let flows = fs::read_to_string(workload.join("approval_flows.jsonl")).unwrap();
    fs::write(
        workload.join("approval_flows.jsonl"),
        format!("{flows}{bad}\n"),
    )
    .unwrap();
    let refused = run(&["import", "--data-dir", path(&data), path(&workload)]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("flow `flow-bad`") && stderr.contains("flow.steps[0].min_approvals"),
        "{stderr}"
    );

    let token = admin_token(&data, "u0000000");
    let server = Server::start(&data);
    let listed = run_ok(&[
        "admin",
        "--server",
        &server.addr,
        "--token",
        &token,
        "--json",
        "approval-flows",
        "list",
    ]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["builtin-admins", "flow-admins", "flow-two-step"]);
    assert_eq!(listed["flows"][2]["grant"], "window");
}
