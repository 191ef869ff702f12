//! Credentials on a running server: the bootstrap admin token from the environment (stored once,
//! across restarts), and decision and sidecar secrets rotated with SIGHUP while a sidecar's
//! stream stays up.

use crate::fleet::{eventually, sidecar, token_file};
use crate::support::{Server, generated_and_imported, path, run_ok};
use portcullis_proto::v1 as pb;
use std::time::{Duration, Instant};
use tonic::Code;

/// A well-formed bootstrap secret (`pcl_<16 hex>_<random>`).
const BOOTSTRAP: &str =
    "pcl_00112233445566ff_9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn serve_bootstrapped(data: &std::path::Path, env: &[(&str, &str)], user: &str) -> Server {
    Server::spawn_with_env(
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(data),
            "--bootstrap-user",
            user,
        ],
        env,
    )
}

async fn bootstrap_events(server: &Server) -> usize {
    server.audit(BOOTSTRAP, "token.bootstrap").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_token_is_the_first_admin_and_is_stored_once() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);
    let env = [("PORTCULLIS_BOOTSTRAP_TOKEN", BOOTSTRAP)];

    let server = serve_bootstrapped(&data, &env, "u0000001");
    let mut admin = server.admin(BOOTSTRAP).await;
    let tokens = admin
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        (tokens[0].id.as_str(), tokens[0].name.as_str()),
        ("00112233445566ff", "bootstrap")
    );
    assert_eq!(
        (tokens[0].user_id.as_str(), tokens[0].role()),
        ("u0000001", pb::Role::Admin)
    );
    // An admin write works with it.
    admin
        .lock_user(pb::LockUserRequest {
            user: "u0000002".into(),
            reason: "bootstrap check".into(),
        })
        .await
        .unwrap();
    assert_eq!(bootstrap_events(&server).await, 1);
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("bootstrap admin token stored"), "{log}");
    assert!(!log.contains(&BOOTSTRAP[21..]), "the secret was logged");
    assert!(server.terminate().success());

    // The same environment again: nothing stored twice.
    let server = serve_bootstrapped(&data, &env, "u0000001");
    assert_eq!(bootstrap_events(&server).await, 1);
    let mut admin = server.admin(BOOTSTRAP).await;
    let tokens = admin
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    // Revoked, it stays revoked across a restart.
    admin
        .revoke_api_token(pb::RevokeApiTokenRequest {
            id: "00112233445566ff".into(),
        })
        .await
        .unwrap();
    assert!(server.terminate().success());
    let server = serve_bootstrapped(&data, &env, "u0000001");
    let refused = server
        .admin(BOOTSTRAP)
        .await
        .who_am_i(pb::WhoAmIRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(server.terminate().success());
}

