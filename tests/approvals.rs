//! Approval requests through the real binary: a Require approval answer becomes a request, an
//! eligible approver approves it, and the retried Check passes exactly once for exactly the
//! approved arguments; self-approval and locked approvers are refused; a lock after approval
//! still denies; of concurrent Checks with a `once` grant exactly one is allowed.

use crate::support::{Bearer, Server, admin_token, bearer, path, run_ok, write_users};

use pb::approval_service_client::ApprovalServiceClient;
use portcullis_proto::v1 as pb;
use std::fs;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) type Approvals = ApprovalServiceClient<InterceptedService<Channel, Bearer>>;

/// An ApprovalService client sending `token` (none: a gateway where decisions are open).
pub async fn approvals(server: &Server, token: Option<&str>) -> Approvals {
    ApprovalServiceClient::with_interceptor(server.channel().await, bearer(token))
}

/// `token`'s approval of request `id` with `comment`: the request as it now stands, or the
/// refusal.
pub(crate) async fn approve(
    server: &Server,
    token: &str,
    id: &str,
    comment: &str,
) -> Result<pb::ApprovalRequest, tonic::Status> {
    let answer = approvals(server, Some(token))
        .await
        .approve(pb::ApproveRequest {
            id: id.to_owned(),
            comment: comment.to_owned(),
        })
        .await?;
    Ok(answer
        .into_inner()
        .request
        .expect("an approval answers with the request"))
}

/// Request `id` as `gateway` sees it.
pub(crate) async fn get(gateway: &mut Approvals, id: &str) -> pb::ApprovalRequest {
    gateway
        .get_approval_request(pb::GetApprovalRequestRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

/// The approval request `gateway` creates for `call`.
pub(crate) async fn requested(
    gateway: &mut Approvals,
    call: pb::CreateApprovalRequestRequest,
) -> pb::ApprovalRequest {
    gateway
        .create_approval_request(call)
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

/// `token create` for a user without a role of the token's own.
pub(crate) fn person_token(data: &std::path::Path, user: &str) -> String {
    let out = run_ok(&["token", "create", "--data-dir", path(data), "--user", user]);
    out.lines().last().unwrap().trim().to_owned()
}

/// A tool call's arguments: `{"repo": repo}`.
pub(crate) fn args(repo: &str) -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            "repo".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(repo.into())),
            },
        )]
        .into_iter()
        .collect(),
    }
}

fn check(repo: &str, approval: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: "ada@example.com".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "delete_repo".into(),
        arguments: Some(args(repo)),
        approval_id: approval.into(),
        ..Default::default()
    }
}

pub(crate) fn create(repo: &str) -> pb::CreateApprovalRequestRequest {
    pb::CreateApprovalRequestRequest {
        user: "ada@example.com".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "delete_repo".into(),
        arguments: Some(args(repo)),
        justification: "cleaning up an archived repository".into(),
        ..Default::default()
    }
}

/// A company of five: `admin` and `bob`, `carl` in the Admin group, `ada` who asks; one policy
/// requiring approval to delete repositories. Returns the data dir's parent and the data dir.
pub(crate) fn company() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let export = root.path().join("export");
    fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("admin", "admin@example.com", "The Admin", true),
            ("ada", "ada@example.com", "Ada Lovelace", true),
            ("bob", "bob@example.com", "Bob Approver", true),
            ("carl", "carl@example.com", "Carl Approver", true),
        ],
    );
    fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"admins","name":"Admins","roles":["admin"],"members":["admin","bob","carl"]}
"#,
    )
    .unwrap();
    fs::write(
        export.join("policies.jsonl"),
        r#"{"id":"pol-approve","name":"deleting needs approval","connector":"github","tools":["delete_repo"],"scope":{"all_users":true,"users":[],"groups":[]},"action":"REQUIRE_APPROVAL","enabled":true}
"#,
    )
    .unwrap();
    let data = root.path().join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    (root, data)
}

