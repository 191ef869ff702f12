//! Generated workloads: round trip through the files, expected answers against the indexed
//! engine and the full reference, determinism.

use crate::small;
use pdp::{NoAttributes, Request, Snapshot, Timestamp};
use std::path::Path;
use workload::{Expected, Files, Params, Progress, read_dir, write_dir};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn request<'a>(r: &'a workload::RequestLine) -> Request<'a> {
    Request {
        context: Default::default(),
        user: &r.user,
        agent: &r.agent,
        connector: &r.connector,
        tool: &r.tool,
        attributes: &NoAttributes,
    }
}

#[test]
fn files_round_trip_through_a_directory() {
    for seed in [1, 2] {
        let generated = small(seed);
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), generated).unwrap();

        let mut reports: Vec<Progress> = Vec::new();
        let workload = read_dir(dir.path(), NOW, &mut |p| reports.push(p)).unwrap();
        assert_eq!(workload.model, generated.files.to_model(NOW));
        assert_eq!(workload.requests, generated.files.requests);

        // Exporting the model gives back the files (it has no requests).
        let exported = Files::from_model(&workload.model).unwrap();
        let without_requests = Files {
            requests: Vec::new(),
            ..generated.files.clone()
        };
        assert_eq!(exported, without_requests);

        // Progress: each file in order, ending with everything read.
        let mut ends: Vec<&Progress> = Vec::new();
        for pair in reports.windows(2) {
            if pair[0].file != pair[1].file {
                ends.push(&pair[0]);
            }
        }
        ends.extend(reports.last());
        let files: Vec<&str> = ends.iter().map(|p| p.file).collect();
        assert_eq!(
            files,
            [
                "users.jsonl",
                "groups.jsonl",
                "policies.jsonl",
                "requests.jsonl"
            ]
        );
        for end in ends {
            let size = std::fs::metadata(dir.path().join(end.file)).unwrap().len();
            assert_eq!(
                (end.bytes_read, end.total_bytes),
                (size, size),
                "{}",
                end.file
            );
        }
    }
}

#[test]
fn expected_answers_agree_with_the_snapshot() {
    for seed in [1, 2] {
        let generated = small(seed);
        let model = generated.files.to_model(NOW);
        let snapshot = Snapshot::build(&model);
        for r in &generated.files.requests {
            let got = Expected::from(snapshot.decide(&request(r)));
            assert_eq!(got, r.expected, "seed {seed}, request {r:?}");
        }
    }
}

/// The oracle decides on a sub-model per request; the reference on the whole model must agree.
#[test]
fn sub_models_agree_with_the_whole_model() {
    let generated = small(1);
    let model = generated.files.to_model(NOW);
    for r in generated.files.requests.iter().step_by(25) {
        let got = Expected::from(pdp::decide_reference(&model, &request(r)));
        assert_eq!(got, r.expected, "request {r:?}");
    }
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn generation_is_deterministic() {
    let again = workload::generate(&Params {
        seed: 1,
        ..Params::SMALL
    })
    .unwrap();
    assert_eq!(&again, small(1));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_dir(a.path(), small(1)).unwrap();
    write_dir(b.path(), &again).unwrap();
    let (a, b) = (read_all(a.path()), read_all(b.path()));
    assert_eq!(a.len(), 5);
    assert!(a == b, "same seed, different bytes");

    // Another seed gives another workload.
    assert_ne!(small(1).files.users, small(2).files.users);
    assert_ne!(small(1).files.requests, small(2).files.requests);
}

#[test]
fn request_count_changes_only_the_requests() {
    let fewer = workload::generate(&Params {
        requests: 1_000,
        ..Params::SMALL
    })
    .unwrap();
    let all = &small(1).files;
    assert_eq!(fewer.files.users, all.users);
    assert_eq!(fewer.files.groups, all.groups);
    assert_eq!(fewer.files.policies, all.policies);
    assert_eq!(fewer.files.requests[..], all.requests[..1_000]);
}

/// Pins a few values so that an accidental change to the generator (or to the random streams
/// of a dependency) shows up; update them on purpose when the generator changes.
#[test]
fn output_is_pinned() {
    let files = &small(1).files;
    let user = serde_json::to_string(&files.users[0]).unwrap();
    let request = serde_json::to_string(&files.requests[0]).unwrap();
    assert_eq!(user, PINNED_USER);
    assert_eq!(request, PINNED_REQUEST);
}

const PINNED_USER: &str = r#"{"id":"u0000000","email":"hedy.hoare0@example.com","name":"Hedy Hoare","created":"2025-02-28T07:10:11Z","active":true,"locked":false,"mfa":true}"#;
const PINNED_REQUEST: &str = r#"{"id":"r0000000","user":"u0000198","agent":"agent-00000","connector":"zendesk","tool":"sync_user","kind":"targeted","expected":{"decision":"REQUIRE_APPROVAL","reason":"POLICY","policy_id":"pol-000096"}}"#;
