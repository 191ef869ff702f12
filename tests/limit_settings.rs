//! The bounds that are settings (docs/limits.md), against the real binary started with small
//! ones: a request at a bound is answered, one past it is refused with the documented error
//! naming the setting: `grpc-max-message-bytes` (RESOURCE_EXHAUSTED, DecisionService and the
//! admin API alike), `batch-max-checks` (BatchCheck INVALID_ARGUMENT, AuthZEN 400),
//! `authzen-max-body-bytes` (413 in the AuthZEN error form), `scim-max-body-bytes` (413 in
//! the RFC 7644 form), `scim-max-filter-bytes` and `scim-max-filter-depth` (400
//! `invalidFilter` / `invalidPath`), `check-max-attributes`, `check-max-attribute-bytes` and
//! `check-max-arguments-bytes` (INVALID_ARGUMENT, AuthZEN 400), `json-max-depth` (400, SCIM
//! `invalidSyntax`).

use crate::hardening_net::http;
use crate::support::{Server, scim_token};
use portcullis_proto::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

const MESSAGE: usize = 4096;
const CHECKS: usize = 3;
const BODY: usize = 2048;
const AUTHZEN_BODY: usize = 1500;

/// A Check whose encoding is exactly `bytes` long (at least 100): attributes pad it, each at
/// most 1,024 bytes (Check's own bound).
fn check_of(bytes: usize) -> pb::CheckRequest {
    let mut request = pb::CheckRequest {
        user: "alice@example.com".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "create_issue".into(),
        ..Default::default()
    };
    while bytes - request.encoded_len() > 1100 {
        let key = format!("pad{}", request.attributes.len());
        request.attributes.insert(key, "x".repeat(1000));
    }
    // The last one: a key and a value whose lengths land exactly on `bytes` (a length prefix
    // grows a byte at 128, so not every value length is reachable with every key).
    for key in 1..64 {
        for value in 0..=1024 {
            let mut padded = request.clone();
            padded.attributes.insert("k".repeat(key), "x".repeat(value));
            if padded.encoded_len() == bytes {
                return padded;
            }
        }
    }
    panic!("cannot pad a Check to {bytes} bytes")
}

fn evaluations(count: usize) -> String {
    let one = json!({
        "subject": {"type": "user", "id": "alice@example.com"},
        "action": {"name": "create_issue"},
        "resource": {"type": "connector", "id": "github"},
    });
    json!({ "evaluations": vec![one; count] }).to_string()
}

/// An AuthZEN evaluation whose body is exactly `bytes` long (trailing whitespace pads it).
fn evaluation_body(bytes: usize) -> String {
    let body = json!({
        "subject": {"type": "user", "id": "alice@example.com"},
        "action": {"name": "tool0"},
        "resource": {"type": "connector", "id": "github"},
    })
    .to_string();
    format!("{body}{}", " ".repeat(bytes - body.len()))
}

/// Posts an evaluation of exactly `bytes` to the HTTP port at `addr`; the status and the body.
fn evaluate(addr: &str, bytes: usize) -> (u16, String) {
    let json = [("content-type", "application/json")];
    http(
        addr,
        "POST",
        "/access/v1/evaluation",
        &json,
        &evaluation_body(bytes),
    )
}

/// The AuthZEN error of a body one byte over `authzen-max-body-bytes`: 413, naming it.
fn assert_authzen_body_refused(status: u16, body: &str) {
    assert_eq!(status, 413, "{body}");
    let error: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        error["error"],
        format!("the body is larger than {AUTHZEN_BODY} bytes (`authzen-max-body-bytes`)"),
        "{body}"
    );
}

/// A SCIM user creation whose body is exactly `bytes` long (trailing whitespace pads it).
fn user_body(bytes: usize) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "fits@example.com",
    })
    .to_string();
    format!("{body}{}", " ".repeat(bytes - body.len()))
}

