//! Prometheus metrics at `/metrics`, for `serve` (on the SCIM HTTP port) and `sidecar` (on its
//! `--http-addr`): one registry each, built here, encoded as OpenMetrics text at every scrape.
//!
//! What the Check path updates (decision counts, the latency histogram) and what publishers
//! update (snapshot publish counts and durations) are plain atomics in `pdp_service`, read here
//! by collectors at scrape time: the hot path never takes a lock for metrics. SCIM requests and
//! admin calls, which are not hot, use prometheus-client families.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleet::{Follower, Status};
use pdp_service::{CHECK_BUCKETS, DecisionMetrics, Engine, Recorder};
use portcullis_proto::v1 as pb;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One process's metrics, registered as its servers are wired up, then served by
/// [`Metrics::router`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Arc<DecisionMetrics>,
}

impl Metrics {
    /// Decisions by decision and reason, the Check latency histogram (give
    /// [`Metrics::decisions`] to the `DecisionService`), and how `engine`'s snapshots were
    /// published and how old the current one is.
    pub fn new(engine: &Engine) -> Metrics {
        let decisions = Arc::new(DecisionMetrics::new());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Decisions(Arc::clone(&decisions))));
        registry.register_collector(Box::new(Publishes(engine.clone())));
        Metrics {
            registry,
            decisions,
        }
    }

    /// What the decision service counts into.
    pub fn decisions(&self) -> Arc<DecisionMetrics> {
        Arc::clone(&self.decisions)
    }

    /// The control plane's: the revision decisions are answered from, decision records
    /// dropped, calls refused without valid credentials, and the counters SCIM requests and
    /// admin calls go through ([`count_scim`], [`AdminCalls::wrap`]).
    pub fn control_plane(
        &mut self,
        engine: &Engine,
        recorder: Recorder,
        refusals: Arc<live::Refusals>,
    ) -> (ScimRequests, AdminCalls) {
        self.registry.register_collector(Box::new(ControlPlane {
            engine: engine.clone(),
            recorder,
            refusals,
        }));
        let scim = ScimRequests::default();
        self.registry.register(
            "portcullis_scim_requests",
            "SCIM requests answered, by HTTP status",
            scim.0.clone(),
        );
        let admin = AdminCalls::default();
        self.registry.register(
            "portcullis_admin_calls",
            "Admin API calls (AdminService, ApprovalFlowService) answered, by method and gRPC status code",
            admin.0.clone(),
        );
        (scim, admin)
    }

    /// Approval requests: pending, outcomes, and how long people took to decide.
    pub fn approvals(&mut self, approvals: admin::approvals::Approvals) {
        self.registry
            .register_collector(Box::new(ApprovalMetrics(approvals)));
    }

    /// Webhook deliveries by outcome and the outbox's pending deliveries.
    pub fn webhooks(&mut self, stats: Arc<admin::webhooks::Stats>) {
        self.registry.register_collector(Box::new(Webhooks(stats)));
    }

    /// A sidecar's: the follower's revision, lag, staleness and stream counters.
    pub fn follower(&mut self, follower: Follower) {
        self.registry
            .register_collector(Box::new(FollowerMetrics(follower)));
    }

    /// `GET /metrics`.
    pub fn router(self) -> axum::Router {
        let registry = Arc::new(self.registry);
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || scrape(Arc::clone(&registry))),
        )
    }
}

