//! OpenTelemetry traces over OTLP/gRPC, for `serve` and `sidecar`, when an endpoint is
//! configured (docs/tracing.md): a span per DecisionService and AdminService call and per SCIM
//! request, each the child of the caller's W3C `traceparent` when it sends one.
//!
//! Spans are on [`TARGET`], which the log output filters out. With no endpoint no layer is
//! interested in that target, so its callsites are disabled for good (the decision service's
//! `enabled!` checks are two relaxed loads) and no span wrapper is installed around any
//! service: the Check path is what it is without tracing.

use anyhow::Context as _;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::Registry;

pub use pdp_service::TRACE_TARGET as TARGET;

/// Whether spans are exported: set once, before any server starts.
static ON: AtomicBool = AtomicBool::new(false);

/// The standard variables that turn traces on without `--otlp-endpoint`, the signal's own first.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

#[derive(Debug, Clone, clap::Args)]
#[group(id = "telemetry_args")]
pub struct Args {
    /// Export traces over OTLP/gRPC to this collector, `http://host:4317` (or `https://`): a
    /// span per Check, BatchCheck, admin call and SCIM request (docs/tracing.md). Without it,
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT turn traces on; with
    /// none of them, or OTEL_SDK_DISABLED=true, nothing is traced.
    #[arg(long, env = "PORTCULLIS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// The endpoint traces go to, if they are on.
fn endpoint(args: &Args) -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let set = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    args.otlp_endpoint.as_deref().and_then(set).or_else(|| {
        ENDPOINT_VARS
            .iter()
            .find_map(|var| std::env::var(var).ok().as_deref().and_then(set))
    })
}

/// The exporter: the tracer provider (its batch processor runs on a thread of its own) and the
/// small runtime the gRPC channel to the collector lives on, apart from the servers' runtime so
/// that spans still flush after it has stopped.
pub struct Traces {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
    endpoint: String,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Traces {
    /// Starts exporting if an endpoint is configured; `service` is the default `service.name`
    /// (OTEL_SERVICE_NAME, or `service.name` in OTEL_RESOURCE_ATTRIBUTES, win over it).
    pub fn start(args: &Args, service: &'static str) -> anyhow::Result<Option<Traces>> {
        let Some(endpoint) = endpoint(args) else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp")
            .enable_all()
            .build()
            .context("cannot start the trace exporter")?;
        let exporter = {
            // The channel's connection task is spawned on this runtime.
            let _entered = runtime.enter();
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone());
            if endpoint.starts_with("https://") {
                exporter = exporter
                    .with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
            }
            exporter
                .build()
                .with_context(|| format!("OTLP endpoint `{endpoint}`"))?
        };
        // The sampler is the SDK's: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, by default
        // parent-based (a caller's sampled flag decides), sampling every call that has none.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service))
            .build();
        ON.store(true, Ordering::Relaxed);
        Ok(Some(Traces {
            provider,
            runtime,
            endpoint,
        }))
    }

    /// The subscriber layer that turns [`TARGET`]'s spans into OpenTelemetry spans, and sees
    /// nothing else.
    pub fn layer(&self) -> Box<dyn Layer<Registry> + Send + Sync> {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("portcullis"))
            // Our spans have no OpenTelemetry-instrumented children: no context to activate
            // on every poll, and no busy/idle timings to keep.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            // Spans, and the `enabled!` hints the decision service checks before recording.
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| {
                    meta.target() == TARGET && !meta.is_event()
                })
                // Our spans are INFO: the global level stays the log filter's or INFO.
                .with_max_level_hint(tracing::level_filters::LevelFilter::INFO),
            )
            .boxed()
    }

    /// Where spans go, for the log: scheme, host and port only.
    pub fn endpoint(&self) -> String {
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri) => format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority()
                    .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""))
            ),
            Err(_) => "(unparsed)".to_owned(),
        }
    }

    /// Sends the spans still queued, then stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "cannot flush the last trace spans");
        }
        self.runtime
            .shutdown_timeout(std::time::Duration::from_secs(1));
    }
}

