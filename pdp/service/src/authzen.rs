//! The OpenID AuthZEN Authorization API 1.0 over HTTP: `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations`, the action and resource searches ([`search`]) and
//! `GET /.well-known/authzen-configuration` ([docs/authzen.md](../../../docs/authzen.md) has
//! the mapping).
//!
//! There is one decision path: each evaluation is translated into the `CheckRequest` gRPC
//! `Check` takes and answered by the same [`DecisionService`] (its `Check`, or its `BatchCheck`
//! for a batch that executes all), so tokens, limits, metrics, the decision log and approvals
//! behave exactly as for gRPC. Only the translation lives here.

use crate::{DecisionService, RequireToken};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, uri::Authority};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pb::decision_service_server::DecisionService as _;
use portcullis_proto::names;
use portcullis_proto::v1 as pb;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tonic::service::Interceptor;

mod search;

/// The largest request body unless the server is told otherwise (`authzen-max-body-bytes`):
/// gRPC's default message limit, so a request too big for one is too big for the other.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The longest `X-Request-ID` echoed back; a longer one is not echoed.
const MAX_REQUEST_ID: usize = 256;

const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const CONFIGURATION: &str = "/.well-known/authzen-configuration";

struct Pdp {
    decisions: DecisionService,
    token: Option<RequireToken>,
    scheme: &'static str,
    /// The largest body read, in bytes.
    max_body: usize,
}

/// The AuthZEN routes over `decisions`, requiring a secret of `token` as
/// `authorization: Bearer` when there is one (as gRPC `Check` does); `tls` says which scheme the
/// metadata document's URLs have; a body over `max_body` bytes is refused with 413.
pub fn router(
    decisions: DecisionService,
    token: Option<RequireToken>,
    tls: bool,
    max_body: usize,
) -> Router {
    let pdp = Arc::new(Pdp {
        decisions,
        token,
        scheme: if tls { "https" } else { "http" },
        max_body,
    });
    Router::new()
        .route(EVALUATION, post(evaluation))
        .route(EVALUATIONS, post(evaluations))
        .route(search::ACTION, post(search::action))
        .route(search::RESOURCE, post(search::resource))
        .route(CONFIGURATION, get(configuration))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(pdp)
}

/// An error in the specification's form: an HTTP status and a JSON body saying why.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn bad(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A `Check` refusal, with the HTTP status of its gRPC code.
    fn from_status(status: &tonic::Status) -> Failure {
        use tonic::Code;
        let http = match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if http == StatusCode::INTERNAL_SERVER_ERROR {
            // Never an internal detail to the caller; it is in the log.
            tracing::warn!(error = %status.message(), "an AuthZEN evaluation failed");
            "internal error".to_owned()
        } else {
            status.message().to_owned()
        };
        Failure {
            status: http,
            message,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
            (self.status, challenge, body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl Pdp {
    /// The same bearer rule as gRPC `Check`: the very interceptor, over this request's
    /// `authorization` header; open when the server has no decision token.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let mut request = tonic::Request::new(());
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let mut only = HeaderMap::new();
            only.insert(header::AUTHORIZATION, value.clone());
            *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(only);
        }
        token
            .clone()
            .call(request)
            .map(drop)
            .map_err(|status| Failure {
                status: StatusCode::UNAUTHORIZED,
                message: status.message().to_owned(),
            })
    }

    /// Authorizes, then reads the body (at most `max_body` bytes) as a JSON object: a caller
    /// without a token never gets a body read.
    async fn body(&self, request: Request) -> Result<Map<String, Value>, Failure> {
        self.authorize(request.headers())?;
        let bytes = Bytes::from_request(request, &())
            .await
            .map_err(|e| Failure {
                status: e.status(),
                message: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    format!(
                        "the body is larger than {} bytes (`authzen-max-body-bytes`)",
                        self.max_body
                    )
                } else {
                    format!("cannot read the body: {}", e.body_text())
                },
            })?;
        parse(&bytes, self.decisions.json_max_depth())
    }

    async fn check(&self, check: pb::CheckRequest) -> Result<pb::CheckResponse, Failure> {
        self.decisions
            .check(tonic::Request::new(check))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| Failure::from_status(&status))
    }

    /// One `BatchCheck`: one snapshot answers every check, in order.
    async fn batch_check(
        &self,
        checks: Vec<pb::CheckRequest>,
    ) -> Result<Vec<pb::CheckResponse>, Failure> {
        self.decisions
            .batch_check(tonic::Request::new(pb::BatchCheckRequest { checks }))
            .await
            .map(|answer| answer.into_inner().results)
            .map_err(|status| Failure::from_status(&status))
    }
}

