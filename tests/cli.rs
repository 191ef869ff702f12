//! The subcommands as an operator uses them: import errors, check output, health and reflection,
//! and refusing to serve or import what it should not.

use crate::support::{Server, generated_and_imported, path, run, run_ok};
use std::fs;

#[test]
fn a_bad_line_fails_the_import_with_its_location_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);

    // A second import whose users.jsonl has a broken line 5.
    let bad = root.path().join("bad");
    fs::create_dir(&bad).unwrap();
    for file in ["users.jsonl", "groups.jsonl", "policies.jsonl"] {
        fs::copy(workload_dir.join(file), bad.join(file)).unwrap();
    }
    let users = fs::read_to_string(bad.join("users.jsonl")).unwrap();
    let mut lines: Vec<String> = users.lines().map(str::to_owned).collect();
    lines[4] = lines[4].replace("\"email\"", "\"e-mail\"");
    fs::write(bad.join("users.jsonl"), lines.join("\n") + "\n").unwrap();

    let output = run(&["import", "--data-dir", path(&data), path(&bad)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("users.jsonl:5: email: "), "{stderr}");

    // The store still serves the first import, at its revision.
    let server = Server::start(&data);
    assert!(
        server.stderr.lock().unwrap().contains("revision=1"),
        "{}",
        server.stderr.lock().unwrap()
    );
}

#[test]
fn check_prints_the_answer_for_people_and_as_json() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "4"]);
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    let request = requests
        .iter()
        .find(|r| r.expected.policy_id.is_some())
        .unwrap();
    let server = Server::start(&data);

    let base = [
        "check",
        "--addr",
        &server.addr,
        "--user",
        &request.user,
        "--connector",
        &request.connector,
        "--tool",
        &request.tool,
    ];
    let text = run_ok(&base);
    let policy = request.expected.policy_id.as_deref().unwrap();
    let decision = workload::action_name(request.expected.decision);
    assert!(
        text.starts_with(&format!(
            "{decision}  reason POLICY  policy {policy}  revision 1"
        )),
        "{text}"
    );

    let mut json_args = base.to_vec();
    json_args.extend(["--json", "--explain"]);
    let json: serde_json::Value = serde_json::from_str(&run_ok(&json_args)).unwrap();
    assert_eq!(json["decision"], decision);
    assert_eq!(json["policy_id"], policy);
    let explanation = json["explanation"].as_array().unwrap();
    assert!(
        explanation
            .iter()
            .any(|m| m["deciding"] == true && m["policy_id"] == policy),
        "{json}"
    );

    // A missing field is an error naming it.
    let output = run(&[
        "check",
        "--addr",
        &server.addr,
        "--user",
        "",
        "--connector",
        "github",
        "--tool",
        "x",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("InvalidArgument: user: must not be empty")
    );
}

#[test]
fn import_reads_agents_and_stops_at_a_bad_agent_line() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, _data) = generated_and_imported(
        root.path(),
        &[
            "--preset",
            "small",
            "--seed",
            "5",
            "--agents",
            "--requests",
            "100",
        ],
    );
    for file in ["agents.jsonl", "settings.json"] {
        assert!(workload_dir.join(file).exists(), "{file}");
    }
    let workload = workload::read_dir(&workload_dir, pdp::Timestamp(0), &mut |_| {}).unwrap();
    assert!(!workload.model.agents.is_empty());
    assert!(workload.requests.iter().any(|r| r.authentication.is_some()));

    // An alias equal to another agent's id: the import stops at that line.
    let agents = fs::read_to_string(workload_dir.join("agents.jsonl")).unwrap();
    let mut lines: Vec<String> = agents.lines().map(str::to_owned).collect();
    let first_id = workload.model.agents[0].id.clone();
    let mut second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    second["aliases"] = serde_json::json!([first_id]);
    lines[1] = second.to_string();
    fs::write(workload_dir.join("agents.jsonl"), lines.join("\n") + "\n").unwrap();
    let fresh = root.path().join("fresh");
    let output = run(&["import", "--data-dir", path(&fresh), path(&workload_dir)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "agents.jsonl:2: aliases[0]: `{first_id}` is already an agent's id or alias, on line 1"
        )),
        "{stderr}"
    );
}