pub(crate) fn decided(r: &pb::CheckResponse) -> (pb::Decision, pb::Reason) {
    (r.decision(), r.reason())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_lets_exactly_the_approved_call_through_once() {
    let (_root, data) = company();
    let admin = admin_token(&data, "admin");
    let bob = person_token(&data, "bob");
    let carl = person_token(&data, "carl");
    let ada = person_token(&data, "ada");
    let server = Server::start(&data);
    let mut decisions = server.client().await;
    let mut gateway = approvals(&server, None).await;

    // The plain answer names the flow, the digest of the arguments, and no pending request.
    let first = decisions
        .check(check("acme/old", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decided(&first),
        (pb::Decision::RequireApproval, pb::Reason::Policy)
    );
    assert_eq!(first.approval_flow_id, "builtin-admins");
    assert_eq!(first.arguments_digest.len(), 64);
    assert!(first.pending_approval_id.is_empty());

    // Asking twice gives one request; the answer then points at it.
    let made = gateway
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner();
    assert!(made.created);
    let request = made.request.unwrap();
    assert_eq!(request.state(), pb::ApprovalState::Pending);
    assert_eq!(request.user_id, "ada");
    assert_eq!(request.arguments_digest, first.arguments_digest);
    assert_eq!(request.approvals_needed, 1);
    assert!(request.awaiting.contains(&"bob".to_owned()), "{request:?}");
    assert!(!request.awaiting.contains(&"ada".to_owned()));
    let again = gateway
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.request.unwrap().id, request.id);
    let pointed = decisions
        .check(check("acme/old", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pointed.pending_approval_id, request.id);

    // An allowed call cannot be "approved".
    let mut not_needed = create("acme/old");
    not_needed.tool = "read_file".into();
    let refused = gateway
        .create_approval_request(not_needed)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("DENY"), "{}", refused.message());

    // The requester cannot approve their own request; a locked approver cannot approve.
    let own = approve(&server, &ada, &request.id, "").await.unwrap_err();
    assert_eq!(own.code(), tonic::Code::PermissionDenied);
    assert!(own.message().contains("own request"), "{}", own.message());
    let mut admin_api = server.admin(&admin).await;
    admin_api
        .lock_user(pb::LockUserRequest {
            user: "carl".into(),
            reason: "on leave".into(),
        })
        .await
        .unwrap();
    let locked = approve(&server, &carl, &request.id, "").await.unwrap_err();
    assert_eq!(locked.code(), tonic::Code::PermissionDenied);

    // The inbox: bob sees the request awaiting him; ada (the requester) does not.
    let inbox = approvals(&server, Some(&bob))
        .await
        .list_approval_requests(pb::ListApprovalRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.requests.len(), 1);
    let none = approvals(&server, Some(&ada))
        .await
        .list_approval_requests(pb::ListApprovalRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.requests.is_empty());

    // A gateway waits; bob approves; the wait ends with the approval.
    let waiting = {
        let mut gateway = approvals(&server, None).await;
        let id = request.id.clone();
        tokio::spawn(async move {
            gateway
                .get_approval_request(pb::GetApprovalRequestRequest {
                    id,
                    wait: Some(prost_types::Duration {
                        seconds: 30,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
                .await
        })
    };
    // A head start for the wait to reach the server (nothing outside shows that it has); it must
    // still be waiting then, or it returned without waiting for a decision.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the wait ended before anything was decided"
    );
    let approved = approve(&server, &bob, &request.id, "archived for a year")
        .await
        .unwrap();
    assert_eq!(approved.state(), pb::ApprovalState::Approved);
    let waited = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the wait ends once approved")
        .unwrap()
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(waited.state(), pb::ApprovalState::Approved);
    assert_eq!(waited.approvals[0].user_id, "bob");

    // Other arguments are not approved; the approved ones are, once.
    let other = decisions
        .check(check("acme/api", &request.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decided(&other),
        (pb::Decision::RequireApproval, pb::Reason::Policy)
    );
    let allowed = decisions
        .check(check("acme/old", &request.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decided(&allowed),
        (pb::Decision::Allow, pb::Reason::Approved)
    );
    assert_eq!(allowed.policy_id, "pol-approve");
    let twice = decisions
        .check(check("acme/old", &request.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decided(&twice),
        (pb::Decision::RequireApproval, pb::Reason::Policy)
    );
    let used = get(&mut gateway, &request.id).await;
    assert_eq!(used.used_by_decision, allowed.decision_id);

    // Of concurrent Checks with one `once` grant, exactly one is allowed.
    let second = requested(&mut gateway, create("acme/tmp")).await;
    // A gateway watching it sees it pending, then approved, and the stream ends there.
    let mut watch = gateway
        .watch_approval_request(pb::WatchApprovalRequestRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first_seen = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first_seen.state(), pb::ApprovalState::Pending);
    approve(&server, &bob, &second.id, "").await.unwrap();
    let then = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(then.state(), pb::ApprovalState::Approved);
    let end = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "the stream ends once approved: {end:?}");
    let mut racers = Vec::new();
    for _ in 0..8 {
        let mut client = server.client().await;
        let id = second.id.clone();
        racers.push(tokio::spawn(async move {
            client
                .check(check("acme/tmp", &id))
                .await
                .unwrap()
                .into_inner()
                .decision()
        }));
    }
    let mut allowed = 0;
    for racer in racers {
        if racer.await.unwrap() == pb::Decision::Allow {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 1);

    // A lock after the approval still denies.
    let third = requested(&mut gateway, create("acme/scratch")).await;
    // Through the CLI: bob's inbox lists it, and he approves it there.
    let cli = |token: &str, rest: &[&str]| {
        let mut args = vec!["admin", "--server", &server.addr, "--token", token];
        args.extend_from_slice(rest);
        run_ok(&args)
    };
    let inbox = cli(&bob, &["approvals", "list"]);
    assert!(inbox.contains(&third.id), "{inbox}");
    assert!(inbox.contains("github/delete_repo"), "{inbox}");
    let shown = cli(
        &bob,
        &["approvals", "approve", &third.id, "--comment", "fine"],
    );
    assert!(shown.contains("approved"), "{shown}");
    let every = cli(
        &admin,
        &[
            "--json",
            "approvals",
            "list",
            "--all",
            "--state",
            "approved",
        ],
    );
    let every: serde_json::Value = serde_json::from_str(&every).unwrap();
    assert_eq!(every["requests"].as_array().unwrap().len(), 3, "{every}");
    admin_api
        .lock_user(pb::LockUserRequest {
            user: "ada".into(),
            reason: "suspicious activity".into(),
        })
        .await
        .unwrap();
    let denied = decisions
        .check(check("acme/scratch", &third.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decided(&denied),
        (pb::Decision::Deny, pb::Reason::UserLocked)
    );

    // Metrics: what the requests came to.
    let scrape = crate::metrics::scraped(&server).await;
    assert_eq!(
        scrape.get(
            "portcullis_approval_requests_total",
            &[("outcome", "created")]
        ),
        3.0
    );
    assert_eq!(
        scrape.get(
            "portcullis_approval_requests_total",
            &[("outcome", "approved")]
        ),
        3.0
    );
    assert_eq!(
        scrape.get("portcullis_approval_requests_total", &[("outcome", "used")]),
        2.0
    );
    assert_eq!(scrape.get("portcullis_approval_requests_pending", &[]), 0.0);
    assert_eq!(
        scrape.get("portcullis_approval_decide_duration_seconds_count", &[]),
        3.0
    );

    // Bad input: unknown ids, malformed keys, approving what is no longer pending.
    let missing = gateway
        .get_approval_request(pb::GetApprovalRequestRequest {
            id: "apr_nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut bad_key = create("acme/x");
    bad_key.idempotency_key = "not a key!".into();
    let bad = gateway.create_approval_request(bad_key).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("idempotency_key"));
    let late = approvals(&server, Some(&bob))
        .await
        .deny(pb::DenyRequest {
            id: request.id.clone(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    assert!(late.message().contains("not pending"), "{}", late.message());
}

/// Puts approval flows, the default flow, a policy and ada's manager straight into the stopped
/// store (the flows API is exercised in its own tests).
fn with_flows(data: &std::path::Path) {
    use pdp::{ApprovalFlow, ApprovalStep, Approver, GrantMode};
    let store = store::Store::open(data).unwrap();
    let two_steps = ApprovalFlow {
        id: "flow-two-steps".into(),
        name: "The manager, then two admins".into(),
        steps: vec![
            ApprovalStep {
                approvers: vec![Approver::Manager],
                min_approvals: 1,
                timeout_secs: Some(2),
            },
            ApprovalStep {
                approvers: vec![Approver::Group("admins".into())],
                min_approvals: 2,
                timeout_secs: None,
            },
        ],
        request_ttl_secs: 3600,
        grant: GrantMode::Once,
        ..ApprovalFlow::default()
    };
    let short = ApprovalFlow {
        id: "flow-short".into(),
        name: "Two seconds to decide".into(),
        steps: vec![ApprovalStep {
            approvers: vec![Approver::Admins],
            min_approvals: 1,
            timeout_secs: None,
        }],
        request_ttl_secs: 2,
        ..ApprovalFlow::default()
    };
    store
        .transact(|tx| {
            tx.put_flow(&two_steps)?;
            tx.put_flow(&short)?;
            tx.put_default_flow(Some("flow-two-steps"))?;
            let mut ada = tx.user("ada")?.unwrap();
            ada.manager = Some("bob@example.com".into());
            tx.put_user(&ada)?;
            tx.put_policy(&pdp::Policy {
                id: "pol-short".into(),
                name: "transfers are decided quickly".into(),
                connector: "github".into(),
                tools: pdp::Tools::Only(vec!["transfer_repo".into()]),
                scope: pdp::Scope {
                    all_users: true,
                    ..Default::default()
                },
                action: pdp::Action::RequireApproval,
                approval_flow_id: Some("flow-short".into()),
                ..Default::default()
            })?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_escalate_and_expire_across_a_restart() {
    let (_root, data) = company();
    with_flows(&data);
    let admin = admin_token(&data, "admin");
    let bob = person_token(&data, "bob");
    let carl = person_token(&data, "carl");
    let server = Server::start(&data);
    let mut gateway = approvals(&server, None).await;

    // Step 1 is the manager's: bob approves; then two admins are needed.
    let first = requested(&mut gateway, create("acme/one")).await;
    assert_eq!(first.flow.as_ref().unwrap().id, "flow-two-steps");
    assert_eq!(first.awaiting, vec!["bob".to_owned()]);
    let carl_early = approve(&server, &carl, &first.id, "").await.unwrap_err();
    assert_eq!(carl_early.code(), tonic::Code::PermissionDenied);
    let after_manager = approve(&server, &bob, &first.id, "my report")
        .await
        .unwrap();
    assert_eq!(after_manager.state(), pb::ApprovalState::Pending);
    assert_eq!(after_manager.step, 1);
    assert_eq!(after_manager.approvals_needed, 2);
    // Bob approved once: approvals count distinct people, so he cannot be one of the two.
    let bob_again = approve(&server, &bob, &first.id, "").await.unwrap_err();
    assert_eq!(bob_again.code(), tonic::Code::PermissionDenied);
    for token in [&admin, &carl] {
        approve(&server, token, &first.id, "").await.unwrap();
    }
    assert_eq!(
        get(&mut gateway, &first.id).await.state(),
        pb::ApprovalState::Approved
    );

    // Nobody answers the manager's step: after its timeout the request escalates.
    let second = requested(&mut gateway, create("acme/two")).await;
    let escalated = gateway
        .get_approval_request(pb::GetApprovalRequestRequest {
            id: second.id.clone(),
            wait: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(escalated.step, 1, "{escalated:?}");
    assert_eq!(escalated.state(), pb::ApprovalState::Pending);

    // Killed with a request at the manager's step and one about to expire; their deadlines
    // pass while the server is down and are applied when it starts.
    let third = requested(&mut gateway, create("acme/three")).await;
    let mut transfer = create("acme/four");
    transfer.tool = "transfer_repo".into();
    let fourth = requested(&mut gateway, transfer).await;
    assert_eq!(fourth.flow.as_ref().unwrap().id, "flow-short");
    // Down until both deadlines are past (the later of them), not a guessed while.
    let ms = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
    };
    let escalates_at = ms(&third.step_deadline).expect("the manager's step has a deadline");
    let expires_at = [ms(&fourth.expires_at), ms(&fourth.step_deadline)]
        .into_iter()
        .flatten()
        .min()
        .expect("the short flow's request expires");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let down_ms = escalates_at.max(expires_at) - now_ms + 50;
    assert!(down_ms < 30_000, "deadlines {down_ms} ms away");
    drop(gateway);
    drop(server);
    std::thread::sleep(Duration::from_millis(u64::try_from(down_ms).unwrap_or(0)));
    let server = Server::start(&data);
    let mut gateway = approvals(&server, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (third, fourth) = (
            get(&mut gateway, &third.id).await,
            get(&mut gateway, &fourth.id).await,
        );
        if third.step == 1 && fourth.state() == pb::ApprovalState::Expired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deadlines passed while down are not applied: {third:?} {fourth:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What was decided before the restart stands.
    let first = get(&mut gateway, &first.id).await;
    assert_eq!(first.state(), pb::ApprovalState::Approved);
    assert_eq!(first.approvals.len(), 3);
    let expired = approve(&server, &carl, &fourth.id, "").await.unwrap_err();
    assert_eq!(expired.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_need_the_decision_token_when_decisions_do() {
    let (root, data) = company();
    let secret_file = root.path().join("decision-token");
    fs::write(&secret_file, "s3cret-decisions\n").unwrap();
    let ada = person_token(&data, "ada");
    let server = Server::start_with(&data, &["--decision-token-file", path(&secret_file)]);

    let missing = approvals(&server, None)
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let wrong = approvals(&server, Some("not-the-token"))
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let made = approvals(&server, Some("s3cret-decisions"))
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner();
    assert!(made.created);
    // A person's own token works for the gateway's calls too, but approving needs a person:
    // the decision token names nobody.
    let id = made.request.unwrap().id;
    let seen = approvals(&server, Some(&ada))
        .await
        .get_approval_request(pb::GetApprovalRequestRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen.into_inner().request.unwrap().id, id);
    let nobody = approve(&server, "s3cret-decisions", &id, "")
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), tonic::Code::Unauthenticated);
}
