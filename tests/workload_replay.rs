//! Every request of a generated workload, imported and served, gets exactly its expected answer.

use crate::support::{Server, generated_and_imported, path, run_ok};
use portcullis_proto::v1 as pb;

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