/// A user `alice@example.com` and a policy allowing her `count` GitHub tools, stored before
/// the server starts.
fn allow_tools(data: &std::path::Path, count: usize) {
    let store = store::Store::open(data).unwrap();
    store
        .transact(|tx| {
            tx.put_user(&pdp::User {
                id: "alice".into(),
                user_name: "alice@example.com".into(),
                emails: vec!["alice@example.com".into()],
                active: true,
                ..Default::default()
            })?;
            tx.put_policy(&pdp::Policy {
                id: "pol-tools".into(),
                name: "a few tools".into(),
                connector: "github".into(),
                tools: pdp::Tools::Only((0..count).map(|i| format!("tool{i}")).collect()),
                scope: pdp::Scope {
                    all_users: true,
                    ..Default::default()
                },
                action: pdp::Action::Allow,
                ..Default::default()
            })?;
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[tokio::test]
async fn the_bounds_that_are_settings_refuse_past_them_naming_the_setting() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let scim = scim_token(&data, "okta");
    allow_tools(&data, CHECKS + 2);
    let server = Server::start_with(
        &data,
        &[
            "--grpc-max-message-bytes",
            &MESSAGE.to_string(),
            "--batch-max-checks",
            &CHECKS.to_string(),
            "--scim-max-body-bytes",
            &BODY.to_string(),
            "--authzen-max-body-bytes",
            &AUTHZEN_BODY.to_string(),
        ],
    );

    // gRPC messages: at the bound decoded and decided, one byte over refused.
    let mut decisions = server.client().await;
    decisions.check(check_of(MESSAGE)).await.unwrap();
    let refused = decisions.check(check_of(MESSAGE + 1)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&format!(
            "is {} bytes, the limit is {MESSAGE} (`grpc-max-message-bytes`)",
            MESSAGE + 1
        )),
        "{}",
        refused.message()
    );
    // The admin API has the same bound (checked before the caller is).
    let mut admin = pb::admin_service_client::AdminServiceClient::connect(server.addr.clone())
        .await
        .unwrap();
    let refused = admin
        .get_user(pb::GetUserRequest {
            user: "x".repeat(MESSAGE),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("`grpc-max-message-bytes`"));

    // BatchCheck: as many checks as allowed are answered, one more is refused.
    let batch = |n: usize| pb::BatchCheckRequest {
        checks: vec![check_of(200); n],
    };
    let answered = decisions.batch_check(batch(CHECKS)).await.unwrap();
    assert_eq!(answered.into_inner().results.len(), CHECKS);
    let refused = decisions.batch_check(batch(CHECKS + 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains(&format!(
            "{} checks, the limit is {CHECKS} (`batch-max-checks`)",
            CHECKS + 1
        )),
        "{}",
        refused.message()
    );
    // AuthZEN batches are BatchChecks: the same bound, as the specification's 400.
    let json = [("content-type", "application/json")];
    let url = "/access/v1/evaluations";
    let (status, body) = http(&server.http, "POST", url, &json, &evaluations(CHECKS));
    assert_eq!(status, 200, "{body}");
    let answers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answers["evaluations"].as_array().unwrap().len(), CHECKS);
    let (status, body) = http(&server.http, "POST", url, &json, &evaluations(CHECKS + 1));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`batch-max-checks`"), "{body}");
    // A search decides at most `batch-max-checks` candidates a page, whatever its `page.limit`
    // (1,000 when absent), and its tokens go on from there.
    let mut found = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let search = json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "resource": {"type": "connector", "id": "github"},
            "page": if token.is_empty() { json!({}) } else { json!({"token": token}) },
        });
        let url = "/access/v1/search/action";
        let (status, body) = http(&server.http, "POST", url, &json, &search.to_string());
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= CHECKS, "{body}");
        found.extend(
            results
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        assert!(pages <= CHECKS + 2, "the pages never end: {body}");
        match page["page"]["next_token"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => break,
        }
    }
    let mut expected: Vec<String> = (0..CHECKS + 2).map(|i| format!("tool{i}")).collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    assert!(pages >= 2, "{pages}");

    // AuthZEN bodies: at the bound read and decided (alice may use tool0), one byte over 413 in
    // the specification's error form.
    let (status, body) = evaluate(&server.http, AUTHZEN_BODY);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decision"], true, "{body}");
    let (status, body) = evaluate(&server.http, AUTHZEN_BODY + 1);
    assert_authzen_body_refused(status, &body);

    // SCIM bodies: at the bound read and written, one byte over 413 in the RFC 7644 form.
    let bearer = format!("Bearer {scim}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/scim+json"),
    ];
    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &headers,
        &user_body(BODY + 1),
    );
    assert_eq!(status, 413, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        error["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(error["status"], "413");
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("larger than {BODY} bytes (`scim-max-body-bytes`)")),
        "{detail}"
    );
    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &headers,
        &user_body(BODY),
    );
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_sidecar_has_the_same_grpc_and_authzen_bounds() {
    // No control plane: the bounds are checked before anything is decided.
    let sidecar = crate::fleet::sidecar(
        "http://127.0.0.1:1",
        &[
            "--grpc-max-message-bytes",
            &MESSAGE.to_string(),
            "--batch-max-checks",
            &CHECKS.to_string(),
            "--authzen-max-body-bytes",
            &AUTHZEN_BODY.to_string(),
        ],
    );
    // With no snapshot, a body at the bound is read and answered (not 413); one over is refused.
    let (status, body) = evaluate(&sidecar.http, AUTHZEN_BODY);
    assert!(
        status != 413 && !body.contains("larger than"),
        "{status} {body}"
    );
    let (status, body) = evaluate(&sidecar.http, AUTHZEN_BODY + 1);
    assert_authzen_body_refused(status, &body);
    let mut decisions = sidecar.client().await;
    let code = |answer: Result<tonic::Response<pb::CheckResponse>, tonic::Status>| {
        answer.err().map(|status| status.code())
    };
    assert_ne!(
        code(decisions.check(check_of(MESSAGE)).await),
        Some(tonic::Code::ResourceExhausted)
    );
    let refused = decisions.check(check_of(MESSAGE + 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("`grpc-max-message-bytes`"));
    let batch = |n: usize| pb::BatchCheckRequest {
        checks: vec![check_of(200); n],
    };
    let at = decisions.batch_check(batch(CHECKS)).await;
    assert_ne!(
        at.err().map(|status| status.code()),
        Some(tonic::Code::InvalidArgument)
    );
    let refused = decisions.batch_check(batch(CHECKS + 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("`batch-max-checks`"));
}

const FILTER_BYTES: usize = 100;
const FILTER_DEPTH: usize = 3;
/// What the bodies of the filter test nest to: a user's `emails` (object, array, object), a
/// PATCH's `Operations`, an AuthZEN evaluation's `context.arguments`.
const JSON_DEPTH: usize = 3;

/// `userName eq "…"` exactly `bytes` long, inside `depth` parentheses.
fn user_filter(bytes: usize, depth: usize) -> String {
    let bare = r#"userName eq """#.len() + 2 * depth;
    let name = "x".repeat(bytes - bare);
    format!(
        r#"{}userName eq "{name}"{}"#,
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

/// A PATCH `path` exactly `bytes` long, `emails[type eq "<kind>"].display`, whose value filter
/// is nested `depth` levels (its `[ ]` is the first), and the `kind` it selects.
fn email_path(bytes: usize, depth: usize) -> (String, String) {
    let bare = r#"emails[type eq ""].display"#.len() + 2 * (depth - 1);
    let kind = "x".repeat(bytes - bare);
    let path = format!(
        r#"emails[{}type eq "{kind}"{}].display"#,
        "(".repeat(depth - 1),
        ")".repeat(depth - 1)
    );
    (path, kind)
}

/// The SCIM error's `scimType` and `detail` of a 400.
fn scim_400(status: u16, body: &str) -> (String, String) {
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["status"], "400", "{body}");
    (
        error["scimType"].as_str().unwrap_or_default().to_owned(),
        error["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn scim_filters_and_paths_are_bounded_by_their_settings() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let scim = scim_token(&data, "okta");
    let server = Server::start_with(
        &data,
        &[
            "--scim-max-filter-bytes",
            &FILTER_BYTES.to_string(),
            "--scim-max-filter-depth",
            &FILTER_DEPTH.to_string(),
            "--json-max-depth",
            &JSON_DEPTH.to_string(),
        ],
    );
    let bearer = format!("Bearer {scim}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/scim+json"),
    ];
    let list = |filter: &str| {
        let url = format!("/scim/v2/Users?filter={}", crate::scim::encode(filter));
        http(&server.http, "GET", &url, &headers, "")
    };

    // Filters: at both bounds answered, one byte or one level past either refused.
    let (status, body) = list(&user_filter(FILTER_BYTES, FILTER_DEPTH));
    assert_eq!(status, 200, "{body}");
    let (status, body) = list(&user_filter(FILTER_BYTES + 1, 0));
    let (kind, detail) = scim_400(status, &body);
    assert_eq!(kind, "invalidFilter");
    assert!(
        detail.contains(&format!(
            "{} bytes long, more than the {FILTER_BYTES} accepted (`scim-max-filter-bytes`)",
            FILTER_BYTES + 1
        )),
        "{detail}"
    );
    let (status, body) = list(&user_filter(FILTER_BYTES, FILTER_DEPTH + 1));
    let (kind, detail) = scim_400(status, &body);
    assert_eq!(kind, "invalidFilter");
    assert!(
        detail.contains(&format!("nested deeper than {FILTER_DEPTH} levels"))
            && detail.contains("(`scim-max-filter-depth`)"),
        "{detail}"
    );

    // PATCH paths keep to the same bounds (they may hold a value filter), as `invalidPath`.
    let (at_bounds, kind) = email_path(FILTER_BYTES, FILTER_DEPTH);
    assert_eq!(at_bounds.len(), FILTER_BYTES);
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bounded@example.com",
        "emails": [{"value": "bounded@example.com", "type": kind}],
    });
    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &headers,
        &user.to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let url = format!("/scim/v2/Users/{}", created["id"].as_str().unwrap());
    let patch = |path: &str| {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": path, "value": "shown"}],
        });
        http(&server.http, "PATCH", &url, &headers, &body.to_string())
    };
    let (status, body) = patch(&at_bounds);
    assert_eq!(status, 200, "{body}");
    let patched: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(patched["emails"][0]["display"], "shown", "{body}");
    let (too_long, _) = email_path(FILTER_BYTES + 1, FILTER_DEPTH);
    let (status, body) = patch(&too_long);
    let (scim_type, detail) = scim_400(status, &body);
    assert_eq!(scim_type, "invalidPath");
    assert!(
        detail.contains(&format!(
            "longer than {FILTER_BYTES} bytes (`scim-max-filter-bytes`)"
        )),
        "{detail}"
    );
    let (too_deep, _) = email_path(FILTER_BYTES, FILTER_DEPTH + 1);
    let (status, body) = patch(&too_deep);
    let (scim_type, detail) = scim_400(status, &body);
    assert_eq!(scim_type, "invalidPath");
    assert!(detail.contains("(`scim-max-filter-depth`)"), "{detail}");

    // Bodies one level deeper than `json-max-depth` are refused before they are parsed.
    let deeper = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "deeper@example.com",
        "emails": [{"value": "deeper@example.com", "type": {}}],
    });
    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &headers,
        &deeper.to_string(),
    );
    let (scim_type, detail) = scim_400(status, &body);
    assert_eq!(scim_type, "invalidSyntax");
    assert!(
        detail.contains(&format!("deeper than {JSON_DEPTH} levels"))
            && detail.contains("`json-max-depth`"),
        "{detail}"
    );
    let json = [("content-type", "application/json")];
    let evaluation = |arguments: Value| {
        json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "tool0"},
            "resource": {"type": "connector", "id": "github"},
            "context": {"arguments": arguments},
        })
        .to_string()
    };
    let url = "/access/v1/evaluation";
    let (status, body) = http(
        &server.http,
        "POST",
        url,
        &json,
        &evaluation(json!({"a": 1})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        &server.http,
        "POST",
        url,
        &json,
        &evaluation(json!({"a": []})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`json-max-depth`"), "{body}");
}

const ATTRIBUTES: usize = 2;
const ATTRIBUTE_BYTES: usize = 16;
const ARGUMENTS: usize = 256;

/// Arguments `{"a": "x…"}` exactly `bytes` long encoded (at least 10).
fn arguments_of(bytes: usize) -> prost_types::Struct {
    (0..bytes)
        .map(|n| {
            let value = prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("x".repeat(n))),
            };
            prost_types::Struct {
                fields: [("a".to_owned(), value)].into(),
            }
        })
        .find(|arguments| arguments.encoded_len() == bytes)
        .unwrap_or_else(|| panic!("no arguments of {bytes} bytes"))
}