async fn scrape(registry: Arc<Registry>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(axum::http::header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A gauge in seconds; `name` without the `_seconds` the encoder appends.
fn seconds(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Duration,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value.as_secs_f64());
    gauge.encode(encoder.encode_descriptor(
        name,
        help,
        Some(&Unit::Seconds),
        gauge.metric_type(),
    )?)
}

/// A counter; `name` without the `_total` the encoder appends.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// A wire enum's name without its prefix: `DECISION_ALLOW` → `ALLOW`.
/// Decisions by (decision, reason) and the Check latency histogram, read from the atomics the
/// decision service updates.
#[derive(Debug)]
struct Decisions(Arc<DecisionMetrics>);

impl Collector for Decisions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        {
            let mut family = encoder.encode_descriptor(
                "portcullis_decisions",
                "Answered checks (Check, and each check of a BatchCheck), by decision and reason.",
                None,
                MetricType::Counter,
            )?;
            for (decision, reason, count) in self.0.decisions() {
                // The pairs decide can give are always there, at zero until they happen (a
                // policy's action, a deny for any other reason, an allow by a met step-up or
                // an approval); others only if they ever do.
                let allows = matches!(reason, pb::Reason::StepUpMet | pb::Reason::Approved);
                let possible = reason == pb::Reason::Policy
                    || (decision == pb::Decision::Deny && !allows)
                    || (decision == pb::Decision::Allow && allows);
                if count == 0 && !possible {
                    continue;
                }
                let labels = [
                    ("decision", portcullis_proto::names::decision(decision)),
                    ("reason", portcullis_proto::names::reason(reason)),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        let latencies = self.0.check_latency();
        let bounds = CHECK_BUCKETS
            .iter()
            .map(Duration::as_secs_f64)
            // prometheus-client writes f64::MAX as `+Inf`.
            .chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds.zip(latencies.counts).collect();
        encoder
            .encode_descriptor(
                "portcullis_check_duration",
                "Check latency in the server, from the handler's entry to its answer (any \
                 min_revision wait included).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                latencies.sum.as_secs_f64(),
                latencies.count(),
                &buckets,
                None,
            )
    }
}

/// How the engine's snapshots were published: age, publishes, folds and their durations.
#[derive(Debug)]
struct Publishes(Engine);

impl Collector for Publishes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = self.0.publish_stats();
        seconds(
            &mut encoder,
            "portcullis_snapshot_age",
            "Time since the revision decisions are answered from was published.",
            self.0.snapshot_age(),
        )?;
        seconds(
            &mut encoder,
            "portcullis_snapshot_last_build",
            "Duration of the last full snapshot build by the publisher (a full publish or a \
             fold's background build); 0 before any.",
            stats.last_build(),
        )?;
        seconds(
            &mut encoder,
            "portcullis_snapshot_last_fold",
            "Duration of the last fold, from the start of its background build to its publish; \
             0 before any.",
            stats.last_fold(),
        )?;
        counter(
            &mut encoder,
            "portcullis_snapshot_folds",
            "Background builds made the base of the snapshot.",
            stats.folds(),
        )?;
        let mut family = encoder.encode_descriptor(
            "portcullis_snapshot_publishes",
            "Snapshots published by the publisher: kind=changes applied to the last one, \
             kind=full built in full.",
            None,
            MetricType::Counter,
        )?;
        for (kind, count) in [("changes", stats.applied()), ("full", stats.built())] {
            family
                .encode_family(&[("kind", kind)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        Ok(())
    }
}

/// The control plane's revision, decision records dropped and refused calls.
#[derive(Debug)]
struct ControlPlane {
    engine: Engine,
    recorder: Recorder,
    refusals: Arc<live::Refusals>,
}

impl Collector for ControlPlane {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut encoder,
            "portcullis_snapshot_revision",
            "The revision decisions are answered from.",
            i64::try_from(self.engine.revision()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "portcullis_decision_records_dropped",
            "Decision records dropped because their consumer (recent activity) fell behind.",
            self.recorder.dropped(),
        )?;
        // Every port and reason, zeros included, so a rate can be taken from the first scrape.
        let mut family = encoder.encode_descriptor(
            "portcullis_auth_refusals",
            "Calls refused without valid credentials (missing, malformed, unknown, revoked or \
             expired token), by port and reason: not audited, logged at most once a second.",
            None,
            MetricType::Counter,
        )?;
        for port in live::refusals::Port::ALL {
            for reason in live::refusals::Reason::ALL {
                let count = self.refusals.count(port, reason);
                family
                    .encode_family(&[("port", port.name()), ("reason", reason.name())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        Ok(())
    }
}

/// Webhook deliveries, read from the deliverer's atomics.
#[derive(Debug)]
struct Webhooks(Arc<admin::webhooks::Stats>);

impl Collector for Webhooks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = &self.0;
        {
            // Every outcome, zeros included, so a rate can be taken from the first scrape.
            let mut family = encoder.encode_descriptor(
                "portcullis_webhook_deliveries",
                "Webhook delivery outcomes: delivered (a 2xx answer), retried (an attempt failed, \
                 another is scheduled), failed (out of attempts, or the endpoint deleted or \
                 disabled), dropped (not queued: the outbox was full).",
                None,
                MetricType::Counter,
            )?;
            for (outcome, count) in [
                ("delivered", stats.delivered()),
                ("retried", stats.retried()),
                ("failed", stats.failed()),
                ("dropped", stats.dropped()),
            ] {
                family
                    .encode_family(&[("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        counter(
            &mut encoder,
            "portcullis_webhook_failures",
            "Webhook deliveries given up on (outcome=failed of portcullis_webhook_deliveries).",
            stats.failed(),
        )?;
        gauge(
            &mut encoder,
            "portcullis_webhook_pending",
            "Webhook deliveries waiting in the outbox (at most 100,000).",
            i64::try_from(stats.pending()).unwrap_or(i64::MAX),
        )
    }
}

/// SCIM requests by HTTP status.
#[derive(Debug, Clone, Default)]
pub struct ScimRequests(Family<StatusLabel, Counter>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// Counts every answer `router` gives under `/scim/v2` in `requests` (an axum middleware: the
/// scim crate knows nothing of it).
pub fn count_scim(router: axum::Router, requests: ScimRequests) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(requests, scim_request))
}

async fn scim_request(
    State(requests): State<ScimRequests>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let scim = path == "/scim/v2" || path.starts_with("/scim/v2/");
    let response = next.run(request).await;
    if scim {
        requests
            .0
            .get_or_create(&StatusLabel {
                status: response.status().as_u16(),
            })
            .inc();
    }
    response
}

/// AdminService calls by method and gRPC status code.
#[derive(Debug, Clone, Default)]
pub struct AdminCalls(Family<CallLabels, Counter>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: &'static str,
}

impl AdminCalls {
    /// `service` (AdminService's tonic server), counting each call it answers.
    pub fn wrap<S>(&self, service: S) -> Counted<S> {
        Counted {
            inner: service,
            calls: self.clone(),
        }
    }

    fn count(&self, path: &str, headers: &http::HeaderMap) {
        let code = grpc_code(headers);
        let method = path.rsplit('/').next().unwrap_or_default();
        // A method the service does not have is answered UNIMPLEMENTED by tonic: name no such
        // method, or any odd one, so callers cannot grow the label set at will.
        let known = code != "UNIMPLEMENTED"
            && !method.is_empty()
            && method.len() <= 64
            && method.bytes().all(|b| b.is_ascii_alphanumeric());
        let method = if known { method } else { "unknown" };
        self.0
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                code,
            })
            .inc();
    }
}

/// The gRPC status code of a unary call's response, from its headers: tonic answers an error
/// "trailers-only", with `grpc-status` among the headers, and a success with `grpc-status: 0`
/// in the trailers, after the body. So a response without it in its headers is counted `OK`.
/// (This is a heuristic that holds for unary calls, which are all AdminService has: a
/// streaming call could still fail in its trailers.)
fn grpc_code(headers: &http::HeaderMap) -> &'static str {
    let Some(status) = headers.get("grpc-status") else {
        return "OK";
    };
    match status.to_str().ok().and_then(|s| s.parse::<i32>().ok()) {
        Some(code) => code_name(tonic::Code::from_i32(code)),
        None => "UNKNOWN",
    }
}

/// The canonical name of a gRPC status code.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A gRPC service counting the calls it answers in [`AdminCalls`]: a tower `Service` wrapping
/// one tonic server, so only that service's calls are counted (a server-wide layer would see
/// every service's).
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    calls: AdminCalls,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let calls = self.calls.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            calls.count(&path, response.headers());
            Ok(response)
        })
    }
}

