//! API tokens over a real server: the secret works at once, revocation and expiry refuse it at
//! once, and neither the secret nor its hash is ever shown again.

use crate::support::{Admin, Harness, assert_status};
use portcullis_proto::v1 as pb;
use tonic::Code;

fn request(user: &str, name: &str) -> pb::CreateApiTokenRequest {
    pb::CreateApiTokenRequest {
        user: user.into(),
        name: name.into(),
        ..Default::default()
    }
}

async fn create(
    admin: &mut Admin,
    request: pb::CreateApiTokenRequest,
) -> pb::CreateApiTokenResponse {
    admin.create_api_token(request).await.unwrap().into_inner()
}

async fn list(admin: &mut Admin, user: &str) -> Vec<pb::ApiToken> {
    admin
        .list_api_tokens(pb::ListApiTokensRequest { user: user.into() })
        .await
        .unwrap()
        .into_inner()
        .tokens
}

/// Audit events with `action` that alice made (the harness's own tokens are made by `cli`).
async fn audited(h: &Harness, action: &str) -> Vec<pb::AuditEvent> {
    h.audit(action)
        .await
        .into_iter()
        .filter(|e| e.actor == "u-alice")
        .collect()
}

#[tokio::test]
async fn a_new_token_works_for_its_user_and_its_secret_is_shown_once() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let created = create(&mut admin, request("bob@example.com", "ci")).await;
    let token = created.token.clone().unwrap();
    assert_eq!(
        (
            token.user_id.as_str(),
            token.name.as_str(),
            token.created_by.as_str(),
            token.role()
        ),
        ("u-bob", "ci", "u-alice", pb::Role::Unspecified)
    );
    assert!(token.expires_at.is_none() && token.revoked_at.is_none());
    assert_eq!(
        admin::token::id_of(&created.secret),
        Some(token.id.as_str())
    );
    assert_eq!(h.live.store().revision(), created.revision);

    // Bob's new token acts as bob, with bob's Read Only role.
    let mut bob = h.client(Some(&created.secret)).await;
    let who = bob
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (who.user_id.as_str(), who.token_id.as_str()),
        ("u-bob", token.id.as_str())
    );
    assert_eq!(who.roles, [pb::Role::ReadOnly as i32]);
    let users = bob
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.users.len(), 7);
    assert_status(
        bob.lock_user(pb::LockUserRequest {
            user: "u-carol".into(),
            reason: "x".into(),
        })
        .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );

    // Listed, for everyone and for bob, without the secret.
    let all = list(&mut admin, "").await;
    assert_eq!(all.len(), 4);
    assert_eq!(all.last(), Some(&token));
    let bobs = list(&mut admin, "BOB@example.com").await;
    assert_eq!(bobs.len(), 2);
    assert!(bobs.iter().all(|t| t.user_id == "u-bob"));
    assert_eq!(list(&mut admin, "u-bob").await, bobs);
    assert!(list(&mut admin, "u-grace").await.is_empty());

    // The audit log has the token, never the secret or its hash.
    let events = audited(&h, "token.create").await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (
            event.target_kind.as_str(),
            event.target_id.as_str(),
            event.revision
        ),
        ("token", token.id.as_str(), created.revision)
    );
    assert!(event.after_json.contains("\"ci\""), "{}", event.after_json);
    // `pcl_<id>_<random>`: the random part is URL-safe base64, which may hold `_` itself.
    let (_, random) = created
        .secret
        .trim_start_matches("pcl_")
        .split_once('_')
        .unwrap();
    let hash = pdp_service::secret::hash(&created.secret);
    for event in h.audit("token.create").await {
        let shown = format!("{event:?}");
        assert!(!shown.contains(random), "{shown}");
        assert!(!shown.contains(&hash), "{shown}");
    }
}

