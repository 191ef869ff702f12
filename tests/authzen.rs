//! The AuthZEN Authorization API on the HTTP port: a generated workload (agents, step-up,
//! arguments) answered over AuthZEN exactly as over gRPC Check and as the workload expects;
//! batches with each evaluation semantic; the metadata document; errors in the
//! specification's form; the decision token; the same metrics and decision log; approvals
//! (the pending request, an approval id's once grant); a sidecar answering like the control
//! plane; action and resource searches that find exactly what evaluation allows, paged.

use crate::metrics::scraped;
use crate::support::{Server, generated_and_imported, path};
use crate::workload_replay::expected;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer: status, headers, JSON body.
struct Reply {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = axum::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), http.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 30 s"))
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {url}: {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        headers,
        body,
    }
}

async fn post(http: &Http, url: &str, body: &Value) -> Reply {
    let headers = [("content-type", "application/json")];
    send(http, "POST", url, &headers, body.to_string().into_bytes()).await
}

/// A workload request at `now_s` (seconds): the gRPC Check and the AuthZEN evaluation of it.
fn both(request: &workload::RequestLine, now_s: i64) -> (pb::CheckRequest, Value) {
    let authentication = request.authentication.as_ref().map(|a| {
        let auth_time = a.auth_age_s.map(|age| now_s - i64::try_from(age).unwrap());
        (a, auth_time)
    });
    let check = pb::CheckRequest {
        user: request.user.clone(),
        agent: request.agent.clone(),
        connector: request.connector.clone(),
        tool: request.tool.clone(),
        authentication: authentication.map(|(a, auth_time)| pb::Authentication {
            acr: a.acr.clone(),
            amr: a.amr.clone(),
            auth_time: auth_time.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        }),
        arguments: request.arguments.as_ref().map(|arguments| {
            match pdp_service::json_to_value(&serde_json::to_value(arguments).unwrap()).kind {
                Some(prost_types::value::Kind::StructValue(s)) => s,
                other => panic!("arguments are an object: {other:?}"),
            }
        }),
        ..Default::default()
    };
    let mut context = json!({ "agent": request.agent });
    if let Some(arguments) = &request.arguments {
        context["arguments"] = serde_json::to_value(arguments).unwrap();
    }
    if let Some((a, auth_time)) = authentication {
        context["authentication"] = json!({ "acr": a.acr, "amr": a.amr });
        if let Some(auth_time) = auth_time {
            context["authentication"]["auth_time"] = json!(auth_time);
        }
    }
    let evaluation = json!({
        "subject": { "type": "user", "id": request.user },
        "resource": { "type": "connector", "id": request.connector },
        "action": { "name": request.tool },
        "context": context,
    });
    (check, evaluation)
}

/// What the gRPC answer says, in the AuthZEN answer's words (all but the decision id).
fn as_authzen(answer: &pb::CheckResponse) -> Value {
    let decision = answer.decision();
    let mut context = json!({
        "decision": decision.as_str_name().trim_start_matches("DECISION_"),
        "reason": answer.reason().as_str_name().trim_start_matches("REASON_"),
        "revision": answer.revision,
    });
    if !answer.policy_id.is_empty() {
        context["policy_id"] = json!(answer.policy_id);
    }
    if let Some(step_up) = &answer.step_up {
        context["step_up"] = json!({
            "acr_values": step_up.acr_values,
            "amr_values": step_up.amr_values,
            "max_age": step_up.max_age,
        });
    }
    if !answer.challenge.is_empty() {
        context["challenge"] = json!(answer.challenge);
    }
    if decision == pb::Decision::RequireApproval {
        context["approval"] = json!({
            "flow_id": answer.approval_flow_id,
            "arguments_digest": answer.arguments_digest,
        });
        if !answer.pending_approval_id.is_empty() {
            context["approval"]["pending_request_id"] = json!(answer.pending_approval_id);
        }
    }
    json!({ "decision": decision == pb::Decision::Allow, "context": context })
}

/// An AuthZEN answer without its decision id (unique per answer).
fn without_id(mut answer: Value) -> Value {
    let id = answer["context"]
        .as_object_mut()
        .and_then(|c| c.remove("decision_id"));
    assert!(
        id.as_ref()
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty()),
        "a decision id: {answer}"
    );
    answer
}

