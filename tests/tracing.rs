//! Traces over OTLP: a real collector (an OTLP/gRPC `TraceService` on a loopback port) receives
//! the spans of Check, BatchCheck, admin calls and SCIM requests from `serve` and `sidecar`,
//! children of the callers' `traceparent`, with their attributes and no user identifier; with
//! no endpoint, or OTEL_SDK_DISABLED, it receives nothing.

use crate::scim::http;
use crate::support::{Server, path, run_ok, write_users};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use portcullis_proto::v1 as pb;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The variables that would turn traces on (or off) from the test's own environment.
const OTEL_VARS: [&str; 5] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
];

/// What the collector received: each exported span with its service's resource.
#[derive(Debug, Clone, Default)]
struct Collector {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.exports.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
    error: bool,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} has no {key}: {:?}", self.name, self.attributes))
    }
}

fn value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    /// Serves on an ephemeral loopback port until the returned sender is dropped.
    async fn start() -> (Collector, String, tokio::sync::oneshot::Sender<()>) {
        let collector = Collector::default();
        let (listener, addr) = test_support::loopback().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        (collector, format!("http://{addr}"), stop)
    }

    fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for export in self.exports.lock().unwrap().iter() {
            for resource_spans in &export.resource_spans {
                let resource: BTreeMap<String, String> = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .map(|kv| (kv.key.clone(), value(kv)))
                    .collect();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        let mut attributes: BTreeMap<String, String> = span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), value(kv)))
                            .collect();
                        // Resource attributes too, so the checks on values cover them.
                        for (k, v) in &resource {
                            attributes.insert(format!("resource:{k}"), v.clone());
                        }
                        spans.push(Span {
                            service: resource.get("service.name").cloned().unwrap_or_default(),
                            name: span.name.clone(),
                            kind: span.kind,
                            trace_id: hex(&span.trace_id),
                            parent_span_id: hex(&span.parent_span_id),
                            attributes,
                            error: span.status.as_ref().is_some_and(|s| s.code == 2),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Waits until `done` holds for the spans received; fails naming `what` (and the spans
    /// seen) after `within`.
    async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let wait = crate::support::Deadline::new(what, within);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            wait.tick(&spans).await;
        }
    }
}

/// An absence: no span reaches `collector` over 300 ms (`when` says why none should).
async fn no_spans_for(collector: &Collector, when: &str) {
    crate::support::holds_for(
        &format!("no span exported {when}"),
        Duration::from_millis(300),
        || async {
            let spans = collector.spans();
            if spans.is_empty() {
                Ok(())
            } else {
                Err(format!("{spans:?}"))
            }
        },
    )
    .await;
}

fn named<'s>(spans: &'s [Span], name: &str, trace_id: &str) -> &'s Span {
    spans
        .iter()
        .find(|s| s.name == name && s.trace_id == trace_id)
        .unwrap_or_else(|| {
            let seen: Vec<_> = spans.iter().map(|s| (&s.name, &s.trace_id)).collect();
            panic!("no span {name} in trace {trace_id}; got {seen:?}")
        })
}

/// Alice and Bob; github is allowed to everyone. Returns the data dir.
fn directory(root: &Path) -> std::path::PathBuf {
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("u-alice", "alice@example.com", "Alice Admin", true),
            ("u-bob", "bob@example.com", "Bob Builder", true),
        ],
    );
    std::fs::write(export.join("groups.jsonl"), "").unwrap();
    std::fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn check(user: &str, tool: &str, traceparent: Option<&str>) -> tonic::Request<pb::CheckRequest> {
    let mut request = tonic::Request::new(pb::CheckRequest {
        user: user.into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        attributes: [("ticket".to_owned(), "SECRET-ATTRIBUTE".to_owned())].into(),
        ..Default::default()
    });
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
    }
    request
}

/// The environment for the binary: none of the test's own OTEL_* settings, and `extra`.
fn env_without_otel<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = OTEL_VARS.iter().map(|v| (*v, "")).collect();
    env.extend_from_slice(extra);
    env
}