/// A Check by alice with these attributes and arguments.
fn check_with(attributes: &[(String, String)], arguments: usize) -> pb::CheckRequest {
    pb::CheckRequest {
        user: "alice@example.com".into(),
        connector: "github".into(),
        tool: "tool0".into(),
        attributes: attributes.iter().cloned().collect(),
        arguments: Some(arguments_of(arguments)),
        ..Default::default()
    }
}

/// `count` attributes whose keys and values are `bytes` long.
fn attributes_of(count: usize, bytes: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("{i}{}", "k".repeat(bytes - 1)), "v".repeat(bytes)))
        .collect()
}

#[tokio::test]
async fn check_attributes_and_arguments_are_bounded_by_their_settings() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    allow_tools(&data, 1);
    let server = Server::start_with(
        &data,
        &[
            "--check-max-attributes",
            &ATTRIBUTES.to_string(),
            "--check-max-attribute-bytes",
            &ATTRIBUTE_BYTES.to_string(),
            "--check-max-arguments-bytes",
            &ARGUMENTS.to_string(),
        ],
    );
    let mut decisions = server.client().await;

    // At every bound decided.
    let at = check_with(&attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES), ARGUMENTS);
    let answer = decisions.check(at.clone()).await.unwrap().into_inner();
    assert_eq!(answer.decision(), pb::Decision::Allow, "{answer:?}");
    let refused = |status: tonic::Status, field: &str, setting: &str| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(field) && status.message().contains(setting),
            "{}",
            status.message()
        );
    };
    // One attribute too many, one byte too long (key or value), one byte of arguments over.
    let over = check_with(&attributes_of(ATTRIBUTES + 1, ATTRIBUTE_BYTES), ARGUMENTS);
    let status = decisions.check(over).await.unwrap_err();
    refused(status, "attributes", "(`check-max-attributes`)");
    let mut long_key = attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES);
    long_key[0].0.push('k');
    let mut long_value = attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES);
    long_value[1].1.push('v');
    for (attributes, field) in [(&long_key, "attributes"), (&long_value, "attributes[1")] {
        let status = decisions
            .check(check_with(attributes, ARGUMENTS))
            .await
            .unwrap_err();
        refused(status, field, "(`check-max-attribute-bytes`)");
    }
    let big = check_with(&attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES), ARGUMENTS + 1);
    let status = decisions.check(big.clone()).await.unwrap_err();
    refused(status, "arguments", "(`check-max-arguments-bytes`)");
    // Each check of a batch too, named by its index.
    let status = decisions
        .batch_check(pb::BatchCheckRequest {
            checks: vec![at, big],
        })
        .await
        .unwrap_err();
    refused(
        status,
        "checks[1].arguments",
        "(`check-max-arguments-bytes`)",
    );

    // A request for approval of such a call: the same bounds (past them, before anything
    // else about the request is looked at; at them, refused only for having no flow).
    let mut gateway = crate::approvals::approvals(&server, None).await;
    let request =
        |attributes: &[(String, String)], arguments: usize| pb::CreateApprovalRequestRequest {
            user: "alice@example.com".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "tool0".into(),
            attributes: attributes.iter().cloned().collect(),
            arguments: Some(arguments_of(arguments)),
            ..Default::default()
        };
    let status = gateway
        .create_approval_request(request(
            &attributes_of(ATTRIBUTES + 1, ATTRIBUTE_BYTES),
            ARGUMENTS,
        ))
        .await
        .unwrap_err();
    refused(status, "attributes", "(`check-max-attributes`)");
    let status = gateway
        .create_approval_request(request(&[], ARGUMENTS + 1))
        .await
        .unwrap_err();
    refused(status, "arguments", "(`check-max-arguments-bytes`)");
    let status = gateway
        .create_approval_request(request(
            &attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES),
            ARGUMENTS,
        ))
        .await
        .unwrap_err();
    assert!(
        !status.message().contains("check-max-"),
        "a request at the bounds is not refused for them: {status:?}"
    );

    // AuthZEN: the same bounds, as 400.
    let evaluation = |attributes: &[(String, String)]| {
        let attributes: serde_json::Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "tool0"},
            "resource": {"type": "connector", "id": "github"},
            "context": {"attributes": attributes},
        })
    };
    let json = [("content-type", "application/json")];
    let url = "/access/v1/evaluation";
    let at = evaluation(&attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES)).to_string();
    let (status, body) = http(&server.http, "POST", url, &json, &at);
    assert_eq!(status, 200, "{body}");
    let over = evaluation(&attributes_of(ATTRIBUTES + 1, ATTRIBUTE_BYTES)).to_string();
    let (status, body) = http(&server.http, "POST", url, &json, &over);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`check-max-attributes`"), "{body}");
    let batch = json!({
        "evaluations": [
            evaluation(&attributes_of(ATTRIBUTES, ATTRIBUTE_BYTES)),
            evaluation(&long_value),
        ],
    });
    let (status, body) = http(
        &server.http,
        "POST",
        "/access/v1/evaluations",
        &json,
        &batch.to_string(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("evaluations[1].") && body.contains("`check-max-attribute-bytes`"),
        "{body}"
    );
}
