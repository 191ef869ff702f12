//! `portcullis serve`: the control plane. Opens the store, builds the snapshot, starts the
//! publisher that keeps it live with every write, and serves DecisionService and AdminService
//! with health checking and reflection until SIGINT or SIGTERM (then finishes what is in flight
//! for at most `--shutdown-grace`); the HTTP port serves SCIM, AuthZEN and Prometheus metrics.

use admin::webhooks::WebhookService;
use admin::{Activity, AdminService, ApprovalFlowService};
use anyhow::Context;
use live::Live;
use pdp_service::{DecisionService, Recorder, RequireToken};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

use crate::listen::{self, Listener};
use crate::{http, metrics, net, telemetry};

#[derive(Debug, clap::Args)]
#[group(id = "serve_args")]
pub struct Args {
    /// The store's directory (created if missing).
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// Where to serve gRPC; port 0 picks a free one (the log line says which).
    #[arg(long, env = "PORTCULLIS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Where to serve HTTP: the SCIM endpoint at `/scim/v2` and the AuthZEN API at
    /// `/access/v1` (docs/authzen.md). Port 0 picks a free one (the log
    /// line says which).
    #[arg(long, env = "PORTCULLIS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Require `authorization: Bearer <secret>` on DecisionService calls and AuthZEN
    /// evaluations and searches, a secret of this file
    /// (one per line; several are valid at once; SIGHUP reads it again). Off by default:
    /// decisions are served to the gateway on loopback.
    #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
    decision_token_file: Option<PathBuf>,
    /// Serve gRPC over TLS with this PEM certificate chain (with --tls-key). SIGHUP reads it
    /// and the key again: new connections get the new certificate.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require TLS clients to present a certificate this PEM CA signed (bearer tokens are
    /// still required where they are without it). Needs --tls-cert.
    #[arg(long, env = "PORTCULLIS_CLIENT_CA_FILE", requires = "tls_cert")]
    client_ca_file: Option<PathBuf>,
    /// Serve the HTTP port (SCIM, metrics) over TLS too: the --tls-cert certificate, and client
    /// certificates checked against --client-ca-file when given.
    #[arg(long, env = "PORTCULLIS_HTTP_TLS", requires = "tls_cert")]
    http_tls: bool,
    /// Stream the directory to sidecars (`portcullis sidecar`) that present a secret of this
    /// file (one per line; several are valid at once; SIGHUP reads it again) as
    /// `authorization: Bearer <secret>`. Without it the stream is not served.
    #[arg(long, env = "PORTCULLIS_SIDECAR_TOKEN_FILE")]
    sidecar_token_file: Option<PathBuf>,
    /// Also serve gRPC health alone, in plain text, here: for probes that cannot do TLS.
    #[arg(long, env = "PORTCULLIS_HEALTH_ADDR")]
    health_addr: Option<SocketAddr>,
    #[command(flatten)]
    decision_log: crate::decision_log::Args,
    #[command(flatten)]
    audit_log: crate::audit_log::Args,
    #[command(flatten)]
    grpc_limits: crate::grpc_limits::Args,
    #[command(flatten)]
    scim_limits: scim::Limits,
    #[command(flatten)]
    webhooks: admin::webhooks::Limits,
    #[command(flatten)]
    console: console::Settings,
    #[command(flatten)]
    bootstrap: crate::bootstrap::Args,
    #[command(flatten)]
    shutdown: crate::shutdown::Args,
    #[command(flatten)]
    listen: crate::listen::ServeArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::Args,
}

