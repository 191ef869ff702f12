//! Agents, step-up and conditions through the real binary: a control plane and a sidecar
//! following it answer alike for registered agents and aliases, the kill switch, the setting
//! for unregistered agents, a step-up met and not met (with its RFC 9470 challenge), a CEL
//! condition over the call's arguments, explain and ListAllowedTools; bad policies are refused
//! with nothing written.

use crate::fleet::{eventually, sidecar, token_file};
use crate::support::{Server, admin_token, path, run, run_ok, write_users};
use portcullis_proto::v1 as pb;
use std::fs;

/// Admin CLI arguments against `server` with `token`, then `rest`.
fn admin(server: &Server, token: &str, rest: &[&str]) -> String {
    let mut args = vec!["admin", "--server", &server.addr, "--token", token];
    args.extend_from_slice(rest);
    run_ok(&args)
}

fn check(user: &str, agent: &str, tool: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.into(),
        agent: agent.into(),
        connector: "github".into(),
        tool: tool.into(),
        ..Default::default()
    }
}

fn answer(r: &pb::CheckResponse) -> (pb::Decision, pb::Reason, String) {
    (r.decision(), r.reason(), r.policy_id.clone())
}

/// A JSON value as a protobuf Struct's value.
fn string(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.into())),
    }
}

