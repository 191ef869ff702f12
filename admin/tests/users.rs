//! Users, locks and who may call: over a real server.

use crate::support::{Harness, assert_status, bad_list_requests};
use live::refusals::{Port, Reason};
use portcullis_proto::v1 as pb;
use tonic::Code;

fn emails(response: &pb::ListUsersResponse) -> Vec<&str> {
    response.users.iter().map(|u| u.email.as_str()).collect()
}

#[tokio::test]
async fn admin_locks_and_the_next_check_denies() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    assert_eq!(
        h.check("carol@example.com", "github", "create_issue", 0)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );

    let locked = admin
        .lock_user(pb::LockUserRequest {
            user: "carol@example.com".into(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let user = locked.user.unwrap();
    assert_eq!(user.status(), pb::UserStatus::Locked);
    let lock = user.lock.unwrap();
    assert_eq!(
        (lock.locked_by.as_str(), lock.reason.as_str()),
        ("u-alice", "laptop stolen")
    );
    // Live when the call returns: no min_revision needed, and with it too.
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await,
        (pb::Decision::Deny, pb::Reason::UserLocked)
    );
    assert_eq!(
        h.check("carol@example.com", "slack", "post", locked.revision)
            .await,
        (pb::Decision::Deny, pb::Reason::UserLocked)
    );

    // Idempotent: same revision, lock details kept.
    let again = admin
        .lock_user(pb::LockUserRequest {
            user: "u-carol".into(),
            reason: "another reason".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, locked.revision);
    assert_eq!(again.user.unwrap().lock.unwrap().reason, "laptop stolen");

    let unlocked = admin
        .unlock_user(pb::UnlockUserRequest {
            user: "u-carol".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unlocked.revision > locked.revision);
    assert_eq!(unlocked.user.unwrap().status(), pb::UserStatus::Active);
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );

    let events = h.audit("user.lock").await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (
            event.actor.as_str(),
            event.target_id.as_str(),
            event.revision
        ),
        ("u-alice", "u-carol", locked.revision)
    );
    assert!(
        event.before_json.contains("\"lock\":null"),
        "{}",
        event.before_json
    );
    assert!(
        event.after_json.contains("laptop stolen"),
        "{}",
        event.after_json
    );
    assert_eq!(h.audit("user.unlock").await.len(), 1);
}

#[tokio::test]
async fn read_only_lists_but_cannot_lock_and_the_attempt_is_audited() {
    let h = Harness::start().await;
    let mut reader = h.reader().await;
    let listed = reader
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 7);
    let who = reader
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (who.user_id.as_str(), who.roles.as_slice()),
        ("u-bob", &[pb::Role::ReadOnly as i32][..])
    );

    assert_status(
        reader
            .lock_user(pb::LockUserRequest {
                user: "u-carol".into(),
                reason: "x".into(),
            })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    assert_eq!(
        h.check("u-carol", "github", "create_issue", 0).await.0,
        pb::Decision::Allow
    );
    let denied = h.audit("auth.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (
            denied[0].actor.as_str(),
            denied[0].target_id.as_str(),
            denied[0].outcome.as_str()
        ),
        ("u-bob", "LockUser", "denied")
    );
}