async fn evaluation(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    let id = request_id(request.headers());
    let answered = async {
        let body = pdp.body(request).await?;
        let check = check_request(&body, None, "")?;
        pdp.check(check).await.map(|answer| answer_json(&answer))
    };
    respond(answered.await, id)
}

/// How a batch is executed (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// What an `evaluations` body asks: one evaluation, or a batch with its semantic, each
/// evaluation checked as Check will check it.
enum Batch {
    One(Box<pb::CheckRequest>),
    Many(Semantic, Vec<pb::CheckRequest>),
}

/// Reads an `evaluations` body; nothing is decided yet.
fn batch(
    body: &Map<String, Value>,
    max: usize,
    bounds: &crate::convert::CheckBounds,
) -> Result<Batch, Failure> {
    let items: &[Value] = match body.get("evaluations") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Failure::bad("`evaluations` must be an array")),
    };
    // Without evaluations, the request is one evaluation, answered as one.
    if items.is_empty() {
        return Ok(Batch::One(Box::new(check_request(body, None, "")?)));
    }
    if items.len() > max {
        return Err(Failure::bad(format!(
            "`evaluations`: {} evaluations, the limit is {max} (`batch-max-checks`)",
            items.len()
        )));
    }
    let semantic = semantic(body)?;
    let checks = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("evaluations[{i}].");
            let Value::Object(item) = item else {
                return Err(Failure::bad(format!(
                    "`evaluations[{i}]` must be an object"
                )));
            };
            let check = check_request(item, Some(body), &path)?;
            valid(&check, &path, bounds)?;
            Ok(check)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch::Many(semantic, checks))
}

/// The fuzz target's entry (`fuzz/`, feature `fuzzing`): a body as both evaluation endpoints
/// and both searches read it, up to the decision.
#[cfg(feature = "fuzzing")]
pub fn read_body(bytes: &[u8]) {
    if let Ok(body) = parse(bytes, crate::json_depth::DEFAULT_JSON_DEPTH) {
        if let Ok(check) = check_request(&body, None, "") {
            let _ = valid(&check, "", &crate::CheckBounds::default());
        }
        let _ = batch(
            &body,
            crate::DEFAULT_MAX_BATCH,
            &crate::CheckBounds::default(),
        );
        search::read_body(&body);
    }
}

/// A body as the JSON object it must be, nesting at most `max_depth` levels (checked before it
/// is parsed).
fn parse(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, Failure> {
    crate::json_depth::within_depth(bytes, max_depth)
        .map_err(|at| Failure::bad(crate::json_depth::too_deep(max_depth, at)))?;
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(Failure::bad("the body must be a JSON object")),
        Err(e) => Err(Failure::bad(format!("the body is not JSON: {e}"))),
    }
}

async fn evaluations(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    let id = request_id(request.headers());
    let answered = async {
        let body = pdp.body(request).await?;
        let (semantic, checks) = match batch(
            &body,
            pdp.decisions.max_batch(),
            pdp.decisions.check_bounds(),
        )? {
            Batch::One(check) => {
                return pdp.check(*check).await.map(|answer| answer_json(&answer));
            }
            Batch::Many(semantic, checks) => (semantic, checks),
        };
        let answers = match semantic {
            // One BatchCheck: one snapshot answers them all.
            Semantic::ExecuteAll => pdp.batch_check(checks).await?,
            // One Check at a time, so nothing past the first deny (or permit) is decided,
            // logged or uses a grant.
            Semantic::DenyOnFirstDeny | Semantic::PermitOnFirstPermit => {
                let stop_at = semantic == Semantic::PermitOnFirstPermit;
                let mut answers = Vec::with_capacity(checks.len());
                for check in checks {
                    let answer = pdp.check(check).await?;
                    let allowed = answer.decision() == pb::Decision::Allow;
                    answers.push(answer);
                    if allowed == stop_at {
                        break;
                    }
                }
                answers
            }
        };
        let evaluations: Vec<Value> = answers.iter().map(answer_json).collect();
        Ok(json!({ "evaluations": evaluations }))
    };
    respond(answered.await, id)
}

/// Checks `check` as `Check` will, before any evaluation of the batch is decided: a batch
/// with a bad evaluation decides nothing (and the error names the evaluation).
fn valid(
    check: &pb::CheckRequest,
    path: &str,
    bounds: &crate::convert::CheckBounds,
) -> Result<(), Failure> {
    let invalid = |e: crate::Error| Failure::bad(e.to_string());
    let owned = crate::convert::owned(check, path, bounds).map_err(invalid)?;
    crate::convert::request(check, &owned, pdp::Timestamp::default(), path, bounds)
        .map_err(invalid)?;
    Ok(())
}