/// An admin call with the token, in the admin trace.
fn admin_request<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    metadata.insert("traceparent", traceparent(TRACE_ADMIN).parse().unwrap());
    request
}

const TRACE_CHECK: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_ADMIN: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_SCIM: &str = "5b8efff798038103d269b633813fc60c";
const TRACE_AUTHZEN: &str = "6c9f0a1b2c3d4e5f60718293a4b5c6d7";
const PARENT: &str = "b7ad6b7169203331";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{PARENT}-01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_check_admin_and_scim_spans_in_the_callers_traces() {
    let root = tempfile::tempdir().unwrap();
    let data = directory(root.path());
    let admin_token = crate::support::admin_token(&data, "u-alice");
    let scim_token = crate::support::scim_token(&data, "okta");
    let (collector, endpoint, _stop) = Collector::start().await;
    let server = Server::spawn_with_env(
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
            "--otlp-endpoint",
            &endpoint,
        ],
        &env_without_otel(&[("OTEL_BSP_SCHEDULE_DELAY", "600000")]),
    );
    assert!(
        server.stderr.lock().unwrap().contains("exporting traces"),
        "{}",
        server.stderr.lock().unwrap()
    );

    // A Check in the caller's trace, a BatchCheck in none, a refused Check.
    let mut client = server.client().await;
    let answer = client
        .check(check(
            "alice@example.com",
            "create_issue",
            Some(&traceparent(TRACE_CHECK)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision(), pb::Decision::Allow);
    let batch = client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![
                check("alice@example.com", "merge", None).into_inner(),
                check("nobody@example.com", "merge", None).into_inner(),
                check("bob@example.com", "merge", None).into_inner(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), 3);
    let refused = client
        .check(check("", "x", Some(&traceparent(TRACE_CHECK))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Admin calls in the caller's trace: one answered, one NOT_FOUND.
    let channel = tonic::transport::Channel::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    admin
        .who_am_i(admin_request(pb::WhoAmIRequest {}, &admin_token))
        .await
        .unwrap();
    let missing = admin
        .lock_user(admin_request(
            pb::LockUserRequest {
                user: "carol@example.com".into(),
                reason: "gone".into(),
            },
            &admin_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // SCIM: a filtered list and a user by id, in the caller's trace.
    let authorization = format!("Bearer {scim_token}");
    let traced = traceparent(TRACE_SCIM);
    let headers = [
        ("Authorization", authorization.as_str()),
        ("traceparent", traced.as_str()),
    ];
    let list = http(
        &server.http,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22alice@example.com%22",
        &headers,
        b"",
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let one = http(&server.http, "GET", "/scim/v2/Users/u-alice", &headers, b"");
    assert_eq!(one.status, 200, "{}", one.body);
    let metrics = http(&server.http, "GET", "/metrics", &headers, b"");
    assert_eq!(metrics.status, 200);
    // An AuthZEN evaluation, in the caller's trace.
    let traced = traceparent(TRACE_AUTHZEN);
    let evaluation = serde_json::json!({
        "subject": {"type": "user", "id": "alice@example.com"},
        "resource": {"type": "connector", "id": "github"},
        "action": {"name": "create_issue"},
        "context": {"agent": "claude", "attributes": {"ticket": "SECRET-ATTRIBUTE"}},
    });
    // And an action search in the same trace: its page's BatchCheck fields are on its span.
    let search = serde_json::json!({
        "subject": evaluation["subject"],
        "resource": evaluation["resource"],
        "context": evaluation["context"],
    });
    let in_trace = [
        ("Content-Type", "application/json"),
        ("traceparent", traced.as_str()),
    ];
    let mut answers = Vec::new();
    for (path, body) in [
        ("/access/v1/evaluation", &evaluation),
        ("/access/v1/search/action", &search),
    ] {
        let reply = http(
            &server.http,
            "POST",
            path,
            &in_trace,
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        answers.push(reply.json());
    }
    let evaluated = &answers[0];

    // Nothing leaves before the batch delay, which is long (OTEL_BSP_SCHEDULE_DELAY above): the
    // clean shutdown flushes them.
    no_spans_for(&collector, "before the batch delay").await;
    assert!(server.terminate().success());
    let spans = collector
        .wait_for("9 spans", Duration::from_secs(10), |spans| spans.len() >= 9)
        .await;

    let check_span = named(&spans, "portcullis.v1.DecisionService/Check", TRACE_CHECK);
    assert_eq!(check_span.service, "portcullis");
    assert_eq!(check_span.kind, SpanKind::Server as i32);
    assert_eq!(check_span.parent_span_id, PARENT);
    assert_eq!(check_span.attr("connector"), "github");
    assert_eq!(check_span.attr("tool"), "create_issue");
    assert_eq!(check_span.attr("decision"), "ALLOW");
    assert_eq!(check_span.attr("reason"), "POLICY");
    assert_eq!(check_span.attr("revision"), answer.revision.to_string());
    assert_eq!(check_span.attr("decision_id"), answer.decision_id);
    assert_eq!(check_span.attr("rpc.system"), "grpc");
    assert_eq!(check_span.attr("rpc.method"), "Check");
    assert_eq!(check_span.attr("rpc.grpc.status_code"), "0");
    assert!(!check_span.error);
    let refused_span = spans
        .iter()
        .find(|s| {
            s.trace_id == TRACE_CHECK
                && s.attributes.get("code").map(String::as_str) == Some("INVALID_ARGUMENT")
        })
        .unwrap_or_else(|| panic!("no refused Check span: {spans:?}"));
    assert_eq!(refused_span.attr("rpc.grpc.status_code"), "3");
    // A caller's error is no server error.
    assert!(!refused_span.error);

    let batch_span = spans
        .iter()
        .find(|s| s.name == "portcullis.v1.DecisionService/BatchCheck")
        .unwrap_or_else(|| panic!("no BatchCheck span: {spans:?}"));
    assert_eq!(
        batch_span.parent_span_id, "",
        "a call without traceparent is a root"
    );
    assert_ne!(batch_span.trace_id, TRACE_CHECK);
    assert_eq!(batch_span.attr("checks"), "3");
    assert_eq!(batch_span.attr("connector"), "github");
    assert_eq!(batch_span.attr("tool"), "merge");
    assert_eq!(batch_span.attr("decision"), "ALLOW:2 DENY:1");

    let who = named(&spans, "portcullis.v1.AdminService/WhoAmI", TRACE_ADMIN);
    assert_eq!(who.parent_span_id, PARENT);
    assert_eq!(who.attr("code"), "OK");
    let lock = named(&spans, "portcullis.v1.AdminService/LockUser", TRACE_ADMIN);
    assert_eq!(lock.attr("rpc.method"), "LockUser");
    assert_eq!(lock.attr("code"), "NOT_FOUND");
    assert_eq!(lock.attr("rpc.grpc.status_code"), "5");

    let listed = named(&spans, "GET /scim/v2/Users", TRACE_SCIM);
    assert_eq!(listed.parent_span_id, PARENT);
    assert_eq!(listed.kind, SpanKind::Server as i32);
    assert_eq!(listed.attr("http.request.method"), "GET");
    assert_eq!(listed.attr("http.route"), "/scim/v2/Users");
    assert_eq!(listed.attr("http.response.status_code"), "200");
    let by_id = named(&spans, "GET /scim/v2/Users/{id}", TRACE_SCIM);
    assert_eq!(by_id.attr("http.route"), "/scim/v2/Users/{id}");
    assert!(
        !spans.iter().any(|s| s.name.contains("metrics")),
        "/metrics is no SCIM request: {spans:?}"
    );
    let authzen = named(&spans, "POST /access/v1/evaluation", TRACE_AUTHZEN);
    assert_eq!(authzen.parent_span_id, PARENT);
    assert_eq!(authzen.attr("http.route"), "/access/v1/evaluation");
    assert_eq!(authzen.attr("http.response.status_code"), "200");
    assert_eq!(authzen.attr("connector"), "github");
    assert_eq!(authzen.attr("tool"), "create_issue");
    assert_eq!(authzen.attr("decision"), "ALLOW");
    assert_eq!(
        authzen.attr("decision_id"),
        evaluated["context"]["decision_id"].as_str().unwrap()
    );
    assert!(
        !listed.attributes.contains_key("decision"),
        "a SCIM span has no decision fields"
    );
    let search = named(&spans, "POST /access/v1/search/action", TRACE_AUTHZEN);
    assert_eq!(search.attr("http.route"), "/access/v1/search/action");
    assert_eq!(search.attr("http.response.status_code"), "200");
    assert_eq!(search.attr("connector"), "github");
    assert_eq!(spans.len(), 9, "{spans:?}");

    // No user identifier, request attribute or secret anywhere.
    for span in &spans {
        for (key, value) in span
            .attributes
            .iter()
            .chain([(&"name".to_owned(), &span.name)])
        {
            for secret in [
                "alice",
                "bob",
                "nobody",
                "carol",
                "example.com",
                "u-alice",
                "SECRET-ATTRIBUTE",
                "claude",
                admin_token.as_str(),
                scim_token.as_str(),
            ] {
                assert!(
                    !value.contains(secret),
                    "{}: {key} = {value} names {secret}",
                    span.name
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_exports_check_spans_to_the_standard_endpoint() {
    let root = tempfile::tempdir().unwrap();
    let data = directory(root.path());
    let token = root.path().join("sidecar-token");
    std::fs::write(&token, "tracing-secret\n").unwrap();
    let control = Server::start_with(&data, &["--sidecar-token-file", path(&token)]);
    let (collector, endpoint, _stop) = Collector::start().await;
    let sidecar = Server::spawn_with_env(
        &[
            "sidecar",
            "--upstream",
            &control.addr,
            "--upstream-token-file",
            path(&token),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
        &env_without_otel(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]),
    );
    let mut client = sidecar.client().await;
    client
        .check(check(
            "bob@example.com",
            "create_issue",
            Some(&traceparent(TRACE_CHECK)),
        ))
        .await
        .unwrap();
    // Exported while it runs, after the short batch delay.
    let spans = collector
        .wait_for("a span", Duration::from_secs(10), |spans| !spans.is_empty())
        .await;
    let span = named(&spans, "portcullis.v1.DecisionService/Check", TRACE_CHECK);
    assert_eq!(span.service, "portcullis-sidecar");
    assert_eq!(span.parent_span_id, PARENT);
    assert_eq!(span.attr("resource:deployment.environment"), "test");
    assert_eq!(span.attr("connector"), "github");
    assert_eq!(span.attr("tool"), "create_issue");
    assert!(span.attributes.contains_key("decision"), "{span:?}");
    assert!(span.attributes.values().all(|v| !v.contains("bob")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_or_with_the_sdk_disabled_nothing_is_exported() {
    let root = tempfile::tempdir().unwrap();
    let data = directory(root.path());
    let (collector, endpoint, _stop) = Collector::start().await;
    for (flags, env) in [
        (
            vec![],
            env_without_otel(&[("OTEL_BSP_SCHEDULE_DELAY", "50")]),
        ),
        (
            vec!["--otlp-endpoint", endpoint.as_str()],
            env_without_otel(&[
                ("OTEL_SDK_DISABLED", "true"),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ]),
        ),
    ] {
        let mut args = vec![
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
        ];
        args.extend(flags);
        let server = Server::spawn_with_env(&args, &env);
        let mut client = server.client().await;
        client
            .check(check(
                "alice@example.com",
                "create_issue",
                Some(&traceparent(TRACE_CHECK)),
            ))
            .await
            .unwrap();
        let log = server.stderr.lock().unwrap().clone();
        assert!(!log.contains("exporting traces"), "{log}");
        assert!(server.terminate().success());
    }
    no_spans_for(&collector, "with tracing off").await;
}
