//! A real SCIM server for the suite: a sled store in a temp dir, a Live over it, one SCIM
//! connection, the router served on an ephemeral loopback port, and an HTTP/1 client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use live::Live;
use pdp::{Action, Group, ManagedBy, Model, Policy, Scope, Timestamp, Tools, User};
use serde_json::Value;
use std::net::SocketAddr;
use store::{AuditEvent, ScimConnection};
use test_support::{Shutdown, loopback, seeded_store};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PORTCULLIS: &str = "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A user as a bulk import makes them (not over SCIM).
pub fn user(id: &str, email: &str, name: &str) -> User {
    test_support::imported_user(id, email, name, format!("ext-{id}"))
}

pub fn group(id: &str, name: &str, managed_by: ManagedBy) -> Group {
    Group {
        id: id.into(),
        display_name: name.into(),
        managed_by,
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_000_000),
        ..Group::default()
    }
}

pub use test_support::member;

/// A small imported company: alice and bob, the External group Engineering (alice), the Local
/// group Admins (bob), and policies naming them.
pub fn company() -> Model {
    let allow = |id: &str, scope: Scope| Policy {
        id: id.into(),
        name: id.into(),
        connector: "github".into(),
        tools: Tools::All,
        scope,
        action: Action::Allow,
        ..Policy::default()
    };
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 0,
        users: vec![
            user("u-alice", "alice@example.com", "Alice Example"),
            user("u-bob", "bob@example.com", "Bob Example"),
        ],
        groups: vec![
            group("g-eng", "Engineering", ManagedBy::External),
            group("g-admins", "Admins", ManagedBy::Local),
        ],
        memberships: vec![member("g-eng", "u-alice"), member("g-admins", "u-bob")],
        policies: vec![
            allow(
                "p-eng",
                Scope {
                    groups: vec!["g-eng".into(), "g-admins".into()],
                    ..Scope::default()
                },
            ),
            allow(
                "p-people",
                Scope {
                    users: vec!["u-alice".into(), "u-bob".into()],
                    ..Scope::default()
                },
            ),
        ],
    }
}

/// An answer: status, headers, and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body if it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
    }

    /// Asserts an RFC 7644 §3.12 error: the status, the schema, `status` as a string, the
    /// `scimType` if given, a detail, and the content type.
    #[track_caller]
    pub fn expect_error(&self, status: u16, scim_type: Option<&str>) -> &str {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert_eq!(
            self.body["schemas"],
            serde_json::json!([ERROR]),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], Value::String(status.to_string()));
        assert_eq!(
            self.body.get("scimType").and_then(Value::as_str),
            scim_type,
            "{}",
            self.text
        );
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(self.header("content-type"), Some("application/scim+json"));
        self.body["detail"].as_str().unwrap_or_default()
    }
}

pub struct Harness {
    /// Stops the server when the harness goes; first, so before the directory is removed.
    _shutdown: Shutdown,
    /// Keeps the store's directory until the server is gone.
    pub _dir: tempfile::TempDir,
    pub live: Live,
    pub addr: SocketAddr,
    pub connection: ScimConnection,
    pub secret: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Harness {
    /// An empty directory.
    pub async fn start() -> Harness {
        Harness::start_with(Model::default()).await
    }

    pub async fn start_with(model: Model) -> Harness {
        Harness::start_limited(model, scim::Limits::default()).await
    }

    /// A server with these bounds on SCIM writes.
    pub async fn start_limited(model: Model, limits: scim::Limits) -> Harness {
        let (dir, store) = seeded_store(&model);
        let (connection, secret) = scim::create_connection(&store, "entra").unwrap();
        let live = Live::start(store).unwrap();
        let (listener, addr) = loopback().await;
        let (shutdown, stop) = Shutdown::new();
        let app = scim::router_with(live.clone(), limits);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Harness {
            _dir: dir,
            live,
            addr,
            connection,
            secret,
            client,
            _shutdown: shutdown,
        }
    }

    /// `http://127.0.0.1:<port>/scim/v2`.
    pub fn base(&self) -> String {
        format!("http://{}/scim/v2", self.addr)
    }

    /// An authenticated call with a JSON body (`application/scim+json`).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bearer = format!("Bearer {}", self.secret);
        let mut headers = vec![("authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/scim+json"));
        }
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, path, &headers, body).await
    }

    /// An authenticated call with raw bytes as an `application/scim+json` body.
    pub async fn call_raw_body(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        let bearer = format!("Bearer {}", self.secret);
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/scim+json"),
        ];
        self.raw(method, path, &headers, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None).await
    }

    /// Any call: `path` is under `/scim/v2` unless it starts with `//`.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let uri = match path.strip_prefix("//") {
            Some(path) => format!("http://{}/{path}", self.addr),
            None => format!("{}{path}", self.base()),
        };
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// The audit log, oldest first.
    pub fn audit(&self) -> Vec<AuditEvent> {
        let mut events = self
            .live
            .store()
            .audit_events(None, 100_000, |_| true, |_| false)
            .unwrap();
        events.reverse();
        events
    }

    /// The decision for `user` calling github `create_issue`.
    pub fn decide(&self, user: &str) -> Action {
        let snapshot = self.live.engine().snapshot();
        snapshot
            .decide(&pdp::Request {
                context: Default::default(),
                user,
                agent: "claude",
                connector: "github",
                tool: "create_issue",
                attributes: &pdp::NoAttributes,
            })
            .action
    }
}