fn semantic(body: &Map<String, Value>) -> Result<Semantic, Failure> {
    let options = match body.get("options") {
        None | Some(Value::Null) => return Ok(Semantic::ExecuteAll),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(Failure::bad("`options` must be an object")),
    };
    match options.get("evaluations_semantic") {
        None | Some(Value::Null) => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "execute_all" => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
        Some(Value::String(s)) if s == "permit_on_first_permit" => {
            Ok(Semantic::PermitOnFirstPermit)
        }
        Some(other) => Err(Failure::bad(format!(
            "`options.evaluations_semantic` is {other}: expected `execute_all`, \
             `deny_on_first_deny` or `permit_on_first_permit`"
        ))),
    }
}

async fn configuration(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    let id = request_id(request.headers());
    let base = origin(&request).map(|authority| format!("{}://{authority}", pdp.scheme));
    let answered = base.map(|base| {
        json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
            "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
            "search_action_endpoint": format!("{base}{}", search::ACTION),
            "search_resource_endpoint": format!("{base}{}", search::RESOURCE),
        })
    });
    respond(answered, id)
}

/// The host the client asked for (HTTP/2's `:authority`, else `Host`), as the PDP's
/// identifier: the metadata names the URL it was fetched from.
fn origin(request: &Request) -> Result<Authority, Failure> {
    if let Some(authority) = request.uri().authority() {
        return Ok(authority.clone());
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Failure::bad("a `Host` header is required"))?;
    match host.parse::<Authority>() {
        // No `user@`: only a host and port may go into the URLs we hand out.
        Ok(authority) if !host.contains('@') => Ok(authority),
        _ => Err(Failure::bad(format!("`Host` is not a host: `{host}`"))),
    }
}

/// The `X-Request-ID` to echo back (the specification asks a PDP to), when it is short.
fn request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| v.len() <= MAX_REQUEST_ID)
        .cloned()
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn respond(answered: Result<Value, Failure>, id: Option<HeaderValue>) -> Response {
    let mut response = match answered {
        Ok(body) => axum::Json(body).into_response(),
        Err(failure) => failure.into_response(),
    };
    if let Some(id) = id {
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    response
}

/// One evaluation as the `CheckRequest` gRPC `Check` takes. Each of `subject`, `action`,
/// `resource` and `context` is the evaluation's own, else the batch's (`defaults`); `path`
/// prefixes field names in errors.
fn check_request(
    evaluation: &Map<String, Value>,
    defaults: Option<&Map<String, Value>>,
    path: &str,
) -> Result<pb::CheckRequest, Failure> {
    let part = |key: &str| {
        evaluation
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| defaults.and_then(|d| d.get(key)).filter(|v| !v.is_null()))
    };
    let required = |key: &str| member(part(key), &format!("{path}{key}"));
    let subject = required("subject")?;
    let resource = required("resource")?;
    let action = required("action")?;
    let user = identified(subject, "user", &format!("{path}subject"))?;
    let connector = identified(resource, "connector", &format!("{path}resource"))?;
    let tool = named(action, &format!("{path}action"))?;
    let mut check = pb::CheckRequest {
        user: user.to_owned(),
        connector: connector.to_owned(),
        tool: tool.to_owned(),
        ..Default::default()
    };
    if let Some(context) = part("context") {
        with_context(&mut check, context, &format!("{path}context"))?;
    }
    Ok(check)
}

/// A required member that must be an object, `value` as found at `at`.
fn member<'a>(value: Option<&'a Value>, at: &str) -> Result<&'a Map<String, Value>, Failure> {
    value
        .filter(|v| !v.is_null())
        .ok_or_else(|| Failure::bad(format!("`{at}` is missing")))?
        .as_object()
        .ok_or_else(|| Failure::bad(format!("`{at}` must be an object")))
}

/// The `id` of `object`, whose `type` must be `expected`: both required.
fn identified<'a>(
    object: &'a Map<String, Value>,
    expected: &str,
    at: &str,
) -> Result<&'a str, Failure> {
    typed(object, expected, at)?;
    match text(object, "id", at)? {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(Failure::bad(format!("`{at}.id` is missing"))),
    }
}