/// The resource: `service.name` (OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES', else
/// `service`), `service.version`, and OTEL_RESOURCE_ATTRIBUTES.
fn resource(service: &'static str) -> Resource {
    let named = |var: &str, key: &str| {
        std::env::var(var).is_ok_and(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .any(|(k, v)| k.trim() == key && !v.trim().is_empty())
        })
    };
    let mut builder = Resource::builder();
    let service_name_set = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || named("OTEL_RESOURCE_ATTRIBUTES", "service.name");
    if !service_name_set {
        builder = builder.with_service_name(service);
    }
    if !named("OTEL_RESOURCE_ATTRIBUTES", "service.version") {
        builder = builder.with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
    }
    builder.build()
}

/// The log output's share of the filtering: everything but [`TARGET`], whose spans are for the
/// exporter alone.
pub fn without_traces()
-> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    // No level of its own: the global level stays the log filter's (`filter.and(this)`).
    tracing_subscriber::filter::filter_fn(|meta| meta.target() != TARGET)
        .with_max_level_hint(tracing::level_filters::LevelFilter::TRACE)
}

/// Adds `service` (if any) to `routes`, in a span per call when traces are on; as it is when
/// they are off.
pub fn add<S, R>(routes: &mut tonic::service::RoutesBuilder, service: Option<S>)
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<R>, Error = Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    http::Response<R>: axum::response::IntoResponse,
    R: Send + 'static,
{
    match service {
        Some(service) if ON.load(Ordering::Relaxed) => {
            routes.add_service(Traced(service));
        }
        Some(service) => {
            routes.add_service(service);
        }
        None => {}
    }
}

/// A gRPC service whose calls each get a server span named `portcullis.v1.Service/Method`,
/// the child of the caller's `traceparent`: `rpc.*` attributes and the status code; the
/// decision service records the decision into it.
#[derive(Debug, Clone)]
pub struct Traced<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for Traced<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + tonic::server::NamedService,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method(request.uri().path());
        let span = tracing::info_span!(
            target: TARGET,
            "grpc",
            otel.name = format!("{}/{method}", S::NAME),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = S::NAME,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            code = Empty,
            connector = Empty,
            tool = Empty,
            checks = Empty,
            decision = Empty,
            reason = Empty,
            revision = Empty,
            decision_id = Empty,
            approval_id = Empty,
        );
        let _ = span.set_parent(parent(request.headers()));
        let answer = self.0.call(request).instrument(span.clone());
        Box::pin(async move {
            let response = answer.await?;
            let code = grpc_status(response.headers());
            span.record("rpc.grpc.status_code", code as i64);
            span.record("code", crate::metrics::code_name(code));
            if server_error(code) {
                span.record("otel.status_code", "ERROR");
            }
            Ok(response)
        })
    }
}

/// The method a path names, or `unknown` for an odd one: span names stay a small set.
fn method(path: &str) -> &str {
    let method = path.rsplit('/').next().unwrap_or_default();
    let known = !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    if known { method } else { "unknown" }
}

/// A unary call's status: `grpc-status` among the headers for an error ("trailers-only"),
/// else OK (it comes in the trailers).
fn grpc_status(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .map_or(tonic::Code::Ok, |status| {
            status
                .to_str()
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .map_or(tonic::Code::Unknown, tonic::Code::from_i32)
        })
}

