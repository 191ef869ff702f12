//! Webhooks: endpoints over gRPC, and deliveries to a real HTTP receiver on loopback that checks
//! every signature itself (HMAC computed here from SHA-256, not by the code under test).

use crate::support::{Harness, assert_status};
use admin::approvals::events::{Event, EventType, Outbox};
use admin::webhooks::{Deliverer, Limits, WebhookOutbox, WebhookService};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pb::webhook_service_client::WebhookServiceClient;
use pdp::{ApprovalRequest, RequestState, Timestamp};
use portcullis_proto::v1 as pb;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = WebhookServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// HMAC-SHA256 per RFC 2104, written out: the test's own, independent of `ring`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    body: String,
    /// Whether the signature verified against the secret the receiver was given.
    verified: bool,
    content_type: String,
}

/// A webhook receiver on an ephemeral loopback port: answers 500 to the first `failures`
/// requests, then 204; checks every request's Standard Webhooks signature with `secret`.
struct Receiver {
    addr: SocketAddr,
    secret: Arc<Mutex<String>>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        Receiver::serve(failures, None).await
    }

    /// Over TLS with `cert` (for `localhost`) and its key.
    async fn start_tls(
        failures: usize,
        cert: rustls::pki_types::CertificateDer<'static>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Receiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Receiver::serve(failures, Some(acceptor)).await
    }

    async fn serve(failures: usize, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let (listener, addr) = test_support::loopback().await;
        let secret = Arc::new(Mutex::new(String::new()));
        let failures = Arc::new(AtomicUsize::new(failures));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, f, r) = (secret.clone(), failures.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, f, r) = (s.clone(), f.clone(), r.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (s, f, r) = (s.clone(), f.clone(), r.clone());
                        async move { Ok::<_, hyper::Error>(receive(request, s, f, r).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            secret,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn https_url(&self) -> String {
        format!(
            "https://localhost:{}/hook?from=portcullis",
            self.addr.port()
        )
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(
    request: hyper::Request<Incoming>,
    secret: Arc<Mutex<String>>,
    failures: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
) -> hyper::Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let content_type = header("content-type");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    // The specification's verification: strip `whsec_`, base64-decode the key, HMAC the raw
    // `id.timestamp.body`, compare with any `v1,` signature in the header.
    let key = STANDARD
        .decode(secret.lock().unwrap().trim_start_matches("whsec_"))
        .unwrap_or_default();
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = STANDARD.encode(hmac_sha256(&key, &signed));
    let verified = !key.is_empty()
        && signature
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()));
    received.lock().unwrap().push(Received {
        id,
        timestamp: timestamp.parse().unwrap_or(0),
        body: String::from_utf8_lossy(&body).into_owned(),
        verified,
        content_type,
    });
    let fail = failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail { 500 } else { 204 };
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(if fail { "try later" } else { "" })))
        .unwrap()
}

/// The harness's store served with `WebhookService` on a port of its own, and a deliverer.
struct Webhooks {
    harness: Harness,
    outbox: WebhookOutbox,
    addr: SocketAddr,
    _deliverer: Deliverer,
    _shutdown: test_support::Shutdown,
}

fn fast() -> Limits {
    Limits {
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

impl Webhooks {
    async fn start() -> Webhooks {
        Webhooks::start_with(fast()).await
    }

    async fn start_with(limits: Limits) -> Webhooks {
        Webhooks::start_trusting(limits, Vec::new()).await
    }

    async fn start_trusting(
        limits: Limits,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Webhooks {
        let harness = Harness::start().await;
        let store = harness.live.store().clone();
        let outbox = WebhookOutbox::open(&store).unwrap();
        let deliverer = Deliverer::start_trusting(store, &outbox, limits, roots);
        let (listener, addr) = test_support::loopback().await;
        let (shutdown, stop) = test_support::Shutdown::new();
        let router = tonic::transport::Server::builder()
            .add_service(WebhookService::new(harness.live.clone(), outbox.clone()).into_server());
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop,
                )
                .await
                .unwrap();
        });
        Webhooks {
            harness,
            outbox,
            addr,
            _deliverer: deliverer,
            _shutdown: shutdown,
        }
    }

    async fn client(&self, secret: &str) -> Client {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let value = format!("Bearer {secret}").parse().unwrap();
        WebhookServiceClient::with_interceptor(channel, Bearer(value))
    }

    async fn admin(&self) -> Client {
        self.client(&self.harness.admin_secret).await
    }

    /// A transition of `request`, as the approvals core would write it.
    fn publish(&self, kind: EventType, request: &ApprovalRequest) {
        publish(self.harness.live.store(), &self.outbox, kind, request);
    }
}

