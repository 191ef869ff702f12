//! The decision log through the real binary: a flood of Checks against a decision log that is
//! stuck completes and counts what it drops; GetUser shows the latest decisions after a restart;
//! `--decision-log-file` gets one JSON object per decision with every field.

use crate::scim::http;
use crate::support::{
    Deadline, PATIENCE, Server, admin_token, path, run_ok, wait_for, write_users,
};
use portcullis_proto::v1 as pb;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Alice (an admin), Bob and Dave; github is allowed to everyone but `delete_repo`, denied.
fn company(root: &Path) -> PathBuf {
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u4", "dave@example.com", "Dave Doe", true),
        ],
    );
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-deny","name":"no deleting","connector":"github","tools":["delete_repo"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"DENY","enabled":true}"#,
            "\n",
            r#"{"id":"pol-gh","name":"github","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn request(user: &str, tool: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        ..Default::default()
    }
}

/// A sample of the scrape without labels.
fn metric(server: &Server, name: &str) -> f64 {
    let reply = http(&server.http, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{}", reply.body))
        .parse()
        .unwrap()
}

/// Every series of `portcullis_decisions_total`, summed.
fn decisions_counted(server: &Server) -> f64 {
    let reply = http(&server.http, "GET", "/metrics", &[], b"");
    reply
        .body
        .lines()
        .filter(|line| line.starts_with("portcullis_decisions_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

const CLIENTS: usize = 8;
const CHECKS: usize = 2_500;

/// The issue's test: the decision log under a Check flood never slows Check and counts drops.
///
/// The log's file is a FIFO nobody reads, so once its pipe and the writer's buffer are full the
/// log's writer is stuck for good; its queue holds one record. Every Check must still be
/// answered (and counted), and all but the few thousand records the log took before it stuck
/// must be counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_decision_log_under_a_check_flood_never_slows_check_and_counts_drops() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let fifo = root.path().join("decisions.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opened for reading (never read) so the server's open for writing returns.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let server = Server::start_with(
        &data,
        &[
            "--decision-log-file",
            path(&fifo),
            "--decision-log-queue",
            "1",
        ],
    );
    let _held = reader.join().unwrap();

    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut client = server.client().await;
        clients.push(tokio::spawn(async move {
            let users = ["u1", "BOB@example.com", "dave@example.com", "nobody"];
            let mut answered = HashMap::<(i32, i32), usize>::new();
            for i in 0..CHECKS {
                let tool = if i % 5 == 0 {
                    "delete_repo"
                } else {
                    "create_issue"
                };
                let answer = client
                    .check(request(users[(c + i) % users.len()], tool))
                    .await
                    .unwrap()
                    .into_inner();
                *answered
                    .entry((answer.decision, answer.reason))
                    .or_default() += 1;
            }
            answered
        }));
    }
    let mut answered = HashMap::<(i32, i32), usize>::new();
    for client in clients {
        // Generous: a stuck log must not hold a Check, but the machine may be slow.
        let counts = tokio::time::timeout(Duration::from_secs(300), client)
            .await
            .expect("the Checks did not complete")
            .unwrap();
        for (outcome, n) in counts {
            *answered.entry(outcome).or_default() += n;
        }
    }
    let total = CLIENTS * CHECKS;
    let took = started.elapsed();
    assert_eq!(answered.values().sum::<usize>(), total);
    let unknown = (pb::Decision::Deny as i32, pb::Reason::UnknownUser as i32);
    assert_eq!(answered[&unknown], total / 4, "{answered:?}");

    // Every Check was answered and counted, and timed.
    assert_eq!(decisions_counted(&server), total as f64);
    assert_eq!(
        metric(&server, "portcullis_check_duration_seconds_count"),
        total as f64
    );
    let dropped = metric(&server, "portcullis_decision_records_dropped_total") as usize;
    // Taken by the log at most: what fills the pipe (64 KiB) and the writer's buffer (256 KiB)
    // at 200+ bytes a line, the batch stuck writing, the batch gathered behind it, the queue.
    let taken_at_most = (64 + 256) * 1024 / 200 + 2 * 4096 + 1;
    assert!(
        dropped >= total - taken_at_most && dropped <= total,
        "{dropped} of {total} dropped ({took:?})"
    );
}

/// GetUser's recent activity comes from the store: the same after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_user_shows_the_latest_decisions_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = admin_token(&data, "u1");
    let server = Server::start(&data);
    let mut client = server.client().await;
    let tools = ["t1", "t2", "delete_repo", "t4"];
    // By id, email in another case, and external id would do too: the user resolves to u4.
    let users = ["u4", "DAVE@example.com", "dave@example.com", "u4"];
    let mut ids = Vec::new();
    for (user, tool) in users.iter().zip(tools) {
        ids.push(
            client
                .check(request(user, tool))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    client.check(request("u2", "t9")).await.unwrap();
    let get = pb::GetUserRequest {
        user: "dave@example.com".into(),
        activity_limit: 10,
    };
    let mut admin_client = server.admin(&token).await;
    let wait = Deadline::new(
        format!("{} decisions in the activity", tools.len()),
        PATIENCE,
    );
    let before = loop {
        let decisions = admin_client
            .get_user(get.clone())
            .await
            .unwrap()
            .into_inner()
            .decisions;
        if decisions.len() == tools.len() {
            break decisions;
        }
        wait.tick(&decisions).await;
    };
    let newest_first: Vec<&str> = before.iter().map(|d| d.tool.as_str()).collect();
    assert_eq!(newest_first, ["t4", "delete_repo", "t2", "t1"]);
    assert_eq!(before[1].decision(), pb::Decision::Deny);
    assert_eq!(before[1].policy_id, "pol-deny");
    assert_eq!(before[0].revision, ids[3].revision);
    assert!(server.terminate().success());

    let server = Server::start(&data);
    let mut admin_client = server.admin(&token).await;
    let after = admin_client
        .get_user(get)
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert_eq!(after, before);
    let bob = admin_client
        .get_user(pb::GetUserRequest {
            user: "u2".into(),
            activity_limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].tool, "t9");
}

/// `--decision-log-file`: a line per decision, each a JSON object with every field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonl_file_has_one_object_per_decision_with_every_field() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let file = root.path().join("decisions.jsonl");
    let server = Server::start_with(&data, &["--decision-log-file", path(&file)]);
    let mut client = server.client().await;
    let since = std::time::SystemTime::now();
    let mut answers = Vec::new();
    for (user, tool) in [
        ("u1", "create_issue"),
        ("BOB@Example.com", "delete_repo"),
        ("nobody@example.com", "create_issue"),
    ] {
        answers.push((
            user,
            tool,
            client
                .check(request(user, tool))
                .await
                .unwrap()
                .into_inner(),
        ));
    }
    let batch = client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![request("u4", "a"), request("u4", "b")],
        })
        .await
        .unwrap()
        .into_inner();
    for (result, tool) in batch.results.into_iter().zip(["a", "b"]) {
        answers.push(("u4", tool, result));
    }

    let lines: Vec<String> = wait_for(
        &format!("{} whole lines in the decision log file", answers.len()),
        PATIENCE,
        || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.lines().count() >= answers.len() && text.ends_with('\n') {
                Ok(text.lines().map(str::to_owned).collect())
            } else {
                Err(text)
            }
        },
    );
    assert_eq!(lines.len(), answers.len(), "{lines:?}");
    let fields: BTreeSet<&str> = [
        "decision_id",
        "time",
        "user",
        "user_id",
        "agent",
        "connector",
        "tool",
        "decision",
        "reason",
        "policy_id",
        "approval_id",
        "revision",
        "latency_ns",
    ]
    .into();
    let by_id: HashMap<String, serde_json::Value> = lines
        .iter()
        .map(|line| {
            let object: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: BTreeSet<&str> = object
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, fields, "{line}");
            (object["decision_id"].as_str().unwrap().to_owned(), object)
        })
        .collect();
    let resolved = |user: &str| match user {
        "u1" => Some("u1"),
        "BOB@Example.com" => Some("u2"),
        "u4" => Some("u4"),
        _ => None,
    };
    for (user, tool, answer) in &answers {
        let line = &by_id[&answer.decision_id];
        assert_eq!(line["user"], *user);
        assert_eq!(line["user_id"].as_str(), resolved(user), "{line}");
        assert_eq!(line["agent"], "claude");
        assert_eq!(line["connector"], "github");
        assert_eq!(line["tool"], *tool);
        assert_eq!(
            line["decision"],
            answer.decision().as_str_name()["DECISION_".len()..]
        );
        assert_eq!(
            line["reason"],
            answer.reason().as_str_name()["REASON_".len()..]
        );
        match answer.policy_id.as_str() {
            "" => assert!(line["policy_id"].is_null(), "{line}"),
            id => assert_eq!(line["policy_id"], id),
        }
        assert_eq!(line["revision"], answer.revision);
        assert!(line["latency_ns"].as_u64().unwrap() > 0, "{line}");
        let time = time::OffsetDateTime::parse(
            line["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let since = time::OffsetDateTime::from(since) - time::Duration::milliseconds(1);
        assert!(
            time >= since && time <= time::OffsetDateTime::now_utc(),
            "{line}"
        );
    }
    // The two checks of one batch share its latency.
    let (a, b) = (&answers[3].2, &answers[4].2);
    assert_eq!(
        by_id[&a.decision_id]["latency_ns"],
        by_id[&b.decision_id]["latency_ns"]
    );
}
