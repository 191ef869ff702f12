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