/// The `name` of an action object, required.
fn named<'a>(action: &'a Map<String, Value>, at: &str) -> Result<&'a str, Failure> {
    match text(action, "name", at)? {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Failure::bad(format!("`{at}.name` is missing"))),
    }
}

/// Sets what `check` takes from an AuthZEN `context` (at `at`): the agent, approval id,
/// arguments, attributes and authentication.
fn with_context(check: &mut pb::CheckRequest, context: &Value, at: &str) -> Result<(), Failure> {
    let context = context
        .as_object()
        .ok_or_else(|| Failure::bad(format!("`{at}` must be an object")))?;
    check.agent = text(context, "agent", at)?.unwrap_or_default().to_owned();
    check.approval_id = text(context, "approval_id", at)?
        .unwrap_or_default()
        .to_owned();
    match context.get("arguments") {
        None | Some(Value::Null) => {}
        Some(arguments @ Value::Object(_)) => {
            if let Some(prost_types::value::Kind::StructValue(arguments)) =
                crate::json_to_value(arguments).kind
            {
                check.arguments = Some(arguments);
            }
        }
        Some(_) => {
            return Err(Failure::bad(format!(
                "`{at}.arguments` must be a JSON object"
            )));
        }
    }
    match context.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(attributes)) => {
            for (name, value) in attributes {
                let Value::String(value) = value else {
                    return Err(Failure::bad(format!(
                        "`{at}.attributes.{name}` must be a string"
                    )));
                };
                check.attributes.insert(name.clone(), value.clone());
            }
        }
        Some(_) => {
            return Err(Failure::bad(format!(
                "`{at}.attributes` must be an object of strings"
            )));
        }
    }
    match context.get("authentication") {
        None | Some(Value::Null) => {}
        Some(Value::Object(authentication)) => {
            check.authentication = Some(authentication_of(
                authentication,
                &format!("{at}.authentication"),
            )?);
        }
        Some(_) => {
            return Err(Failure::bad(format!(
                "`{at}.authentication` must be an object"
            )));
        }
    }
    Ok(())
}

/// `{acr, amr, auth_time}` as an ID token has them: `auth_time` in seconds since the epoch.
fn authentication_of(
    authentication: &Map<String, Value>,
    at: &str,
) -> Result<pb::Authentication, Failure> {
    let acr = text(authentication, "acr", at)?
        .unwrap_or_default()
        .to_owned();
    let amr = match authentication.get("amr") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Failure::bad(format!("`{at}.amr` must be an array of strings")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(Failure::bad(format!(
                "`{at}.amr` must be an array of strings"
            )));
        }
    };
    let auth_time = match authentication.get("auth_time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(seconds) => Some(prost_types::Timestamp { seconds, nanos: 0 }),
            None => {
                return Err(Failure::bad(format!(
                    "`{at}.auth_time` must be whole seconds since the epoch, got {n}"
                )));
            }
        },
        Some(_) => {
            return Err(Failure::bad(format!(
                "`{at}.auth_time` must be a number (seconds since the epoch)"
            )));
        }
    };
    Ok(pb::Authentication {
        acr,
        amr,
        auth_time,
    })
}

/// `object.type` must be `expected`.
fn typed(object: &Map<String, Value>, expected: &str, at: &str) -> Result<(), Failure> {
    match text(object, "type", at)? {
        Some(kind) if kind == expected => Ok(()),
        Some(kind) => Err(Failure::bad(format!(
            "`{at}.type` is `{kind}`: only `{expected}` is known"
        ))),
        None => Err(Failure::bad(format!(
            "`{at}.type` is missing (it is `{expected}`)"
        ))),
    }
}

/// `object[key]` when it is a string; an error naming it when it is something else.
fn text<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, Failure> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::bad(format!("`{at}.{key}` must be a string"))),
    }
}