#[test]
fn check_takes_authentication_and_arguments() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "4"]);
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    let request = requests
        .iter()
        .find(|r| r.expected.decision == pdp::Action::Allow)
        .unwrap();
    let server = Server::start(&data);
    let base = [
        "check",
        "--addr",
        &server.addr,
        "--user",
        &request.user,
        "--agent",
        &request.agent,
        "--connector",
        &request.connector,
        "--tool",
        &request.tool,
    ];

    // Every flag is accepted, in each form, and the answer (no policy here has a requirement
    // or a condition) is the expected one.
    for auth_time in ["10m", "2026-01-05T12:34:56Z", "2026-01-05T14:34:56+02:00"] {
        let mut args = base.to_vec();
        args.extend([
            "--acr",
            "phrh",
            "--amr",
            "hwk",
            "--amr",
            "pwd",
            "--auth-time",
            auth_time,
            "--arg",
            r#"repo="acme/x""#,
            "--arg",
            "n=3",
            "--arg",
            r#"to=["a@example.com"]"#,
            "--arg",
            "plain=not json",
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
        assert_eq!(json["decision"], "ALLOW", "{json}");
        assert_eq!(json["challenge"], serde_json::Value::Null, "{json}");
        assert_eq!(json["step_up"], serde_json::Value::Null, "{json}");
    }

    // Bad values are refused before anything is sent, naming the flag.
    for (flag, value, says) in [
        (
            "--auth-time",
            "yesterday",
            "neither an RFC 3339 time nor a duration ago",
        ),
        ("--arg", "repo", "`repo` is not KEY=JSON"),
        ("--arg", "=1", "`=1` has an empty key"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let output = run(&args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains(says), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_health_checks_and_reflection() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(&root.path().join("empty"));
    let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let request = tonic_health::pb::HealthCheckRequest {
        service: "portcullis.v1.DecisionService".into(),
    };
    let status = health.check(request).await.unwrap().into_inner().status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"portcullis.v1.DecisionService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(names.contains(&"portcullis.v1.AdminService"), "{names:?}");
    assert!(
        names.contains(&"portcullis.v1.ApprovalService"),
        "{names:?}"
    );
    assert!(
        names.contains(&"portcullis.v1.ApprovalFlowService"),
        "{names:?}"
    );

    // Clients that still speak v1alpha get the same answer.
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(response)) = responses.next().await else {
            panic!("no v1alpha reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected v1alpha reflection answer")
        };
        let alpha: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(
            alpha.contains(&"portcullis.v1.DecisionService"),
            "{alpha:?}"
        );
    }

    // An empty store serves, and denies everyone as unknown.
    let mut client = server.client().await;
    let answer = client
        .check(portcullis_proto::v1::CheckRequest {
            user: "u1".into(),
            connector: "github".into(),
            tool: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.reason(), portcullis_proto::v1::Reason::UnknownUser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_can_require_a_token() {
    let root = tempfile::tempdir().unwrap();
    let secret_file = root.path().join("decision-token");
    std::fs::write(&secret_file, "s3cret-decisions\n").unwrap();
    let server = Server::start_with(
        &root.path().join("data"),
        &["--decision-token-file", path(&secret_file)],
    );
    let check = || portcullis_proto::v1::CheckRequest {
        user: "u1".into(),
        connector: "github".into(),
        tool: "x".into(),
        ..Default::default()
    };
    let mut client = server.client().await;
    let refused = client.check(check()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("missing credentials"),
        "{refused}"
    );
    let mut wrong = tonic::Request::new(check());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        client.check(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut right = tonic::Request::new(check());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret-decisions".parse().unwrap());
    let answer = client.check(right).await.unwrap().into_inner();
    assert_eq!(answer.reason(), portcullis_proto::v1::Reason::UnknownUser);
    // The secret never reaches the log.
    assert!(!server.stderr.lock().unwrap().contains("s3cret"));
}

#[test]
fn the_store_is_refused_while_a_server_holds_it_and_when_unreadable() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "5"]);
    let server = Server::start(&data);
    let output = run(&["import", "--data-dir", path(&data), path(&workload_dir)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(server);

    // Garbage where the store should be: serve stops with a message instead of serving.
    let broken = root.path().join("broken");
    fs::create_dir(&broken).unwrap();
    fs::write(broken.join("conf"), b"this is not a sled config").unwrap();
    fs::write(broken.join("db"), vec![0xAB; 4096]).unwrap();
    let output = run(&[
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--data-dir",
        path(&broken),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the store"), "{stderr}");
}
