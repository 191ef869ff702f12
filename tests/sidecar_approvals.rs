//! Approvals on a sidecar, all the real binary on loopback: a request created and approved on
//! the control plane lets the sidecar's Check through (a `once` grant exactly once, used on
//! the control plane; a `window` grant any number of times, decided by the sidecar alone);
//! the sidecar's Require approval answers name the pending request and the default flow; with
//! the control plane gone a `once` grant fails closed (and is still there once it is back)
//! while a `window` grant allows until its window ends.

use crate::approvals::{approvals, approve, args, decided, get, person_token, requested};
use crate::fleet::{eventually, token_file};
use crate::support::{Server, path, run_ok, write_users};
use pb::snapshot_service_client::SnapshotServiceClient;
use pdp::{ApprovalFlow, ApprovalStep, Approver, GrantMode};
use portcullis_proto::v1 as pb;
use std::fs;
use std::time::{Duration, Instant};

/// The window flow's grant length: long enough for the checks before the kill on a busy
/// machine, short enough to wait out.
const WINDOW_SECS: u64 = 20;

fn check(tool: &str, repo: &str, approval: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: "ada@example.com".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        arguments: Some(args(repo)),
        approval_id: approval.into(),
        ..Default::default()
    }
}

fn create(tool: &str, repo: &str) -> pb::CreateApprovalRequestRequest {
    pb::CreateApprovalRequestRequest {
        user: "ada@example.com".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        arguments: Some(args(repo)),
        justification: "release day".into(),
        ..Default::default()
    }
}

/// Ada asks; bob (in the Admin group) approves. Deleting a repository needs the built-in flow
/// (a `once` grant); deploying needs the default flow, a `window` grant of [`WINDOW_SECS`],
/// written to the store directly (the flows API is not there yet).
fn company(root: &std::path::Path) -> std::path::PathBuf {
    let export = root.join("export");
    fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("admin", "admin@example.com", "The Admin", true),
            ("ada", "ada@example.com", "Ada Lovelace", true),
            ("bob", "bob@example.com", "Bob Approver", true),
        ],
    );
    fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"admins","name":"Admins","roles":["admin"],"members":["admin","bob"]}
"#,
    )
    .unwrap();
    fs::write(
        export.join("policies.jsonl"),
        r#"{"id":"pol-delete","name":"deleting needs approval","connector":"github","tools":["delete_repo"],"scope":{"all_users":true,"users":[],"groups":[]},"action":"REQUIRE_APPROVAL","enabled":true}
{"id":"pol-deploy","name":"deploying needs approval","connector":"github","tools":["deploy"],"scope":{"all_users":true,"users":[],"groups":[]},"action":"REQUIRE_APPROVAL","enabled":true}
"#,
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    let store = store::Store::open(&data).unwrap();
    store
        .transact(|tx| {
            tx.put_flow(&ApprovalFlow {
                id: "flow-window".into(),
                name: "Deploy windows".into(),
                steps: vec![ApprovalStep {
                    approvers: vec![Approver::Admins],
                    min_approvals: 1,
                    timeout_secs: None,
                }],
                request_ttl_secs: 3600,
                grant: GrantMode::Window {
                    seconds: WINDOW_SECS,
                },
                ..ApprovalFlow::default()
            })?;
            tx.put_default_flow(Some("flow-window"))?;
            let mut delete = tx.policy("pol-delete")?.unwrap();
            delete.approval_flow_id = Some(pdp::approval::BUILTIN_FLOW_ID.into());
            tx.put_policy(&delete)?;
            Ok::<(), store::Error>(())
        })
        .unwrap();
    data
}

/// A sidecar that stays fresh for a minute without its control plane: the checks after the
/// kill are answered from what it holds, not failed closed as stale.
fn patient_sidecar(upstream: &str, token_file: &str) -> Server {
    Server::spawn(&[
        "sidecar",
        "--upstream",
        upstream,
        "--upstream-token-file",
        token_file,
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--max-staleness",
        "60s",
    ])
}

async fn decide(server: &Server, request: pb::CheckRequest) -> pb::CheckResponse {
    server
        .client()
        .await
        .check(request)
        .await
        .unwrap()
        .into_inner()
}

