//! Acknowledged means durable: writes acknowledged over the admin API and SCIM survive the server
//! being killed outright (SIGKILL, no shutdown path runs) right after the last acknowledgement,
//! and the restarted server answers from a revision at least as new as every one of them.

use crate::support::{Admin, Server, path, run_ok};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Four users; bob and carol in engineering; github is allowed to everyone, but engineering may
/// not delete repositories.
fn company(root: &Path) -> PathBuf {
    let export = root.join("export");
    fs::create_dir_all(&export).unwrap();
    crate::support::write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u3", "carol@example.com", "Carol Chen", true),
            ("u4", "dave@example.com", "Dave Doe", true),
        ],
    );
    fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2","u3"]}"#.to_owned() + "\n",
    )
    .unwrap();
    fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n",
            r#"{"id":"pol-2","name":"engineering keeps its repos","connector":"github","#,
            r#""tools":["delete_repo"],"scope":{"all_users":false,"users":[],"groups":["g-eng"]},"#,
            r#""action":"DENY","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

/// The secret `token create` / `scim-token create` prints last.
fn secret(out: &str, prefix: &str) -> String {
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with(prefix), "{out}");
    secret
}

/// A SCIM call; returns the status and the JSON body (`null` when empty).
async fn scim(
    server: &Server,
    token: &str,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, Value) {
    let client: Client<HttpConnector, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = axum::http::Request::builder()
        .method(method)
        .uri(format!("{}/scim/v2{target}", server.http))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

/// Check with no `min_revision`: what a restarted server answers before anyone asks for more.
async fn check(server: &Server, user: &str, tool: &str) -> pb::CheckResponse {
    server
        .client()
        .await
        .check(pb::CheckRequest {
            user: user.into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: tool.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// (decision, reason, policy id) as their wire names.
fn outcome(answer: &pb::CheckResponse) -> (&str, &str, &str) {
    (
        answer.decision().as_str_name(),
        answer.reason().as_str_name(),
        &answer.policy_id,
    )
}

/// The revision of each audited change, by (action, target id).
async fn audited(admin: &mut Admin) -> Vec<(String, String, u64)> {
    let events = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    events
        .into_iter()
        .filter(|e| e.revision > 0)
        .map(|e| (e.action, e.target_id, e.revision))
        .collect()
}

fn revision_of(events: &[(String, String, u64)], action: &str, target: &str) -> u64 {
    events
        .iter()
        .find(|(a, t, _)| a == action && t == target)
        .map(|(_, _, r)| *r)
        .unwrap_or_else(|| panic!("no {action} of {target} in {events:?}"))
}

/// Everything acknowledged before the kill, as decisions see it.
async fn assert_acknowledged(server: &Server, linus: &str, bob_locked: bool, at_least: u64) {
    let bob = check(server, "bob@example.com", "create_issue").await;
    assert!(
        bob.revision >= at_least,
        "bob answered from {} < {at_least}",
        bob.revision
    );
    if bob_locked {
        assert_eq!(outcome(&bob), ("DECISION_DENY", "REASON_USER_LOCKED", ""));
    } else {
        assert_eq!(outcome(&bob), ("DECISION_ALLOW", "REASON_POLICY", "pol-1"));
    }
    for key in ["linus@example.com", "LINUS@example.com", "00u-linus", linus] {
        let answer = check(server, key, "create_issue").await;
        assert!(answer.revision >= at_least);
        assert_eq!(
            outcome(&answer),
            ("DECISION_ALLOW", "REASON_POLICY", "pol-1"),
            "{key}"
        );
    }
    let dora = check(server, "dora@example.com", "create_issue").await;
    assert!(dora.revision >= at_least);
    assert_eq!(
        outcome(&dora),
        ("DECISION_DENY", "REASON_USER_INACTIVE", "")
    );
    // dave joined engineering.
    let dave = check(server, "dave@example.com", "delete_repo").await;
    assert!(dave.revision >= at_least);
    assert_eq!(outcome(&dave), ("DECISION_DENY", "REASON_POLICY", "pol-2"));
    let alice = check(server, "alice@example.com", "delete_repo").await;
    assert_eq!(
        outcome(&alice),
        ("DECISION_ALLOW", "REASON_POLICY", "pol-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let token = secret(
        &run_ok(&[
            "token",
            "create",
            "--data-dir",
            path(&data),
            "--user",
            "alice@example.com",
            "--role",
            "admin",
        ]),
        "pcl_",
    );
    let scim_token = secret(
        &run_ok(&[
            "scim-token",
            "create",
            "--data-dir",
            path(&data),
            "--name",
            "okta",
        ]),
        "scim_",
    );

    let server = Server::start(&data);
    let mut admin_api = server.admin(&token).await;
    let locked = admin_api
        .lock_user(pb::LockUserRequest {
            user: "bob@example.com".into(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    let user = |name: &str, external_id: &str| {
        json!({
            "schemas": [USER],
            "userName": format!("{name}@example.com"),
            "emails": [{"primary": true, "value": format!("{name}@example.com")}],
            "externalId": external_id,
            "active": true
        })
    };
    let (status, linus) = scim(
        &server,
        &scim_token,
        "POST",
        "/Users",
        &user("linus", "00u-linus"),
    )
    .await;
    assert_eq!(status, 201, "{linus}");
    let linus = linus["id"].as_str().unwrap().to_owned();
    let (status, dora) = scim(
        &server,
        &scim_token,
        "POST",
        "/Users",
        &user("dora", "00u-dora"),
    )
    .await;
    assert_eq!(status, 201, "{dora}");
    let dora = dora["id"].as_str().unwrap().to_owned();
    let deactivate = json!({
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"active": false}}]
    });
    let (status, body) = scim(
        &server,
        &scim_token,
        "PATCH",
        &format!("/Users/{dora}"),
        &deactivate,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // SCIM answers carry no revision: the audit log says what each change committed at.
    let before = audited(&mut admin_api).await;
    let mut acknowledged = vec![
        revision_of(&before, "user.lock", "u2"),
        revision_of(&before, "user.create", &linus),
        revision_of(&before, "user.create", &dora),
        revision_of(&before, "user.patch", &dora),
    ];
    assert_eq!(acknowledged[0], locked);

    // The last write, then the kill at once: nothing gets time to reach the disk on its own.
    let assigned = admin_api
        .assign_users(pb::AssignUsersRequest {
            group_id: "g-eng".into(),
            users: vec!["dave@example.com".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // Dropping the server sends SIGKILL: no graceful shutdown, no final flush.
    drop(server);
    assert_eq!(assigned.added, 1);
    acknowledged.push(assigned.revision);
    assert!(
        acknowledged.windows(2).all(|w| w[0] < w[1]),
        "each write commits after the one before: {acknowledged:?}"
    );
    let last = assigned.revision;
    drop(admin_api);

    let server = Server::start(&data);
    assert_acknowledged(&server, &linus, true, last).await;
    let mut admin_api = server.admin(&token).await;
    let after = audited(&mut admin_api).await;
    for (action, target, revision) in &before {
        assert_eq!(
            revision_of(&after, action, target),
            *revision,
            "{action} of {target}"
        );
    }
    assert_eq!(revision_of(&after, "group.assign", "g-eng"), last);

    // The revision counter survives too: a write after the restart commits past every
    // revision before it, and is as durable.
    let unlocked = admin_api
        .unlock_user(pb::UnlockUserRequest {
            user: "bob@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(unlocked > last, "unlocked at {unlocked}, after {last}");
    drop(admin_api);
    drop(server);

    let server = Server::start(&data);
    assert_acknowledged(&server, &linus, false, unlocked).await;
}