fn publish(
    store: &store::Store,
    outbox: &WebhookOutbox,
    kind: EventType,
    request: &ApprovalRequest,
) {
    let event = Event {
        kind,
        request,
        actor: "u-alice",
        at: Timestamp::now(),
    };
    store
        .transact(|tx| -> store::Result<()> {
            tx.put_approval(request)?;
            outbox.enqueue(tx, &event)
        })
        .unwrap();
    outbox.committed();
}

fn request(state: RequestState) -> ApprovalRequest {
    let mut request = ApprovalRequest {
        id: "req-1".into(),
        user_id: "u-carol".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "merge_pr".into(),
        justification: "ship the fix".into(),
        policy_id: "p-eng-github".into(),
        state,
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_000_000),
        expires_at: Timestamp(1_700_003_600_000),
        ..ApprovalRequest::default()
    };
    request
        .arguments
        .insert("repo".into(), serde_json::json!("acme/private-repo"));
    request.arguments_digest = pdp::arguments_digest(Some(&request.arguments));
    request
}

fn new_webhook(url: &str, events: &[&str], slack: bool) -> pb::CreateWebhookRequest {
    pb::CreateWebhookRequest {
        webhook: Some(pb::Webhook {
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            enabled: true,
            slack,
            description: "approvals channel".into(),
            ..Default::default()
        }),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliveries(client: &mut Client, webhook_id: &str) -> Vec<pb::WebhookDelivery> {
    client
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            webhook_id: webhook_id.into(),
            page_size: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_visible() {
    let webhooks = Webhooks::start().await;
    let receiver = Receiver::start(2).await;
    let mut admin = webhooks.admin().await;
    let created = admin
        .create_webhook(new_webhook(&receiver.url(), &["approval.approved"], false))
        .await
        .unwrap()
        .into_inner();
    let hook = created.webhook.unwrap();
    assert!(hook.id.starts_with("wh_"), "{}", hook.id);
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(
        STANDARD
            .decode(created.secret.trim_start_matches("whsec_"))
            .unwrap()
            .len(),
        32
    );
    *receiver.secret.lock().unwrap() = created.secret.clone();

    // Not subscribed to `approval.created`: nothing queued for it.
    webhooks.publish(EventType::Created, &request(RequestState::Pending));
    webhooks.publish(EventType::Approved, &request(RequestState::Approved));

    let done = eventually("the delivery", || {
        let mut admin = admin.clone();
        let id = hook.id.clone();
        async move {
            let found = deliveries(&mut admin, &id).await;
            found.into_iter().find(|d| d.delivered)
        }
    })
    .await;
    assert_eq!(done.attempts, 3, "two 500s, then 204: {done:?}");
    assert_eq!(done.event_type, "approval.approved");
    assert_eq!(done.approval_request_id, "req-1");
    assert!(!done.failed);
    assert!(done.delivered_at.is_some());
    assert!(done.next_attempt_at.is_none());
    assert_eq!(deliveries(&mut admin, &hook.id).await.len(), 1);

    let received = receiver.received();
    assert_eq!(received.len(), 3, "{received:?}");
    let now = Timestamp::now().0 / 1000;
    for r in &received {
        assert!(r.verified, "signature did not verify: {r:?}");
        assert_eq!(r.id, done.id, "the same webhook-id on every attempt");
        assert_eq!(r.content_type, "application/json");
        assert!((now - r.timestamp).abs() < 300, "{r:?}");
    }
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["type"], "approval.approved");
    assert_eq!(body["data"]["id"], "req-1");
    assert_eq!(body["data"]["state"], "approved");
    assert_eq!(body["data"]["arguments"]["repo"], "acme/private-repo");
    assert_eq!(body["data"]["actor"], "u-alice");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let stats = webhooks.outbox.stats();
    assert_eq!(stats.delivered(), 1);
    assert_eq!(stats.retried(), 2);

    // A rotated secret signs the next delivery; the old one no longer verifies.
    let rotated = admin
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(pb::Webhook {
                events: Vec::new(),
                ..hook.clone()
            }),
            rotate_secret: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.secret.starts_with("whsec_"));
    assert_ne!(rotated.secret, created.secret);
    *receiver.secret.lock().unwrap() = rotated.secret.clone();
    webhooks.publish(EventType::Expired, &request(RequestState::Expired));
    let received = eventually("the delivery after rotation", || {
        let received = receiver.received();
        async move { (received.len() == 4).then_some(received) }
    })
    .await;
    assert!(received[3].verified);
    assert!(received[3].body.contains("approval.expired"));

    // The audit log shows the endpoint, never its key.
    let audited = webhooks.harness.audit("webhook.created").await;
    assert_eq!(audited.len(), 1);
    assert!(
        audited[0].after_json.contains(r#""secret":[]"#),
        "{}",
        audited[0].after_json
    );
    let updated = webhooks.harness.audit("webhook.updated").await;
    assert_eq!(updated[0].detail, "secret rotated");
    assert!(!updated[0].after_json.contains(&created.secret));
}

#[tokio::test]
async fn https_receivers_get_signed_deliveries_over_tls() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let receiver = Receiver::start_tls(1, der.clone(), key).await;
    let webhooks = Webhooks::start_trusting(fast(), vec![der]).await;
    let mut admin = webhooks.admin().await;
    let created = admin
        .create_webhook(new_webhook(&receiver.https_url(), &[], false))
        .await
        .unwrap()
        .into_inner();
    *receiver.secret.lock().unwrap() = created.secret;
    webhooks.publish(EventType::Created, &request(RequestState::Pending));
    let hook = created.webhook.unwrap();
    let done = eventually("the https delivery", || {
        let mut admin = admin.clone();
        let id = hook.id.clone();
        async move {
            let found = deliveries(&mut admin, &id).await;
            found.into_iter().find(|d| d.delivered)
        }
    })
    .await;
    assert_eq!(done.attempts, 2);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.verified), "{received:?}");

    // A receiver whose certificate nothing trusts is never delivered to: the TLS error is the
    // last error.
    let untrusted = Webhooks::start().await;
    let mut admin = untrusted.admin().await;
    let hook = admin
        .create_webhook(new_webhook(&receiver.https_url(), &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    untrusted.publish(EventType::Created, &request(RequestState::Pending));
    let tried = eventually("a refused TLS attempt", || {
        let mut admin = admin.clone();
        let id = hook.id.clone();
        async move {
            let found = deliveries(&mut admin, &id).await;
            found.into_iter().find(|d| d.attempts >= 1)
        }
    })
    .await;
    assert!(tried.last_error.starts_with("TLS: "), "{tried:?}");
    assert!(!tried.delivered);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn a_silent_receiver_delays_neither_writes_nor_other_endpoints() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream);
        }
    });
    // Two slots, so one endpoint may hold only one of them.
    let webhooks = Webhooks::start_with(Limits {
        concurrency: 2,
        timeout: Duration::from_millis(500),
        retry_base: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    let mut admin = webhooks.admin().await;
    let hung = admin
        .create_webhook(new_webhook(&silent_url, &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    let created = admin
        .create_webhook(new_webhook(&receiver.url(), &[], false))
        .await
        .unwrap()
        .into_inner();
    *receiver.secret.lock().unwrap() = created.secret;

    // Transitions commit at once, whatever the receivers do.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        webhooks.publish(EventType::Created, &request(RequestState::Pending));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // The healthy endpoint gets all five while the silent one's attempts hang, one at a time
    // (half a second each).
    eventually("the healthy endpoint's deliveries", || {
        let count = receiver.received().len();
        async move { (count == 5).then_some(()) }
    })
    .await;
    let store = webhooks.harness.live.store().clone();
    let hung_tried = store
        .deliveries_of(&hung.id, 10)
        .unwrap()
        .iter()
        .filter(|d| d.attempts > 0)
        .count();
    assert!(
        hung_tried < 5,
        "the healthy endpoint waited for the silent one"
    );
    // An admin write is not held up either.
    let started = std::time::Instant::now();
    admin
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(pb::Webhook {
                description: "still answering".into(),
                ..hung.clone()
            }),
            rotate_secret: false,
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // The silent endpoint's attempts end at the timeout, to be retried.
    let timed_out = eventually("the silent endpoint's timeouts", || {
        let mut admin = admin.clone();
        let id = hung.id.clone();
        async move {
            let found = deliveries(&mut admin, &id).await;
            (found.len() == 5 && found.iter().all(|d| d.attempts == 1)).then_some(found)
        }
    })
    .await;
    for d in timed_out {
        assert_eq!(d.last_error, "no answer within 500ms");
        assert!(!d.delivered && !d.failed && d.next_attempt_at.is_some());
    }
    held.abort();
}

#[tokio::test]
async fn slack_bodies_leave_the_arguments_out() {
    let webhooks = Webhooks::start().await;
    let receiver = Receiver::start(0).await;
    let mut admin = webhooks.admin().await;
    let created = admin
        .create_webhook(new_webhook(&receiver.url(), &["approval.denied"], true))
        .await
        .unwrap()
        .into_inner();
    *receiver.secret.lock().unwrap() = created.secret;
    webhooks.publish(EventType::Denied, &request(RequestState::Denied));
    let received = eventually("the Slack delivery", || {
        let received = receiver.received();
        async move { (!received.is_empty()).then_some(received) }
    })
    .await;
    assert!(received[0].verified);
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    for expected in [
        "approval.denied",
        "u-carol",
        "claude",
        "github",
        "merge_pr",
        "denied",
        "u-alice",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert!(!received[0].body.contains("acme/private-repo"), "{text}");
    assert!(!received[0].body.contains(r#""arguments""#), "{text}");
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let webhooks = Webhooks::start().await;
    let mut admin = webhooks.admin().await;
    let cases: [(pb::CreateWebhookRequest, &str); 6] = [
        (
            new_webhook("ftp://example.com/hook", &[], false),
            "webhook.url",
        ),
        (
            new_webhook("http://hooks.example.com/hook", &[], false),
            "only to a loopback host",
        ),
        (
            new_webhook("https://example.com/hook", &["approval.granted"], false),
            "webhook.events[0]: unknown event type `approval.granted`",
        ),
        (
            new_webhook(
                &format!("https://example.com/{}", "a".repeat(2048)),
                &[],
                false,
            ),
            "webhook.url",
        ),
        (
            new_webhook("https://user:pw@example.com/hook", &[], false),
            "user information",
        ),
        (pb::CreateWebhookRequest { webhook: None }, "webhook"),
    ];
    for (request, needle) in cases {
        assert_status(
            admin.create_webhook(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    let listed = admin
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.webhooks.is_empty());
    assert!(webhooks.harness.audit("webhook.created").await.is_empty());

    // An update naming a missing endpoint, or with a bad url, changes nothing.
    let hook = admin
        .create_webhook(new_webhook("https://example.com/hook", &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert_status(
        admin
            .update_webhook(pb::UpdateWebhookRequest {
                webhook: Some(pb::Webhook {
                    url: "http://10.1.2.3/hook".into(),
                    ..hook.clone()
                }),
                rotate_secret: true,
            })
            .await,
        Code::InvalidArgument,
        "webhook.url",
    );
    assert_status(
        admin
            .update_webhook(pb::UpdateWebhookRequest {
                webhook: Some(pb::Webhook {
                    id: "wh_missing".into(),
                    ..hook.clone()
                }),
                rotate_secret: false,
            })
            .await,
        Code::NotFound,
        "wh_missing",
    );
    assert_status(
        admin
            .get_webhook(pb::GetWebhookRequest {
                id: "wh_missing".into(),
            })
            .await,
        Code::NotFound,
        "wh_missing",
    );
    assert_status(
        admin
            .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                webhook_id: hook.id.clone(),
                page_size: 501,
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    let got = admin
        .get_webhook(pb::GetWebhookRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(got, hook);
    assert!(webhooks.harness.audit("webhook.updated").await.is_empty());
}

#[tokio::test]
async fn read_only_callers_read_and_cannot_write() {
    let webhooks = Webhooks::start().await;
    let mut admin = webhooks.admin().await;
    let hook = admin
        .create_webhook(new_webhook("https://example.com/hook", &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    let mut reader = webhooks.client(&webhooks.harness.reader_secret).await;
    let listed = reader
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.webhooks, vec![hook.clone()]);
    deliveries(&mut reader, &hook.id).await;
    assert_status(
        reader
            .create_webhook(new_webhook("https://example.com/other", &[], false))
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        reader
            .update_webhook(pb::UpdateWebhookRequest {
                webhook: Some(hook.clone()),
                rotate_secret: true,
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        reader
            .delete_webhook(pb::DeleteWebhookRequest {
                id: hook.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    let mut nobody = webhooks.client(&webhooks.harness.norole_secret).await;
    assert_status(
        nobody.list_webhooks(pb::ListWebhooksRequest {}).await,
        Code::PermissionDenied,
        "",
    );
    // The admin may; the deleted endpoint is gone, audited.
    admin
        .delete_webhook(pb::DeleteWebhookRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap();
    assert!(
        admin
            .list_webhooks(pb::ListWebhooksRequest {})
            .await
            .unwrap()
            .into_inner()
            .webhooks
            .is_empty()
    );
    assert_eq!(webhooks.harness.audit("webhook.deleted").await.len(), 1);
}

#[tokio::test]
async fn a_dead_receiver_runs_out_of_attempts() {
    let webhooks = Webhooks::start().await;
    let receiver = Receiver::start(usize::MAX).await;
    let mut admin = webhooks.admin().await;
    let dead = admin
        .create_webhook(new_webhook(&receiver.url(), &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    webhooks.publish(EventType::Created, &request(RequestState::Pending));
    let failed = eventually("the delivery to fail", || {
        let mut admin = admin.clone();
        let id = dead.id.clone();
        async move {
            let found = deliveries(&mut admin, &id).await;
            found.into_iter().find(|d| d.failed)
        }
    })
    .await;
    assert_eq!(failed.attempts, 10);
    assert_eq!(failed.last_error, "HTTP 500: try later");
    assert!(!failed.delivered);
    assert_eq!(webhooks.outbox.stats().failed(), 1);
}

#[tokio::test]
async fn a_deleted_endpoint_fails_its_pending_deliveries() {
    let webhooks = Webhooks::start_with(Limits {
        retry_base: Duration::from_millis(500),
        retry_max: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let receiver = Receiver::start(usize::MAX).await;
    let mut admin = webhooks.admin().await;
    let hook = admin
        .create_webhook(new_webhook(&receiver.url(), &[], false))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    webhooks.publish(EventType::Created, &request(RequestState::Pending));
    let store = webhooks.harness.live.store().clone();
    let of_hook = move || store.deliveries_of(&hook.id, 10).unwrap();
    let tried = of_hook.clone();
    eventually("a first attempt", || {
        let found = tried();
        async move { found.first().filter(|d| d.attempts >= 1).cloned() }
    })
    .await;
    admin
        .delete_webhook(pb::DeleteWebhookRequest {
            id: of_hook()[0].webhook_id.clone(),
        })
        .await
        .unwrap();
    let failed = eventually("the delivery to fail", || {
        let found = of_hook();
        async move { found.first().filter(|d| d.failed).cloned() }
    })
    .await;
    assert_eq!(failed.last_error, "the webhook was deleted");
    assert!(failed.next_attempt_at.is_none());
}

#[tokio::test]
async fn deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(1).await;
    let store = store::Store::open(dir.path()).unwrap();
    let hook = store::Webhook {
        id: "wh_restart".into(),
        url: receiver.url(),
        enabled: true,
        secret: vec![42; 32],
        ..store::Webhook::default()
    };
    *receiver.secret.lock().unwrap() = format!("whsec_{}", STANDARD.encode(&hook.secret));
    store
        .transact(|tx| -> store::Result<()> { tx.put_webhook(&hook) })
        .unwrap();
    // Retries a minute apart: the first attempt fails, the second is not due before the stop.
    let slow = Limits {
        retry_base: Duration::from_secs(60),
        retry_max: Duration::from_secs(60),
        ..Limits::default()
    };
    let outbox = WebhookOutbox::open(&store).unwrap();
    let deliverer = Deliverer::start(store.clone(), &outbox, slow);
    publish(
        &store,
        &outbox,
        EventType::Created,
        &request(RequestState::Pending),
    );
    let first = eventually("the first attempt", || {
        let store = store.clone();
        async move {
            let d = store.get_delivery(1).unwrap().unwrap();
            (d.attempts == 1).then_some(d)
        }
    })
    .await;
    assert!(first.pending());
    assert_eq!(first.last_error, "HTTP 500: try later");
    deliverer.stop().await;
    drop((outbox, store));

    // Reopened (as after a crash or restart): the outbox is read again, and the delivery, due
    // now, completes with the same webhook-id.
    let store = eventually("the store to reopen", || {
        let path = dir.path().to_owned();
        async move { store::Store::open(&path).ok() }
    })
    .await;
    let mut due = store.get_delivery(1).unwrap().unwrap();
    due.next_attempt_at = Some(Timestamp::now());
    assert!(store.update_delivery(1, &due).unwrap());
    let outbox = WebhookOutbox::open(&store).unwrap();
    let deliverer = Deliverer::start(store.clone(), &outbox, fast());
    let done = eventually("the delivery after the restart", || {
        let store = store.clone();
        async move {
            let d = store.get_delivery(1).unwrap().unwrap();
            d.delivered_at.is_some().then_some(d)
        }
    })
    .await;
    assert_eq!(done.attempts, 2);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.verified && r.id == done.id));
    // New deliveries number on from the old ones.
    publish(
        &store,
        &outbox,
        EventType::Cancelled,
        &request(RequestState::Cancelled),
    );
    eventually("the next delivery", || {
        let store = store.clone();
        async move { store.get_delivery(2).unwrap().and_then(|d| d.delivered_at) }
    })
    .await;
    deliverer.stop().await;
}

/// The whole path: the approvals core's own transitions (a request made, then approved by an
/// admin) reach a real receiver, signed, after it failed the first two deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_transitions_reach_the_receiver() {
    use admin::approvals::{Approvals, NewRequest, Verdict};
    let webhooks = Webhooks::start().await;
    let live = webhooks.harness.live.clone();
    let (revision, ()) = live
        .store()
        .transact(|tx| {
            tx.put_policy(&pdp::Policy {
                id: "p-approve-merge".into(),
                name: "merges need approval".into(),
                connector: "github".into(),
                tools: pdp::Tools::Only(vec!["merge".into()]),
                scope: pdp::Scope {
                    all_users: true,
                    ..pdp::Scope::default()
                },
                action: pdp::Action::RequireApproval,
                ..pdp::Policy::default()
            })
        })
        .unwrap();
    live.published(revision).await.unwrap();
    let receiver = Receiver::start(2).await;
    let mut admin = webhooks.admin().await;
    let created = admin
        .create_webhook(new_webhook(&receiver.url(), &[], false))
        .await
        .unwrap()
        .into_inner();
    *receiver.secret.lock().unwrap() = created.secret.clone();
    let outbox: Arc<dyn Outbox> = Arc::new(webhooks.outbox.clone());
    let approvals = Approvals::start(live.clone(), Some(outbox)).unwrap();

    let mut arguments = pdp::Arguments::new();
    arguments.insert("pr".into(), serde_json::json!(42));
    let (request, _) = approvals
        .create(NewRequest {
            user: "carol@example.com".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "merge".into(),
            arguments,
            justification: "release".into(),
            ..NewRequest::default()
        })
        .await
        .unwrap();
    let alice = admin::auth::Caller {
        user_id: "u-alice".into(),
        email: "alice@example.com".into(),
        display_name: "Alice Admin".into(),
        token_id: "t-alice".into(),
        roles: Default::default(),
    };
    approvals
        .decide(&request.id, &alice, Verdict::Approve, "ok".into())
        .await
        .unwrap();

    let received = eventually("both events, signed", || {
        let received = receiver.received();
        async move {
            let verified: Vec<Received> = received.into_iter().filter(|r| r.verified).collect();
            let types: Vec<String> = verified
                .iter()
                .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                .filter_map(|b| b["type"].as_str().map(str::to_owned))
                .collect();
            (types.contains(&"approval.created".to_owned())
                && types.contains(&"approval.approved".to_owned()))
            .then_some(verified)
        }
    })
    .await;
    let approved = received
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .find(|b| b["type"] == "approval.approved")
        .unwrap();
    assert_eq!(approved["data"]["id"], request.id.as_str(), "{approved}");
    assert!(receiver.received().iter().all(|r| r.verified));
}