/// Checks `request` until the sidecar allows it by its approval (before that, it answers
/// Require approval and uses nothing); that answer.
async fn allowed_once(side: &Server, request: pb::CheckRequest) -> pb::CheckResponse {
    let allowed = std::sync::Mutex::new(None);
    eventually("the sidecar allows the approved call", || async {
        let answer = decide(side, request.clone()).await;
        let ok = decided(&answer) == APPROVED;
        if ok {
            *allowed.lock().unwrap() = Some(answer);
        }
        ok
    })
    .await;
    allowed.into_inner().unwrap().unwrap()
}

/// One sample of the sidecar's `/metrics`.
fn metric(sidecar: &Server, name: &str) -> f64 {
    let reply = crate::scim::http(&sidecar.http, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .unwrap()
}

const REQUIRED: (pb::Decision, pb::Reason) = (pb::Decision::RequireApproval, pb::Reason::Policy);
const APPROVED: (pb::Decision, pb::Reason) = (pb::Decision::Allow, pb::Reason::Approved);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_uses_grants_and_fails_closed_without_its_control_plane() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let bob = person_token(&data, "bob");
    let secret = token_file(root.path(), "sidecar-token", "fleet-secret");
    let control = Server::start_with(&data, &["--sidecar-token-file", &secret]);
    let port = control.port();
    let side = patient_sidecar(&control.addr, &secret);
    let mut gateway = approvals(&control, None).await;

    // A once request: the sidecar's Require approval answer names the flow and, once the
    // request reaches it, the pending request.
    let once = requested(&mut gateway, create("delete_repo", "acme/old")).await;
    eventually("the sidecar names the pending request", || async {
        let answer = decide(&side, check("delete_repo", "acme/old", "")).await;
        decided(&answer) == REQUIRED && answer.pending_approval_id == once.id
    })
    .await;
    let answer = decide(&side, check("delete_repo", "acme/old", "")).await;
    assert_eq!(answer.approval_flow_id, "builtin-admins");
    assert_eq!(answer.arguments_digest, once.arguments_digest);
    // Other arguments: no pending request of theirs.
    let other = decide(&side, check("delete_repo", "acme/api", "")).await;
    assert!(other.pending_approval_id.is_empty());
    // A policy naming no flow: the default flow, as the control plane streams it.
    let deploy = decide(&side, check("deploy", "acme/api", "")).await;
    assert_eq!(
        (decided(&deploy), deploy.approval_flow_id.as_str()),
        (REQUIRED, "flow-window")
    );

    // Approved on the control plane: the sidecar allows the call once, using the grant there.
    approve(&control, &bob, &once.id, "").await.unwrap();
    let allowed = allowed_once(&side, check("delete_repo", "acme/old", &once.id)).await;
    assert_eq!(allowed.policy_id, "pol-delete");
    let twice = decide(&side, check("delete_repo", "acme/old", &once.id)).await;
    assert_eq!(decided(&twice), REQUIRED);
    let used = get(&mut gateway, &once.id).await;
    assert_eq!(used.used_by_decision, allowed.decision_id);
    assert_eq!(
        metric(&side, "portcullis_sidecar_once_grants_used_total"),
        1.0
    );
    // Used on the sidecar, so used on the control plane too.
    let on_control = decide(&control, check("delete_repo", "acme/old", &once.id)).await;
    assert_eq!(decided(&on_control), REQUIRED);

    // A window grant: allowed again and again on the sidecar.
    let window = requested(&mut gateway, create("deploy", "acme/api")).await;
    let approved = approve(&control, &bob, &window.id, "release")
        .await
        .unwrap();
    let until = approved.approved_until.unwrap();
    let until_ms = until.seconds * 1000 + i64::from(until.nanos) / 1_000_000;
    eventually("the sidecar allows the window", || async {
        decided(&decide(&side, check("deploy", "acme/api", &window.id)).await) == APPROVED
    })
    .await;
    for _ in 0..3 {
        let again = decide(&side, check("deploy", "acme/api", &window.id)).await;
        assert_eq!(decided(&again), APPROVED);
    }
    // Only for the approved arguments.
    let elsewhere = decide(&side, check("deploy", "acme/web", &window.id)).await;
    assert_eq!(decided(&elsewhere), REQUIRED);

    // Another once grant, held by the sidecar (its pending request is gone from it in the
    // same update that brings the grant).
    let spare = requested(&mut gateway, create("delete_repo", "acme/tmp")).await;
    eventually("the sidecar sees the spare request pending", || async {
        decide(&side, check("delete_repo", "acme/tmp", ""))
            .await
            .pending_approval_id
            == spare.id
    })
    .await;
    approve(&control, &bob, &spare.id, "").await.unwrap();
    eventually("the sidecar holds the spare grant", || async {
        decide(&side, check("delete_repo", "acme/tmp", ""))
            .await
            .pending_approval_id
            .is_empty()
    })
    .await;
    // The window and the spare (the used one is gone).
    assert_eq!(metric(&side, "portcullis_sidecar_approval_grants"), 2.0);
    assert_eq!(metric(&side, "portcullis_sidecar_pending_approvals"), 0.0);
    // The flows travel too: the one in the store (the built-in one is not streamed).
    assert_eq!(metric(&side, "portcullis_sidecar_approval_flows"), 1.0);

    // The control plane dies. The once grant cannot be used: Require approval, at once.
    drop(control);
    let asked = Instant::now();
    let closed = decide(&side, check("delete_repo", "acme/tmp", &spare.id)).await;
    assert_eq!(decided(&closed), REQUIRED, "fails closed");
    assert_eq!(closed.approval_flow_id, "builtin-admins");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered within the use timeout"
    );
    assert!(metric(&side, "portcullis_sidecar_once_grant_failures_total") >= 1.0);
    // The window grant is the sidecar's to decide: allowed until the window ends.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    assert!(now_ms() < until_ms, "the window ended before the kill");
    let windowed = decide(&side, check("deploy", "acme/api", &window.id)).await;
    assert_eq!(decided(&windowed), APPROVED);
    while now_ms() <= until_ms {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let over = decide(&side, check("deploy", "acme/api", &window.id)).await;
    assert_eq!(decided(&over), REQUIRED, "allowed past its window");

    // Back on the same port: the grant that failed closed was not used, and now is.
    let control = Server::start_on(
        &data,
        &format!("127.0.0.1:{port}"),
        &["--sidecar-token-file", &secret],
    );
    let later = allowed_once(&side, check("delete_repo", "acme/tmp", &spare.id)).await;
    let used = get(&mut approvals(&control, None).await, &spare.id).await;
    assert_eq!(used.used_by_decision, later.decision_id);
    assert_eq!(
        decided(&decide(&side, check("delete_repo", "acme/tmp", &spare.id)).await),
        REQUIRED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_grant_needs_the_token_and_bounded_ids() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let secret = token_file(root.path(), "sidecar-token", "fleet-secret");
    let control = Server::start_with(&data, &["--sidecar-token-file", &secret]);
    let channel = tonic::transport::Channel::from_shared(control.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let use_grant = |approval_id: &str, decision_id: &str, token: Option<&str>| {
        let mut request = tonic::Request::new(pb::UseGrantRequest {
            approval_id: approval_id.into(),
            decision_id: decision_id.into(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let mut client = SnapshotServiceClient::new(channel.clone());
        async move { client.use_grant(request).await }
    };

    let anonymous = use_grant("apr_x", "d1", None).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let wrong = use_grant("apr_x", "d1", Some("wrong")).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);

    let empty = use_grant("", "d1", Some("fleet-secret")).await.unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert!(
        empty.message().contains("approval_id"),
        "{}",
        empty.message()
    );
    let long = "d".repeat(fleet::MAX_GRANT_ID + 1);
    let too_long = use_grant("apr_x", &long, Some("fleet-secret"))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
    assert!(
        too_long.message().contains("decision_id"),
        "{}",
        too_long.message()
    );

    // An unknown request has no grant to use.
    let unknown = use_grant("apr_nope", "d1", Some("fleet-secret"))
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.used);
}
