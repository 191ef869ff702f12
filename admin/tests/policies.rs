//! Policies over a real server: writes change decisions at once, bad input changes nothing.

use crate::support::{Admin, Harness, assert_status, bad_list_requests};
use portcullis_proto::v1 as pb;
use tonic::Code;

/// A valid policy: allow frank every github tool.
fn frank_github() -> pb::Policy {
    pb::Policy {
        name: "Frank on GitHub".into(),
        description: "Contractor access".into(),
        connector: "github".into(),
        all_tools: true,
        scope: Some(pb::PolicyScope {
            user_ids: vec!["u-frank".into()],
            ..Default::default()
        }),
        action: pb::PolicyAction::Allow as i32,
        enabled: true,
        ..Default::default()
    }
}

async fn create(admin: &mut Admin, policy: pb::Policy) -> pb::CreatePolicyResponse {
    admin
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get(admin: &mut Admin, id: &str) -> pb::Policy {
    admin
        .get_policy(pb::GetPolicyRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn update(id: &str, policy: pb::Policy, paths: &[&str]) -> pb::UpdatePolicyRequest {
    pb::UpdatePolicyRequest {
        policy: Some(pb::Policy {
            id: id.into(),
            ..policy
        }),
        update_mask: mask(paths),
    }
}

fn ids(response: &pb::ListPoliciesResponse) -> Vec<&str> {
    response.policies.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test]
async fn create_applies_at_once_and_is_audited() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    assert_eq!(
        h.check("u-frank", "github", "create_issue", 0).await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );

    let created = create(&mut admin, frank_github()).await;
    let policy = created.policy.clone().unwrap();
    let hex = policy.id.strip_prefix("pol_").unwrap();
    assert_eq!(hex.len(), 16);
    assert!(
        hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{hex}"
    );
    assert!(policy.enabled && policy.all_tools);
    assert_eq!(policy.created_at, policy.updated_at);
    assert!(policy.created_at.is_some());
    // Live when the call returns.
    assert_eq!(
        h.check("u-frank", "github", "create_issue", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    assert_eq!(
        h.check("frank@example.com", "github", "push", created.revision)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    assert_eq!(get(&mut admin, &policy.id).await, policy);

    // Created without `enabled: true` it is stored, but applies to no one.
    let disabled = create(
        &mut admin,
        pb::Policy {
            name: "Grace on GitHub".into(),
            scope: Some(pb::PolicyScope {
                user_ids: vec!["u-grace".into()],
                ..Default::default()
            }),
            enabled: false,
            ..frank_github()
        },
    )
    .await;
    assert!(disabled.revision > created.revision);
    assert!(!disabled.policy.unwrap().enabled);
    assert_eq!(
        h.check("u-grace", "github", "push", disabled.revision)
            .await
            .0,
        pb::Decision::Deny
    );

    // Conditions, groups and an approval flow round-trip.
    let approval = create(
        &mut admin,
        pb::Policy {
            name: "Approve prod deploys".into(),
            connector: "deploy".into(),
            all_tools: false,
            tools: vec!["prod".into(), "canary".into()],
            scope: Some(pb::PolicyScope {
                user_ids: vec!["u-frank".into()],
                group_ids: vec!["g-eng".into(), "g-admins".into()],
                ..Default::default()
            }),
            action: pb::PolicyAction::RequireApproval as i32,
            approval_flow_id: "builtin-admins".into(),
            conditions: vec![pb::PolicyCondition {
                attribute: "env".into(),
                operator: "not_in".into(),
                values: vec!["dev".into()],
            }],
            ..frank_github()
        },
    )
    .await
    .policy
    .unwrap();
    let got = get(&mut admin, &approval.id).await;
    assert_eq!(got, approval);
    assert_eq!(got.tools, ["prod", "canary"]);
    assert_eq!(got.approval_flow_id, "builtin-admins");
    assert_eq!(got.conditions[0].operator, "not_in");

    let events = h.audit("policy.create").await;
    assert_eq!(events.len(), 3);
    let event = events
        .iter()
        .find(|e| e.target_id == policy.id)
        .expect("the first create is audited");
    assert_eq!(
        (
            event.actor.as_str(),
            event.target_kind.as_str(),
            event.revision
        ),
        ("u-alice", "policy", created.revision)
    );
    assert!(event.before_json.is_empty());
    assert!(
        event.after_json.contains("Frank on GitHub"),
        "{}",
        event.after_json
    );
}

#[tokio::test]
async fn update_changes_only_the_masked_fields_and_applies_at_once() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await.0,
        pb::Decision::Allow
    );
    let before = get(&mut admin, "p-eng-github").await;

    // Only the action changes, though the request carries other values.
    let updated = admin
        .update_policy(update(
            "p-eng-github",
            pb::Policy {
                name: "ignored".into(),
                action: pb::PolicyAction::StepUp as i32,
                ..Default::default()
            },
            &["action"],
        ))
        .await
        .unwrap()
        .into_inner();
    let policy = updated.policy.unwrap();
    assert_eq!(policy.action(), pb::PolicyAction::StepUp);
    assert_eq!(policy.name, before.name);
    assert_eq!(policy.scope, before.scope);
    assert!(policy.all_tools);
    assert_ne!(policy.updated_at, before.updated_at);
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await,
        (pb::Decision::StepUp, pb::Reason::Policy)
    );

    // Tools and scope: now only `push`, for frank alone.
    let narrowed = admin
        .update_policy(update(
            "p-eng-github",
            pb::Policy {
                tools: vec!["push".into()],
                scope: Some(pb::PolicyScope {
                    user_ids: vec!["u-frank".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            &["tools", "scope"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(narrowed.revision > updated.revision);
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );
    assert_eq!(
        h.check("u-frank", "github", "push", 0).await,
        (pb::Decision::StepUp, pb::Reason::Policy)
    );

    // `all_tools` alone sets the tools back to every tool.
    let widened = admin
        .update_policy(update(
            "p-eng-github",
            pb::Policy {
                all_tools: true,
                ..Default::default()
            },
            &["all_tools"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(widened.policy.unwrap().all_tools);
    assert_eq!(
        h.check("u-frank", "github", "create_issue", 0).await.0,
        pb::Decision::StepUp
    );

    // Changing nothing commits nothing.
    let same = admin
        .update_policy(update(
            "p-eng-github",
            pb::Policy {
                name: before.name.clone(),
                ..Default::default()
            },
            &["name"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.revision, widened.revision);

    let events = h.audit("policy.update").await;
    assert_eq!(events.len(), 3);
    // Newest first; the first update records before and after.
    let first = &events[2];
    assert_eq!(
        (first.target_id.as_str(), first.detail.as_str()),
        ("p-eng-github", "action")
    );
    assert!(
        first.before_json.contains("\"allow\""),
        "{}",
        first.before_json
    );
    assert!(
        first.after_json.contains("\"step_up\""),
        "{}",
        first.after_json
    );
}

#[tokio::test]
async fn delete_and_enable_apply_at_once_and_are_audited() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    assert_eq!(
        h.check("u-carol", "github", "delete_repo", 0).await.0,
        pb::Decision::Deny
    );
    let deleted = admin
        .delete_policy(pb::DeletePolicyRequest {
            id: "p-deny-delete".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.check("u-carol", "github", "delete_repo", deleted.revision)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    assert_status(
        admin
            .get_policy(pb::GetPolicyRequest {
                id: "p-deny-delete".into(),
            })
            .await,
        Code::NotFound,
        "p-deny-delete",
    );
    let events = h.audit("policy.delete").await;
    assert_eq!(events.len(), 1);
    assert!(events[0].before_json.contains("delete_repo"));
    assert!(events[0].after_json.is_empty());

    // Disable, twice (the second is a no-op), then enable.
    let disabled = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "p-all-slack".into(),
            enabled: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.policy.unwrap().enabled);
    assert_eq!(
        h.check("u-frank", "slack", "post", 0).await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );
    let again = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "p-all-slack".into(),
            enabled: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, disabled.revision);
    assert_eq!(h.live.store().revision(), disabled.revision);
    let enabled = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "p-all-slack".into(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.revision > disabled.revision);
    assert_eq!(
        h.check("u-frank", "slack", "post", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    let disables = h.audit("policy.disable").await;
    assert_eq!(disables.len(), 1);
    assert_eq!(disables[0].revision, disabled.revision);
    let enables = h.audit("policy.enable").await;
    assert_eq!(enables.len(), 1);
    assert!(enables[0].after_json.contains("\"enabled\":true"));
}

#[tokio::test]
async fn list_searches_filters_sorts_and_pages() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    create(
        &mut admin,
        pb::Policy {
            name: "approve Deploys".into(),
            description: "Prod needs a second pair of eyes".into(),
            connector: "deploy".into(),
            action: pb::PolicyAction::RequireApproval as i32,
            approval_flow_id: "builtin-admins".into(),
            ..frank_github()
        },
    )
    .await;
    let approve = create(
        &mut admin,
        pb::Policy {
            name: "Step up on pushes".into(),
            all_tools: false,
            tools: vec!["push".into()],
            action: pb::PolicyAction::StepUp as i32,
            ..frank_github()
        },
    )
    .await
    .policy
    .unwrap()
    .id;
    let lister = admin.clone();
    let list = |request: pb::ListPoliciesRequest| {
        let mut admin = lister.clone();
        async move { admin.list_policies(request).await.unwrap().into_inner() }
    };
    let names = |response: &pb::ListPoliciesResponse| -> Vec<String> {
        response.policies.iter().map(|p| p.name.clone()).collect()
    };

    // By name, ignoring case.
    let all = list(pb::ListPoliciesRequest::default()).await;
    assert_eq!(
        names(&all),
        [
            "all slack",
            "approve Deploys",
            "deny delete",
            "eng github",
            "Step up on pushes"
        ]
    );
    assert_eq!(all.revision, h.live.store().revision());
    assert!(all.next_page_token.is_empty());
    let row = all.policies.iter().find(|p| p.id == approve).unwrap();
    assert_eq!(
        (
            row.connector.as_str(),
            row.all_tools,
            row.tool_count,
            row.user_count,
            row.group_count,
            row.action(),
            row.enabled
        ),
        ("github", false, 1, 1, 0, pb::PolicyAction::StepUp, true)
    );

    let descending = list(pb::ListPoliciesRequest {
        descending: true,
        ..Default::default()
    })
    .await;
    let mut reversed = names(&all);
    reversed.reverse();
    assert_eq!(names(&descending), reversed);

    // Most restrictive first, then by name.
    let by_action = list(pb::ListPoliciesRequest {
        sort: pb::PolicySort::Action as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(
        names(&by_action),
        [
            "deny delete",
            "approve Deploys",
            "Step up on pushes",
            "all slack",
            "eng github"
        ]
    );
    let least_first = list(pb::ListPoliciesRequest {
        sort: pb::PolicySort::Action as i32,
        descending: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        names(&least_first),
        [
            "eng github",
            "all slack",
            "Step up on pushes",
            "approve Deploys",
            "deny delete"
        ]
    );

    // Search covers the name and the description.
    let found = list(pb::ListPoliciesRequest {
        search: "EYES".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&found), ["approve Deploys"]);
    let found = list(pb::ListPoliciesRequest {
        search: "GitHub".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&found), ["eng github"]);
    let allows = list(pb::ListPoliciesRequest {
        action: pb::PolicyAction::Allow as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&allows), ["p-all-slack", "p-eng-github"]);
    let github = list(pb::ListPoliciesRequest {
        connector: "github".into(),
        sort: pb::PolicySort::Action as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&github),
        ["p-deny-delete", approve.as_str(), "p-eng-github"]
    );
    let none = list(pb::ListPoliciesRequest {
        connector: "GitHub".into(),
        ..Default::default()
    })
    .await;
    assert!(none.policies.is_empty());

    // Pages of 2 by action, while policies change underneath: each exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(pb::ListPoliciesRequest {
            sort: pb::PolicySort::Action as i32,
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        pages += 1;
        seen.extend(page.policies.iter().map(|p| p.name.clone()));
        // Rename one already listed and one not yet listed, without moving them.
        let id = ["p-deny-delete", "p-eng-github", "p-all-slack"][pages - 1];
        admin
            .update_policy(update(
                id,
                pb::Policy {
                    description: format!("changed on page {pages}"),
                    ..Default::default()
                },
                &["description"],
            ))
            .await
            .unwrap();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names(&by_action));

    // A token from another query is refused.
    let first = list(pb::ListPoliciesRequest {
        page_size: 2,
        ..Default::default()
    })
    .await;
    assert!(!first.next_page_token.is_empty());
    assert_status(
        admin
            .list_policies(pb::ListPoliciesRequest {
                page_size: 2,
                connector: "github".into(),
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    let mut bad = bad_list_requests::<pb::ListPoliciesRequest>();
    bad.push((
        pb::ListPoliciesRequest {
            action: 42,
            ..Default::default()
        },
        "action",
    ));
    for (request, field) in bad {
        assert_status(
            admin.list_policies(request).await,
            Code::InvalidArgument,
            field,
        );
    }
}

#[tokio::test]
async fn create_rejects_bad_input_and_changes_nothing() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let revision = h.live.store().revision();
    let scope = |users: &[&str], groups: &[&str], all_users: bool| {
        Some(pb::PolicyScope {
            all_users,
            user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
    };
    let condition = |attribute: &str, operator: &str, values: &[&str]| pb::PolicyCondition {
        attribute: attribute.into(),
        operator: operator.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let base = frank_github;
    let cases: Vec<(pb::Policy, Code, &str)> = vec![
        (
            pb::Policy {
                name: " ".into(),
                ..base()
            },
            Code::InvalidArgument,
            "policy.name",
        ),
        (
            pb::Policy {
                name: "é".repeat(257),
                ..base()
            },
            Code::InvalidArgument,
            "policy.name",
        ),
        (
            pb::Policy {
                description: "x".repeat(5000),
                ..base()
            },
            Code::InvalidArgument,
            "policy.description",
        ),
        (
            pb::Policy {
                connector: String::new(),
                ..base()
            },
            Code::InvalidArgument,
            "policy.connector",
        ),
        (
            pb::Policy {
                connector: "git hub".into(),
                ..base()
            },
            Code::InvalidArgument,
            "policy.connector",
        ),
        (
            pb::Policy {
                connector: "c".repeat(129),
                ..base()
            },
            Code::InvalidArgument,
            "policy.connector",
        ),
        (
            pb::Policy {
                tools: vec!["push".into()],
                ..base()
            },
            Code::InvalidArgument,
            "policy.tools: set `all_tools` or list tools, not both",
        ),
        (
            pb::Policy {
                all_tools: false,
                ..base()
            },
            Code::InvalidArgument,
            "policy.tools",
        ),
        (
            pb::Policy {
                all_tools: false,
                tools: vec!["push".into(), String::new()],
                ..base()
            },
            Code::InvalidArgument,
            "policy.tools[1]",
        ),
        (
            pb::Policy {
                all_tools: false,
                tools: vec!["push".into(), "pull".into(), "push".into()],
                ..base()
            },
            Code::InvalidArgument,
            "policy.tools[2]",
        ),
        (
            pb::Policy {
                scope: None,
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope",
        ),
        (
            pb::Policy {
                scope: scope(&[], &[], false),
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope",
        ),
        (
            pb::Policy {
                scope: scope(&["u-frank"], &[], true),
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope",
        ),
        (
            pb::Policy {
                scope: scope(&[], &["g-eng"], true),
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope",
        ),
        (
            pb::Policy {
                scope: scope(&["u-frank", ""], &[], false),
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope.user_ids[1]",
        ),
        (
            pb::Policy {
                scope: scope(&["u-frank", "u-frank"], &[], false),
                ..base()
            },
            Code::InvalidArgument,
            "policy.scope.user_ids[1]",
        ),
        (
            pb::Policy {
                scope: scope(&["u-frank", "u-nobody"], &[], false),
                ..base()
            },
            Code::NotFound,
            "user `u-nobody`",
        ),
        (
            pb::Policy {
                scope: scope(&[], &["g-eng", "g-nowhere"], false),
                ..base()
            },
            Code::NotFound,
            "group `g-nowhere`",
        ),
        (
            pb::Policy {
                action: pb::PolicyAction::Unspecified as i32,
                ..base()
            },
            Code::InvalidArgument,
            "policy.action",
        ),
        (
            pb::Policy {
                action: 42,
                ..base()
            },
            Code::InvalidArgument,
            "policy.action",
        ),
        (
            pb::Policy {
                approval_flow_id: "flow-1".into(),
                ..base()
            },
            Code::InvalidArgument,
            "policy.approval_flow_id",
        ),
        (
            pb::Policy {
                conditions: vec![condition("", "in", &["prod"])],
                ..base()
            },
            Code::InvalidArgument,
            "policy.conditions[0].attribute",
        ),
        (
            pb::Policy {
                conditions: vec![
                    condition("env", "in", &["prod"]),
                    condition("env", "equals", &["prod"]),
                ],
                ..base()
            },
            Code::InvalidArgument,
            "policy.conditions[1].operator",
        ),
        (
            pb::Policy {
                conditions: vec![condition("env", "not_in", &[])],
                ..base()
            },
            Code::InvalidArgument,
            "policy.conditions[0].values",
        ),
    ];
    for (policy, code, needle) in cases {
        assert_status(
            admin
                .create_policy(pb::CreatePolicyRequest {
                    policy: Some(policy),
                })
                .await,
            code,
            needle,
        );
    }
    assert_status(
        admin
            .create_policy(pb::CreatePolicyRequest { policy: None })
            .await,
        Code::InvalidArgument,
        "policy",
    );
    // A Read Only caller may list but not create.
    let mut reader = h.reader().await;
    assert_eq!(
        reader
            .list_policies(pb::ListPoliciesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .policies
            .len(),
        3
    );
    assert_status(
        reader
            .create_policy(pb::CreatePolicyRequest {
                policy: Some(frank_github()),
            })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );

    // Nothing changed.
    assert_eq!(h.live.store().revision(), revision);
    assert!(h.audit("policy.create").await.is_empty());
    let listed = admin
        .list_policies(pb::ListPoliciesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies.len(), 3);
    assert_eq!(
        h.check("u-frank", "github", "push", 0).await.0,
        pb::Decision::Deny
    );
}

#[tokio::test]
async fn update_delete_and_enable_reject_bad_input_and_change_nothing() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let approval = create(
        &mut admin,
        pb::Policy {
            name: "Approve".into(),
            action: pb::PolicyAction::RequireApproval as i32,
            approval_flow_id: "builtin-admins".into(),
            ..frank_github()
        },
    )
    .await;
    let id = approval.policy.unwrap().id;
    let revision = h.live.store().revision();
    assert_eq!(revision, approval.revision);
    let before = get(&mut admin, "p-eng-github").await;

    let cases: Vec<(pb::UpdatePolicyRequest, Code, &str)> = vec![
        (
            pb::UpdatePolicyRequest {
                policy: None,
                update_mask: mask(&["name"]),
            },
            Code::InvalidArgument,
            "policy",
        ),
        (
            pb::UpdatePolicyRequest {
                policy: Some(pb::Policy {
                    name: "x".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            },
            Code::InvalidArgument,
            "policy.id",
        ),
        (
            pb::UpdatePolicyRequest {
                policy: Some(pb::Policy {
                    id: "p-eng-github".into(),
                    name: "x".into(),
                    ..Default::default()
                }),
                update_mask: None,
            },
            Code::InvalidArgument,
            "update_mask",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &[]),
            Code::InvalidArgument,
            "update_mask",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &["name", "id"]),
            Code::InvalidArgument,
            "update_mask: `id`",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &["scope.all_users"]),
            Code::InvalidArgument,
            "update_mask",
        ),
        (
            update(
                "p-nothing",
                pb::Policy {
                    name: "x".into(),
                    ..Default::default()
                },
                &["name"],
            ),
            Code::NotFound,
            "policy `p-nothing` not found",
        ),
        // The masked field is converted and the result validated as on create.
        (
            update("p-eng-github", pb::Policy::default(), &["name"]),
            Code::InvalidArgument,
            "policy.name",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &["action"]),
            Code::InvalidArgument,
            "policy.action",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &["tools"]),
            Code::InvalidArgument,
            "policy.tools",
        ),
        (
            update("p-eng-github", pb::Policy::default(), &["scope"]),
            Code::InvalidArgument,
            "policy.scope",
        ),
        (
            update(
                "p-eng-github",
                pb::Policy {
                    scope: Some(pb::PolicyScope {
                        group_ids: vec!["g-gone".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                &["scope"],
            ),
            Code::NotFound,
            "group `g-gone`",
        ),
        (
            update(
                "p-eng-github",
                pb::Policy {
                    approval_flow_id: "flow-2".into(),
                    ..Default::default()
                },
                &["approval_flow_id"],
            ),
            Code::InvalidArgument,
            "policy.approval_flow_id",
        ),
        // Changing the action away from Require approval must clear the flow too.
        (
            update(
                &id,
                pb::Policy {
                    action: pb::PolicyAction::Allow as i32,
                    ..Default::default()
                },
                &["action"],
            ),
            Code::InvalidArgument,
            "policy.approval_flow_id",
        ),
        (
            update(
                "p-eng-github",
                pb::Policy {
                    conditions: vec![pb::PolicyCondition {
                        attribute: "env".into(),
                        operator: "IN".into(),
                        values: vec!["prod".into()],
                    }],
                    ..Default::default()
                },
                &["conditions"],
            ),
            Code::InvalidArgument,
            "policy.conditions[0].operator",
        ),
    ];
    for (request, code, needle) in cases {
        assert_status(admin.update_policy(request).await, code, needle);
    }
    assert_status(
        admin
            .delete_policy(pb::DeletePolicyRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .delete_policy(pb::DeletePolicyRequest {
                id: "p-nothing".into(),
            })
            .await,
        Code::NotFound,
        "p-nothing",
    );
    assert_status(
        admin
            .set_policy_enabled(pb::SetPolicyEnabledRequest {
                id: "p-nothing".into(),
                enabled: false,
            })
            .await,
        Code::NotFound,
        "p-nothing",
    );
    assert_status(
        admin
            .set_policy_enabled(pb::SetPolicyEnabledRequest {
                id: "x".repeat(300),
                enabled: false,
            })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .get_policy(pb::GetPolicyRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .get_policy(pb::GetPolicyRequest {
                id: "p-nothing".into(),
            })
            .await,
        Code::NotFound,
        "policy `p-nothing` not found",
    );
    let mut reader = h.reader().await;
    assert_eq!(get(&mut reader, "p-eng-github").await, before);
    assert_status(
        reader
            .delete_policy(pb::DeletePolicyRequest {
                id: "p-eng-github".into(),
            })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    assert_status(
        reader
            .set_policy_enabled(pb::SetPolicyEnabledRequest {
                id: "p-eng-github".into(),
                enabled: false,
            })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );

    // Nothing changed.
    assert_eq!(h.live.store().revision(), revision);
    assert_eq!(get(&mut admin, "p-eng-github").await, before);
    for action in [
        "policy.update",
        "policy.delete",
        "policy.enable",
        "policy.disable",
    ] {
        assert!(h.audit(action).await.is_empty(), "{action}");
    }
    assert_eq!(
        h.check("u-carol", "github", "push", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
}

#[tokio::test]
async fn concurrent_updates_of_different_fields_both_land() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let task = |path: &'static str| {
        let mut admin = admin.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let value = format!("{path} {i}");
                let policy = match path {
                    "name" => pb::Policy {
                        name: value,
                        ..Default::default()
                    },
                    _ => pb::Policy {
                        description: value,
                        ..Default::default()
                    },
                };
                admin
                    .update_policy(update("p-all-slack", policy, &[path]))
                    .await
                    .unwrap();
            }
        })
    };
    let (names, descriptions) = tokio::join!(task("name"), task("description"));
    names.unwrap();
    descriptions.unwrap();
    let mut admin = h.admin().await;
    let policy = get(&mut admin, "p-all-slack").await;
    assert_eq!(
        (policy.name.as_str(), policy.description.as_str()),
        ("name 19", "description 19")
    );
    // Nothing else moved.
    assert!(policy.enabled);
    assert_eq!(policy.tools, ["post"]);
    assert_eq!(h.audit("policy.update").await.len(), 40);
    assert_eq!(
        h.check("u-frank", "slack", "post", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
}