/// The codes OpenTelemetry's conventions count as the server's failure (not the caller's).
fn server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The caller's trace context (W3C `traceparent` / `tracestate`); empty without one.
fn parent(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// `router` (SCIM's), with a server span per request under `/scim/v2` when traces are on: the
/// method, the route (`/scim/v2/Users/{id}`, never the path, which names users) and the
/// status. As it is when they are off.
pub fn scim(router: axum::Router) -> axum::Router {
    traced(router)
}

/// `router` (AuthZEN's), with a server span per request under `/access/v1` and the metadata
/// document when traces are on: the method, the route and the status, and what a Check's span
/// carries (connector, tool, the answer; never the subject). As it is when they are off.
pub fn authzen(router: axum::Router) -> axum::Router {
    traced(router)
}

fn traced(router: axum::Router) -> axum::Router {
    if ON.load(Ordering::Relaxed) {
        router.layer(axum::middleware::from_fn(http_request))
    } else {
        router
    }
}

async fn http_request(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let Some(route) = scim_route(path).or_else(|| authzen_route(path)) else {
        return next.run(request).await;
    };
    let method = http_method(request.method());
    // The decision fields stay empty (and are not exported) on a SCIM request.
    let span = tracing::info_span!(
        target: TARGET,
        "http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        connector = Empty,
        tool = Empty,
        checks = Empty,
        decision = Empty,
        reason = Empty,
        revision = Empty,
        decision_id = Empty,
        approval_id = Empty,
    );
    let _ = span.set_parent(parent(request.headers()));
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// A known method's name; `_OTHER` for any other, as the conventions say.
fn http_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// The SCIM route a path takes, as a template; `None` outside `/scim/v2`. (The scim crate's
/// router in `scim/src/lib.rs` has the routes: a new one shows as `/scim/v2/*` until it is
/// named here.)
/// The AuthZEN routes (they carry no ids).
fn authzen_route(path: &str) -> Option<&'static str> {
    match path {
        "/access/v1/evaluation" => Some("/access/v1/evaluation"),
        "/access/v1/evaluations" => Some("/access/v1/evaluations"),
        "/access/v1/search/action" => Some("/access/v1/search/action"),
        "/access/v1/search/resource" => Some("/access/v1/search/resource"),
        "/.well-known/authzen-configuration" => Some("/.well-known/authzen-configuration"),
        _ => None,
    }
}

fn scim_route(path: &str) -> Option<&'static str> {
    let rest = match path.strip_prefix("/scim/v2")? {
        "" => "",
        rest => rest.strip_prefix('/')?,
    };
    let mut parts = rest.split('/');
    let resource = parts.next().unwrap_or_default();
    let id = parts.next().filter(|id| !id.is_empty());
    if parts.next().is_some() {
        return Some("/scim/v2/*");
    }
    Some(match (resource, id.is_some()) {
        ("Users", false) => "/scim/v2/Users",
        ("Users", true) => "/scim/v2/Users/{id}",
        ("Groups", false) => "/scim/v2/Groups",
        ("Groups", true) => "/scim/v2/Groups/{id}",
        ("ServiceProviderConfig", false) => "/scim/v2/ServiceProviderConfig",
        ("ResourceTypes", false) => "/scim/v2/ResourceTypes",
        ("ResourceTypes", true) => "/scim/v2/ResourceTypes/{name}",
        ("Schemas", false) => "/scim/v2/Schemas",
        ("Schemas", true) => "/scim/v2/Schemas/{id}",
        ("Bulk", false) => "/scim/v2/Bulk",
        ("Me", false) => "/scim/v2/Me",
        _ => "/scim/v2/*",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_routes_never_carry_ids() {
        assert_eq!(scim_route("/metrics"), None);
        assert_eq!(scim_route("/scim/v2x"), None);
        assert_eq!(scim_route("/scim/v2/Users"), Some("/scim/v2/Users"));
        assert_eq!(
            scim_route("/scim/v2/Users/alice@example.com"),
            Some("/scim/v2/Users/{id}")
        );
        assert_eq!(
            scim_route("/scim/v2/Groups/g1"),
            Some("/scim/v2/Groups/{id}")
        );
        assert_eq!(scim_route("/scim/v2/Users/a/b"), Some("/scim/v2/*"));
        assert_eq!(scim_route("/scim/v2/alice"), Some("/scim/v2/*"));
        assert_eq!(scim_route("/scim/v2"), Some("/scim/v2/*"));
    }

    #[test]
    fn odd_methods_are_unknown() {
        assert_eq!(method("/portcullis.v1.DecisionService/Check"), "Check");
        assert_eq!(method("/portcullis.v1.AdminService/Lock{User}"), "unknown");
        assert_eq!(method("/"), "unknown");
    }

    #[test]
    fn without_an_endpoint_the_trace_target_is_disabled() {
        // The log output's filter as main.rs sets it up, with no exporter.
        use tracing_subscriber::filter::FilterExt;
        use tracing_subscriber::layer::SubscriberExt;
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new("trace").and(without_traces()));
        let subscriber = tracing_subscriber::registry().with(logs);
        // And the log filter's level is still the global one, for every other callsite.
        let logs_filter = tracing_subscriber::EnvFilter::new("info").and(without_traces());
        assert_eq!(
            tracing_subscriber::layer::Filter::<Registry>::max_level_hint(&logs_filter),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(target: TARGET, tracing::Level::INFO));
            assert!(tracing::info_span!(target: TARGET, "grpc").is_disabled());
            assert!(tracing::enabled!(target: "portcullis", tracing::Level::INFO));
        });
    }
}
