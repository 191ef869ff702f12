//! `portcullis import --server`: a directory into a running server while it answers Checks, all or
//! nothing, audited once, refused for a Read Only token; and the offline import refusing the same
//! bad files with the same problems.

use crate::support::{Server, admin_token, json, path, run, run_json, run_ok};
use crate::workload_replay::{check, expected, got};
use portcullis_proto::v1 as pb;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A few thousand users: the test stays fast; the medium preset is a documented manual run
/// (docs/admin.md).
fn params(seed: u64) -> workload::Params {
    workload::Params {
        users: 3_000,
        groups: 150,
        policies: 300,
        requests: 2_000,
        connectors: 10,
        tools_per_connector: 10,
        seed,
        agents: false,
        conditions: false,
    }
}

/// Generates a workload in-process into `dir`: its requests with their expected answers, and
/// the ids of its active, unlocked users (who may hold a token).
fn generated(dir: &Path, seed: u64) -> (Vec<workload::RequestLine>, Vec<String>) {
    let generated = workload::generate(&params(seed)).unwrap();
    workload::write_dir(dir, &generated).unwrap();
    let users = generated
        .files
        .users
        .iter()
        .filter(|u| u.active && !u.locked)
        .map(|u| u.id.clone())
        .collect();
    (
        workload::read_requests(&dir.join("requests.jsonl")).unwrap(),
        users,
    )
}

async fn imports(server: &Server, token: &str) -> Vec<pb::AuditEvent> {
    server.audit(token, "directory.import").await
}

async fn revision(
    client: &mut pb::decision_service_client::DecisionServiceClient<tonic::transport::Channel>,
) -> u64 {
    client
        .check(pb::CheckRequest {
            user: "nobody".into(),
            connector: "c".into(),
            tool: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

/// The same ids with other names, groups and policies (another seed) replace the first
/// directory while Checks run: none fails, one audit event, and afterwards every request gets
/// the second directory's expected answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_replaces_the_served_one_while_checks_run() {
    let root = tempfile::tempdir().unwrap();
    let (first, second, data) = (
        root.path().join("first"),
        root.path().join("second"),
        root.path().join("data"),
    );
    let (first_requests, users) = generated(&first, 1);
    let (second_requests, second_users) = generated(&second, 2);
    run_ok(&["import", "--data-dir", path(&data), path(&first)]);
    // Able to call before the import and after it.
    let user = users.iter().find(|u| second_users.contains(u)).unwrap();
    let token = admin_token(&data, user);
    let server = Server::start(&data);
    let mut client = server.client().await;
    let before = revision(&mut client).await;

    // Checks in a loop until the import is done: each must be answered.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let checks = {
        let (done, answered) = (done.clone(), answered.clone());
        let mut client = server.client().await;
        let requests: Vec<_> = first_requests
            .iter()
            .chain(&second_requests)
            .map(check)
            .collect();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut failures = Vec::new();
            for request in requests.iter().cycle() {
                if done.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                match client.check(request.clone()).await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => failures.push(status.to_string()),
                }
            }
            failures
        })
    };

    let output = {
        let (addr, token, second) = (server.addr.clone(), token.clone(), second.clone());
        tokio::task::spawn_blocking(move || {
            run(&[
                "import",
                "--server",
                &addr,
                "--token",
                &token,
                path(&second),
            ])
        })
        .await
        .unwrap()
    };
    done.store(true, Ordering::Relaxed);
    let failures = checks.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("imported 3000 users, 150 groups,"),
        "{stdout}"
    );
    assert!(
        failures.is_empty(),
        "Checks failed during the import: {failures:?}"
    );
    assert!(answered.load(Ordering::Relaxed) > 0, "no Check ran");

    let events = imports(&server, &token).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert!(
        event.detail.starts_with("3000 users, 150 groups,"),
        "{event:?}"
    );
    assert!(event.revision > before, "{event:?}");
    assert!(
        stdout.contains(&format!("server revision {}", event.revision)),
        "{stdout}"
    );

    let mut mismatches = Vec::new();
    for request in &second_requests {
        let answer = client.check(check(request)).await.unwrap().into_inner();
        assert!(answer.revision >= event.revision);
        if got(&answer) != expected(request) {
            mismatches.push((request.id.clone(), expected(request), got(&answer)));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from the imported directory's, first: {:?}",
        mismatches.len(),
        second_requests.len(),
        &mismatches[..mismatches.len().min(3)]
    );
}

