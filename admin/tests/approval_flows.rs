//! Approval flows over a real server: CRUD, the default flow, who may write, bad input that
//! changes nothing, and deletes refused while the flow is used.

use crate::support::{Flows, Harness, assert_status};
use portcullis_proto::v1 as pb;
use tonic::Code;

fn user(reference: &str) -> pb::Approver {
    pb::Approver {
        approver: Some(pb::approver::Approver::UserId(reference.into())),
    }
}

fn group(id: &str) -> pb::Approver {
    pb::Approver {
        approver: Some(pb::approver::Approver::GroupId(id.into())),
    }
}

fn manager() -> pb::Approver {
    pb::Approver {
        approver: Some(pb::approver::Approver::Manager(true)),
    }
}

fn secs(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// The example: the manager, then 2 of Engineering.
fn two_steps() -> pb::ApprovalFlow {
    pb::ApprovalFlow {
        name: "Deploys".into(),
        description: "Manager, then two engineers".into(),
        steps: vec![
            pb::ApprovalStep {
                approvers: vec![manager()],
                min_approvals: 1,
                timeout: secs(1800),
            },
            pb::ApprovalStep {
                approvers: vec![group("g-eng")],
                min_approvals: 2,
                timeout: None,
            },
        ],
        ..Default::default()
    }
}

async fn create(flows: &mut Flows, flow: pb::ApprovalFlow) -> pb::ApprovalFlow {
    flows
        .create_approval_flow(pb::CreateApprovalFlowRequest { flow: Some(flow) })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap()
}

async fn list(flows: &mut Flows) -> pb::ListApprovalFlowsResponse {
    flows
        .list_approval_flows(pb::ListApprovalFlowsRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn require_approval(flow_id: &str) -> pb::Policy {
    pb::Policy {
        name: "Approve deploys".into(),
        connector: "deploy".into(),
        all_tools: true,
        scope: Some(pb::PolicyScope {
            all_users: true,
            ..Default::default()
        }),
        action: pb::PolicyAction::RequireApproval as i32,
        approval_flow_id: flow_id.into(),
        enabled: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn create_list_get_update_delete_and_audit() {
    let h = Harness::start().await;
    let mut flows = h.flows(&h.admin_secret).await;

    // Only the built-in flow at first, and it is the default.
    let before = list(&mut flows).await;
    assert_eq!(before.flows.len(), 1);
    assert_eq!(before.flows[0].id, "builtin-admins");
    assert_eq!(before.default_flow_id, "");

    let created = create(
        &mut flows,
        pb::ApprovalFlow {
            steps: vec![
                pb::ApprovalStep {
                    // Any reference to a user is stored as the user's id.
                    approvers: vec![user("carol@example.com"), user("u-dave"), manager()],
                    min_approvals: 3,
                    timeout: secs(600),
                },
                two_steps().steps[1].clone(),
            ],
            grant_mode: pb::GrantMode::Window as i32,
            window: secs(3600),
            any_arguments: true,
            id: "ignored".into(),
            ..two_steps()
        },
    )
    .await;
    assert!(created.id.starts_with("flw_"), "{}", created.id);
    assert_eq!(created.steps[0].approvers[0], user("u-carol"));
    assert_eq!(created.request_ttl, secs(24 * 3600), "the default TTL");
    assert_eq!(created.window, secs(3600));

    let listed = list(&mut flows).await;
    let ids: Vec<&str> = listed.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["builtin-admins", created.id.as_str()]);
    let got = flows
        .get_approval_flow(pb::GetApprovalFlowRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap();
    assert_eq!(got, created);
    let builtin = flows
        .get_approval_flow(pb::GetApprovalFlowRequest {
            id: "builtin-admins".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap();
    assert_eq!(builtin.steps[0].min_approvals, 1);

    let updated = flows
        .update_approval_flow(pb::UpdateApprovalFlowRequest {
            flow: Some(pb::ApprovalFlow {
                id: created.id.clone(),
                name: "Deploys, renamed".into(),
                request_ttl: secs(7200),
                ..two_steps()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.name, "Deploys, renamed");
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(updated.grant_mode, pb::GrantMode::Once as i32);
    assert_eq!(updated.window, None);
    assert_eq!(updated.request_ttl, secs(7200));
    assert_eq!(
        h.live.store().get_flow(&created.id).unwrap().unwrap().name,
        "Deploys, renamed"
    );

    // The default flow: set, read, refused to delete, cleared.
    flows
        .set_default_approval_flow(pb::SetDefaultApprovalFlowRequest {
            flow_id: created.id.clone(),
        })
        .await
        .unwrap();
    let default = flows
        .get_default_approval_flow(pb::GetDefaultApprovalFlowRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.flow_id, created.id);
    assert_eq!(list(&mut flows).await.default_flow_id, created.id);
    assert_status(
        flows
            .delete_approval_flow(pb::DeleteApprovalFlowRequest {
                id: created.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "default",
    );
    flows
        .set_default_approval_flow(pb::SetDefaultApprovalFlowRequest {
            flow_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(h.live.store().default_flow().unwrap(), None);

    flows
        .delete_approval_flow(pb::DeleteApprovalFlowRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(h.live.store().get_flow(&created.id).unwrap(), None);
    assert_status(
        flows
            .get_approval_flow(pb::GetApprovalFlowRequest {
                id: created.id.clone(),
            })
            .await,
        Code::NotFound,
        &created.id,
    );

    for action in [
        "approval_flow.created",
        "approval_flow.updated",
        "approval_flow.deleted",
    ] {
        let events = h.audit(action).await;
        assert_eq!(events.len(), 1, "{action}");
        assert_eq!(events[0].target_id, created.id);
        assert_eq!(events[0].actor, "u-alice");
    }
    assert_eq!(h.audit("approval_flow.default").await.len(), 2);
}

#[tokio::test]
async fn read_only_may_read_but_not_write() {
    let h = Harness::start().await;
    let mut admin = h.flows(&h.admin_secret).await;
    let flow = create(&mut admin, two_steps()).await;
    let revision = h.live.store().revision();

    let mut reader = h.flows(&h.reader_secret).await;
    assert_eq!(list(&mut reader).await.flows.len(), 2);
    reader
        .get_approval_flow(pb::GetApprovalFlowRequest {
            id: flow.id.clone(),
        })
        .await
        .unwrap();
    reader
        .get_default_approval_flow(pb::GetDefaultApprovalFlowRequest {})
        .await
        .unwrap();
    assert_status(
        reader
            .create_approval_flow(pb::CreateApprovalFlowRequest {
                flow: Some(two_steps()),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        reader
            .update_approval_flow(pb::UpdateApprovalFlowRequest {
                flow: Some(pb::ApprovalFlow {
                    id: flow.id.clone(),
                    ..two_steps()
                }),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        reader
            .delete_approval_flow(pb::DeleteApprovalFlowRequest {
                id: flow.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        reader
            .set_default_approval_flow(pb::SetDefaultApprovalFlowRequest {
                flow_id: flow.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    let mut nobody = h.flows("not-a-token").await;
    assert_status(
        nobody
            .list_approval_flows(pb::ListApprovalFlowsRequest {})
            .await,
        Code::Unauthenticated,
        "",
    );
    // A refused Read Only write is audited (auth.denied), nothing else is written.
    assert_eq!(h.live.store().flows().unwrap().len(), 1);
    assert_eq!(h.live.store().default_flow().unwrap(), None);
    assert!(h.live.store().revision() >= revision);
}

#[tokio::test]
async fn bad_flows_are_refused_naming_the_field_and_write_nothing() {
    let h = Harness::start().await;
    let mut flows = h.flows(&h.admin_secret).await;
    let revision = h.live.store().revision();
    let step = |approvers: Vec<pb::Approver>, min: u32| pb::ApprovalStep {
        approvers,
        min_approvals: min,
        timeout: None,
    };
    let with_steps = |steps: Vec<pb::ApprovalStep>| pb::ApprovalFlow {
        steps,
        ..two_steps()
    };
    let cases: Vec<(pb::ApprovalFlow, Code, &str)> = vec![
        (
            pb::ApprovalFlow {
                name: " ".into(),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.name",
        ),
        (
            pb::ApprovalFlow {
                name: "n".repeat(257),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.name",
        ),
        (
            pb::ApprovalFlow {
                description: "d".repeat(1025),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.description",
        ),
        (with_steps(vec![]), Code::InvalidArgument, "flow.steps"),
        (
            with_steps(vec![step(vec![manager()], 1); 11]),
            Code::InvalidArgument,
            "flow.steps",
        ),
        // A step without approvers.
        (
            with_steps(vec![step(vec![manager()], 1), step(vec![], 1)]),
            Code::InvalidArgument,
            "flow.steps[1].approvers",
        ),
        (
            with_steps(vec![step(
                (0..101).map(|i| user(&format!("u-{i}"))).collect(),
                1,
            )]),
            Code::InvalidArgument,
            "flow.steps[0].approvers",
        ),
        (
            with_steps(vec![step(vec![pb::Approver { approver: None }], 1)]),
            Code::InvalidArgument,
            "flow.steps[0].approvers[0]",
        ),
        (
            with_steps(vec![
                step(vec![manager()], 1),
                step(vec![manager(), user("nobody@example.com")], 1),
            ]),
            Code::NotFound,
            "flow.steps[1].approvers[1].user_id",
        ),
        (
            with_steps(vec![step(vec![group("g-gone")], 1)]),
            Code::NotFound,
            "flow.steps[0].approvers[0].group_id",
        ),
        (
            with_steps(vec![step(
                vec![user("u-carol"), user("carol@example.com")],
                1,
            )]),
            Code::InvalidArgument,
            "flow.steps[0].approvers[1]",
        ),
        (
            with_steps(vec![step(vec![manager()], 0)]),
            Code::InvalidArgument,
            "flow.steps[0].min_approvals",
        ),
        // min_approvals larger than possible: two listed users, or Engineering (2) and the
        // manager (1), or the Admin-role groups (alice alone).
        (
            with_steps(vec![step(vec![user("u-carol"), user("u-dave")], 3)]),
            Code::InvalidArgument,
            "flow.steps[0].min_approvals",
        ),
        (
            with_steps(vec![step(vec![group("g-eng"), manager()], 4)]),
            Code::InvalidArgument,
            "flow.steps[0].min_approvals",
        ),
        (
            with_steps(vec![step(
                vec![pb::Approver {
                    approver: Some(pb::approver::Approver::Admins(true)),
                }],
                2,
            )]),
            Code::InvalidArgument,
            "flow.steps[0].min_approvals",
        ),
        (
            with_steps(vec![pb::ApprovalStep {
                timeout: secs(0),
                ..step(vec![manager()], 1)
            }]),
            Code::InvalidArgument,
            "flow.steps[0].timeout",
        ),
        (
            with_steps(vec![pb::ApprovalStep {
                timeout: secs(31 * 86_400),
                ..step(vec![manager()], 1)
            }]),
            Code::InvalidArgument,
            "flow.steps[0].timeout",
        ),
        (
            pb::ApprovalFlow {
                request_ttl: secs(-5),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.request_ttl",
        ),
        (
            pb::ApprovalFlow {
                request_ttl: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 5,
                }),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.request_ttl",
        ),
        (
            pb::ApprovalFlow {
                grant_mode: pb::GrantMode::Window as i32,
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.window",
        ),
        (
            pb::ApprovalFlow {
                window: secs(60),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.window",
        ),
        (
            pb::ApprovalFlow {
                grant_mode: pb::GrantMode::Window as i32,
                window: secs(31 * 86_400),
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.window",
        ),
        (
            pb::ApprovalFlow {
                grant_mode: 9,
                ..two_steps()
            },
            Code::InvalidArgument,
            "flow.grant_mode",
        ),
    ];
    for (flow, code, needle) in cases {
        let result = flows
            .create_approval_flow(pb::CreateApprovalFlowRequest {
                flow: Some(flow.clone()),
            })
            .await;
        assert_status(result, code, needle);
    }
    assert_status(
        flows
            .create_approval_flow(pb::CreateApprovalFlowRequest { flow: None })
            .await,
        Code::InvalidArgument,
        "flow",
    );
    assert_eq!(h.live.store().flows().unwrap(), []);
    assert_eq!(h.live.store().revision(), revision, "nothing written");

    // The built-in flow cannot be written; an unknown default is not found.
    assert_status(
        flows
            .update_approval_flow(pb::UpdateApprovalFlowRequest {
                flow: Some(pb::ApprovalFlow {
                    id: "builtin-admins".into(),
                    ..two_steps()
                }),
            })
            .await,
        Code::FailedPrecondition,
        "built-in",
    );
    assert_status(
        flows
            .delete_approval_flow(pb::DeleteApprovalFlowRequest {
                id: "builtin-admins".into(),
            })
            .await,
        Code::FailedPrecondition,
        "built-in",
    );
    assert_status(
        flows
            .update_approval_flow(pb::UpdateApprovalFlowRequest {
                flow: Some(pb::ApprovalFlow {
                    id: "flw_missing".into(),
                    ..two_steps()
                }),
            })
            .await,
        Code::NotFound,
        "flw_missing",
    );
    assert_status(
        flows
            .set_default_approval_flow(pb::SetDefaultApprovalFlowRequest {
                flow_id: "flw_missing".into(),
            })
            .await,
        Code::NotFound,
        "flw_missing",
    );
    assert_eq!(h.live.store().default_flow().unwrap(), None);
    assert_eq!(h.live.store().revision(), revision, "nothing written");
}

#[tokio::test]
async fn policies_name_flows_that_exist_and_deletes_wait_for_them() {
    let h = Harness::start().await;
    let mut flows = h.flows(&h.admin_secret).await;
    let mut admin = h.admin().await;
    let flow = create(&mut flows, two_steps()).await;
    let revision = h.live.store().revision();

    // An unknown flow on a policy: not found, nothing written.
    assert_status(
        admin
            .create_policy(pb::CreatePolicyRequest {
                policy: Some(require_approval("flw_missing")),
            })
            .await,
        Code::NotFound,
        "policy.approval_flow_id",
    );
    // A flow on a policy that does not require approval.
    assert_status(
        admin
            .create_policy(pb::CreatePolicyRequest {
                policy: Some(pb::Policy {
                    action: pb::PolicyAction::Deny as i32,
                    ..require_approval(&flow.id)
                }),
            })
            .await,
        Code::InvalidArgument,
        "policy.approval_flow_id",
    );
    assert_eq!(h.live.store().revision(), revision, "nothing written");

    let policy = admin
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(require_approval(&flow.id)),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(policy.approval_flow_id, flow.id);
    let second = admin
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(pb::Policy {
                name: "Approve pushes".into(),
                ..require_approval(&flow.id)
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    // Updating a policy onto an unknown flow is refused too.
    assert_status(
        admin
            .update_policy(pb::UpdatePolicyRequest {
                policy: Some(pb::Policy {
                    id: second.id.clone(),
                    approval_flow_id: "flw_missing".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["approval_flow_id".into()],
                }),
            })
            .await,
        Code::NotFound,
        "policy.approval_flow_id",
    );

    let refused = flows
        .delete_approval_flow(pb::DeleteApprovalFlowRequest {
            id: flow.id.clone(),
        })
        .await;
    let message = refused.as_ref().unwrap_err().message().to_owned();
    assert_status(refused, Code::FailedPrecondition, &policy.id);
    assert!(message.contains(&second.id), "{message}");
    assert!(h.live.store().get_flow(&flow.id).unwrap().is_some());

    for id in [&policy.id, &second.id] {
        admin
            .delete_policy(pb::DeletePolicyRequest { id: id.clone() })
            .await
            .unwrap();
    }
    flows
        .delete_approval_flow(pb::DeleteApprovalFlowRequest {
            id: flow.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(h.live.store().flows().unwrap(), []);
}

#[tokio::test]
async fn get_user_shows_the_manager() {
    let mut model = crate::support::company();
    let carol = model.users.iter_mut().find(|u| u.id == "u-carol").unwrap();
    carol.manager = Some("u-alice".into());
    let h = Harness::start_with(model).await;
    let mut admin = h.admin().await;
    let user = |id: &str| pb::GetUserRequest {
        user: id.into(),
        ..Default::default()
    };
    let carol = admin.get_user(user("u-carol")).await.unwrap().into_inner();
    assert_eq!(carol.user.unwrap().manager_id, "u-alice");
    let dave = admin.get_user(user("u-dave")).await.unwrap().into_inner();
    assert_eq!(dave.user.unwrap().manager_id, "");
}

#[tokio::test]
async fn the_store_holds_at_most_a_thousand_flows() {
    let h = Harness::start().await;
    let mut flows = h.flows(&h.admin_secret).await;
    let one = create(&mut flows, two_steps()).await;
    let stored = h.live.store().get_flow(&one.id).unwrap().unwrap();
    h.live
        .store()
        .transact(|tx| {
            for i in 1..1000 {
                tx.put_flow(&pdp::ApprovalFlow {
                    id: format!("flw_seeded{i:04}"),
                    ..stored.clone()
                })?;
            }
            Ok::<_, store::Error>(())
        })
        .unwrap();
    assert_status(
        flows
            .create_approval_flow(pb::CreateApprovalFlowRequest {
                flow: Some(two_steps()),
            })
            .await,
        Code::FailedPrecondition,
        "the limit is 1000",
    );
    assert_eq!(h.live.store().flows().unwrap().len(), 1000);
    assert_eq!(list(&mut flows).await.flows.len(), 1001);
}

#[tokio::test]
async fn an_ambiguous_user_reference_is_refused_naming_the_field() {
    let mut model = crate::support::company();
    for user in model
        .users
        .iter_mut()
        .filter(|u| u.id == "u-carol" || u.id == "u-dave")
    {
        user.emails.push("eng@example.com".into());
    }
    let h = Harness::start_with(model).await;
    let mut flows = h.flows(&h.admin_secret).await;
    let revision = h.live.store().revision();
    let result = flows
        .create_approval_flow(pb::CreateApprovalFlowRequest {
            flow: Some(pb::ApprovalFlow {
                steps: vec![pb::ApprovalStep {
                    approvers: vec![user("eng@example.com")],
                    min_approvals: 1,
                    timeout: None,
                }],
                ..two_steps()
            }),
        })
        .await;
    let message = result.as_ref().unwrap_err().message().to_owned();
    assert_status(
        result,
        Code::FailedPrecondition,
        "flow.steps[0].approvers[0].user_id",
    );
    assert!(
        message.contains("u-carol") && message.contains("u-dave"),
        "{message}"
    );
    assert_eq!(h.live.store().revision(), revision, "nothing written");
}