#[tokio::test]
async fn a_token_role_adds_to_its_users_roles() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    // frank holds no role through his groups.
    let reader = create(
        &mut admin,
        pb::CreateApiTokenRequest {
            role: pb::Role::ReadOnly as i32,
            ..request("u-frank", "read")
        },
    )
    .await;
    assert_eq!(reader.token.unwrap().role(), pb::Role::ReadOnly);
    let mut frank = h.client(Some(&reader.secret)).await;
    frank
        .list_policies(pb::ListPoliciesRequest::default())
        .await
        .unwrap();
    assert_status(
        frank.create_api_token(request("u-frank", "escalate")).await,
        Code::PermissionDenied,
        "needs the Admin role",
    );

    let full = create(
        &mut admin,
        pb::CreateApiTokenRequest {
            role: pb::Role::Admin as i32,
            ..request("frank@example.com", "admin")
        },
    )
    .await;
    let mut frank = h.client(Some(&full.secret)).await;
    let who = frank
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.roles, [pb::Role::Admin as i32]);
    frank
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let created = create(&mut admin, request("u-bob", "laptop")).await;
    let id = created.token.unwrap().id;
    let mut bob = h.client(Some(&created.secret)).await;
    bob.list_users(pb::ListUsersRequest::default())
        .await
        .unwrap();

    let revoked = admin
        .revoke_api_token(pb::RevokeApiTokenRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revision > created.revision);
    let token = revoked.token.unwrap();
    assert!(token.revoked_at.is_some());
    assert_status(
        bob.list_users(pb::ListUsersRequest::default()).await,
        Code::Unauthenticated,
        "revoked",
    );
    // bob's other token still works.
    h.reader()
        .await
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap();

    // Idempotent: same revision, same revocation time, one audit event.
    let again = admin
        .revoke_api_token(pb::RevokeApiTokenRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, revoked.revision);
    assert_eq!(again.token.unwrap().revoked_at, token.revoked_at);
    let events = audited(&h, "token.revoke").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].target_id.as_str(), events[0].revision),
        (id.as_str(), revoked.revision)
    );
    assert!(events[0].before_json.contains("\"revoked_at\":null"));
    let hash = pdp_service::secret::hash(&created.secret);
    assert!(!events[0].before_json.contains(&hash));
    assert!(!events[0].after_json.contains(&hash));
    let listed = list(&mut admin, "u-bob").await;
    assert_eq!(listed.iter().find(|t| t.id == id), Some(&token));

    // An admin may revoke the very token it calls with; the next call is refused.
    let own = admin::token::id_of(&h.admin_secret).unwrap().to_owned();
    admin
        .revoke_api_token(pb::RevokeApiTokenRequest { id: own })
        .await
        .unwrap();
    assert_status(
        admin
            .list_api_tokens(pb::ListApiTokensRequest::default())
            .await,
        Code::Unauthenticated,
        "revoked",
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let created = create(
        &mut admin,
        pb::CreateApiTokenRequest {
            expires_in: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..request("u-bob", "short")
        },
    )
    .await;
    let token = created.token.unwrap();
    let (created_at, expires_at) = (token.created_at.unwrap(), token.expires_at.unwrap());
    let lifetime_ms = (expires_at.seconds - created_at.seconds) * 1000
        + i64::from(expires_at.nanos - created_at.nanos) / 1_000_000;
    assert_eq!(lifetime_ms, 1000);
    let mut bob = h.client(Some(&created.secret)).await;
    bob.list_users(pb::ListUsersRequest::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_status(
        bob.list_users(pb::ListUsersRequest::default()).await,
        Code::Unauthenticated,
        "expired",
    );
}

#[tokio::test]
async fn token_calls_reject_bad_input_and_change_nothing() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let revision = h.live.store().revision();
    let duration = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let cases: Vec<(pb::CreateApiTokenRequest, Code, &str)> = vec![
        (request("u-bob", ""), Code::InvalidArgument, "name"),
        (request("u-bob", "  "), Code::InvalidArgument, "name"),
        (
            request("u-bob", &"n".repeat(129)),
            Code::InvalidArgument,
            "name",
        ),
        (request("", "ci"), Code::InvalidArgument, "user"),
        (
            request("nobody@example.com", "ci"),
            Code::NotFound,
            "user `nobody@example.com` not found",
        ),
        (
            pb::CreateApiTokenRequest {
                expires_in: duration(0, 0),
                ..request("u-bob", "ci")
            },
            Code::InvalidArgument,
            "expires_in",
        ),
        (
            pb::CreateApiTokenRequest {
                expires_in: duration(-60, 0),
                ..request("u-bob", "ci")
            },
            Code::InvalidArgument,
            "expires_in",
        ),
        (
            pb::CreateApiTokenRequest {
                expires_in: duration(0, 1000),
                ..request("u-bob", "ci")
            },
            Code::InvalidArgument,
            "expires_in",
        ),
        (
            pb::CreateApiTokenRequest {
                role: 42,
                ..request("u-bob", "ci")
            },
            Code::InvalidArgument,
            "role",
        ),
    ];
    for (request, code, needle) in cases {
        assert_status(admin.create_api_token(request).await, code, needle);
    }
    assert_status(
        admin
            .revoke_api_token(pb::RevokeApiTokenRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .revoke_api_token(pb::RevokeApiTokenRequest {
                id: "0123456789abcdef".into(),
            })
            .await,
        Code::NotFound,
        "token `0123456789abcdef` not found",
    );
    assert_status(
        admin
            .list_api_tokens(pb::ListApiTokensRequest {
                user: "nobody@example.com".into(),
            })
            .await,
        Code::NotFound,
        "nobody@example.com",
    );

    // Read Only may not create, revoke or even list tokens.
    let mut reader = h.reader().await;
    assert_status(
        reader.create_api_token(request("u-bob", "mine")).await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    let own = admin::token::id_of(&h.reader_secret).unwrap().to_owned();
    assert_status(
        reader
            .revoke_api_token(pb::RevokeApiTokenRequest { id: own })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    assert_status(
        reader
            .list_api_tokens(pb::ListApiTokensRequest::default())
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    // Nor may a caller without a token.
    assert_status(
        h.client(None)
            .await
            .create_api_token(request("u-bob", "anon"))
            .await,
        Code::Unauthenticated,
        "missing credentials",
    );

    // Nothing changed.
    assert_eq!(h.live.store().revision(), revision);
    assert_eq!(list(&mut admin, "").await.len(), 3);
    assert!(audited(&h, "token.create").await.is_empty());
    assert!(h.audit("token.revoke").await.is_empty());
    reader
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap();
}