/// One problem of each kind, on lines the message must name.
fn write_bad_directory(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let user = |id: &str, email: &str| {
        serde_json::json!({
            "id": id, "email": email, "name": id, "created": "2026-01-05T12:34:56Z",
            "active": true, "locked": false, "mfa": true,
        })
        .to_string()
    };
    let users = [
        user("u1", "one@example.com"),
        user("u2", "x"),
        user("u1", "again@example.com"),
        user("u3", "three@example.com"),
    ];
    std::fs::write(dir.join("users.jsonl"), users.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("groups.jsonl"),
        concat!(
            r#"{"id":"g1","name":"one","roles":[],"members":["u1","u3"]}"#,
            "\n",
            r#"{"id":"g2","name":"two","roles":[],"members":["u9"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let policy = |id: &str, name: &str| {
        serde_json::json!({
            "id": id, "name": name, "connector": "github", "tools": ["*"],
            "scope": {"all_users": true, "users": [], "groups": []}, "action": "ALLOW", "enabled": true,
        })
        .to_string()
    };
    // A name longer than CreatePolicy takes (256 characters): the admin API's own check.
    let policies = [policy("p1", "fine"), policy("p2", &"n".repeat(300))];
    std::fs::write(dir.join("policies.jsonl"), policies.join("\n") + "\n").unwrap();
}

const PROBLEMS: [&str; 4] = [
    "users.jsonl:2: email: `x` is not an email address",
    "users.jsonl:3: id: duplicate id `u1`, first on line 1",
    "groups.jsonl:2: members: unknown user `u9`",
    "policies.jsonl:2: policy.name: ",
];

fn assert_refused(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    for (problem, line) in PROBLEMS.iter().zip(&lines) {
        assert!(
            line.starts_with(problem),
            "expected `{problem}…`, got:\n{stderr}"
        );
    }
    assert_eq!(
        lines.get(PROBLEMS.len()),
        Some(&"nothing imported: 4 problems"),
        "{stderr}"
    );
}

/// With `--json`: the problems on stdout as an array, still exit code 1, and only the count on
/// stderr.
fn assert_refused_json(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim(), "nothing imported: 4 problems");
    let document = json(output);
    assert_eq!(document["imported"], false, "{document}");
    assert_eq!(document["more_problems"], false, "{document}");
    let problems = document["problems"].as_array().unwrap();
    assert_eq!(problems.len(), PROBLEMS.len(), "{document}");
    for (problem, got) in PROBLEMS.iter().zip(problems) {
        assert!(got.as_str().unwrap().starts_with(problem), "{document}");
    }
}

