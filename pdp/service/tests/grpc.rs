//! DecisionService over a real gRPC connection on an ephemeral loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pb::decision_service_client::DecisionServiceClient;
use pdp::{Action, Model, Policy, Scope, Snapshot, Tools, User};
use pdp_service::{DecisionService, Engine, Freshness};
use portcullis_proto::v1 as pb;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::transport::Channel;

fn model(revision: u64) -> Model {
    let user = |id: &str, email: &str| User {
        id: id.into(),
        user_name: email.into(),
        emails: vec![email.into()],
        ..User::default()
    };
    let policy = |id: &str, tools: Tools, action| Policy {
        id: id.into(),
        name: format!("policy {id}"),
        connector: "github".into(),
        tools,
        scope: Scope {
            all_users: true,
            ..Scope::default()
        },
        action,
        ..Policy::default()
    };
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision,
        users: vec![
            user("u1", "ada@example.com"),
            User {
                active: false,
                ..user("u2", "bob@example.com")
            },
        ],
        groups: vec![],
        memberships: vec![],
        policies: vec![
            policy(
                "p1",
                Tools::Only(vec!["create_issue".into(), "merge".into()]),
                Action::Allow,
            ),
            policy(
                "p2",
                Tools::Only(vec!["merge".into()]),
                Action::RequireApproval,
            ),
        ],
    }
}

struct Server {
    engine: Engine,
    freshness: Freshness,
    client: DecisionServiceClient<Channel>,
    _shutdown: oneshot::Sender<()>,
}

async fn start(model: &Model) -> Server {
    let engine = Engine::new(Snapshot::build(model));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let freshness = Freshness::new(false);
    let service = DecisionService::new(engine.clone())
        .with_freshness(freshness.clone())
        .into_server();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stop.await;
                },
            )
            .await
            .unwrap();
    });
    let client = DecisionServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        engine,
        freshness,
        client,
        _shutdown: shutdown,
    }
}

