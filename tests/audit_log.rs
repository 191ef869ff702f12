//! The audit log through the real binary: a flood of unauthenticated SCIM requests with long
//! paths adds nothing to the store or the audit log, is counted in `/metrics` and logged a
//! bounded number of times; an authenticated caller's refused write is still audited; the
//! listing filters by action and actor over gRPC and in the CLI; retention trims the log.

use crate::scim::{USER, http};
use crate::support::{Server, admin_token, path, run, run_ok, scim_token, write_users};
use portcullis_proto::v1 as pb;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Four users; u4 has no role until its token gives it one.
fn company(root: &Path) -> std::path::PathBuf {
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u3", "carol@example.com", "Carol Chen", true),
            ("u4", "dave@example.com", "Dave Reader", true),
        ],
    );
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(export.join("policies.jsonl"), "").unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn read_only_token(data: &Path, user: &str) -> String {
    let out = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(data),
        "--user",
        user,
        "--role",
        "read-only",
    ]);
    out.lines().last().unwrap().trim().to_owned()
}

/// Bytes under `dir`, every file.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                size_of(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// `portcullis_auth_refusals_total` by (port, reason), from a scrape of `/metrics`.
fn refusals(server: &Server) -> std::collections::BTreeMap<(String, String), u64> {
    let reply = http(&server.http, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut counts = std::collections::BTreeMap::new();
    for line in reply.body.lines() {
        let Some(rest) = line.strip_prefix("portcullis_auth_refusals_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .unwrap()
                .trim_end_matches('"')
                .to_owned()
        };
        counts.insert((label("port"), label("reason")), value.parse().unwrap());
    }
    counts
}

async fn audit(
    admin: &mut crate::support::Admin,
    request: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut request = pb::ListAuditEventsRequest {
        page_size: 500,
        ..request
    };
    // Bounded: a cursor that never ends fails instead of paging forever.
    for _ in 0..10_000 {
        let page = admin
            .list_audit_events(request.clone())
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        request.page_token = page.next_page_token;
    }
    panic!("the audit log did not end after 10,000 pages");
}

const FLOOD_LINE: &str = "refused a call without valid credentials";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_flood_is_counted_not_stored() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let admin_secret = admin_token(&data, "alice@example.com");
    let reader_secret = read_only_token(&data, "dave@example.com");
    let scim_secret = scim_token(&data, "okta");
    // Measured with nothing running (every command that wrote it has exited), and again after
    // the server's clean shutdown: both sizes are what is on disk, no flush awaited by a sleep.
    let before = size_of(&data);
    let server = Server::start(&data);
    let mut admin = server.admin(&admin_secret).await;

    // 2,000 requests with 16 KiB paths and four kinds of bad credentials.
    let connection_id = scim_secret.split('_').nth(1).unwrap();
    let wrong_secret = format!("Bearer scim_{connection_id}_{}", "00".repeat(32));
    let unknown_id = format!("Bearer scim_ffffffffffffffff_{}", "00".repeat(32));
    let long = format!("/scim/v2/Users/{}", "a".repeat(16 * 1024));
    let path_bytes = long.len();
    let base = server.http.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        for i in 0..2_000 {
            let auth = match i % 4 {
                0 => None,
                1 => Some("Bearer nonsense"),
                2 => Some(wrong_secret.as_str()),
                _ => Some(unknown_id.as_str()),
            };
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let reply = http(&base, "GET", &long, &headers, b"");
            assert_eq!(reply.status, 401, "{}", reply.body);
        }
    })
    .await
    .unwrap();
    let flood = started.elapsed();

    // Nothing in the audit log (and, checked after shutdown below, almost nothing on disk).
    let denied = audit(
        &mut admin,
        pb::ListAuditEventsRequest {
            action: "auth.denied".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(denied.is_empty(), "{denied:?}");

    // Counted, by reason.
    let counts = refusals(&server);
    let scim = |reason: &str| counts[&("scim".to_owned(), reason.to_owned())];
    assert_eq!(
        (scim("missing"), scim("malformed"), scim("unknown")),
        (500, 500, 1_000)
    );
    assert_eq!(counts[&("admin".to_owned(), "missing".to_owned())], 0);

    // Logged at most about once a second, each line short and without a secret.
    let log = server.stderr.lock().unwrap().clone();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(FLOOD_LINE)).collect();
    assert!(!lines.is_empty());
    assert!(
        lines.len() as u64 <= flood.as_secs() + 2,
        "{} lines in {flood:?}",
        lines.len()
    );
    for line in &lines {
        assert!(line.len() < 1_000, "{line}");
        assert!(!line.contains("0000000000000000"), "{line}");
    }
    assert!(lines.iter().skip(1).all(|l| l.contains("suppressed=")));

    // The admin port counts its own.
    let mut stranger = server.admin("pcl_nope").await;
    let refused = stranger
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        refusals(&server)[&("admin".to_owned(), "malformed".to_owned())],
        1
    );

    // A caller with a valid token is still audited when refused: a Read Only write.
    let mut reader = server.admin(&reader_secret).await;
    let refused = reader
        .lock_user(pb::LockUserRequest {
            user: "u2".into(),
            reason: "not mine to do".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let denied = audit(
        &mut admin,
        pb::ListAuditEventsRequest {
            action: "auth.denied".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        (denied[0].actor.as_str(), denied[0].target_id.as_str()),
        ("u4", "LockUser")
    );

    // On disk once the server has stopped: its start-up writes and the one audited refusal,
    // nothing of the flood.
    assert!(server.terminate().success());
    let grown = size_of(&data).saturating_sub(before);
    assert!(
        grown < 1 << 20,
        "the data dir grew by {grown} bytes (the paths alone are {} MB)",
        2_000 * path_bytes / 1_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_listing_filters_by_action_and_actor_over_grpc_and_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let admin_secret = admin_token(&data, "alice@example.com");
    let scim_secret = scim_token(&data, "okta");
    let server = Server::start(&data);
    let mut admin = server.admin(&admin_secret).await;

    for user in ["u2", "u3"] {
        admin
            .lock_user(pb::LockUserRequest {
                user: user.into(),
                reason: "incident 42".into(),
            })
            .await
            .unwrap();
    }
    admin
        .unlock_user(pb::UnlockUserRequest { user: "u2".into() })
        .await
        .unwrap();
    let created = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("Authorization", &format!("Bearer {scim_secret}")),
            ("Content-Type", "application/scim+json"),
        ],
        json!({"schemas": [USER], "userName": "erin@example.com", "active": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.body);

    let listed = |events: &[pb::AuditEvent]| {
        events
            .iter()
            .map(|e| (e.actor.clone(), e.action.clone(), e.target_id.clone()))
            .collect::<Vec<_>>()
    };
    let by = |actor: &str, action: &str| pb::ListAuditEventsRequest {
        actor: actor.into(),
        action: action.into(),
        ..Default::default()
    };
    let locks = audit(&mut admin, by("", "user.lock")).await;
    assert_eq!(
        listed(&locks),
        [
            ("u1".into(), "user.lock".into(), "u3".into()),
            ("u1".into(), "user.lock".into(), "u2".into())
        ]
    );
    let users = audit(&mut admin, by("u1", "user.")).await;
    assert_eq!(
        users.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["user.unlock", "user.lock", "user.lock"]
    );
    let scim = audit(&mut admin, by("scim:okta", "")).await;
    assert_eq!(scim.len(), 1, "{scim:?}");
    assert_eq!(scim[0].action, "user.create");
    assert!(
        audit(&mut admin, by("scim:okta", "user.lock"))
            .await
            .is_empty()
    );
    // A prefix must end with a dot: `user` alone is an exact action nobody has.
    assert!(audit(&mut admin, by("", "user")).await.is_empty());
    // Time range: nothing before the start of the test.
    let old = audit(
        &mut admin,
        pb::ListAuditEventsRequest {
            until: Some(prost_types::Timestamp {
                seconds: 1_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(old.is_empty(), "{old:?}");
    let refused = admin
        .list_audit_events(by("", &"x".repeat(129)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("action"),
        "{}",
        refused.message()
    );

    // The CLI.
    let out = run(&[
        "admin",
        "--server",
        &server.addr,
        "--token",
        &admin_secret,
        "--json",
        "audit",
        "--action",
        "user.lock",
        "--actor",
        "u1",
        "--since",
        "1h",
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(
                (e["action"].as_str(), e["actor"].as_str()),
                (Some("user.lock"), Some("u1"))
            );
            e["target_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(targets, ["u3", "u2"]);
    let out = run(&[
        "admin",
        "--server",
        &server.addr,
        "--token",
        &admin_secret,
        "audit",
        "--actor",
        "scim:okta",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("user.create") && !text.contains("user.lock"),
        "{text}"
    );
    let out = run(&[
        "admin",
        "--server",
        &server.addr,
        "--token",
        &admin_secret,
        "audit",
        "--since",
        "soon",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_the_audit_log_in_the_background() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let admin_secret = admin_token(&data, "alice@example.com");
    let server = Server::start_with(&data, &["--audit-max-records", "3"]);
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .contains("keeping the audit log")
    );
    let mut admin = server.admin(&admin_secret).await;
    for _ in 0..5 {
        for (lock, user) in [(true, "u2"), (false, "u2")] {
            if lock {
                admin
                    .lock_user(pb::LockUserRequest {
                        user: user.into(),
                        reason: "drill".into(),
                    })
                    .await
                    .unwrap();
            } else {
                admin
                    .unlock_user(pb::UnlockUserRequest { user: user.into() })
                    .await
                    .unwrap();
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = audit(&mut admin, pb::ListAuditEventsRequest::default()).await;
        if events.len() <= 3 {
            // The newest stay.
            assert_eq!(events[0].action, "user.unlock");
            break;
        }
        assert!(Instant::now() < deadline, "still {} events", events.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