/// A directory with bad lines is refused whole, online and offline alike, every problem named
/// with its file and line; a Read Only token may not import; online and offline are one or the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_all_listed_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let (bad, data, good) = (
        root.path().join("bad"),
        root.path().join("data"),
        root.path().join("good"),
    );
    write_bad_directory(&bad);
    let (_, users) = generated(&good, 3);
    let imported = run_json(&["import", "--data-dir", path(&data), path(&good), "--json"]);
    assert_eq!(
        (&imported["imported"], &imported["mode"]),
        (&serde_json::json!(true), &serde_json::json!("offline")),
        "{imported}"
    );
    assert_eq!(imported["users"], 3000, "{imported}");
    assert_eq!(imported["groups"], 150, "{imported}");
    assert!(imported["revision"].as_u64().unwrap() > 0, "{imported}");
    let token = admin_token(&data, &users[0]);
    let read_only = {
        let out = run_ok(&[
            "token",
            "create",
            "--data-dir",
            path(&data),
            "--user",
            &users[1],
            "--role",
            "read-only",
        ]);
        out.lines().last().unwrap().trim().to_owned()
    };

    // Offline first (the server not yet running): refused, the store untouched.
    let offline = root.path().join("offline");
    assert_refused(&run(&["import", "--data-dir", path(&offline), path(&bad)]));
    assert_refused_json(&run(&[
        "import",
        "--data-dir",
        path(&offline),
        path(&bad),
        "--json",
    ]));

    let server = Server::start(&data);
    let mut client = server.client().await;
    let before = revision(&mut client).await;
    let mut admin = server.admin(&token).await;

    let addr = server.addr.clone();
    let online = tokio::task::spawn_blocking({
        let (addr, token, bad) = (addr.clone(), token.clone(), bad.clone());
        move || run(&["import", "--server", &addr, "--token", &token, path(&bad)])
    })
    .await
    .unwrap();
    assert_refused(&online);
    let online = tokio::task::spawn_blocking({
        let (addr, token, bad) = (addr.clone(), token.clone(), bad.clone());
        move || {
            run(&[
                "import",
                "--server",
                &addr,
                "--token",
                &token,
                path(&bad),
                "--json",
            ])
        }
    })
    .await
    .unwrap();
    assert_refused_json(&online);
    assert_eq!(revision(&mut client).await, before, "nothing was written");
    assert!(imports(&server, &token).await.is_empty());

    // Over the API: a stream that ends without its last chunk (a client failing midway) and
    // a file that is not part of an import are refused whole.
    let users = std::fs::read(good.join("users.jsonl")).unwrap();
    let chunk = |file: &str, last: bool| pb::ImportDirectoryChunk {
        file: file.into(),
        data: users[..1000].to_vec(),
        last,
    };
    let cut = admin
        .import_directory(futures_util::stream::iter(vec![chunk(
            "users.jsonl",
            false,
        )]))
        .await
        .unwrap_err();
    assert_eq!(cut.code(), tonic::Code::InvalidArgument, "{cut:?}");
    assert!(cut.message().starts_with("last: "), "{cut:?}");
    let stray = admin
        .import_directory(futures_util::stream::iter(vec![chunk(
            "requests.jsonl",
            true,
        )]))
        .await
        .unwrap_err();
    assert_eq!(stray.code(), tonic::Code::InvalidArgument, "{stray:?}");
    assert!(
        stray.message().starts_with("file: `requests.jsonl` is not"),
        "{stray:?}"
    );
    assert_eq!(revision(&mut client).await, before);

    let refused = tokio::task::spawn_blocking({
        let (addr, good) = (addr.clone(), good.clone());
        move || {
            run(&[
                "import",
                "--server",
                &addr,
                "--token",
                &read_only,
                path(&good),
            ])
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert_eq!(revision(&mut client).await, before);

    let both = run(&[
        "import",
        "--server",
        &addr,
        "--token",
        &token,
        "--data-dir",
        path(&data),
        path(&good),
    ]);
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pass one"), "{stderr}");
    assert!(imports(&server, &token).await.is_empty());

    // Online and accepted: the counts and the revision it committed at, audited once.
    let imported = tokio::task::spawn_blocking({
        let (addr, token, good) = (addr.clone(), token.clone(), good.clone());
        move || {
            run_json(&[
                "import",
                "--server",
                &addr,
                "--token",
                &token,
                path(&good),
                "--json",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (&imported["imported"], &imported["mode"]),
        (&serde_json::json!(true), &serde_json::json!("online")),
        "{imported}"
    );
    assert_eq!(imported["users"], 3000, "{imported}");
    let events = imports(&server, &token).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(imported["revision"], events[0].revision, "{imported}");
}