/// The workload's expected answer as (decision, reason, policy) in AuthZEN's words.
fn expected_authzen(request: &workload::RequestLine) -> (String, String, String) {
    let (decision, reason, policy) = expected(request);
    (
        decision.trim_start_matches("DECISION_").to_owned(),
        reason.trim_start_matches("REASON_").to_owned(),
        policy,
    )
}

fn got_authzen(answer: &Value) -> (String, String, String) {
    let context = &answer["context"];
    (
        context["decision"].as_str().unwrap_or_default().to_owned(),
        context["reason"].as_str().unwrap_or_default().to_owned(),
        context["policy_id"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Seconds since the epoch, as the workload's authentication ages count back from.
fn now_s() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A small generated workload with agents, step-up and conditions, and `requests` requests,
/// imported: (its directory, the data directory).
fn conditional_workload(
    root: &std::path::Path,
    requests: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    generated_and_imported(
        root,
        &[
            "--preset",
            "small",
            "--seed",
            "19",
            "--agents",
            "--conditions",
            "--requests",
            requests,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_gets_the_same_answers_over_authzen_as_over_grpc_check() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) = conditional_workload(root.path(), "2000");
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    assert_eq!(requests.len(), 2000);
    assert!(
        requests.iter().any(|r| r.authentication.is_some())
            && requests.iter().any(|r| r.arguments.is_some()),
        "the workload exercises authentication and arguments"
    );
    let server = Server::start(&data);
    let mut grpc = server.client().await;
    let http = client();
    let evaluation_url = format!("{}/access/v1/evaluation", server.http);
    let evaluations_url = format!("{}/access/v1/evaluations", server.http);
    let now_s = now_s();

    let mut differ = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for request in &requests {
        let (check, evaluation) = both(request, now_s);
        let over_grpc = grpc.check(check).await.unwrap().into_inner();
        let reply = post(&http, &evaluation_url, &evaluation).await;
        assert_eq!(reply.status, 200, "{}: {}", request.id, reply.body);
        let over_authzen = without_id(reply.body);
        seen.insert(got_authzen(&over_authzen).0);
        if over_authzen != as_authzen(&over_grpc)
            || got_authzen(&over_authzen) != expected_authzen(request)
        {
            differ.push(format!(
                "{}: expected {:?}, gRPC {}, AuthZEN {over_authzen}",
                request.id,
                expected_authzen(request),
                as_authzen(&over_grpc)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} answers differ, first: {:#?}",
        differ.len(),
        requests.len(),
        &differ[..differ.len().min(5)]
    );
    for decision in ["ALLOW", "DENY", "STEP_UP", "REQUIRE_APPROVAL"] {
        assert!(seen.contains(decision), "no {decision} answer in {seen:?}");
    }

    // The same requests as batches that execute all: the same answers, in order.
    for chunk in requests.chunks(1000) {
        let evaluations: Vec<Value> = chunk.iter().map(|r| both(r, now_s).1).collect();
        let reply = post(
            &http,
            &evaluations_url,
            &json!({ "evaluations": evaluations }),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answers = reply.body["evaluations"].as_array().unwrap();
        assert_eq!(answers.len(), chunk.len());
        for (request, answer) in chunk.iter().zip(answers) {
            assert_eq!(
                got_authzen(answer),
                expected_authzen(request),
                "{}: {answer}",
                request.id
            );
        }
    }

    // Each semantic over one user's calls, the batch's subject and context the defaults.
    let allowed = requests
        .iter()
        .find(|r| expected_authzen(r).0 == "ALLOW")
        .unwrap();
    let denied = requests
        .iter()
        .find(|r| expected_authzen(r).0 == "DENY")
        .unwrap();
    let (_, allow) = both(allowed, now_s);
    let (_, deny) = both(denied, now_s);
    // Only the action and resource are the item's own: the rest come from the batch.
    let allow_by_default = json!({ "action": allow["action"], "resource": allow["resource"] });
    let batch = |semantic: Option<&str>, items: Vec<Value>| {
        let mut body = json!({
            "subject": allow["subject"],
            "context": allow["context"],
            "evaluations": items,
        });
        if let Some(semantic) = semantic {
            body["options"] = json!({ "evaluations_semantic": semantic });
        }
        body
    };
    let decisions = |reply: &Reply| -> Vec<bool> {
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["decision"].as_bool().unwrap())
            .collect()
    };
    let mixed = vec![
        allow_by_default.clone(),
        deny.clone(),
        allow_by_default.clone(),
        deny.clone(),
    ];
    for (semantic, expected) in [
        (None, vec![true, false, true, false]),
        (Some("execute_all"), vec![true, false, true, false]),
        (Some("deny_on_first_deny"), vec![true, false]),
        (Some("permit_on_first_permit"), vec![true]),
    ] {
        let reply = post(&http, &evaluations_url, &batch(semantic, mixed.clone())).await;
        assert_eq!(decisions(&reply), expected, "{semantic:?}");
    }
    let denies_first = vec![deny.clone(), deny.clone(), allow_by_default.clone(), deny];
    let reply = post(
        &http,
        &evaluations_url,
        &batch(Some("permit_on_first_permit"), denies_first.clone()),
    )
    .await;
    assert_eq!(decisions(&reply), [false, false, true]);
    let reply = post(
        &http,
        &evaluations_url,
        &batch(Some("deny_on_first_deny"), denies_first),
    )
    .await;
    assert_eq!(decisions(&reply), [false]);
    // Without evaluations, the request is one evaluation answered as one.
    let reply = post(&http, &evaluations_url, &allow).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["decision"], json!(true), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_errors_and_the_decision_token_follow_the_specification() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let token_file = root.path().join("decision-token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let decisions = root.path().join("decisions.jsonl");
    let server = Server::start_with(
        &data,
        &[
            "--decision-token-file",
            path(&token_file),
            "--decision-log-file",
            path(&decisions),
        ],
    );
    let http = client();
    let evaluation_url = format!("{}/access/v1/evaluation", server.http);
    let evaluations_url = format!("{}/access/v1/evaluations", server.http);
    let actions_url = format!("{}/access/v1/search/action", server.http);
    let resources_url = format!("{}/access/v1/search/resource", server.http);
    let json_type = ("content-type", "application/json");
    let bearer = ("authorization", "Bearer s3cret");

    // The metadata document names this server and its endpoints, and needs no token.
    let reply = send(
        &http,
        "GET",
        &format!("{}/.well-known/authzen-configuration", server.http),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "policy_decision_point": server.http,
            "access_evaluation_endpoint": evaluation_url,
            "access_evaluations_endpoint": evaluations_url,
            "search_action_endpoint": format!("{}/access/v1/search/action", server.http),
            "search_resource_endpoint": format!("{}/access/v1/search/resource", server.http),
        })
    );

    let evaluation = json!({
        "subject": { "type": "user", "id": "nobody@example.com" },
        "resource": { "type": "connector", "id": "github" },
        "action": { "name": "create_issue" },
    });
    let body = evaluation.to_string().into_bytes();

    // No token, or a wrong one: 401 with a challenge, whatever the body.
    for headers in [
        vec![json_type],
        vec![json_type, ("authorization", "Bearer wrong")],
    ] {
        let reply = send(&http, "POST", &evaluation_url, &headers, body.clone()).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        assert!(reply.body["error"].is_string(), "{}", reply.body);
    }
    let before = scraped(&server).await.get(
        "portcullis_decisions_total",
        &[("decision", "DENY"), ("reason", "UNKNOWN_USER")],
    );
    let reply = send(
        &http,
        "POST",
        &evaluation_url,
        &[json_type, bearer, ("x-request-id", "req-42")],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-request-id"], "req-42");
    assert_eq!(reply.body["decision"], json!(false));
    assert_eq!(reply.body["context"]["decision"], "DENY");
    assert_eq!(reply.body["context"]["reason"], "UNKNOWN_USER");
    // Counted with gRPC's checks.
    let after = scraped(&server).await.get(
        "portcullis_decisions_total",
        &[("decision", "DENY"), ("reason", "UNKNOWN_USER")],
    );
    assert_eq!(after - before, 1.0);
    let decision_id = reply.body["context"]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A search needs the token too.
    let search = json!({
        "subject": evaluation["subject"],
        "resource": evaluation["resource"],
    });
    let reply = post(&http, &actions_url, &search).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let with_page = |page: Value| {
        let mut body = search.clone();
        body["page"] = page;
        body.to_string().into_bytes()
    };

    // Malformed requests: 400 with a JSON body naming what is wrong.
    let too_many: Vec<Value> = (0..=pdp_service::DEFAULT_MAX_BATCH)
        .map(|_| evaluation.clone())
        .collect();
    let too_long = "u".repeat(10_000);
    for (url, body, says) in [
        (&evaluation_url, b"{not json".to_vec(), "not JSON"),
        (&evaluation_url, b"[1]".to_vec(), "JSON object"),
        (
            &evaluation_url,
            json!({ "action": { "name": "t" } })
                .to_string()
                .into_bytes(),
            "`subject` is missing",
        ),
        (
            &evaluation_url,
            json!({
                "subject": { "type": "user", "id": too_long },
                "resource": { "type": "connector", "id": "c" },
                "action": { "name": "t" },
            })
            .to_string()
            .into_bytes(),
            "user",
        ),
        (
            &evaluations_url,
            json!({ "evaluations": [evaluation], "options": { "evaluations_semantic": "most" } })
                .to_string()
                .into_bytes(),
            "evaluations_semantic",
        ),
        (
            &evaluations_url,
            json!({
                "subject": evaluation["subject"],
                "action": evaluation["action"],
                "evaluations": [evaluation, { "resource": { "type": "document", "id": "d" } }],
            })
            .to_string()
            .into_bytes(),
            "`evaluations[1].resource.type` is `document`",
        ),
        (
            &evaluations_url,
            json!({ "evaluations": too_many }).to_string().into_bytes(),
            "the limit is 1000",
        ),
        // A bad evaluation after a good one: the error names it, and nothing is decided.
        (
            &evaluations_url,
            json!({
                "options": { "evaluations_semantic": "deny_on_first_deny" },
                "evaluations": [evaluation, {
                    "subject": { "type": "user", "id": "u".repeat(10_000) },
                    "resource": { "type": "connector", "id": "c" },
                    "action": { "name": "t" },
                }],
            })
            .to_string()
            .into_bytes(),
            "evaluations[1].user",
        ),
        // Searches: a page token is opaque, and only a token the search gave is read.
        (
            &actions_url,
            with_page(json!({ "token": "garbage!" })),
            "`page.token`",
        ),
        (
            &actions_url,
            // Base64 of `action`: well formed, but not a token.
            with_page(json!({ "token": "YWN0aW9u" })),
            "`page.token`",
        ),
        (
            &actions_url,
            with_page(json!({ "next_token": "garbage!" })),
            "`page.next_token`",
        ),
        (
            &actions_url,
            with_page(json!({ "limit": 0 })),
            "`page.limit`",
        ),
        (
            &actions_url,
            with_page(json!({ "limit": pdp_service::DEFAULT_MAX_BATCH + 1 })),
            "from 1 to 1000",
        ),
        (
            &actions_url,
            with_page(json!(3)),
            "`page` must be an object",
        ),
        (
            &actions_url,
            json!({ "subject": evaluation["subject"] })
                .to_string()
                .into_bytes(),
            "`resource` is missing",
        ),
        (
            &actions_url,
            json!({ "subject": evaluation["subject"], "resource": evaluation["resource"],
                    "context": { "agent": too_long } })
            .to_string()
            .into_bytes(),
            "agent",
        ),
        (
            &resources_url,
            json!({ "subject": evaluation["subject"], "resource": { "type": "connector" } })
                .to_string()
                .into_bytes(),
            "`action` is missing",
        ),
        (
            &resources_url,
            json!({ "subject": evaluation["subject"], "action": evaluation["action"],
                    "resource": { "type": "document" } })
            .to_string()
            .into_bytes(),
            "`resource.type` is `document`",
        ),
    ] {
        let reply = send(&http, "POST", url, &[json_type, bearer], body).await;
        assert_eq!(reply.status, 400, "{says}: {}", reply.body);
        let error = reply.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "expected `{says}` in {}", reply.body);
    }

    // Too large: 413 (past gRPC's message limit too), and the token is checked first.
    let mut huge = vec![b' '; pdp_service::authzen::DEFAULT_MAX_BODY + 1];
    huge.extend_from_slice(&body);
    let reply = crate::scim::http(
        &server.http,
        "POST",
        "/access/v1/evaluation",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer s3cret"),
        ],
        &huge,
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    let reply = crate::scim::http(
        &server.http,
        "POST",
        "/access/v1/evaluation",
        &[("Content-Type", "application/json")],
        &huge,
    );
    assert_eq!(reply.status, 401, "{}", reply.body);

    // The one request decided is in the decision log like a Check; none that failed is.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let logged = loop {
        let text = std::fs::read_to_string(&decisions).unwrap_or_default();
        if text.ends_with('\n') {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the decision log has no line after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let lines: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert_eq!(lines[0]["decision_id"], json!(decision_id));
    assert_eq!(lines[0]["user"], "nobody@example.com");
    assert_eq!(lines[0]["connector"], "github");
    assert_eq!(lines[0]["tool"], "create_issue");
    assert_eq!(lines[0]["decision"], "DENY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_answers_authzen_like_the_control_plane_behind_its_token() {
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) = generated_and_imported(
        root.path(),
        &[
            "--preset",
            "small",
            "--seed",
            "7",
            "--agents",
            "--requests",
            "300",
        ],
    );
    let requests = workload::read_requests(&workload_dir.join("requests.jsonl")).unwrap();
    let sidecar_token = crate::fleet::token_file(root.path(), "sidecar-token", "fleet-secret");
    let decision_token = crate::fleet::token_file(root.path(), "decision-token", "gw-secret");
    let control = Server::start_with(&data, &["--sidecar-token-file", &sidecar_token]);
    let sidecar = crate::fleet::sidecar(
        &control.addr,
        &[
            "--upstream-token-file",
            &sidecar_token,
            "--decision-token-file",
            &decision_token,
        ],
    );
    let http = client();
    let now_s = now_s();
    let ask = |server: &Server, evaluation: &Value| {
        let url = format!("{}/access/v1/evaluation", server.http);
        let body = evaluation.to_string().into_bytes();
        let http = http.clone();
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("authorization", "Bearer gw-secret"),
            ];
            let reply = send(&http, "POST", &url, &headers, body).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            without_id(reply.body)
        }
    };
    let (_, first) = both(&requests[0], now_s);
    let revision = ask(&control, &first).await["context"]["revision"].clone();
    crate::fleet::eventually("the sidecar has the control plane's snapshot", || {
        let answer = ask(&sidecar, &first);
        let revision = revision.clone();
        async move { answer.await["context"]["revision"] == revision }
    })
    .await;
    for request in &requests {
        let (_, evaluation) = both(request, now_s);
        let (on_control, on_sidecar) = (
            ask(&control, &evaluation).await,
            ask(&sidecar, &evaluation).await,
        );
        assert_eq!(on_sidecar, on_control, "{}", request.id);
        assert_eq!(
            got_authzen(&on_sidecar),
            expected_authzen(request),
            "{}",
            request.id
        );
    }
    // The sidecar's decision token guards its AuthZEN endpoints as it guards Check.
    let url = format!("{}/access/v1/evaluation", sidecar.http);
    let reply = post(&http, &url, &first).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // And it searches as the control plane does.
    let search = json!({
        "subject": first["subject"],
        "resource": first["resource"],
        "context": first["context"],
    });
    let headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer gw-secret"),
    ];
    let mut found = Vec::new();
    for server in [&control, &sidecar] {
        let url = format!("{}/access/v1/search/action", server.http);
        let body = search.to_string().into_bytes();
        let reply = send(&http, "POST", &url, &headers, body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        found.push(reply.body);
    }
    assert_eq!(found[0], found[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_over_authzen_points_at_the_request_and_lets_the_call_through_once() {
    use crate::approvals::{approvals, company, create, person_token};
    let (_root, data) = company();
    let bob = person_token(&data, "bob");
    let server = Server::start(&data);
    let http = client();
    let url = format!("{}/access/v1/evaluation", server.http);
    let evaluation = |approval_id: &str| {
        json!({
            "subject": { "type": "user", "id": "ada@example.com" },
            "resource": { "type": "connector", "id": "github" },
            "action": { "name": "delete_repo" },
            "context": {
                "agent": "claude",
                "arguments": { "repo": "acme/old" },
                "approval_id": approval_id,
            },
        })
    };

    let first = post(&http, &url, &evaluation("")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["decision"], json!(false));
    let context = &first.body["context"];
    assert_eq!(context["decision"], "REQUIRE_APPROVAL");
    assert_eq!(context["policy_id"], "pol-approve");
    assert_eq!(context["approval"]["flow_id"], "builtin-admins");
    let digest = context["approval"]["arguments_digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(context["approval"].get("pending_request_id").is_none());

    // The gateway asks for approval; the answer then points at the pending request.
    let request = approvals(&server, None)
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(
        request.arguments_digest, digest,
        "the same digest as gRPC's"
    );
    let pointed = post(&http, &url, &evaluation("")).await;
    assert_eq!(
        pointed.body["context"]["approval"]["pending_request_id"],
        json!(request.id)
    );

    // Approved: the call with its approval id is allowed once, then asks again.
    crate::approvals::approve(&server, &bob, &request.id, "")
        .await
        .unwrap();
    let allowed = post(&http, &url, &evaluation(&request.id)).await;
    assert_eq!(allowed.body["decision"], json!(true), "{}", allowed.body);
    assert_eq!(allowed.body["context"]["reason"], "APPROVED");
    let again = post(&http, &url, &evaluation(&request.id)).await;
    assert_eq!(again.body["decision"], json!(false), "{}", again.body);
    assert_eq!(again.body["context"]["decision"], "REQUIRE_APPROVAL");
}

/// A search's answer: the names of its results, and of the Step up and Require approval
/// candidates its context lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    allowed: std::collections::BTreeSet<String>,
    step_up: std::collections::BTreeSet<String>,
    require_approval: std::collections::BTreeSet<String>,
}

/// Every page of a search from `body` (`page.limit` as given), followed to the last.
async fn search_all(http: &Http, url: &str, body: &Value) -> (Found, usize) {
    let key = if url.ends_with("/action") {
        "name"
    } else {
        "id"
    };
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r[key].as_str().unwrap().to_owned())
            .collect()
    };
    let mut found = Found::default();
    let mut body = body.clone();
    for pages in 1..=1000 {
        let reply = post(http, url, &body).await;
        assert_eq!(reply.status, 200, "{body}: {}", reply.body);
        let results = names(&reply.body["results"]);
        assert_eq!(reply.body["page"]["count"], json!(results.len()));
        for (set, list) in [
            (&mut found.allowed, results),
            (&mut found.step_up, names(&reply.body["context"]["step_up"])),
            (
                &mut found.require_approval,
                names(&reply.body["context"]["require_approval"]),
            ),
        ] {
            for name in list {
                assert!(set.insert(name.clone()), "{name} on two pages");
            }
        }
        let next = reply.body["page"]["next_token"].as_str().unwrap();
        if next.is_empty() {
            return (found, pages);
        }
        // Sent back as the drafts did when the request spells it so.
        let field = if body["page"].get("next_token").is_some() {
            "next_token"
        } else {
            "token"
        };
        body["page"][field] = json!(next);
    }
    panic!("{url}: more than 1000 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_find_exactly_what_evaluation_allows_page_by_page() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = tempfile::tempdir().unwrap();
    let (workload_dir, data) = conditional_workload(root.path(), "400");
    let loaded = workload::read_dir(&workload_dir, pdp::Timestamp(0), &mut |_| {}).unwrap();
    // The tools each connector's policies name; an all-tools policy names none.
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for policy in &loaded.model.policies {
        let tools = named.entry(policy.connector.clone()).or_default();
        if let pdp::Tools::Only(only) = &policy.tools {
            tools.extend(only.iter().cloned());
        }
    }
    let server = Server::start(&data);
    let http = client();
    let evaluations_url = format!("{}/access/v1/evaluations", server.http);
    let actions_url = format!("{}/access/v1/search/action", server.http);
    let resources_url = format!("{}/access/v1/search/resource", server.http);
    let now_s = now_s();
    // What evaluation answers for each of `items` under `defaults`, by name.
    let evaluate = |defaults: Value, items: Vec<(String, Value)>| {
        let http = http.clone();
        let url = evaluations_url.clone();
        async move {
            let mut body = defaults;
            body["evaluations"] = items.iter().map(|(_, item)| item.clone()).collect();
            let reply = post(&http, &url, &body).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let mut found = Found::default();
            let mut decided = BTreeMap::new();
            for ((name, _), answer) in items
                .iter()
                .zip(reply.body["evaluations"].as_array().unwrap())
            {
                let set = match answer["context"]["decision"].as_str().unwrap() {
                    "ALLOW" => Some(&mut found.allowed),
                    "STEP_UP" => Some(&mut found.step_up),
                    "REQUIRE_APPROVAL" => Some(&mut found.require_approval),
                    _ => None,
                };
                if let Some(set) = set {
                    set.insert(name.clone());
                }
                decided.insert(name.clone(), answer["decision"] == json!(true));
            }
            (found, decided)
        }
    };

    let (mut results, mut paged, mut marked) = (0, 0, 0);
    let mut seen = BTreeSet::new();
    for request in &loaded.requests {
        // One search per user, agent and connector (the first request's context).
        if !seen.insert((&request.user, &request.agent, &request.connector)) || seen.len() > 60 {
            continue;
        }
        let (_, evaluation) = both(request, now_s);
        let context = evaluation["context"].clone();
        let Some(tools) = named.get(&request.connector) else {
            continue;
        };

        // Action search: exactly the named tools (and `*`) evaluation allows.
        let mut candidates: Vec<String> = tools.iter().cloned().collect();
        candidates.push("*".to_owned());
        let unnamed = !tools.contains(&request.tool);
        if unnamed {
            candidates.push(request.tool.clone());
        }
        let items = candidates
            .iter()
            .map(|t| (t.clone(), json!({ "action": { "name": t } })))
            .collect();
        let defaults = json!({
            "subject": evaluation["subject"],
            "resource": evaluation["resource"],
            "context": context,
        });
        let (mut expected, decided) = evaluate(defaults.clone(), items).await;
        if unnamed {
            // A tool no policy names is decided as `*`, which stands for it.
            assert_eq!(decided[&request.tool], decided["*"], "{}", request.id);
            for set in [
                &mut expected.allowed,
                &mut expected.step_up,
                &mut expected.require_approval,
            ] {
                set.remove(&request.tool);
            }
        }
        let (whole, _) = search_all(&http, &actions_url, &defaults).await;
        assert_eq!(whole, expected, "{}: action search", request.id);
        results += whole.allowed.len();
        marked += whole.step_up.len() + whole.require_approval.len();
        // One candidate a page: the same, over as many pages as candidates.
        let mut one_by_one = defaults.clone();
        one_by_one["page"] = json!({ "limit": 1 });
        let decided = || async {
            let scrape = scraped(&server).await;
            scrape
                .by_label("portcullis_decisions_total")
                .values()
                .sum::<f64>()
        };
        let before = decided().await;
        let (paged_found, pages) = search_all(&http, &actions_url, &one_by_one).await;
        assert_eq!(paged_found, whole, "{}: paged", request.id);
        paged += usize::from(pages > 1);
        // Each page decided its one candidate, counted as any Check.
        if whole != Found::default() {
            assert_eq!(decided().await - before, pages as f64, "{}", request.id);
        }

        // Resource search: exactly the connectors where evaluation allows the tool.
        let items = named
            .keys()
            .map(|c| {
                let item = json!({ "resource": { "type": "connector", "id": c } });
                (c.clone(), item)
            })
            .collect();
        let defaults = json!({
            "subject": evaluation["subject"],
            "action": evaluation["action"],
            "context": context,
        });
        let (expected, _) = evaluate(defaults.clone(), items).await;
        let mut body = defaults.clone();
        body["resource"] = json!({ "type": "connector" });
        let (whole, _) = search_all(&http, &resources_url, &body).await;
        assert_eq!(whole, expected, "{}: resource search", request.id);
        results += whole.allowed.len();
        body["page"] = json!({ "limit": 1 });
        assert_eq!(search_all(&http, &resources_url, &body).await.0, whole);
        // The drafts' `page.next_token` is read as `page.token`.
        body["page"]["next_token"] = json!("");
        assert_eq!(search_all(&http, &resources_url, &body).await.0, whole);
    }
    // Not vacuous: searches found tools, paged, and marked Step up or approval ones.
    assert!(
        results > 0 && paged > 0 && marked > 0,
        "{results} {paged} {marked}"
    );
}