#[tokio::test]
async fn callers_without_valid_credentials_are_refused() {
    let h = Harness::start().await;
    assert_status(
        h.client(None)
            .await
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::Unauthenticated,
        "missing credentials",
    );
    assert_status(
        h.client(Some("pcl_abcd_nope"))
            .await
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::Unauthenticated,
        "invalid token",
    );
    assert_status(
        h.client(Some("garbage"))
            .await
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::Unauthenticated,
        "invalid token",
    );
    // A real token id with a wrong secret.
    let id = admin::token::id_of(&h.admin_secret).unwrap();
    let forged = format!("pcl_{id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_status(
        h.client(Some(&forged))
            .await
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::Unauthenticated,
        "invalid token",
    );
    // A user with no role.
    assert_status(
        h.client(Some(&h.norole_secret))
            .await
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::PermissionDenied,
        "holds no admin role",
    );
    // Only the caller with a valid token (no role) is audited, without its secret; the others
    // name no one and are counted instead, so nobody can fill the audit log from outside.
    let denied = h.audit("auth.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].actor, "u-frank");
    for event in &denied {
        assert!(
            !format!("{event:?}").contains("AAAAAAAAAAAAAAAA"),
            "{event:?}"
        );
    }
    let refusals = h.live.refusals();
    let count = |reason| refusals.count(Port::Admin, reason);
    assert_eq!(
        [Reason::Missing, Reason::Malformed, Reason::Unknown].map(count),
        [1, 1, 2]
    );
    assert_eq!(refusals.count(Port::Scim, Reason::Unknown), 0);

    // A locked admin loses the API too.
    let mut admin = h.admin().await;
    let mut reader_view = h.reader().await;
    admin
        .lock_user(pb::LockUserRequest {
            user: "u-bob".into(),
            reason: "offboarding".into(),
        })
        .await
        .unwrap();
    assert_status(
        reader_view
            .list_users(pb::ListUsersRequest::default())
            .await,
        Code::PermissionDenied,
        "is locked",
    );
}

#[tokio::test]
async fn list_users_searches_filters_sorts_and_pages() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let lister = admin.clone();
    let list = |request: pb::ListUsersRequest| {
        let mut admin = lister.clone();
        async move { admin.list_users(request).await.unwrap().into_inner() }
    };
    let all = list(pb::ListUsersRequest::default()).await;
    assert_eq!(
        emails(&all),
        [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com",
            "erin@example.com",
            "frank@example.com",
            "grace@example.com"
        ]
    );
    assert!(all.next_page_token.is_empty());
    let row = &all.users[0];
    assert_eq!(
        (row.id.as_str(), row.display_name.as_str(), row.mfa()),
        ("u-alice", "Alice Admin", pb::MfaStatus::Enabled)
    );
    let avatar = row.avatar.as_ref().unwrap();
    assert_eq!(avatar.initials, "AA");
    assert!(avatar.color.starts_with('#') && avatar.color.len() == 7);

    let found = list(pb::ListUsersRequest {
        search: "CAROL@EX".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(emails(&found), ["carol@example.com"]);
    // The display name too, in any case: "Carol Engineer" and "Dave Engineer" (their emails
    // do not say it), and a status filter and a sort still apply to name matches.
    let by_name = list(pb::ListUsersRequest {
        search: "engINEER".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(emails(&by_name), ["carol@example.com", "dave@example.com"]);
    let by_name = list(pb::ListUsersRequest {
        search: "engineer".into(),
        sort: pb::UserSort::Created as i32,
        descending: true,
        page_size: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(emails(&by_name), ["dave@example.com"]);
    assert!(!by_name.next_page_token.is_empty());
    // A match may not run from an email into its name (the index keeps them apart by a NUL).
    let across = list(pb::ListUsersRequest {
        search: "example.com\0carol".into(),
        ..Default::default()
    })
    .await;
    assert!(across.users.is_empty());
    let inactive = list(pb::ListUsersRequest {
        status: pb::UserStatus::Inactive as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(emails(&inactive), ["erin@example.com"]);
    let by_mfa = list(pb::ListUsersRequest {
        sort: pb::UserSort::Mfa as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(
        &emails(&by_mfa)[5..],
        ["frank@example.com", "grace@example.com"]
    );
    let newest = list(pb::ListUsersRequest {
        sort: pb::UserSort::Created as i32,
        descending: true,
        page_size: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(emails(&newest), ["grace@example.com", "frank@example.com"]);

    // Pages of 3 while users change underneath: each user exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListUsersRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        seen.extend(page.users.iter().map(|u| u.email.clone()));
        // A write between pages (lock someone already listed, and someone not yet).
        admin
            .lock_user(pb::LockUserRequest {
                user: format!("u-{}", ["bob", "grace", "dave"][seen.len() / 3 - 1]),
                reason: "test".into(),
            })
            .await
            .unwrap();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, emails(&all));

    // A token from another query is refused, naming the field.
    let first = list(pb::ListUsersRequest {
        page_size: 2,
        ..Default::default()
    })
    .await;
    assert_status(
        admin
            .list_users(pb::ListUsersRequest {
                page_size: 2,
                search: "a".into(),
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
}

#[tokio::test]
async fn get_user_shows_groups_roles_activity_and_changes() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    h.check("dave@example.com", "github", "delete_repo", 0)
        .await;
    h.check("DAVE@example.com", "slack", "post", 0).await;
    admin
        .lock_user(pb::LockUserRequest {
            user: "u-dave".into(),
            reason: "suspicious".into(),
        })
        .await
        .unwrap();
    // The decision records reach the activity keeper asynchronously.
    let mut got = None;
    for _ in 0..100 {
        let details = admin
            .get_user(pb::GetUserRequest {
                user: "dave@example.com".into(),
                activity_limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        if details.decisions.len() == 2 {
            got = Some(details);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let details = got.expect("two recent decisions");
    assert_eq!(
        details.user.as_ref().unwrap().status(),
        pb::UserStatus::Locked
    );
    assert_eq!(details.groups.len(), 1);
    assert_eq!(
        (
            details.groups[0].group_id.as_str(),
            details.groups[0].name.as_str()
        ),
        ("g-eng", "Engineering")
    );
    assert!(details.roles.is_empty());
    // Newest first.
    assert_eq!(details.decisions[0].connector, "slack");
    assert_eq!(
        (
            details.decisions[1].decision(),
            details.decisions[1].reason()
        ),
        (pb::Decision::Deny, pb::Reason::Policy)
    );
    assert_eq!(details.decisions[1].policy_id, "p-deny-delete");
    assert_eq!(details.changes.len(), 1);
    assert_eq!(details.changes[0].action, "user.lock");

    let alice = admin
        .get_user(pb::GetUserRequest {
            user: "u-alice".into(),
            activity_limit: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alice.roles.len(), 1);
    assert_eq!(
        (alice.roles[0].role(), alice.roles[0].group_ids.as_slice()),
        (pb::Role::Admin, &["g-admins".to_owned()][..])
    );
}

/// A decision for `user` as named, `minutes` minutes into 2026, as the decision log keeps it.
fn logged(
    user: &str,
    minutes: i64,
    tool: &str,
    reason: pdp::Reason,
) -> decision_log::LoggedDecision {
    decision_log::LoggedDecision {
        seq: 0,
        time_ms: 1_767_225_600_000 + minutes * 60_000,
        decision_id: format!("d-{minutes}"),
        user: user.into(),
        user_id: None,
        agent: "copilot".into(),
        connector: "github".into(),
        tool: tool.into(),
        action: pdp::Action::Deny,
        reason,
        policy_id: None,
        revision: 1,
        latency_ns: 1_000,
        approval_id: None,
    }
}

#[tokio::test]
async fn get_user_reads_the_users_decisions_from_the_decision_log() {
    let h = Harness::start().await;
    let log = h.log.clone().unwrap();
    let mut admin = h.admin().await;
    use pdp::Reason::{NoMatchingPolicy, UnknownUser};
    // What an earlier run of the server logged: by external id, by email in another case,
    // before dave existed (did not resolve), and for someone else.
    let mut earlier: Vec<_> = (0..250)
        .map(|i| logged("okta-u-dave", i, &format!("t{i}"), NoMatchingPolicy))
        .collect();
    earlier.push(logged(
        "DAVE@Example.com",
        300,
        "by-email",
        NoMatchingPolicy,
    ));
    earlier.push(logged("dave@example.com", 301, "unknown-then", UnknownUser));
    earlier.push(logged(
        "carol@example.com",
        302,
        "carol's",
        NoMatchingPolicy,
    ));
    tokio::task::spawn_blocking(move || log.append(&mut earlier))
        .await
        .unwrap()
        .unwrap();
    let get = |limit| pb::GetUserRequest {
        user: "u-dave".into(),
        activity_limit: limit,
    };
    let details = admin.get_user(get(0)).await.unwrap().into_inner();
    // The default limit, newest first.
    let tools: Vec<&str> = details.decisions.iter().map(|d| d.tool.as_str()).collect();
    assert_eq!(tools.len(), 20);
    assert_eq!(&tools[..4], ["unknown-then", "by-email", "t249", "t248"]);
    let first = &details.decisions[0];
    assert_eq!(
        (first.decision(), first.reason(), first.agent.as_str()),
        (pb::Decision::Deny, pb::Reason::UnknownUser, "copilot")
    );
    assert_eq!(
        first.time.as_ref().map(|t| t.seconds),
        Some(1_767_225_600 + 301 * 60)
    );
    let all = admin.get_user(get(200)).await.unwrap().into_inner();
    assert_eq!(all.decisions.len(), 200);
    assert_eq!(all.decisions[199].tool, "t52");

    // A Check through the server lands on top.
    h.check("okta-u-dave", "slack", "post", 0).await;
    let mut newest = String::new();
    for _ in 0..100 {
        let details = admin.get_user(get(1)).await.unwrap().into_inner();
        newest = details.decisions[0].connector.clone();
        if newest == "slack" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(newest, "slack");
}

#[tokio::test]
async fn get_user_shows_in_memory_activity_without_a_decision_log() {
    let h = Harness::start_remembering().await;
    let mut admin = h.admin().await;
    h.check("FRANK@example.com", "slack", "post", 0).await;
    h.check("okta-u-frank", "github", "create_issue", 0).await;
    let mut found = Vec::new();
    for _ in 0..100 {
        found = admin
            .get_user(pb::GetUserRequest {
                user: "u-frank".into(),
                activity_limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .decisions;
        if found.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let connectors: Vec<&str> = found.iter().map(|d| d.connector.as_str()).collect();
    assert_eq!(connectors, ["github", "slack"]);
}

#[tokio::test]
async fn user_calls_reject_bad_input() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                user: "nobody@example.com".into(),
                activity_limit: 0,
            })
            .await,
        Code::NotFound,
        "nobody@example.com",
    );
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                user: String::new(),
                activity_limit: 0,
            })
            .await,
        Code::InvalidArgument,
        "user",
    );
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                user: "u-bob".into(),
                activity_limit: 1000,
            })
            .await,
        Code::InvalidArgument,
        "activity_limit",
    );
    assert_status(
        admin
            .lock_user(pb::LockUserRequest {
                user: "u-bob".into(),
                reason: " ".into(),
            })
            .await,
        Code::InvalidArgument,
        "reason",
    );
    assert_status(
        admin
            .lock_user(pb::LockUserRequest {
                user: "u-nobody".into(),
                reason: "x".into(),
            })
            .await,
        Code::NotFound,
        "u-nobody",
    );
    assert_status(
        admin
            .unlock_user(pb::UnlockUserRequest {
                user: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "user",
    );
    let mut bad = bad_list_requests::<pb::ListUsersRequest>();
    bad.push((
        pb::ListUsersRequest {
            status: 42,
            ..Default::default()
        },
        "status",
    ));
    for (request, needle) in bad {
        assert_status(
            admin.list_users(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    // Nothing changed.
    assert_eq!(h.live.store().revision(), h.live.engine().revision());
    assert!(h.audit("user.lock").await.is_empty());
}

#[tokio::test]
async fn audit_listings_examine_a_bounded_number_of_events_per_page() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    admin
        .lock_user(pb::LockUserRequest {
            user: "u-carol".into(),
            reason: "incident".into(),
        })
        .await
        .unwrap();
    // More events than one call examines, none of them a lock.
    let noise = admin::LIST_SCAN + 500;
    let store = h.live.store().clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..noise {
            store
                .append_audit(store::AuditEvent {
                    time: pdp::Timestamp::now(),
                    actor: "u-bob".into(),
                    action: "user.update".into(),
                    target_kind: "user".into(),
                    target_id: format!("t{i}"),
                    outcome: "ok".into(),
                    ..store::AuditEvent::default()
                })
                .unwrap();
        }
    })
    .await
    .unwrap();
    let request = pb::ListAuditEventsRequest {
        action: "user.lock".into(),
        page_size: 10,
        ..Default::default()
    };
    // The first call stops at the bound, empty, with a token; the next finds the lock.
    let first = admin
        .list_audit_events(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(first.events.is_empty());
    assert!(!first.next_page_token.is_empty());
    let second = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            page_token: first.next_page_token,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.events.len(), 1);
    assert_eq!(
        (
            second.events[0].action.as_str(),
            second.events[0].target_id.as_str()
        ),
        ("user.lock", "u-carol")
    );
    assert!(second.next_page_token.is_empty());
    // A token of another query is refused, naming the field.
    let token = admin
        .list_audit_events(request.clone())
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert_status(
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                action: "user.unlock".into(),
                page_token: token,
                ..request
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
}
