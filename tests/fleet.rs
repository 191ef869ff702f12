//! A control plane and its sidecars, all the real binary on loopback: every sidecar answers like
//! the control plane, SCIM and admin changes reach each of them, they fail closed once the
//! control plane is gone past the staleness bound and catch up from the change log when it is
//! back; a sidecar started late gets the full snapshot; the stream needs its token and TLS.

use crate::scim::{Scim, USER, http, id_of};
use crate::support::{Server, generated_and_imported, path, run_ok, write_users};
use crate::workload_replay::{check, expected, got};
use portcullis_proto::v1 as pb;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The staleness bound the sidecars here run with.
const STALENESS: &str = "3s";

/// How long anything here may take to propagate before the test fails.
use crate::support::PATIENCE;

/// `portcullis sidecar` following `upstream`, on ephemeral ports.
pub(crate) fn sidecar(upstream: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "sidecar",
        "--upstream",
        upstream,
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--health-addr",
        "127.0.0.1:0",
        "--max-staleness",
        STALENESS,
    ];
    args.extend_from_slice(extra);
    Server::spawn(&args)
}

/// The sidecar's `/metrics`, parsed: sample name → value.
pub(crate) fn metrics(sidecar: &Server) -> HashMap<String, f64> {
    let reply = http(&sidecar.http, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, value)| (name.to_owned(), value.trim().parse().unwrap()))
        .collect()
}

fn metric(sidecar: &Server, name: &str) -> f64 {
    *metrics(sidecar)
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

async fn health(sidecar: &Server) -> ServingStatus {
    let addr = format!("http://{}", sidecar.logged("health_addr").unwrap());
    let channel = Endpoint::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: "portcullis.v1.DecisionService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    status.status()
}

/// Polls `probe` until it holds, for at most [`PATIENCE`], or fails naming `what`.
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) {
    let probe = &mut probe;
    crate::support::wait_for_async(what, PATIENCE, || {
        let held = probe();
        async move { if held.await { Ok(()) } else { Err("not yet") } }
    })
    .await;
}

