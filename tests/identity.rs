//! A lock never misses the user it names: one rule resolves a user reference for Check, the
//! admin API and the decision log; SCIM refuses identifiers that would make a reference name a
//! second user, a key several users still share denies, and a lock outlives the identity
//! provider deleting and re-creating the person.

use crate::scim::{Decisions, Setup, okta_user, setup};
use crate::support::run_ok;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::{Decision, Reason};
use serde_json::json;

/// An admin-API policy (through the CLI) allowing every github tool to every user.
fn allow_github_to_everyone(setup: &Setup) {
    run_ok(&[
        "admin",
        "--server",
        &setup.server.addr,
        "--token",
        &setup.admin_token,
        "policies",
        "create",
        "--name",
        "github for everyone",
        "--connector",
        "github",
        "--all-tools",
        "--all-users",
        "--action",
        "allow",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_names_one_user_or_nobody() {
    let setup = setup(
        "okta",
        &[
            ("admin", "admin@example.com", "The Admin"),
            ("alice", "alice@example.com", "Alice Liddell"),
        ],
    );
    let scim = &setup.scim;
    let mut admin = setup.server.admin(&setup.admin_token).await;
    allow_github_to_everyone(&setup);
    let mut decide = Decisions::connect(&setup.server).await;
    decide
        .expect("alice@example.com", Decision::Allow, Reason::Policy)
        .await;

    // (a) A newcomer whose externalId is alice's email, or whose userName is alice's in
    // another case or in fullwidth letters, is refused: the reference would name them too.
    for (user_name, external_id) in [
        ("mallory@example.com", "alice@example.com"),
        ("ALICE@example.com", "mallory-1"),
        ("ａｌｉｃｅ@example.com", "mallory-2"),
        ("alice", "mallory-3"),
    ] {
        let mut doc = okta_user(user_name, external_id, "Mal", "Lory");
        if user_name == "alice" {
            // A user name equal to alice's id.
            doc["emails"] = json!([{"value": "mallory@example.com", "primary": true}]);
        }
        let detail = scim
            .post("/Users", &doc)
            .expect_error(409, Some("uniqueness"));
        assert!(detail.contains("alice"), "{detail}");
    }
    // Identifiers that hide or imitate are refused outright.
    for user_name in [
        "alice@example.com ",
        "ali\u{200b}ce@example.com",
        "\u{430}lice@example.com",
    ] {
        scim.post("/Users", &okta_user(user_name, "x-1", "Mal", "Lory"))
            .expect_error(400, Some("invalidValue"));
    }

    // (b) Emails may repeat: a newcomer whose email is alice's in upper case is created, and
    // the email then names nobody: Check denies, the admin API refuses and lists both.
    let mut doc = okta_user("mallory@example.com", "00u-mallory", "Mal", "Lory");
    doc["emails"] = json!([{"value": "ALICE@EXAMPLE.COM", "primary": true}]);
    let mallory = scim.post("/Users", &doc).expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    decide
        .expect("alice@example.com", Decision::Deny, Reason::AmbiguousUser)
        .await;
    let refused = admin
        .lock_user(pb::LockUserRequest {
            user: "Alice@Example.com".into(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("`alice`") && refused.message().contains(&mallory),
        "{refused:?}"
    );
    // The ids always work.
    decide
        .expect("alice", Decision::Allow, Reason::Policy)
        .await;
    decide
        .expect(&mallory, Decision::Allow, Reason::Policy)
        .await;
    admin
        .lock_user(pb::LockUserRequest {
            user: "alice".into(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap();
    decide
        .expect("alice", Decision::Deny, Reason::UserLocked)
        .await;
    decide
        .expect("alice@example.com", Decision::Deny, Reason::AmbiguousUser)
        .await;
    // Mallory's own user name still names only mallory, who is not locked.
    decide
        .expect("mallory@example.com", Decision::Allow, Reason::Policy)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_outlives_the_idp_deleting_and_recreating_the_person() {
    let setup = setup("okta", &[("admin", "admin@example.com", "The Admin")]);
    let scim = &setup.scim;
    let mut admin = setup.server.admin(&setup.admin_token).await;
    allow_github_to_everyone(&setup);
    let doc = okta_user("bob@example.com", "00u-bob", "Bob", "Builder");
    let first = scim.post("/Users", &doc).expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .lock_user(pb::LockUserRequest {
            user: "BOB@example.com".into(),
            reason: "credentials leaked".into(),
        })
        .await
        .unwrap();
    let mut decide = Decisions::connect(&setup.server).await;
    decide
        .expect("bob@example.com", Decision::Deny, Reason::UserLocked)
        .await;
    let deleted = scim.send("DELETE", &format!("/Users/{first}"), None, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    decide
        .expect("bob@example.com", Decision::Deny, Reason::UnknownUser)
        .await;
    // Re-created with the same userName and externalId: locked from the start.
    let again = scim.post("/Users", &doc).expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(again, first);
    decide
        .expect("bob@example.com", Decision::Deny, Reason::UserLocked)
        .await;
    let user = admin
        .get_user(pb::GetUserRequest {
            user: again.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let shown = format!("{user:?}");
    assert!(shown.contains("credentials leaked"), "{shown}");
    let audit = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            target_id: again.clone(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit
            .events
            .iter()
            .any(|e| e.action == "user.lock.kept" && e.target_id == again),
        "{audit:?}"
    );
    // Once an administrator unlocks, the person is back; a third creation would not be locked.
    admin
        .unlock_user(pb::UnlockUserRequest {
            user: again.clone(),
        })
        .await
        .unwrap();
    decide
        .expect("bob@example.com", Decision::Allow, Reason::Policy)
        .await;
}

/// A decision is recorded under the user the engine resolved when it decided, not under
/// whoever the reference names when the log is written: a user created a moment later with the
/// same email never inherits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_logged_under_the_user_it_was_decided_for() {
    let setup = setup(
        "okta",
        &[
            ("admin", "admin@example.com", "The Admin"),
            ("alice", "alice@example.com", "Alice Liddell"),
        ],
    );
    allow_github_to_everyone(&setup);
    let mut decide = Decisions::connect(&setup.server).await;
    decide
        .expect("Alice@Example.com", Decision::Allow, Reason::Policy)
        .await;
    let mut doc = okta_user("mallory@example.com", "00u-mallory", "Mal", "Lory");
    doc["emails"] = json!([{"value": "alice@example.com", "primary": true}]);
    let mallory = setup.scim.post("/Users", &doc).expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut admin = setup.server.admin(&setup.admin_token).await;
    let activity = |user: &str| pb::GetUserRequest {
        user: user.into(),
        activity_limit: 10,
    };
    let wait =
        crate::support::Deadline::new("alice's Check in her activity", crate::support::PATIENCE);
    let alices = loop {
        let decisions = admin
            .get_user(activity("alice"))
            .await
            .unwrap()
            .into_inner()
            .decisions;
        if !decisions.is_empty() {
            break decisions;
        }
        wait.tick(&decisions).await;
    };
    assert_eq!(alices.len(), 1, "{alices:?}");
    assert_eq!(alices[0].decision(), pb::Decision::Allow);
    let mallorys = admin
        .get_user(activity(&mallory))
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert!(mallorys.is_empty(), "{mallorys:?}");
}
