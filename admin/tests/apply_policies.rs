//! ApplyPolicies and ExportPolicies over a real server: the whole set in one transaction and one
//! audit event, refused whole (nothing written) on bad input, a stale base, or a Read Only token.

use crate::support::{Admin, Harness, assert_status};
use portcullis_proto::v1 as pb;
use tonic::Code;

async fn export(admin: &mut Admin) -> pb::ExportPoliciesResponse {
    admin
        .export_policies(pb::ExportPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The base an export gives: every policy's id and `updated_at`.
fn versions(export: &pb::ExportPoliciesResponse) -> Vec<pb::PolicyVersion> {
    export
        .policies
        .iter()
        .map(|p| pb::PolicyVersion {
            id: p.id.clone(),
            updated_at: p.updated_at,
        })
        .collect()
}

fn frank_github() -> pb::Policy {
    pb::Policy {
        name: "Frank on GitHub".into(),
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

#[tokio::test]
async fn apply_replaces_the_set_in_one_audited_change() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let base = export(&mut admin).await;
    assert!(base.policies.len() >= 2, "{base:?}");
    assert!(base.policies.windows(2).all(|w| w[0].id < w[1].id));
    let mut wanted: Vec<pb::Policy> = base.policies.clone();
    let kept = wanted.remove(0);
    let deleted = wanted.remove(0);
    let mut changed = kept.clone();
    changed.description = "changed as code".into();
    wanted.insert(0, changed);
    wanted.push(frank_github());
    let request = pb::ApplyPoliciesRequest {
        policies: wanted.clone(),
        expected: versions(&base),
        dry_run: true,
        ..Default::default()
    };

    // A dry run reports and writes nothing.
    let dry = admin
        .apply_policies(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.updated, [kept.id.as_str()]);
    assert_eq!(dry.deleted, [deleted.id.as_str()]);
    assert_eq!(dry.created.len(), 1);
    assert_eq!(export(&mut admin).await, base);
    assert!(h.audit("policies.apply").await.is_empty());

    let applied = admin
        .apply_policies(pb::ApplyPoliciesRequest {
            dry_run: false,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.updated, [kept.id.as_str()]);
    assert_eq!(applied.deleted, [deleted.id.as_str()]);
    let created = &applied.created[0];
    assert!(created.starts_with("pol_"), "{created}");
    assert_eq!(
        h.check("u-frank", "github", "create_issue", applied.revision)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    let after = export(&mut admin).await;
    assert_eq!(after.revision, applied.revision);
    assert!(after.policies.iter().all(|p| p.id != deleted.id));
    let events = h.audit("policies.apply").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].detail, "created 1, updated 1, deleted 1");
    assert_eq!(events[0].revision, applied.revision);

    // The same request again: its base is stale now, so nothing is written.
    assert_status(
        admin.apply_policies(request).await,
        Code::FailedPrecondition,
        "changed since the export",
    );
    assert_eq!(export(&mut admin).await, after);
}

#[tokio::test]
async fn bad_sets_are_refused_whole_naming_the_entry() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let base = export(&mut admin).await;
    let apply = |policies: Vec<pb::Policy>| pb::ApplyPoliciesRequest {
        policies,
        expected: versions(&base),
        dry_run: false,
        ..Default::default()
    };
    let mut all = base.policies.clone();
    let mut nameless = frank_github();
    nameless.name.clear();
    all.push(nameless);
    assert_status(
        admin.apply_policies(apply(all)).await,
        Code::InvalidArgument,
        &format!("policies[{}].name", base.policies.len()),
    );
    let mut stranger = frank_github();
    stranger.scope = Some(pb::PolicyScope {
        user_ids: vec!["u-nobody".into()],
        ..Default::default()
    });
    assert_status(
        admin
            .apply_policies(apply(vec![frank_github(), stranger]))
            .await,
        Code::NotFound,
        "policies[1]: user `u-nobody` not found",
    );
    let mut twice = base.policies.clone();
    twice.push(base.policies[0].clone());
    assert_status(
        admin.apply_policies(apply(twice)).await,
        Code::InvalidArgument,
        "is listed twice",
    );
    let mut unknown = frank_github();
    unknown.id = "pol_gone".into();
    assert_status(
        admin.apply_policies(apply(vec![unknown])).await,
        Code::InvalidArgument,
        "the server has no policy `pol_gone`",
    );
    let mut flowless = frank_github();
    flowless.approval_flow_id = "f-none".into();
    flowless.action = pb::PolicyAction::RequireApproval as i32;
    assert_status(
        admin.apply_policies(apply(vec![flowless])).await,
        Code::NotFound,
        "policies[0].approval_flow_id",
    );
    assert_status(
        admin
            .apply_policies(apply(vec![frank_github(); 5_001]))
            .await,
        Code::InvalidArgument,
        "the limit is 5000",
    );
    assert_eq!(export(&mut admin).await, base);
    assert!(h.audit("policies.apply").await.is_empty());
}

#[tokio::test]
async fn read_only_may_export_but_not_apply() {
    let h = Harness::start().await;
    let mut reader = h.reader().await;
    let base = export(&mut reader).await;
    assert_status(
        reader
            .apply_policies(pb::ApplyPoliciesRequest {
                policies: base.policies.clone(),
                expected: versions(&base),
                dry_run: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "ApplyPolicies changes data and needs the Admin role",
    );
}

#[tokio::test]
async fn a_large_apply_audits_its_ids_only() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let base = export(&mut admin).await;
    let mut policies = base.policies.clone();
    for i in 0..600 {
        policies.push(pb::Policy {
            name: format!("bulk {i}"),
            description: "x".repeat(1000),
            ..frank_github()
        });
    }
    let applied = admin
        .apply_policies(pb::ApplyPoliciesRequest {
            policies,
            expected: versions(&base),
            dry_run: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.created.len(), 600);
    let events = h.audit("policies.apply").await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0].before_json.is_empty(),
        "{}",
        events[0].before_json
    );
    let after: serde_json::Value = serde_json::from_str(&events[0].after_json).unwrap();
    assert!(
        after["omitted"]
            .as_str()
            .unwrap()
            .contains("over the 524288 kept"),
        "{after}"
    );
    assert_eq!(after["created"].as_array().unwrap().len(), 600);
    assert_eq!(after["created"][0], applied.created[0].as_str());
}

/// A request making the server exactly what `base` exported, the policies alone.
fn unchanged(base: &pb::ExportPoliciesResponse) -> pb::ApplyPoliciesRequest {
    pb::ApplyPoliciesRequest {
        policies: base.policies.clone(),
        expected: versions(base),
        ..Default::default()
    }
}

fn flow_versions(base: &pb::ExportPoliciesResponse) -> Vec<pb::PolicyVersion> {
    base.approval_flows
        .iter()
        .map(|f| pb::PolicyVersion {
            id: f.id.clone(),
            updated_at: f.updated_at,
        })
        .collect()
}

#[tokio::test]
async fn sections_refuse_what_the_rest_still_names_and_a_stale_base_writing_nothing() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let flow = h
        .flows(&h.admin_secret)
        .await
        .create_approval_flow(pb::CreateApprovalFlowRequest {
            flow: Some(pb::ApprovalFlow {
                name: "engineering".into(),
                steps: vec![pb::ApprovalStep {
                    approvers: vec![pb::Approver {
                        approver: Some(pb::approver::Approver::GroupId("g-eng".into())),
                    }],
                    min_approvals: 1,
                    timeout: None,
                }],
                grant_mode: pb::GrantMode::Once.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .flow
        .unwrap();
    let base = export(&mut admin).await;
    assert_eq!(base.approval_flows.len(), 1, "{base:?}");
    let held: Vec<(&str, &[i32])> = base
        .group_roles
        .iter()
        .map(|g| (g.group_id.as_str(), g.roles.as_slice()))
        .collect();
    assert_eq!(
        held,
        [
            ("g-admins", &[pb::Role::Admin as i32][..]),
            ("g-readers", &[pb::Role::ReadOnly as i32][..])
        ]
    );

    // A policy starts naming the flow, in the same apply that keeps the flow as it is.
    let mut request = unchanged(&base);
    let github = request
        .policies
        .iter_mut()
        .find(|p| p.id == "p-eng-github")
        .unwrap();
    github.action = pb::PolicyAction::RequireApproval as i32;
    github.approval_flow_id = flow.id.clone();
    request.approval_flows = Some(pb::ApplyApprovalFlows {
        flows: base.approval_flows.clone(),
        expected: flow_versions(&base),
    });
    admin.apply_policies(request).await.unwrap();
    let base = export(&mut admin).await;
    let audited = h.audit("policies.apply").await.len();

    // Leaving the flow out while the policy names it is refused whole.
    let mut request = unchanged(&base);
    request.approval_flows = Some(pb::ApplyApprovalFlows {
        flows: vec![],
        expected: flow_versions(&base),
    });
    assert_status(
        admin.apply_policies(request).await,
        Code::FailedPrecondition,
        &format!(
            "flow `{}` is left out (deleted) but policy `p-eng-github` still names it",
            flow.id
        ),
    );
    // A default naming no flow.
    let mut request = unchanged(&base);
    request.settings = Some(pb::ApplySettings {
        settings: base.settings,
        default_approval_flow_id: "nope".into(),
        expected_settings: base.settings,
        expected_default_approval_flow_id: String::new(),
    });
    assert_status(
        admin.apply_policies(request).await,
        Code::NotFound,
        "settings.default_approval_flow_id: approval flow `nope` not found",
    );
    // Roles for a group that does not exist.
    let mut request = unchanged(&base);
    request.group_roles = Some(pb::ApplyGroupRoles {
        groups: vec![pb::GroupRoles {
            group_id: "g-nope".into(),
            roles: vec![pb::Role::Admin as i32],
            ..Default::default()
        }],
        expected: base.group_roles.clone(),
    });
    assert_status(
        admin.apply_policies(request).await,
        Code::NotFound,
        "group_roles[0].group_id: group `g-nope` not found",
    );

    // Someone gives engineering a role after the export: the roles section is refused, naming
    // it; an apply without that section is not.
    admin
        .update_group(pb::UpdateGroupRequest {
            id: "g-eng".into(),
            roles: vec![pb::Role::ReadOnly as i32],
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["roles".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = export(&mut admin).await;
    let mut request = unchanged(&base);
    request.group_roles = Some(pb::ApplyGroupRoles {
        groups: base.group_roles.clone(),
        expected: base.group_roles.clone(),
    });
    request.dry_run = true;
    assert_status(
        admin.apply_policies(request).await,
        Code::FailedPrecondition,
        "the server changed since the export: the roles of group `g-eng` (Engineering) were changed",
    );
    let answer = admin
        .apply_policies(unchanged(&base))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.changes.is_empty() && answer.updated.is_empty());
    let mut after = export(&mut admin).await;
    after.revision = before.revision;
    assert_eq!(after, before, "nothing written");
    assert_eq!(h.audit("policies.apply").await.len(), audited);
}