async fn decide(
    server: &Server,
    user: &str,
    connector: &str,
    tool: &str,
    min_revision: u64,
) -> pb::CheckResponse {
    server
        .client()
        .await
        .check(pb::CheckRequest {
            user: user.into(),
            agent: "claude".into(),
            connector: connector.into(),
            tool: tool.into(),
            min_revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every request of the workload, answered by `server` in batches.
async fn answers(server: &Server, requests: &[workload::RequestLine]) -> Vec<pb::CheckResponse> {
    let mut client = server.client().await;
    let mut out = Vec::with_capacity(requests.len());
    for batch in requests.chunks(1000) {
        let reply = client
            .batch_check(pb::BatchCheckRequest {
                checks: batch.iter().map(check).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(reply.results);
    }
    out
}

/// `server`'s answers are `reference`'s, decision for decision, at the same revision.
async fn answers_like(
    server: &Server,
    reference: &[pb::CheckResponse],
    requests: &[workload::RequestLine],
) {
    let got: Vec<_> = answers(server, requests).await;
    for ((request, mine), theirs) in requests.iter().zip(&got).zip(reference) {
        assert_eq!(
            (crate::workload_replay::got(mine), mine.revision),
            (crate::workload_replay::got(theirs), theirs.revision),
            "{} answered differently by {}",
            request.id,
            server.addr
        );
    }
}

pub(crate) fn token_file(root: &Path, name: &str, secret: &str) -> String {
    let file = root.join(name);
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    path(&file).to_owned()
}

/// A user the workload expects to be allowed somewhere, and that request.
fn allowed(requests: &[workload::RequestLine], skip: &[&str]) -> workload::RequestLine {
    requests
        .iter()
        .find(|r| expected(r).0 == "DECISION_ALLOW" && !skip.contains(&r.user.as_str()))
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_follow_fail_closed_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "11"]);
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    let admin = crate::support::admin_token(&data, "u0000001");
    let scim_token = crate::support::scim_token(&data, "okta");
    let sidecar_token = token_file(root.path(), "sidecar-token", "fleet-secret");

    let control = Server::start_with(&data, &["--sidecar-token-file", &sidecar_token]);
    let upstream = control.addr.clone();
    let upstream_args = ["--upstream-token-file", sidecar_token.as_str()];
    let sidecars = [
        sidecar(&upstream, &upstream_args),
        sidecar(&upstream, &upstream_args),
    ];
    // Configured to keep answering from a stale snapshot.
    let lenient = sidecar(
        &upstream,
        &["--upstream-token-file", &sidecar_token, "--serve-stale"],
    );

    // Every request of the workload: the expected answer, from the control plane and from each
    // sidecar (once it has its snapshot).
    let reference = answers(&control, &requests).await;
    for (request, answer) in requests.iter().zip(&reference) {
        assert_eq!(got(answer), expected(request), "{}", request.id);
    }
    let revision = reference[0].revision;
    eventually("the lenient sidecar has its snapshot", || async {
        decide(&lenient, "u0000002", "github", "x", 0)
            .await
            .revision
            >= revision
    })
    .await;
    for s in &sidecars {
        eventually("the sidecar has its snapshot", || async {
            decide(s, "u0000002", "github", "x", 0).await.revision >= revision
                && health(s).await == ServingStatus::Serving
        })
        .await;
        answers_like(s, &reference, &requests).await;
        assert_eq!(metric(s, "portcullis_full_snapshots_total"), 1.0);
    }

    // An admin lock, read back from every sidecar with min_revision: it waits for the change.
    let locked = allowed(&requests, &[]);
    let out = run_ok(&[
        "admin",
        "--server",
        &control.addr,
        "--token",
        &admin,
        "users",
        "lock",
        "--reason",
        "incident",
        &locked.user,
    ]);
    let lock_revision: u64 = out
        .rsplit("revision ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for s in &sidecars {
        let answer = decide(
            s,
            &locked.user,
            &locked.connector,
            &locked.tool,
            lock_revision,
        )
        .await;
        assert_eq!(
            (answer.decision(), answer.reason()),
            (pb::Decision::Deny, pb::Reason::UserLocked),
            "{}",
            s.addr
        );
        assert!(answer.revision >= lock_revision);
    }

    // An identity provider provisions a user, then deactivates them.
    let scim = Scim {
        base: control.http.clone(),
        token: scim_token,
    };
    let created = scim.post(
        "/Users",
        &json!({"schemas": [USER], "userName": "newhire@example.com", "externalId": "00u-new",
                "emails": [{"value": "newhire@example.com", "primary": true}], "active": true}),
    );
    let id = id_of(&created.expect(201));
    scim.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .expect(200);
    for s in &sidecars {
        eventually("the deactivation reaches the sidecar", || async {
            decide(s, "00u-new", "github", "create_issue", 0)
                .await
                .reason()
                == pb::Reason::UserInactive
        })
        .await;
    }

    // The control plane dies: sidecars keep answering from what they hold, then fail closed.
    let port = control.port();
    let steady = allowed(&requests, &[&locked.user]);
    let before_kill = decide(
        &sidecars[0],
        &steady.user,
        &steady.connector,
        &steady.tool,
        0,
    )
    .await;
    assert_eq!(before_kill.decision(), pb::Decision::Allow);
    drop(control);
    let killed = Instant::now();
    let answer = decide(
        &sidecars[0],
        &steady.user,
        &steady.connector,
        &steady.tool,
        0,
    )
    .await;
    assert_eq!(
        answer.decision(),
        pb::Decision::Allow,
        "answers from memory right after the kill"
    );
    for s in &sidecars {
        eventually("the sidecar fails closed", || async {
            decide(s, &steady.user, &steady.connector, &steady.tool, 0)
                .await
                .reason()
                == pb::Reason::StaleSnapshot
        })
        .await;
        // Health follows within a moment.
        eventually("health says NOT_SERVING", || async {
            health(s).await == ServingStatus::NotServing
        })
        .await;
        assert_eq!(metric(s, "portcullis_snapshot_failing_closed"), 1.0);
    }
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "failed closed before the bound"
    );
    // The lenient one still answers, saying it is stale in its metrics but not in its health.
    eventually("the lenient sidecar reports staleness", || async {
        metric(&lenient, "portcullis_snapshot_stale") == 1.0
    })
    .await;
    let answer = decide(&lenient, &steady.user, &steady.connector, &steady.tool, 0).await;
    assert_eq!(answer.decision(), pb::Decision::Allow);
    assert_eq!(metric(&lenient, "portcullis_snapshot_failing_closed"), 0.0);
    assert_eq!(health(&lenient).await, ServingStatus::Serving);

    // Meanwhile the directory changes on disk: a user is deactivated by a bulk import.
    let deactivated = allowed(&requests, &[&locked.user, &steady.user]);
    let export = root.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[(
            &deactivated.user,
            "deactivated@example.com",
            "Deactivated",
            false,
        )],
    );
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(export.join("policies.jsonl"), "").unwrap();
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);

    // Back on the same port: the sidecars catch up from the change log, no full snapshot.
    let control = Server::start_on(
        &data,
        &format!("127.0.0.1:{port}"),
        &["--sidecar-token-file", &sidecar_token],
    );
    for s in &sidecars {
        eventually("the sidecar catches up", || async {
            decide(
                s,
                &deactivated.user,
                &deactivated.connector,
                &deactivated.tool,
                0,
            )
            .await
            .reason()
                == pb::Reason::UserInactive
        })
        .await;
        eventually("health says SERVING", || async {
            health(s).await == ServingStatus::Serving
        })
        .await;
        assert_eq!(
            metric(s, "portcullis_full_snapshots_total"),
            1.0,
            "caught up without a resync"
        );
        assert!(metric(s, "portcullis_upstream_reconnects_total") >= 1.0);
    }

    // A sidecar started now gets the whole directory; all answer exactly like the control plane.
    let late = sidecar(&control.addr, &upstream_args);
    let reference = answers(&control, &requests).await;
    let revision = reference[0].revision;
    eventually("the late sidecar has its snapshot", || async {
        decide(&late, "u0000002", "github", "x", 0).await.revision >= revision
    })
    .await;
    assert_eq!(metric(&late, "portcullis_full_snapshots_total"), 1.0);
    assert!(metric(&late, "portcullis_full_snapshot_bytes") > 10_000.0);
    for s in sidecars.iter().chain([&late]) {
        eventually("the sidecar is at the control plane's revision", || async {
            decide(s, "u0000002", "github", "x", 0).await.revision >= revision
        })
        .await;
        answers_like(s, &reference, &requests).await;
        assert_eq!(metric(s, "portcullis_snapshot_lag_revisions"), 0.0);
    }
}

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_needs_tls_trust_and_the_token() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let export = root.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(&export, &[("u1", "ada@example.com", "Ada", true)]);
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(export.join("policies.jsonl"), "").unwrap();
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    let (cert, key) = certificate();
    let cert_file = token_file(root.path(), "cert.pem", &cert);
    let key_file = token_file(root.path(), "key.pem", &key);
    let token = token_file(root.path(), "token", "right");
    let wrong = token_file(root.path(), "wrong", "wrong");

    let control = Server::start_with(
        &data,
        &[
            "--tls-cert",
            &cert_file,
            "--tls-key",
            &key_file,
            "--sidecar-token-file",
            &token,
        ],
    );
    let upstream = format!("https://localhost:{}", control.port());

    // Over TLS, with a client that trusts the certificate: decisions and the stream both work.
    let channel: Channel = Endpoint::from_shared(upstream.clone())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = pb::decision_service_client::DecisionServiceClient::new(channel)
        .check(pb::CheckRequest {
            user: "ada@example.com".into(),
            connector: "github".into(),
            tool: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.reason(), pb::Reason::NoMatchingPolicy);

    let trusted = sidecar(
        &upstream,
        &[
            "--upstream-token-file",
            &token,
            "--upstream-ca-file",
            &cert_file,
        ],
    );
    let untrusted = sidecar(&upstream, &["--upstream-token-file", &token]);
    let refused = sidecar(
        &upstream,
        &[
            "--upstream-token-file",
            &wrong,
            "--upstream-ca-file",
            &cert_file,
        ],
    );
    // Serving stale is for a snapshot that aged: with none at all it fails closed too.
    let anonymous = sidecar(
        &upstream,
        &["--upstream-ca-file", &cert_file, "--serve-stale"],
    );
    eventually("the trusted sidecar has its snapshot", || async {
        decide(&trusted, "ada@example.com", "github", "x", 0)
            .await
            .reason()
            == pb::Reason::NoMatchingPolicy
    })
    .await;
    eventually("health says SERVING", || async {
        health(&trusted).await == ServingStatus::Serving
    })
    .await;
    // The others keep trying and never get a snapshot: they fail closed.
    for s in [&untrusted, &refused, &anonymous] {
        eventually("the sidecar retried", || async {
            metric(s, "portcullis_upstream_reconnects_total") >= 2.0
        })
        .await;
        assert_eq!(metric(s, "portcullis_full_snapshots_total"), 0.0);
        assert_eq!(health(s).await, ServingStatus::NotServing);
        let answer = decide(s, "ada@example.com", "github", "x", 0).await;
        assert_eq!(
            (answer.decision(), answer.reason()),
            (pb::Decision::Deny, pb::Reason::StaleSnapshot)
        );
    }
    let log = refused.stderr.lock().unwrap().clone();
    assert!(
        log.contains("Unauthenticated") || log.contains("invalid token"),
        "{log}"
    );
    assert!(!log.contains("wrong"), "a secret in the log: {log}");
}