fn with_repo(mut request: pb::CheckRequest, repo: &str) -> pb::CheckRequest {
    request.arguments = Some(prost_types::Struct {
        fields: [("repo".to_string(), string(repo))].into_iter().collect(),
    });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_step_up_and_conditions_decide_alike_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let export = root.path().join("export");
    fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("admin", "admin@example.com", "The Admin", true),
            ("ada", "ada@example.com", "Ada Lovelace", true),
        ],
    );
    fs::write(export.join("groups.jsonl"), "").unwrap();
    fs::write(export.join("policies.jsonl"), "").unwrap();
    let data = root.path().join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    let token = admin_token(&data, "admin");
    let sidecar_token = token_file(root.path(), "sidecar-token", "s3cret-sidecar-token");
    let control = Server::start_with(&data, &["--sidecar-token-file", &sidecar_token]);
    let upstream = format!("http://{}", control.addr.trim_start_matches("http://"));
    let side = sidecar(&upstream, &["--upstream-token-file", &sidecar_token]);

    admin(
        &control,
        &token,
        &[
            "agents",
            "create",
            "claude",
            "--name",
            "Claude",
            "--vendor",
            "Anthropic",
            "--alias",
            "oauth-client-c093",
            "--all-users",
        ],
    );
    admin(
        &control,
        &token,
        &[
            "agents",
            "create",
            "chatgpt",
            "--name",
            "ChatGPT",
            "--all-users",
        ],
    );
    admin(
        &control,
        &token,
        &[
            "policies",
            "create",
            "--name",
            "claude opens issues",
            "--connector",
            "github",
            "--tool",
            "create_issue",
            "--all-users",
            "--agent",
            "claude",
            "--action",
            "allow",
        ],
    );
    admin(
        &control,
        &token,
        &[
            "policies",
            "create",
            "--name",
            "merging needs a hardware key",
            "--connector",
            "github",
            "--tool",
            "merge_pr",
            "--all-users",
            "--action",
            "step-up",
            "--acr",
            "phrh",
            "--amr",
            "hwk",
            "--max-age",
            "300",
        ],
    );
    admin(
        &control,
        &token,
        &[
            "policies",
            "create",
            "--name",
            "reading acme's repos",
            "--connector",
            "github",
            "--tool",
            "read_file",
            "--all-users",
            "--action",
            "allow",
            "--expression",
            "request.arguments.repo.startsWith(\"acme/\")",
        ],
    );

    // Bad policies are refused, naming what is wrong, and nothing is written.
    for (bad, says) in [
        (vec!["--agent", "copilot"], "copilot"),
        (
            vec!["--expression", "request.arguments.repo.startsWith("],
            "expression",
        ),
    ] {
        let mut args = vec![
            "admin",
            "--server",
            &control.addr,
            "--token",
            &token,
            "policies",
            "create",
            "--name",
            "bad",
            "--connector",
            "github",
            "--all-tools",
            "--all-users",
            "--action",
            "allow",
        ];
        args.extend_from_slice(&bad);
        let out = run(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    let listed = admin(&control, &token, &["--json", "policies", "list"]);
    assert_eq!(listed.matches("\"id\"").count(), 3, "{listed}");

    let mut clients = vec![control.client().await, side.client().await];
    let revision = control
        .client()
        .await
        .check(check("ada", "claude", "x"))
        .await
        .unwrap()
        .into_inner()
        .revision;
    eventually("the sidecar has the agents", || {
        let mut c = clients[1].clone();
        async move {
            c.check(check("ada", "claude", "x"))
                .await
                .is_ok_and(|r| r.into_inner().revision >= revision)
        }
    })
    .await;

    for client in &mut clients {
        // Agent selectors: claude, by id or alias, opens issues; chatgpt and strangers do not.
        for agent in ["claude", "oauth-client-c093"] {
            let r = client
                .check(check("ada", agent, "create_issue"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.decision(), pb::Decision::Allow, "{agent}: {r:?}");
        }
        for agent in ["chatgpt", "CLAUDE", ""] {
            let r = client
                .check(check("ada", agent, "create_issue"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.reason(), pb::Reason::NoMatchingPolicy, "{agent}: {r:?}");
        }
        // Step-up: not met answers STEP_UP with the requirement and a challenge; met, ALLOW.
        let r = client
            .check(check("ada", "claude", "merge_pr"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision(), pb::Decision::StepUp, "{r:?}");
        let step_up = r.step_up.clone().unwrap();
        assert_eq!(
            (step_up.acr_values, step_up.amr_values, step_up.max_age),
            (vec!["phrh".to_string()], vec!["hwk".to_string()], 300)
        );
        assert!(
            r.challenge
                .starts_with("Bearer error=\"insufficient_user_authentication\""),
            "{}",
            r.challenge
        );
        assert!(
            r.challenge.contains("acr_values=\"phrh\"") && r.challenge.contains("max_age=300"),
            "{}",
            r.challenge
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let auth = |acr: &str, age: i64| pb::Authentication {
            acr: acr.into(),
            amr: vec!["hwk".into(), "pwd".into()],
            auth_time: Some(prost_types::Timestamp {
                seconds: now - age,
                nanos: 0,
            }),
        };
        let mut met = check("ada", "claude", "merge_pr");
        met.authentication = Some(auth("phrh", 30));
        let r = client.check(met).await.unwrap().into_inner();
        assert_eq!(
            (r.decision(), r.reason()),
            (pb::Decision::Allow, pb::Reason::StepUpMet),
            "{r:?}"
        );
        for (acr, age) in [("mfa", 30), ("phrh", 7200)] {
            let mut not_met = check("ada", "claude", "merge_pr");
            not_met.authentication = Some(auth(acr, age));
            let r = client.check(not_met).await.unwrap().into_inner();
            assert_eq!(r.decision(), pb::Decision::StepUp, "{acr} {age}: {r:?}");
        }
        // A CEL condition over the call's arguments; explain says why it did not apply.
        let r = client
            .check(with_repo(check("ada", "chatgpt", "read_file"), "acme/api"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision(), pb::Decision::Allow, "{r:?}");
        let r = client
            .check(with_repo(check("ada", "chatgpt", "read_file"), "evil/api"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.reason(), pb::Reason::NoMatchingPolicy, "{r:?}");
        let mut explained = check("ada", "chatgpt", "read_file");
        explained.explain = true;
        let r = client.check(explained).await.unwrap().into_inner();
        let reading = r
            .explanation
            .iter()
            .find(|m| m.policy_name == "reading acme's repos");
        assert!(
            reading
                .is_some_and(|m| m.outcome() == pb::MatchOutcome::ConditionError
                    && m.detail.contains("repo")),
            "{r:?}"
        );
        let mut explained = check("ada", "chatgpt", "create_issue");
        explained.explain = true;
        let r = client.check(explained).await.unwrap().into_inner();
        assert!(
            r.explanation
                .iter()
                .any(|m| m.outcome() == pb::MatchOutcome::AgentNotCovered),
            "{r:?}"
        );
        // What claude may list for ada: issues, merging (step-up), reading (conditional).
        let tools = client
            .list_allowed_tools(pb::ListAllowedToolsRequest {
                user: "ada".into(),
                agent: "claude".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tools;
        let listed: Vec<(String, pb::Decision, bool)> = tools
            .iter()
            .map(|t| (t.tool.clone(), t.decision(), t.conditional))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("create_issue".to_string(), pb::Decision::Allow, false),
                ("merge_pr".to_string(), pb::Decision::StepUp, false),
                ("read_file".to_string(), pb::Decision::Allow, true),
            ]
        );
    }

    // The kill switch: the next Check on the control plane, then the sidecar.
    admin(
        &control,
        &token,
        &["agents", "disable", "claude", "--reason", "vendor incident"],
    );
    let r = control
        .client()
        .await
        .check(check("ada", "oauth-client-c093", "create_issue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer(&r).1, pb::Reason::AgentDisabled);
    // Unregistered agents denied by the setting.
    admin(
        &control,
        &token,
        &["settings", "set", "--unregistered-agents", "deny"],
    );
    let r = control
        .client()
        .await
        .check(check("ada", "shadow-agent", "read_file"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer(&r).1, pb::Reason::UnknownAgent);
    let mut sidecar_client = side.client().await;
    eventually(
        "the sidecar throws the kill switch and denies strangers",
        || {
            let mut c = sidecar_client.clone();
            async move {
                let killed = c
                    .check(check("ada", "claude", "create_issue"))
                    .await
                    .is_ok_and(|r| r.into_inner().reason() == pb::Reason::AgentDisabled);
                let stranger = c
                    .check(check("ada", "shadow-agent", "read_file"))
                    .await
                    .is_ok_and(|r| r.into_inner().reason() == pb::Reason::UnknownAgent);
                killed && stranger
            }
        },
    )
    .await;
    let r = sidecar_client
        .check(check("ada", "chatgpt", "create_issue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer(&r).1, pb::Reason::NoMatchingPolicy);
    let audit = admin(&control, &token, &["--json", "audit", "--action", "agent."]);
    assert!(audit.contains("vendor incident"), "{audit}");
}
