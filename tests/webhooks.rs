//! `portcullis admin webhooks …` against the real binary: endpoints created (the secret shown
//! once), listed, shown, updated (disabled, secret rotated), their deliveries listed, bad input
//! refused, Read Only refused writes; the webhook metrics on `/metrics`. (Deliveries of real
//! approval events are tested in the admin suite and, once requests transition, end to end.)

use crate::support::{Server, path, run, run_ok, write_users};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn token(data: &Path, user: &str, role: &str) -> String {
    let out = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(data),
        "--user",
        user,
        "--role",
        role,
    ]);
    out.lines().last().unwrap().trim().to_owned()
}

fn cli(server: &Server, token: &str, args: &[&str]) -> Output {
    let mut all = vec![
        "admin",
        "--server",
        &server.addr,
        "--token",
        token,
        "webhooks",
    ];
    all.extend_from_slice(args);
    run(&all)
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn refused(output: Output, needle: &str) {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
}

#[tokio::test]
async fn webhooks_over_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let export = root.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Reader", true),
        ],
    );
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(export.join("policies.jsonl"), "").unwrap();
    let data = root.path().join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    let admin = token(&data, "alice@example.com", "admin");
    let reader = token(&data, "bob@example.com", "read-only");
    let server = Server::start(&data);

    let created = ok(cli(
        &server,
        &admin,
        &[
            "create",
            "--url",
            "https://hooks.example.com/portcullis",
            "--event",
            "approval.created",
            "--event",
            "approval.approved",
            "--description",
            "approvals channel",
        ],
    ));
    let secret = created.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created
        .split_whitespace()
        .find(|w| w.starts_with("wh_"))
        .unwrap()
        .to_owned();

    let listed: Value =
        serde_json::from_str(&ok(cli(&server, &reader, &["--json", "list"]))).unwrap();
    let webhooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["id"], id.as_str());
    assert_eq!(webhooks[0]["enabled"], true);
    assert!(!listed.to_string().contains(&secret));
    let shown = ok(cli(&server, &reader, &["show", &id]));
    assert!(
        shown.contains("approval.created, approval.approved"),
        "{shown}"
    );
    assert!(!shown.contains("whsec_"));

    let updated = ok(cli(
        &server,
        &admin,
        &[
            "update",
            &id,
            "--disable",
            "--all-events",
            "--rotate-secret",
        ],
    ));
    let rotated = updated.lines().last().unwrap();
    assert!(
        rotated.starts_with("whsec_") && rotated != secret,
        "{updated}"
    );
    let shown: Value =
        serde_json::from_str(&ok(cli(&server, &admin, &["--json", "show", &id]))).unwrap();
    assert_eq!(shown["webhook"]["enabled"], false);
    assert_eq!(shown["webhook"]["events"], serde_json::json!([]));
    assert_eq!(shown["webhook"]["description"], "approvals channel");
    let deliveries: Value =
        serde_json::from_str(&ok(cli(&server, &admin, &["--json", "deliveries", &id]))).unwrap();
    assert_eq!(deliveries["deliveries"], serde_json::json!([]));

    refused(
        cli(
            &server,
            &admin,
            &["create", "--url", "ftp://example.com/hook"],
        ),
        "invalid argument: webhook.url",
    );
    refused(
        cli(
            &server,
            &admin,
            &["create", "--url", "http://example.com/hook"],
        ),
        "loopback",
    );
    refused(
        cli(
            &server,
            &admin,
            &[
                "create",
                "--url",
                "https://example.com/",
                "--event",
                "approval.nope",
            ],
        ),
        "unknown event type `approval.nope`",
    );
    refused(
        cli(
            &server,
            &reader,
            &["create", "--url", "https://example.com/"],
        ),
        "permission denied",
    );
    refused(cli(&server, &reader, &["delete", &id]), "permission denied");
    refused(cli(&server, &admin, &["show", "wh_nope"]), "not found");

    ok(cli(&server, &admin, &["delete", &id]));
    let listed: Value =
        serde_json::from_str(&ok(cli(&server, &admin, &["--json", "list"]))).unwrap();
    assert_eq!(listed["webhooks"], serde_json::json!([]));

    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(format!("{}/metrics", server.http).parse().unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    for sample in [
        r#"portcullis_webhook_deliveries_total{outcome="delivered"} 0"#,
        r#"portcullis_webhook_deliveries_total{outcome="failed"} 0"#,
        "portcullis_webhook_failures_total 0",
        "portcullis_webhook_pending 0",
        r#"portcullis_admin_calls_total{method="CreateWebhook",code="OK"} 1"#,
    ] {
        assert!(body.contains(sample), "{sample} not in {body}");
    }
}