fn check(user: &str, tool: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn check_answers_with_the_rule_and_the_revision() {
    let mut server = start(&model(3)).await;
    let answer = server
        .client
        .check(check("ADA@example.com", "merge"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision(), pb::Decision::RequireApproval);
    assert_eq!(answer.reason(), pb::Reason::Policy);
    assert_eq!(answer.policy_id, "p2");
    assert_eq!(answer.revision, 3);
    assert_eq!(answer.decision_id.len(), 32);
    assert!(answer.explanation.is_empty());

    let other = server
        .client
        .check(check("u1", "create_issue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (other.decision(), other.policy_id.as_str()),
        (pb::Decision::Allow, "p1")
    );
    assert_ne!(other.decision_id, answer.decision_id);

    let inactive = server
        .client
        .check(check("u2", "merge"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (inactive.decision(), inactive.reason()),
        (pb::Decision::Deny, pb::Reason::UserInactive)
    );
    assert_eq!(inactive.policy_id, "");
    let unknown = server
        .client
        .check(check("ghost", "merge"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (unknown.decision(), unknown.reason()),
        (pb::Decision::Deny, pb::Reason::UnknownUser)
    );
    let unmatched = server
        .client
        .check(check("u1", "delete_repo"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unmatched.reason(), pb::Reason::NoMatchingPolicy);
}

#[tokio::test]
async fn explain_lists_the_connector_policies() {
    let mut server = start(&model(1)).await;
    let request = pb::CheckRequest {
        explain: true,
        ..check("u1", "create_issue")
    };
    let answer = server.client.check(request).await.unwrap().into_inner();
    let got: Vec<_> = answer
        .explanation
        .iter()
        .map(|m| (m.policy_id.as_str(), m.outcome(), m.matched, m.deciding))
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1", pb::MatchOutcome::Matched, true, true),
            ("p2", pb::MatchOutcome::ToolNotCovered, false, false)
        ]
    );
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments_naming_the_field() {
    let mut server = start(&model(1)).await;
    for (request, field) in [
        (check("", "merge"), "user"),
        (
            pb::CheckRequest {
                connector: String::new(),
                ..check("u1", "merge")
            },
            "connector",
        ),
        (check("u1", ""), "tool"),
        (check(&"u".repeat(2000), "merge"), "user"),
        (
            pb::CheckRequest {
                attributes: (0..65).map(|i| (format!("k{i}"), "v".into())).collect(),
                ..check("u1", "merge")
            },
            "attributes",
        ),
        (
            pb::CheckRequest {
                attributes: [("repo".to_owned(), "x".repeat(2000))].into(),
                ..check("u1", "merge")
            },
            "attributes[repo]",
        ),
        (
            pb::CheckRequest {
                arguments: Some(prost_types::Struct {
                    fields: [(
                        "body".to_owned(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("x".repeat(70_000))),
                        },
                    )]
                    .into(),
                }),
                ..check("u1", "merge")
            },
            "arguments",
        ),
    ] {
        let status = server.client.check(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{}",
            status.message()
        );
    }

    let batch = pb::BatchCheckRequest {
        checks: vec![check("u1", "merge"); 1001],
    };
    let status = server.client.batch_check(batch).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("checks: 1001 checks"),
        "{}",
        status.message()
    );

    let batch = pb::BatchCheckRequest {
        checks: vec![check("u1", "merge"), check("u1", "")],
    };
    let status = server.client.batch_check(batch).await.unwrap_err();
    assert!(
        status.message().starts_with("checks[1].tool: "),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn batch_check_answers_in_order_up_to_the_limit() {
    let mut server = start(&model(5)).await;
    let tools = ["merge", "create_issue", "nope"];
    let checks: Vec<_> = (0..1000).map(|i| check("u1", tools[i % 3])).collect();
    let results = server
        .client
        .batch_check(pb::BatchCheckRequest { checks })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        let expected = ["p2", "p1", ""][i % 3];
        assert_eq!(result.policy_id, expected, "result {i}");
        assert_eq!(result.revision, 5);
    }
    let empty = server
        .client
        .batch_check(pb::BatchCheckRequest { checks: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.results.is_empty());
}

#[tokio::test]
async fn min_revision_waits_for_a_publish_or_fails_the_precondition() {
    let mut server = start(&model(1)).await;
    let future = pb::CheckRequest {
        min_revision: 2,
        ..check("u1", "merge")
    };

    let started = Instant::now();
    let status = server.client.check(future.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().starts_with("min_revision: "),
        "{}",
        status.message()
    );
    assert!(started.elapsed() >= Duration::from_millis(100));

    // A publish during the wait releases it.
    let engine = server.engine.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut newer = model(2);
        newer.policies.retain(|p| p.id == "p1");
        engine.publish(Snapshot::build(&newer));
    });
    let answer = server.client.check(future).await.unwrap().into_inner();
    publisher.await.unwrap();
    assert_eq!((answer.revision, answer.policy_id.as_str()), (2, "p1"));

    // An older snapshot never replaces a newer one.
    server.engine.publish(Snapshot::build(&model(1)));
    assert_eq!(server.engine.revision(), 2);
}

#[tokio::test]
async fn list_allowed_tools_shows_what_is_not_denied() {
    let mut server = start(&model(4)).await;
    let request = pb::ListAllowedToolsRequest {
        user: "u1".into(),
        agent: "claude".into(),
        ..Default::default()
    };
    let answer = server
        .client
        .list_allowed_tools(request)
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = answer
        .tools
        .iter()
        .map(|t| (t.connector.as_str(), t.tool.as_str(), t.decision()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("github", "create_issue", pb::Decision::Allow),
            ("github", "merge", pb::Decision::RequireApproval)
        ]
    );
    assert_eq!(answer.revision, 4);
    let status = server
        .client
        .list_allowed_tools(pb::ListAllowedToolsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_stale_snapshot_fails_closed_until_fresh_again() {
    let mut server = start(&model(5)).await;
    server.freshness.set_stale(true);
    let answer = server
        .client
        .check(pb::CheckRequest {
            // Not reached yet: a stale server answers at once instead of waiting for it.
            min_revision: 99,
            explain: true,
            ..check("u1", "create_issue")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.decision(), answer.reason(), answer.revision),
        (pb::Decision::Deny, pb::Reason::StaleSnapshot, 5)
    );
    assert!(answer.policy_id.is_empty() && answer.explanation.is_empty());
    assert_eq!(answer.decision_id.len(), 32);
    // Malformed requests are still errors, not stale denies.
    let status = server.client.check(check("", "merge")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let batch = server
        .client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![
                check("u1", "create_issue"),
                check("ada@example.com", "merge"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        batch
            .results
            .iter()
            .all(|r| r.decision() == pb::Decision::Deny && r.reason() == pb::Reason::StaleSnapshot)
    );
    let tools = server
        .client
        .list_allowed_tools(pb::ListAllowedToolsRequest {
            user: "u1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(tools.tools.is_empty());

    server.freshness.set_stale(false);
    let answer = server
        .client
        .check(check("u1", "create_issue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.decision(), answer.reason()),
        (pb::Decision::Allow, pb::Reason::Policy)
    );
}
