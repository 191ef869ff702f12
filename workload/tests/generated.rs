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
        assert_eq!(workload.flows, generated.files.to_flows(NOW));
        assert_eq!(workload.flows.len(), 2);

        // Exporting the model gives back the files (it has no requests, nor flows: those are
        // outside the model).
        let exported = Files::from_model(&workload.model).unwrap();
        let mut without_requests = Files {
            requests: Vec::new(),
            flows: Vec::new(),
            ..generated.files.clone()
        };
        for policy in &mut without_requests.policies {
            policy.approval_flow = None;
        }
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
                "approval_flows.jsonl",
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
    assert_eq!(a.len(), 6);
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

/// The decision request of a line at the oracle's clock, with its authentication and arguments.
fn with_context<'a>(
    r: &'a workload::RequestLine,
    authentication: Option<&'a pdp::Authentication>,
) -> Request<'a> {
    workload::oracle::pdp_request(r, authentication, workload::oracle::DECIDE_AT)
}

fn small_with(agents: bool, conditions: bool) -> workload::Generated {
    workload::generate(&Params {
        agents,
        conditions,
        ..Params::SMALL
    })
    .unwrap()
}

#[test]
fn agents_add_to_the_workload_and_change_nothing_else() {
    let plain = small(1);
    let generated = small_with(true, false);
    let files = &generated.files;
    // Users and groups are those without agents; policies keep every other field.
    assert_eq!(files.users, plain.files.users);
    assert_eq!(files.groups, plain.files.groups);
    assert_eq!(files.policies.len(), plain.files.policies.len());
    for (with, without) in files.policies.iter().zip(&plain.files.policies) {
        let stripped = workload::PolicyLine {
            agents: None,
            step_up: None,
            ..with.clone()
        };
        assert_eq!(&stripped, without);
        assert!(with.agents.is_some());
        assert!(with.step_up.is_none() || with.action == pdp::Action::StepUp);
    }

    assert_eq!(files.agents.len(), 8);
    assert!(files.agents.windows(2).all(|w| w[0].id < w[1].id));
    let disabled = files.agents.iter().filter(|a| !a.enabled).count();
    assert!((1..=2).contains(&disabled), "{disabled}");
    assert!(files.settings.is_some());
    let listing = files
        .policies
        .iter()
        .filter(|p| p.agents.as_ref().is_some_and(|a| a != &["*"]))
        .count();
    assert!((15..=45).contains(&listing), "{listing} of 100 list agents");
    assert!(files.policies.iter().any(|p| p.step_up.is_some()));
    let with_auth = files
        .requests
        .iter()
        .filter(|r| r.authentication.is_some())
        .count();
    assert!(
        (3_000..=7_000).contains(&with_auth),
        "{with_auth} with authentication"
    );
    let kinds = &generated.manifest.requests_by_kind;
    for kind in [
        "unknown_agent",
        "disabled_agent",
        "agent_out_of_scope",
        "step_up_met",
        "step_up_not_met",
        "targeted",
        "unknown_user",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|&n| n > 50),
            "{kind}: {kinds:?}"
        );
    }
    assert!(files.requests.iter().any(|r| r.agent.is_empty()));
    assert!(
        files
            .requests
            .iter()
            .any(|r| files.agents.iter().any(|a| a.aliases.contains(&r.agent)))
    );
    let summary = generated.manifest.agents.as_ref().unwrap();
    assert_eq!(summary.count, 8);
    assert_eq!(summary.requests_with_authentication, with_auth as u64);

    // Deterministic, to the byte, and read back exactly.
    let again = small_with(true, false);
    assert_eq!(again, generated);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_dir(a.path(), &generated).unwrap();
    write_dir(b.path(), &again).unwrap();
    let (bytes_a, bytes_b) = (read_all(a.path()), read_all(b.path()));
    assert_eq!(bytes_a.len(), 8);
    assert!(bytes_a == bytes_b, "same seed, different bytes");
    let workload = read_dir(a.path(), NOW, &mut |_| {}).unwrap();
    assert_eq!(workload.model, files.to_model(NOW));
    assert_eq!(workload.requests, files.requests);
    let exported = Files::from_model(&workload.model).unwrap();
    assert_eq!(exported.agents, files.agents);
    assert_eq!(exported.settings, files.settings);
}

/// With agents, the oracle's sub-models (which carry the registry and setting) agree with the
/// reference on the whole model, at the same clock and with the same authentication.
#[test]
fn sub_models_with_agents_agree_with_the_whole_model() {
    let generated = small_with(true, false);
    let model = generated.files.to_model(NOW);
    for r in generated.files.requests.iter().step_by(20) {
        let authentication = workload::oracle::authentication(r);
        let got = Expected::from(pdp::decide_reference(
            &model,
            &with_context(r, authentication.as_ref()),
        ));
        assert_eq!(got, r.expected, "request {r:?}");
    }
}

/// Conditions are their own option: a few policies get a CEL condition over arguments and
/// requests to what they cover get arguments. The files cannot be read back until
/// `pdp::expression` compiles CEL, so this checks the shape and determinism only.
#[test]
fn conditions_add_expressions_and_arguments() {
    let generated = small_with(true, true);
    let files = &generated.files;
    let plain = small_with(true, false);
    assert_eq!(files.agents, plain.files.agents);
    let conditional = files
        .policies
        .iter()
        .filter(|p| p.expression.is_some())
        .count();
    assert!((3..=20).contains(&conditional), "{conditional}");
    assert!(
        files
            .policies
            .iter()
            .all(|p| p.expression.is_none() || p.action != pdp::Action::StepUp)
    );
    let with_arguments: Vec<_> = files
        .requests
        .iter()
        .filter(|r| r.arguments.is_some())
        .collect();
    assert!(with_arguments.len() > 100, "{}", with_arguments.len());
    assert!(
        with_arguments
            .iter()
            .all(|r| r.arguments.as_ref().unwrap().contains_key("repo"))
    );
    assert_eq!(small_with(true, true), generated);
    // Without `conditions`, no policy has one and no request has arguments.
    assert!(plain.files.policies.iter().all(|p| p.expression.is_none()));
    assert!(plain.files.requests.iter().all(|r| r.arguments.is_none()));
}

#[test]
fn require_approval_policies_name_the_generated_flows() {
    let files = &small(1).files;
    let ids: Vec<&str> = files.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["flow-admins", "flow-two-step"]);
    let approval: Vec<&workload::PolicyLine> = files
        .policies
        .iter()
        .filter(|p| p.action == pdp::Action::RequireApproval)
        .collect();
    assert!(approval.len() >= 3, "{}", approval.len());
    for (i, policy) in approval.iter().enumerate() {
        let expected = match i % 3 {
            0 => Some("flow-admins"),
            1 => Some("flow-two-step"),
            _ => None,
        };
        assert_eq!(policy.approval_flow.as_deref(), expected, "{}", policy.id);
    }
    assert!(
        files
            .policies
            .iter()
            .all(|p| p.approval_flow.is_none() || p.action == pdp::Action::RequireApproval)
    );
    // The two-step flow's group can give its two approvals.
    let group = files.flows[1].steps[1].approvers[0]
        .strip_prefix("group:")
        .unwrap();
    let members = &files.groups.iter().find(|g| g.id == group).unwrap().members;
    assert!(members.len() >= 2);
}