/// A `Check` answer as an AuthZEN decision: `decision` is true only for Allow, and the context
/// carries what the gRPC answer does.
fn answer_json(answer: &pb::CheckResponse) -> Value {
    let decision = answer.decision();
    let mut context = Map::new();
    context.insert("decision".into(), names::decision(decision).into());
    context.insert("reason".into(), names::reason(answer.reason()).into());
    if !answer.policy_id.is_empty() {
        context.insert("policy_id".into(), answer.policy_id.clone().into());
    }
    context.insert("revision".into(), answer.revision.into());
    context.insert("decision_id".into(), answer.decision_id.clone().into());
    if let Some(step_up) = &answer.step_up {
        context.insert(
            "step_up".into(),
            json!({
                "acr_values": step_up.acr_values,
                "amr_values": step_up.amr_values,
                "max_age": step_up.max_age,
            }),
        );
    }
    if !answer.challenge.is_empty() {
        context.insert("challenge".into(), answer.challenge.clone().into());
    }
    if decision == pb::Decision::RequireApproval {
        let mut approval = Map::new();
        approval.insert("flow_id".into(), answer.approval_flow_id.clone().into());
        approval.insert(
            "arguments_digest".into(),
            answer.arguments_digest.clone().into(),
        );
        if !answer.pending_approval_id.is_empty() {
            approval.insert(
                "pending_request_id".into(),
                answer.pending_approval_id.clone().into(),
            );
        }
        context.insert("approval".into(), approval.into());
    }
    json!({
        "decision": decision == pb::Decision::Allow,
        "context": context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_evaluation_overrides_the_batch_defaults_part_by_part() {
        let batch = object(json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "resource": {"type": "connector", "id": "github"},
            "context": {"agent": "claude", "arguments": {"repo": "acme/x", "n": 2},
                        "authentication": {"acr": "phrh", "amr": ["pwd", "otp"], "auth_time": 1700000000},
                        "attributes": {"ip": "10.0.0.1"}, "approval_id": "ar1"},
        }));
        let item = object(json!({"action": {"name": "create_issue"},
                                 "resource": {"type": "connector", "id": "jira"}}));
        let check = check_request(&item, Some(&batch), "evaluations[0].").unwrap();
        assert_eq!(check.user, "alice@example.com");
        assert_eq!(check.connector, "jira");
        assert_eq!(check.tool, "create_issue");
        assert_eq!(check.agent, "claude");
        assert_eq!(check.approval_id, "ar1");
        assert_eq!(check.attributes["ip"], "10.0.0.1");
        let authentication = check.authentication.unwrap();
        assert_eq!(authentication.acr, "phrh");
        assert_eq!(authentication.amr, ["pwd", "otp"]);
        assert_eq!(authentication.auth_time.unwrap().seconds, 1_700_000_000);
        let arguments = crate::struct_to_json(&check.arguments.unwrap());
        assert_eq!(
            serde_json::to_value(arguments).unwrap(),
            json!({"repo": "acme/x", "n": 2.0})
        );
    }

    #[test]
    fn bad_evaluations_name_the_field() {
        let cases = [
            (json!({}), "`subject` is missing"),
            (
                json!({"subject": {"type": "group", "id": "g"}, "resource": {}, "action": {}}),
                "`subject.type` is `group`",
            ),
            (
                json!({"subject": {"type": "user", "id": "u"},
                       "resource": {"type": "connector", "id": "c"}, "action": {"name": 3}}),
                "`action.name` must be a string",
            ),
            (
                json!({"subject": {"type": "user", "id": "u"},
                       "resource": {"type": "connector", "id": "c"}, "action": {"name": "t"},
                       "context": {"arguments": [1]}}),
                "`context.arguments` must be a JSON object",
            ),
            (
                json!({"subject": {"type": "user", "id": "u"},
                       "resource": {"type": "connector", "id": "c"}, "action": {"name": "t"},
                       "context": {"authentication": {"auth_time": "yesterday"}}}),
                "`context.authentication.auth_time` must be a number",
            ),
        ];
        for (body, expected) in cases {
            let error = check_request(&object(body.clone()), None, "").unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(
                error.message.starts_with(expected),
                "{body}: {}",
                error.message
            );
        }
    }

    #[test]
    fn only_allow_is_true_and_the_context_carries_the_answer() {
        let approval = pb::CheckResponse {
            decision: pb::Decision::RequireApproval.into(),
            reason: pb::Reason::Policy.into(),
            policy_id: "p1".into(),
            revision: 7,
            decision_id: "d".into(),
            approval_flow_id: "builtin-admins".into(),
            arguments_digest: "ab".into(),
            pending_approval_id: "ar9".into(),
            ..Default::default()
        };
        assert_eq!(
            answer_json(&approval),
            json!({"decision": false, "context": {
                "decision": "REQUIRE_APPROVAL", "reason": "POLICY", "policy_id": "p1",
                "revision": 7, "decision_id": "d",
                "approval": {"flow_id": "builtin-admins", "arguments_digest": "ab",
                             "pending_request_id": "ar9"}}})
        );
        let allow = pb::CheckResponse {
            decision: pb::Decision::Allow.into(),
            reason: pb::Reason::StepUpMet.into(),
            ..Default::default()
        };
        assert_eq!(answer_json(&allow)["decision"], json!(true));
    }
}
