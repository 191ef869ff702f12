//! Approvals against a real server: Check with an approval id against without, creating and
//! approving requests, and an approver's inbox with 10,000 pending requests.
//!
//! ```sh
//! cargo bench --bench approvals
//! ```
//!
//! A sled store in a temp dir holds a small company (an Admins group whose members approve,
//! requesters) and two Require approval policies: one on the built-in flow (`once` grants) and
//! one on a `window` flow. DecisionService and ApprovalService run in this process on a loopback
//! port, called over gRPC with a real client. Each figure is a distribution over many calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use admin::approvals::{ApprovalService, Approvals};
use live::Live;
use pb::approval_service_client::ApprovalServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pdp::{
    Action, ApprovalFlow, ApprovalRequest, ApprovalStep, Approver, GrantMode, Group, ManagedBy,
    Membership, MembershipSource, Model, Policy, RequestState, Role, Scope, Timestamp, Tools, User,
};
use pdp_service::DecisionService;
use portcullis_proto::v1 as pb;
use std::time::Instant;
use support::summary;
use tonic::transport::Channel;

mod support;

/// Pending requests in the inbox measurement.
const INBOX: usize = 10_000;
const CALLS: usize = 2_000;

fn user(id: &str) -> User {
    User {
        id: id.into(),
        user_name: format!("{id}@example.com"),
        emails: vec![format!("{id}@example.com")],
        display_name: id.into(),
        ..User::default()
    }
}

fn policy(id: &str, tool: &str, flow: Option<&str>) -> Policy {
    Policy {
        id: id.into(),
        name: id.into(),
        connector: "github".into(),
        tools: Tools::Only(vec![tool.into()]),
        scope: Scope {
            all_users: true,
            ..Scope::default()
        },
        action: Action::RequireApproval,
        approval_flow_id: flow.map(str::to_owned),
        ..Policy::default()
    }
}

fn arguments(repo: &str) -> prost_types::Struct {
    prost_types::Struct {
        fields: [
            (
                "repo".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(repo.into())),
                },
            ),
            (
                "force".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::BoolValue(true)),
                },
            ),
        ]
        .into_iter()
        .collect(),
    }
}

fn check(tool: &str, repo: &str, approval: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: "ada".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        arguments: Some(arguments(repo)),
        approval_id: approval.into(),
        ..Default::default()
    }
}