/// What `serve` starts with, read and checked before anything listens.
struct Settings {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    decision_token: Option<RequireToken>,
    sidecar_token: Option<RequireToken>,
    tls: Option<net::TlsFiles>,
    http_tls: bool,
    decision_log: crate::decision_log::Args,
    audit_log: crate::audit_log::Args,
    grpc_limits: crate::grpc_limits::Args,
    scim_limits: scim::Limits,
    webhooks: admin::webhooks::Limits,
    console: console::Settings,
    /// The console's identity provider, checked and its client secret read.
    identity_provider: Option<console::oidc::Config>,
    /// The console's public origin: webhook payloads link to its approval pages.
    console_url: Option<String>,
    shutdown_grace: Duration,
    listen: crate::listen::ServeArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = |setting, path: &Option<PathBuf>| {
        path.as_deref()
            .map(|p| crate::token_files::load(setting, p))
            .transpose()
    };
    let settings = Settings {
        grpc_addr: args.grpc_addr,
        http_addr: args.http_addr,
        health_addr: args.health_addr,
        decision_token: token("decision-token-file", &args.decision_token_file)?,
        sidecar_token: token("sidecar-token-file", &args.sidecar_token_file)?,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(net::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca_file.clone(),
            }),
            _ => None,
        },
        http_tls: args.http_tls,
        decision_log: args.decision_log,
        audit_log: args.audit_log,
        grpc_limits: args.grpc_limits,
        scim_limits: args.scim_limits,
        webhooks: args.webhooks,
        identity_provider: args.console.identity_provider()?,
        console_url: args.console.public_url()?,
        console: args.console,
        shutdown_grace: args.shutdown.shutdown_grace,
        listen: args.listen,
    };
    // A certificate or key that cannot be used stops us before the store is opened.
    if let Some(tls) = &settings.tls {
        tls.load()?;
    }
    // Open and load before the runtime starts: a store that cannot be read stops us here, and
    // we never serve a partial directory.
    let store = store::Store::open(&args.data_dir)
        .with_context(|| format!("cannot open the store in `{}`", args.data_dir.display()))?;
    // A data directory made before umask 077 (or copied in) is tightened now; what sled
    // creates from here on is private already.
    crate::file_modes::tighten(&args.data_dir).with_context(|| {
        format!(
            "cannot tighten the permissions of `{}`",
            args.data_dir.display()
        )
    })?;
    // Before anything listens, so the first call can use the bootstrap token.
    args.bootstrap.apply(&store)?;
    let live = Live::start(store).context("cannot load the directory from the store")?;
    // The live handle holds the store, so no other process can write the directory while we
    // serve it.
    let runtime = super::runtime()?;
    let served = runtime.block_on(serve(live, settings));
    // Blocking work still running past the grace period (a store call) does not keep the
    // process: dropping the runtime would wait for it.
    runtime.shutdown_timeout(crate::shutdown::RUNTIME_GRACE);
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(live: Live, settings: Settings) -> anyhow::Result<()> {
    let caps = listen::Caps::from_budget(&settings.listen.limits);
    let timeouts = http::Timeouts::from(&settings.listen.limits);
    let listener = Listener::bind(settings.grpc_addr, caps.grpc, "gRPC").await?;
    let local = listener.local_addr()?;
    let http_listener = Listener::bind(settings.http_addr, caps.http, "HTTP").await?;
    let http_local = http_listener.local_addr()?;
    let metrics_listener = match settings.listen.metrics_addr {
        Some(addr) => Some(Listener::bind(addr, caps.metrics, "metrics").await?),
        None => None,
    };

    let stopped = net::stop_on_signal();
    let stopping = stopped.clone();
    crate::reload::on_sighup()?;
    let control = crate::control::serve_control(live.clone(), stopped.clone())?;
    let engine = live.engine().clone();
    let (recorder, records) = Recorder::channel(settings.decision_log.queue());
    let decision_log =
        crate::decision_log::DecisionLog::start(live.store(), records, &settings.decision_log)?;
    let audit_log = crate::audit_log::AuditLog::start(live.store(), &settings.audit_log);
    let mut metrics = metrics::Metrics::new(&engine);
    let (scim_requests, admin_calls) =
        metrics.control_plane(&engine, recorder.clone(), live.refusals().clone());
    let decision_metrics = metrics.decisions();
    // Webhooks: the outbox approval transitions queue their notifications in (read on start,
    // so deliveries a restart interrupted resume), and the task that delivers them, apart from
    // every write.
    let mut webhook_outbox = admin::webhooks::WebhookOutbox::open(live.store())
        .context("cannot read the webhook outbox")?;
    if let Some(origin) = &settings.console_url {
        webhook_outbox = webhook_outbox.with_console_url(origin);
    }
    metrics.webhooks(webhook_outbox.stats());
    let webhook_deliverer = admin::webhooks::Deliverer::start(
        live.store().clone(),
        &webhook_outbox,
        settings.webhooks.clone(),
    );
    // The approvals core's `Outbox`: give it to the approval requests service, which calls
    // `enqueue` in each transition's transaction and `committed` after it.
    let approval_outbox: Arc<dyn admin::approvals::events::Outbox> =
        Arc::new(webhook_outbox.clone());
    // Approval requests: pending ones are loaded, deadlines that passed while down applied.
    let approvals = admin::approvals::Approvals::start(live.clone(), Some(approval_outbox))?;
    metrics.approvals(approvals.clone());
    // One DecisionService answers gRPC Check and AuthZEN over HTTP alike.
    let decisions = DecisionService::new(engine.clone())
        .with_recorder(recorder)
        .with_metrics(decision_metrics)
        .with_approvals(std::sync::Arc::new(approvals.clone()))
        .with_max_batch(settings.grpc_limits.batch_checks())
        .with_check_bounds(settings.grpc_limits.check_bounds())
        .with_json_max_depth(settings.grpc_limits.json_depth());
    let http_tls = settings.tls.clone().filter(|_| settings.http_tls);
    let authzen = telemetry::authzen(pdp_service::authzen::router(
        decisions.clone(),
        settings.decision_token.clone(),
        http_tls.is_some(),
        settings.grpc_limits.authzen_body_bytes(),
    ));
    // The admin services, built once: the gRPC server serves them and the console calls them.
    let activity = Activity::decision_log();
    let admin = AdminService::new(live.clone(), activity)
        .with_token_files(Arc::new(crate::token_files::reload));
    let flows = ApprovalFlowService::new(live.clone());
    let webhooks = WebhookService::new(live.clone(), webhook_outbox);
    let approval_service =
        admin::approvals::ApprovalService::new(approvals.clone(), settings.decision_token.clone())
            .with_check_bounds(settings.grpc_limits.check_bounds());
    let console = console::Console::new(
        console::Services {
            admin: admin.clone(),
            flows: flows.clone(),
            webhooks: webhooks.clone(),
            approvals: approval_service.clone(),
            decisions: DecisionService::new(engine.clone())
                .with_max_batch(settings.grpc_limits.batch_checks())
                .with_check_bounds(settings.grpc_limits.check_bounds())
                .with_json_max_depth(settings.grpc_limits.json_depth()),
        },
        settings.console.clone(),
        http_tls.is_some(),
    )
    .with_identity_provider(settings.identity_provider.clone())
    .router();
    let scim = metrics::count_scim(
        scim::router_with(
            live.clone(),
            scim::Limits {
                json_max_depth: settings.grpc_limits.json_max_depth,
                ..settings.scim_limits
            },
        ),
        scim_requests,
    );
    let scim = telemetry::scim(scim);
    // Metrics on their own address leave the SCIM port serving SCIM only (404 elsewhere).
    let (routes, metrics_served) = match metrics_listener {
        Some(listener) => {
            let metrics_local = listener.local_addr()?;
            let served = tokio::spawn(http::serve(
                listener,
                metrics.router(),
                timeouts,
                stopped.clone(),
            ));
            info!(metrics_addr = %metrics_local, "serving metrics at /metrics");
            (scim.merge(authzen).merge(console), Some(served))
        }
        None => (
            scim.merge(authzen).merge(console).merge(metrics.router()),
            None,
        ),
    };
    let what = if metrics_served.is_some() {
        "serving SCIM at /scim/v2, AuthZEN at /access/v1 and the console at /console"
    } else {
        "serving SCIM at /scim/v2, AuthZEN at /access/v1, the console at /console and metrics at /metrics"
    };
    let http = if let Some(files) = http_tls {
        // HTTP/1.1 and HTTP/2 over TLS, as the client prefers (`https`).
        let scim = crate::https::serve(http_listener, routes, timeouts, files, stopped.clone())?;
        info!(http_addr = %http_local, tls = true, "{what}");
        tokio::spawn(scim)
    } else {
        let scim = http::serve(http_listener, routes, timeouts, stopped.clone());
        info!(http_addr = %http_local, tls = false, "{what}");
        tokio::spawn(scim)
    };
    let http = tokio::spawn(async move {
        let served = http.await.context("the HTTP server task failed")?;
        if let Some(metrics) = metrics_served {
            metrics.await.context("the metrics server task failed")??;
        }
        served
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::decision_service_server::DecisionServiceServer<DecisionService>>()
        .await;
    health
        .set_serving::<pb::admin_service_server::AdminServiceServer<AdminService>>()
        .await;
    health
        .set_serving::<pb::approval_flow_service_server::ApprovalFlowServiceServer<ApprovalFlowService>>()
        .await;
    health
        .set_serving::<pb::webhook_service_server::WebhookServiceServer<WebhookService>>()
        .await;
    let probes = match settings.health_addr {
        Some(addr) => Some(
            net::serve_health(addr, caps.health, health_service.clone(), stopped.clone()).await?,
        ),
        None => None,
    };
    let max_message = settings.grpc_limits.message_bytes();
    let (open, guarded) = net::decisions(decisions, settings.decision_token, max_message);
    // Sidecars get the approval state along with the directory, and use once grants here.
    let feed = settings.sidecar_token.map(|token| {
        let source = std::sync::Arc::new(crate::sidecar_approvals::Source(approvals));
        (fleet::Feed::start(&live).with_approvals(source), token)
    });
    if let Some((feed, _)) = &feed {
        // Streams never finish on their own: end them when the server starts draining.
        let (feed, stopped) = (feed.clone(), stopped.clone());
        tokio::spawn(async move {
            net::until(stopped).await;
            feed.stop();
        });
    }
    let snapshots = feed.map(|(feed, token)| feed.service(token));
    let routes_have_sidecars = snapshots.is_some();
    // Pings find sidecars that vanished without closing their connection, so their streams end.
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    let mut routes = tonic::service::Routes::builder();
    telemetry::add(&mut routes, open);
    telemetry::add(&mut routes, guarded);
    if let Some(snapshots) = snapshots {
        routes.add_service(snapshots);
    }
    // Counted with AdminService's calls: the same port, tokens and callers.
    let flows = admin_calls.wrap(flows.into_server().max_decoding_message_size(max_message));
    telemetry::add(&mut routes, Some(flows));
    let webhooks = admin_calls.wrap(
        webhooks
            .into_server()
            .max_decoding_message_size(max_message),
    );
    telemetry::add(&mut routes, Some(webhooks));
    let admin = admin_calls.wrap(admin.into_server().max_decoding_message_size(max_message));
    telemetry::add(&mut routes, Some(admin));
    let approval_calls = admin_calls.wrap(
        approval_service
            .into_server()
            .max_decoding_message_size(max_message),
    );
    telemetry::add(&mut routes, Some(approval_calls));
    routes.add_service(health_service);
    net::reflection(&mut routes)?;
    let tls = settings.tls.is_some();
    let client_certificates = settings
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca.is_some());
    let sidecars = routes_have_sidecars;
    let grpc = net::serve(
        listener,
        server,
        crate::grpc_limits::refusing_large_messages(routes.routes(), max_message),
        settings.tls,
        stopped,
        "gRPC",
    )?;
    info!(
        grpc_addr = %local,
        revision = engine.revision(),
        tls,
        client_certificates,
        sidecars,
        "serving decisions"
    );
    // In-flight requests get the grace period to finish, then are dropped with the runtime.
    crate::shutdown::within(settings.shutdown_grace, stopping, async move {
        grpc.await?;
        let drained = net::drained(http, probes).await;
        decision_log.finish().await;
        audit_log.finish().await;
        // Attempts in flight are abandoned: their deliveries stay pending for the next start.
        webhook_deliverer.stop().await;
        let _ = control.await;
        drained
    })
    .await
}