/// The follower's status, read at each scrape.
#[derive(Debug)]
struct FollowerMetrics(Follower);

impl Collector for FollowerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s: Status = self.0.status();
        let flag = |b: bool| i64::from(b);
        let gauges: [(&str, &str, i64); 8] = [
            (
                "portcullis_snapshot_revision",
                "The revision decisions are answered from.",
                s.revision as i64,
            ),
            (
                "portcullis_upstream_revision",
                "The control plane's latest revision, from its last heartbeat.",
                s.upstream_revision as i64,
            ),
            (
                "portcullis_snapshot_lag_revisions",
                "Revisions the control plane is ahead by.",
                s.lag() as i64,
            ),
            (
                "portcullis_upstream_silence_milliseconds",
                "Time since the control plane was last heard from (-1: never).",
                s.since_contact.map_or(-1, |d| d.as_millis() as i64),
            ),
            (
                "portcullis_upstream_connected",
                "1 while connected to the control plane.",
                flag(s.connected),
            ),
            (
                "portcullis_snapshot_stale",
                "1 while the snapshot is older than the staleness bound, or there is none yet.",
                flag(s.stale),
            ),
            (
                "portcullis_snapshot_failing_closed",
                "1 while every check is denied as stale.",
                flag(s.failing_closed),
            ),
            (
                "portcullis_full_snapshot_bytes",
                "Size on the wire of the last full snapshot.",
                s.last_full_bytes as i64,
            ),
        ];
        for (name, help, value) in gauges {
            gauge(&mut encoder, name, help, value)?;
        }
        let counters: [(&str, &str, u64); 3] = [
            (
                "portcullis_full_snapshots",
                "Full snapshots received.",
                s.full_snapshots,
            ),
            (
                "portcullis_snapshot_changes",
                "Changes received and applied.",
                s.changes,
            ),
            (
                "portcullis_upstream_reconnects",
                "Connections to the control plane lost and retried.",
                s.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        let g = self.0.approvals().stats();
        gauge(
            &mut encoder,
            "portcullis_sidecar_approval_grants",
            "Usable approval grants held, as the control plane streams them.",
            g.grants as i64,
        )?;
        gauge(
            &mut encoder,
            "portcullis_sidecar_approval_flows",
            "Approval flows held, as the control plane streams them.",
            g.flows as i64,
        )?;
        gauge(
            &mut encoder,
            "portcullis_sidecar_pending_approvals",
            "Pending approval requests' calls held, as the control plane streams them.",
            g.pending as i64,
        )?;
        counter(
            &mut encoder,
            "portcullis_sidecar_once_grants_used",
            "Once grants used through the control plane (checks allowed by them).",
            g.once_used,
        )?;
        counter(
            &mut encoder,
            "portcullis_sidecar_once_grant_failures",
            "Once grant uses the control plane did not answer: each check answered Require approval.",
            g.once_failed,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_come_from_trailers_only_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_code(&headers), "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_code(&headers), "NOT_FOUND");
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(grpc_code(&headers), "UNAUTHENTICATED");
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(grpc_code(&headers), "UNKNOWN");
    }

    #[test]
    fn admin_calls_name_only_methods_the_service_has() {
        let calls = AdminCalls::default();
        let mut headers = http::HeaderMap::new();
        calls.count("/portcullis.v1.AdminService/LockUser", &headers);
        headers.insert("grpc-status", http::HeaderValue::from_static("12"));
        calls.count("/portcullis.v1.AdminService/NoSuchThing", &headers);
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        calls.count("/portcullis.v1.AdminService/Lock{User}", &headers);
        let count = |method: &str, code| {
            calls
                .0
                .get_or_create(&CallLabels {
                    method: method.to_owned(),
                    code,
                })
                .get()
        };
        assert_eq!(count("LockUser", "OK"), 1);
        assert_eq!(count("unknown", "UNIMPLEMENTED"), 1);
        assert_eq!(count("unknown", "INVALID_ARGUMENT"), 1);
        assert_eq!(count("NoSuchThing", "UNIMPLEMENTED"), 0);
    }
}

#[derive(Debug)]
struct ApprovalMetrics(admin::approvals::Approvals);

impl Collector for ApprovalMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        use admin::approvals::stats::{DECIDE_BUCKETS, Outcome};
        gauge(
            &mut encoder,
            "portcullis_approval_requests_pending",
            "Approval requests awaiting approvers.",
            i64::try_from(self.0.pending_count()).unwrap_or(i64::MAX),
        )?;
        let stats = self.0.stats();
        {
            let mut family = encoder.encode_descriptor(
                "portcullis_approval_requests",
                "Approval request transitions since start, by what happened: created, \
                 escalated (to the next step), approved, denied, expired, cancelled, used (a \
                 once grant allowed a Check).",
                None,
                MetricType::Counter,
            )?;
            for outcome in Outcome::ALL {
                family
                    .encode_family(&[("outcome", outcome.name())])?
                    .encode_counter::<NoLabelSet, _, u64>(&stats.get(outcome), None)?;
            }
        }
        let (counts, sum) = stats.decide_times();
        let total = counts.iter().sum();
        // Per-bucket counts: the encoder accumulates them.
        let buckets: Vec<(f64, u64)> = DECIDE_BUCKETS
            .iter()
            .map(|&b| b as f64)
            .chain([f64::MAX])
            .zip(counts)
            .collect();
        encoder
            .encode_descriptor(
                "portcullis_approval_decide_duration",
                "How long after it was made a request was approved or denied.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }
}
