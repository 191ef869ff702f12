//! Every request of a generated workload, imported and served, gets exactly its expected answer.

use crate::support::{Server, generated_and_imported, json, path, run, run_json, run_ok};
use portcullis_proto::v1 as pb;
use serde_json::json;

pub(crate) fn expected(request: &workload::RequestLine) -> (String, String, String) {
    let e = &request.expected;
    (
        format!("DECISION_{}", workload::action_name(e.decision)),
        format!("REASON_{}", workload::reason_name(e.reason)),
        e.policy_id.clone().unwrap_or_default(),
    )
}

pub(crate) fn got(answer: &pb::CheckResponse) -> (String, String, String) {
    (
        answer.decision().as_str_name().to_owned(),
        answer.reason().as_str_name().to_owned(),
        answer.policy_id.clone(),
    )
}

pub(crate) fn check(request: &workload::RequestLine) -> pb::CheckRequest {
    pb::CheckRequest {
        user: request.user.clone(),
        agent: request.agent.clone(),
        connector: request.connector.clone(),
        tool: request.tool.clone(),
        ..Default::default()
    }
}

/// Imports a generated workload, serves it, and checks every request with Check and BatchCheck.
async fn replay_matches(seed: &str) {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", seed]);
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    assert_eq!(requests.len(), 10_000);

    let server = Server::start(&data);
    let mut client = server.client().await;
    let revision = client
        .check(check(&requests[0]))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(revision >= 1, "an imported store has a revision");

    let mut mismatches = Vec::new();
    for request in &requests {
        let answer = client.check(check(request)).await.unwrap().into_inner();
        assert_eq!(answer.revision, revision);
        if got(&answer) != expected(request) {
            mismatches.push(format!(
                "{}: expected {:?}, got {:?}",
                request.id,
                expected(request),
                got(&answer)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} Check answers differ, first: {:#?}",
        mismatches.len(),
        requests.len(),
        &mismatches[..mismatches.len().min(5)]
    );

    for chunk in requests.chunks(1000) {
        let checks = chunk.iter().map(check).collect();
        let results = client
            .batch_check(pb::BatchCheckRequest { checks })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(results.len(), chunk.len());
        for (request, answer) in chunk.iter().zip(&results) {
            assert_eq!(got(answer), expected(request), "BatchCheck {}", request.id);
        }
    }

    // The CLI's replay agrees, and says so.
    let summary = run_ok(&[
        "workload",
        "replay",
        "--addr",
        &server.addr,
        "--dir",
        path(&workload_dir),
        "--batch",
        "250",
    ]);
    assert!(summary.contains("10000 matched, 0 mismatched"), "{summary}");
    let replay = |dir: &std::path::Path| {
        run(&[
            "workload",
            "replay",
            "--addr",
            &server.addr,
            "--dir",
            path(dir),
            "--json",
        ])
    };
    let replayed = json(&replay(&workload_dir));
    assert_eq!(
        (
            &replayed["requests"],
            &replayed["matched"],
            &replayed["mismatched"]
        ),
        (&json!(10_000), &json!(10_000), &json!(0)),
        "{replayed}"
    );
    assert!(replayed["per_second"].as_f64().unwrap() > 0.0, "{replayed}");
    assert_eq!(replayed["mismatches"], json!([]), "{replayed}");

    // A wrong expectation: counted and described in the document, exit code 1.
    let wrong = root.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let mut lines: Vec<serde_json::Value> =
        std::fs::read_to_string(workload_dir.join("requests.jsonl"))
            .unwrap()
            .lines()
            .take(100)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    lines[0]["expected"]["policy_id"] = json!("pol-nope");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(wrong.join("requests.jsonl"), text).unwrap();
    let out = replay(&wrong);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = json(&out);
    assert_eq!(
        (&replayed["matched"], &replayed["mismatched"]),
        (&json!(99), &json!(1)),
        "{replayed}"
    );
    let mismatch = &replayed["mismatches"][0];
    assert_eq!(mismatch["id"], lines[0]["id"], "{replayed}");
    assert_eq!(mismatch["expected"]["policy_id"], "pol-nope", "{replayed}");
    assert_ne!(mismatch["got"]["policy_id"], "pol-nope", "{replayed}");

    let status = server.terminate();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_generated_workload_gets_its_expected_answer() {
    replay_matches("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_differently_seeded_workload_too() {
    replay_matches("20261127").await;
}

#[test]
fn generate_says_what_it_wrote_as_json() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("w");
    let written = run_json(&[
        "workload",
        "generate",
        "--out",
        path(&out),
        "--users",
        "40",
        "--groups",
        "4",
        "--policies",
        "6",
        "--requests",
        "9",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(
        written,
        json!({
            "out": path(&out), "preset": "small", "seed": 7, "users": 40, "groups": 4,
            "policies": 6, "requests": 9, "elapsed_ms": written["elapsed_ms"],
        })
    );
    assert!(written["elapsed_ms"].is_u64(), "{written}");
    let lines = |file: &str| {
        std::fs::read_to_string(out.join(file))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines("users.jsonl"), lines("requests.jsonl")), (40, 9));
}