#[test]
fn a_bad_bootstrap_secret_or_user_stops_serve_before_it_listens() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);
    let serve = |secret: &str, user: &str| {
        crate::support::bin()
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(["--data-dir", path(&data), "--bootstrap-user", user])
            .env("PORTCULLIS_BOOTSTRAP_TOKEN", secret)
            .output()
            .unwrap()
    };
    let cases = [
        (
            "not-a-token-secret-at-all",
            "u0000001",
            "is not a token secret",
        ),
        (
            "pcl_00112233445566ff_short",
            "u0000001",
            "random part is too short",
        ),
        (
            BOOTSTRAP,
            "nobody@example.com",
            "user `nobody@example.com` not found",
        ),
    ];
    for (secret, user, why) in cases {
        let out = serve(secret, user);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(!stderr.contains(secret), "the secret was printed: {stderr}");
    }
    // Nothing was stored: the store has no token at all.
    let server = Server::start(&data);
    let refused = crate::support::bin()
        .args([
            "admin",
            "--server",
            &server.addr,
            "--token",
            BOOTSTRAP,
            "tokens",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    drop(server);
}

/// A DecisionService client sending `secret`.
async fn check_with(server: &Server, secret: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
    let mut client = pb::decision_service_client::DecisionServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
            Ok(request)
        },
    );
    client
        .check(pb::CheckRequest {
            user: "u0000001".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "x".into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// Sends SIGHUP and waits until both token files were read again (`before` reloads logged so far).
async fn hangup(server: &Server, before: usize) {
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.stderr.lock().unwrap().clone();
        let reloads = log.matches("token file read again").count();
        if reloads >= before + 2 {
            assert!(!log.contains("does not check out"), "{log}");
            return;
        }
        assert!(Instant::now() < deadline, "no reload: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The revision `sidecar` answers at.
async fn revision(sidecar: &Server) -> u64 {
    sidecar
        .client()
        .await
        .check(pb::CheckRequest {
            user: "u0000001".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "x".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().revision)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_and_sidecar_secrets_rotate_on_sighup_without_dropping_a_stream() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "5"]);
    let admin_token = crate::support::admin_token(&data, "u0000001");
    let sidecar_file = token_file(root.path(), "sidecar-tokens", "sidecar-old");
    let decision_file = token_file(root.path(), "decision-tokens", "decision-old");
    let old_client = token_file(root.path(), "old-client", "sidecar-old");
    let new_client = token_file(root.path(), "new-client", "sidecar-new");
    let control = Server::start_with(
        &data,
        &[
            "--sidecar-token-file",
            &sidecar_file,
            "--decision-token-file",
            &decision_file,
        ],
    );
    let first = sidecar(&control.addr, &["--upstream-token-file", &old_client]);
    eventually("the sidecar has its snapshot", || async {
        revision(&first).await > 0
    })
    .await;
    check_with(&control, "decision-old").await.unwrap();
    let refused = check_with(&control, "decision-new").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Both secrets at once: the new one works, the old one still does.
    std::fs::write(&sidecar_file, "# rotating\nsidecar-old\nsidecar-new\n").unwrap();
    std::fs::write(&decision_file, "decision-old\ndecision-new\n").unwrap();
    hangup(&control, 0).await;
    check_with(&control, "decision-old").await.unwrap();
    check_with(&control, "decision-new").await.unwrap();
    let second = sidecar(&control.addr, &["--upstream-token-file", &new_client]);
    eventually("the new secret's sidecar has its snapshot", || async {
        revision(&second).await > 0
    })
    .await;

    // The old secrets removed: refused from now on, but the stream opened with one stays up.
    std::fs::write(&sidecar_file, "sidecar-new\n").unwrap();
    std::fs::write(&decision_file, "decision-new\n").unwrap();
    // This time over the admin API (`ReloadTokenFiles`) instead of a signal.
    let reloaded = admin_json(&control, &admin_token, &["reload-token-files"]).unwrap();
    assert_eq!(
        reloaded["files"],
        serde_json::json!([
            {"setting": "decision-token-file", "secrets": 1},
            {"setting": "sidecar-token-file", "secrets": 1},
        ])
    );
    let refused = check_with(&control, "decision-old").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    check_with(&control, "decision-new").await.unwrap();
    let late = sidecar(&control.addr, &["--upstream-token-file", &old_client]);

    // A change reaches the first sidecar: its stream was not dropped (it could not reconnect
    // with its removed secret).
    let out = run_ok(&[
        "admin",
        "--server",
        &control.addr,
        "--token",
        &admin_token,
        "users",
        "lock",
        "--reason",
        "rotation",
        "u0000003",
    ]);
    let locked: u64 = out
        .rsplit("revision ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for s in [&first, &second] {
        eventually("the sidecar has the lock", || async {
            revision(s).await >= locked
        })
        .await;
    }
    // The sidecar with the removed secret never gets a snapshot: an absence, shown over the
    // second after the others have the lock.
    let late = &late;
    crate::support::holds_for(
        "the sidecar with the removed secret at revision 0",
        Duration::from_secs(1),
        || async move {
            match revision(late).await {
                0 => Ok(()),
                r => Err(format!("it answers at revision {r}")),
            }
        },
    )
    .await;
    // A file that no longer checks out keeps its secrets, and the call says why.
    std::fs::write(&decision_file, "# emptied by mistake\n").unwrap();
    let error = admin_json(&control, &admin_token, &["reload-token-files"]).unwrap_err();
    assert!(
        error.contains("decision-token-file") && error.contains("holds no secret"),
        "{error}"
    );
    check_with(&control, "decision-new").await.unwrap();
    let events = control.audit(&admin_token, "credentials.reload").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].detail.contains("decision-token-file: unchanged"),
        "{events:?}"
    );
    let log = control.stderr.lock().unwrap().clone();
    for secret in ["sidecar-old", "sidecar-new", "decision-old", "decision-new"] {
        assert!(!log.contains(secret), "{secret} was logged");
    }
}

/// `portcullis admin --json …` against `server` with `token`: the JSON, or the error on stderr.
fn admin_json(server: &Server, token: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = crate::support::bin()
        .args([
            "admin",
            "--server",
            &server.addr,
            "--token",
            token,
            "--json",
        ])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The SCIM status of listing users with `secret`.
fn scim_status(server: &Server, secret: &str) -> u16 {
    let bearer = format!("Bearer {secret}");
    crate::scim::http(
        &server.http,
        "GET",
        "/scim/v2/Users?count=1",
        &[("Authorization", &bearer)],
        b"",
    )
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_connections_are_made_rotated_with_grace_and_revoked_online() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "7"]);
    let admin = crate::support::admin_token(&data, "u0000001");
    let reader = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(&data),
        "--user",
        "u0000002",
        "--role",
        "read-only",
    ]);
    let reader = reader.lines().last().unwrap().trim().to_owned();
    let server = Server::start(&data);

    // Created online; the secret works over real HTTP SCIM at once.
    let made = admin_json(
        &server,
        &admin,
        &["scim-connections", "create", "--name", "okta"],
    )
    .unwrap();
    let id = made["connection"]["id"].as_str().unwrap().to_owned();
    let first = made["secret"].as_str().unwrap().to_owned();
    assert_eq!(made["connection"]["created_by"], "u0000001");
    assert_eq!(scim_status(&server, &first), 200);
    // The name is taken while the connection is active; a reader may list but not write.
    let taken = admin_json(
        &server,
        &admin,
        &["scim-connections", "create", "--name", "okta"],
    );
    assert!(taken.unwrap_err().contains("already named `okta`"));
    let denied = admin_json(
        &server,
        &reader,
        &["scim-connections", "create", "--name", "entra"],
    );
    let denied = denied.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let listed = admin_json(&server, &reader, &["scim-connections", "list"]).unwrap();
    let listed = listed["connections"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "okta");
    eventually("the list shows when it was last used", || {
        let reader = reader.clone();
        let server = &server;
        async move {
            let listed = admin_json(server, &reader, &["scim-connections", "list"]).unwrap();
            !listed["connections"][0]["last_used_at"].is_null()
        }
    })
    .await;

    // Bad input: nothing written (the audit log holds the create alone).
    for (args, why) in [
        (
            vec!["rotate", "0123456789abcdef"],
            "SCIM connection `0123456789abcdef` not found",
        ),
        (
            vec!["rotate", "not-an-id"],
            "id: is not a SCIM connection id",
        ),
        (
            vec!["rotate", &id, "--grace", "30d"],
            "grace: 30days is longer than 7days",
        ),
        (vec!["revoke", "0123456789abcdef"], "not found"),
    ] {
        let mut full = vec!["scim-connections"];
        full.extend(args.iter().copied());
        let error = admin_json(&server, &admin, &full).unwrap_err();
        assert!(error.contains(why), "{why}: {error}");
    }
    // A negative grace cannot be spelled on the command line; over gRPC it is refused.
    let negative = server
        .admin(&admin)
        .await
        .rotate_scim_connection(pb::RotateScimConnectionRequest {
            id: id.clone(),
            grace: Some(prost_types::Duration {
                seconds: -5,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    assert!(
        negative.message().starts_with("grace: "),
        "{}",
        negative.message()
    );
    let events = server.audit(&admin, "scim_connection.").await;
    assert_eq!(events.len(), 1, "{events:?}");

    // Rotated with a short grace: both secrets work within it, the old one is refused after.
    let rotated = admin_json(
        &server,
        &admin,
        &["scim-connections", "rotate", &id, "--grace", "2s"],
    )
    .unwrap();
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(!rotated["connection"]["previous_valid_until"].is_null());
    assert_eq!(scim_status(&server, &second), 200);
    assert_eq!(scim_status(&server, &first), 200);
    eventually("the old secret is refused", || {
        let (server, first) = (&server, first.clone());
        async move { scim_status(server, &first) == 401 }
    })
    .await;
    assert_eq!(scim_status(&server, &second), 200);

    // Revoked: refused from the next request on.
    admin_json(&server, &admin, &["scim-connections", "revoke", &id]).unwrap();
    assert_eq!(scim_status(&server, &second), 401);
    let events = server.audit(&admin, "scim_connection.").await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "scim_connection.revoke",
            "scim_connection.rotate",
            "scim_connection.create"
        ]
    );
    let log = server.stderr.lock().unwrap().clone();
    for secret in [&first, &second] {
        assert!(!log.contains(secret.as_str()), "a secret was logged");
    }
}