fn create(tool: &str, repo: &str) -> pb::CreateApprovalRequestRequest {
    pb::CreateApprovalRequestRequest {
        user: "ada".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        arguments: Some(arguments(repo)),
        justification: "benchmark".into(),
        ..Default::default()
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    let model = Model {
        users: vec![user("admin"), user("bob"), user("ada"), user("eve")],
        groups: vec![Group {
            id: "admins".into(),
            display_name: "Admins".into(),
            roles: vec![Role::Admin],
            managed_by: ManagedBy::Local,
            ..Group::default()
        }],
        memberships: ["admin", "bob"]
            .into_iter()
            .map(|u| Membership {
                group_id: "admins".into(),
                user_id: u.into(),
                joined_at: Timestamp(0),
                source: MembershipSource::Local,
            })
            .collect(),
        policies: vec![
            policy("pol-once", "delete_repo", None),
            policy("pol-window", "merge", Some("flow-window")),
        ],
        ..Model::default()
    };
    store.import(&model).unwrap();
    let window = ApprovalFlow {
        id: "flow-window".into(),
        name: "an hour of merges".into(),
        steps: vec![ApprovalStep {
            approvers: vec![Approver::Admins],
            min_approvals: 1,
            timeout_secs: None,
        }],
        grant: GrantMode::Window { seconds: 3600 },
        ..ApprovalFlow::default()
    };
    // The inbox: requests by eve, pending, written in one change.
    let now = Timestamp::now();
    store
        .transact(|tx| {
            tx.put_flow(&window)?;
            for i in 0..INBOX {
                tx.put_approval(&ApprovalRequest {
                    id: format!("apr_{:012x}{i:08x}", now.0),
                    user_id: "eve".into(),
                    agent: "claude".into(),
                    connector: "github".into(),
                    tool: "delete_repo".into(),
                    arguments_digest: format!("{i:064x}"),
                    policy_id: "pol-once".into(),
                    flow: ApprovalFlow::builtin(),
                    state: RequestState::Pending,
                    step_started_at: now,
                    created_at: now,
                    updated_at: now,
                    expires_at: Timestamp(now.0 + 3_600_000),
                    ..ApprovalRequest::default()
                })?;
            }
            Ok::<_, store::Error>(())
        })
        .unwrap();
    let secret = admin::token::create_on_store(&store, "bob", "bench", Some(Role::Admin), None)
        .unwrap()
        .secret;
    let live = Live::start(store).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let started = Instant::now();
        let approvals = Approvals::start(live.clone(), None).unwrap();
        println!(
            "{INBOX} pending requests loaded in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(
                DecisionService::new(live.engine().clone())
                    .with_approvals(std::sync::Arc::new(approvals.clone()))
                    .into_server(),
            )
            .add_service(ApprovalService::new(approvals, None).into_server());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(server.serve_with_incoming(incoming));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
        let mut approver = ApprovalServiceClient::with_interceptor(
            channel.clone(),
            move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", auth.clone());
                Ok(r)
            },
        );
        let mut gateway = ApprovalServiceClient::new(channel.clone());
        let mut decisions = DecisionServiceClient::new(channel);

        println!("Check (arguments: 2 fields):");
        let window = gateway
            .create_approval_request(create("merge", "acme/api"))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        approver
            .approve(pb::ApproveRequest {
                id: window.id.clone(),
                comment: String::new(),
            })
            .await
            .unwrap();
        // Interleaved, so both see the same machine.
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..CALLS {
            let t = Instant::now();
            let answer = decisions
                .check(check("merge", "acme/api", ""))
                .await
                .unwrap()
                .into_inner();
            without.push(t.elapsed());
            assert_eq!(answer.decision(), pb::Decision::RequireApproval);
            let t = Instant::now();
            let answer = decisions
                .check(check("merge", "acme/api", &window.id))
                .await
                .unwrap()
                .into_inner();
            with.push(t.elapsed());
            assert_eq!(answer.reason(), pb::Reason::Approved);
        }
        summary("without approval_id (REQUIRE_APPROVAL)", without);
        summary("with a window grant (ALLOW, APPROVED)", with);

        println!("Create, approve, and use a once grant (each durable):");
        let (mut created, mut approved, mut used) = (Vec::new(), Vec::new(), Vec::new());
        let rounds = 300;
        let all = Instant::now();
        for i in 0..rounds {
            let repo = format!("acme/repo-{i}");
            let t = Instant::now();
            let request = gateway
                .create_approval_request(create("delete_repo", &repo))
                .await
                .unwrap()
                .into_inner()
                .request
                .unwrap();
            created.push(t.elapsed());
            let t = Instant::now();
            approver
                .approve(pb::ApproveRequest {
                    id: request.id.clone(),
                    comment: String::new(),
                })
                .await
                .unwrap();
            approved.push(t.elapsed());
            let t = Instant::now();
            let answer = decisions
                .check(check("delete_repo", &repo, &request.id))
                .await
                .unwrap()
                .into_inner();
            used.push(t.elapsed());
            assert_eq!(answer.reason(), pb::Reason::Approved);
        }
        let per_second = rounds as f64 / all.elapsed().as_secs_f64();
        summary("CreateApprovalRequest", created);
        summary("Approve", approved);
        summary("Check using a once grant", used);
        println!("  {per_second:.0} create+approve+use rounds per second, one at a time");

        println!("The inbox with {INBOX} pending requests:");
        let mut inbox = Vec::new();
        let mut all_pending = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let page = approver
                .list_approval_requests(pb::ListApprovalRequestsRequest {
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            inbox.push(t.elapsed());
            assert_eq!(page.requests.len(), 50);
            let t = Instant::now();
            approver
                .list_approval_requests(pb::ListApprovalRequestsRequest {
                    all: true,
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .unwrap();
            all_pending.push(t.elapsed());
        }
        summary("inbox, first page of 50", inbox);
        summary(
            "every pending request (admin), first page of 50",
            all_pending,
        );
    });
}
