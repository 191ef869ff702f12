//! A real server for the admin suite: a sled store in a temp dir, seeded with a small company,
//! serving AdminService and DecisionService on an ephemeral loopback port. Decisions go to the
//! store's decision log, as in `serve` (or to the in-memory activity, for its own test).

use admin::{Activity, AdminService, ApprovalFlowService};
use decision_log::{Retention, Writer};
use live::Live;
use pb::admin_service_client::AdminServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pdp::{Action, Group, ManagedBy, Mfa, Model, Policy, Role, Scope, Timestamp, Tools, User};
use pdp_service::{DecisionService, Recorder};
use portcullis_proto::v1 as pb;
use std::net::SocketAddr;
use std::sync::Arc;
use test_support::{Shutdown, loopback, seeded_store};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;
pub type Flows = pb::approval_flow_service_client::ApprovalFlowServiceClient<
    InterceptedService<Channel, Bearer>,
>;

pub fn user(id: &str, email: &str, name: &str) -> User {
    test_support::imported_user(id, email, name, format!("okta-{id}"))
}

pub fn group(id: &str, name: &str, roles: &[Role], managed_by: ManagedBy) -> Group {
    Group {
        id: id.into(),
        display_name: name.into(),
        description: format!("The {name} group"),
        roles: roles.to_vec(),
        managed_by,
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_000_000),
        ..Group::default()
    }
}

pub use test_support::member;

/// The seeded company:
/// - alice (Admins: Admin role), bob (Readers: Read Only), carol and dave (Engineering), erin
///   (inactive), frank (no groups; MFA off), grace (MFA not configured);
/// - policies: `p-eng-github` allows Engineering every github tool; `p-all-slack` allows
///   everyone slack `post`; `p-deny-delete` denies github `delete_repo` to Engineering.
pub fn company() -> Model {
    let mut users = vec![
        user("u-alice", "alice@example.com", "Alice Admin"),
        user("u-bob", "bob@example.com", "Bob Reader"),
        user("u-carol", "carol@example.com", "Carol Engineer"),
        user("u-dave", "dave@example.com", "Dave Engineer"),
        user("u-erin", "erin@example.com", "Erin Gone"),
        user("u-frank", "frank@example.com", "Frank Nogroup"),
        user("u-grace", "grace@example.com", "Grace Nomfa"),
    ];
    for (i, u) in users.iter_mut().enumerate() {
        u.created_at = Timestamp(1_700_000_000_000 + i as i64 * 1000);
    }
    users[4].active = false;
    users[5].mfa = Mfa::Disabled;
    users[6].mfa = Mfa::Unknown;
    let groups = vec![
        group("g-admins", "Admins", &[Role::Admin], ManagedBy::Local),
        group(
            "g-readers",
            "Readers",
            &[Role::ReadOnly],
            ManagedBy::External,
        ),
        group("g-eng", "Engineering", &[], ManagedBy::External),
    ];
    let memberships = vec![
        member("g-admins", "u-alice"),
        member("g-readers", "u-bob"),
        member("g-eng", "u-carol"),
        member("g-eng", "u-dave"),
    ];
    let policy = |id: &str, connector: &str, tools: Tools, scope: Scope, action: Action| Policy {
        id: id.into(),
        name: id.trim_start_matches("p-").replace('-', " "),
        connector: connector.into(),
        tools,
        scope,
        action,
        ..Policy::default()
    };
    let eng = Scope {
        groups: vec!["g-eng".into()],
        ..Scope::default()
    };
    let policies = vec![
        policy(
            "p-eng-github",
            "github",
            Tools::All,
            eng.clone(),
            Action::Allow,
        ),
        policy(
            "p-all-slack",
            "slack",
            Tools::Only(vec!["post".into()]),
            Scope {
                all_users: true,
                ..Scope::default()
            },
            Action::Allow,
        ),
        policy(
            "p-deny-delete",
            "github",
            Tools::Only(vec!["delete_repo".into()]),
            eng,
            Action::Deny,
        ),
    ];
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 0,
        users,
        groups,
        memberships,
        policies,
    }
}

pub struct Harness {
    /// Stops the server when the harness goes; first, so before the directory is removed.
    _shutdown: Shutdown,
    /// Keeps the store's directory until the server is gone.
    pub _dir: tempfile::TempDir,
    pub live: Live,
    pub addr: SocketAddr,
    /// alice's token (Admin through her group).
    pub admin_secret: String,
    /// bob's token (Read Only through his group).
    pub reader_secret: String,
    /// frank's token (no role).
    pub norole_secret: String,
    /// The decision log the decision service's records go to (none with in-memory activity).
    pub log: Option<Arc<Writer>>,
}

impl Harness {
    /// The seeded company ([`company`]) served on loopback.
    pub async fn start() -> Harness {
        Harness::start_with(company()).await
    }

    pub async fn start_with(model: Model) -> Harness {
        Harness::start_keeping(model, true).await
    }

    /// The seeded company, its recent decisions kept in memory ([`Activity::start`]) rather than
    /// in the decision log.
    pub async fn start_remembering() -> Harness {
        Harness::start_keeping(company(), false).await
    }

    async fn start_keeping(model: Model, decision_log: bool) -> Harness {
        let (dir, store) = seeded_store(&model);
        let token = |user: &str| {
            admin::token::create_on_store(&store, user, "test", None, None)
                .map(|m| m.secret)
                .unwrap_or_default()
        };
        let admin_secret = token("alice@example.com");
        let reader_secret = token("bob@example.com");
        let norole_secret = token("frank@example.com");
        let live = tokio::task::spawn_blocking(move || Live::start(store).unwrap())
            .await
            .unwrap();
        let (listener, addr) = loopback().await;
        let (recorder, records) = Recorder::channel(1024);
        let (activity, log) = if decision_log {
            let log = Arc::new(Writer::open(live.store(), Retention::default()).unwrap());
            tokio::spawn(log_decisions(records, Arc::clone(&log)));
            (Activity::decision_log(), Some(log))
        } else {
            (Activity::start(records), None)
        };
        let (shutdown, stop) = Shutdown::new();
        let router = tonic::transport::Server::builder()
            .add_service(
                DecisionService::new(live.engine().clone())
                    .with_recorder(recorder)
                    .into_server(),
            )
            .add_service(AdminService::new(live.clone(), activity).into_server())
            .add_service(ApprovalFlowService::new(live.clone()).into_server());
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop,
                )
                .await
                .unwrap();
        });
        Harness {
            _dir: dir,
            live,
            addr,
            admin_secret,
            reader_secret,
            norole_secret,
            log,
            _shutdown: shutdown,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A client sending `secret` (none if `None`).
    pub async fn client(&self, secret: Option<&str>) -> Admin {
        let value = secret.map(|s| format!("Bearer {s}").parse().unwrap());
        AdminServiceClient::with_interceptor(self.channel().await, Bearer(value))
    }

    /// An `ApprovalFlowService` client sending `secret`.
    pub async fn flows(&self, secret: &str) -> Flows {
        let value = format!("Bearer {secret}").parse().ok();
        pb::approval_flow_service_client::ApprovalFlowServiceClient::with_interceptor(
            self.channel().await,
            Bearer(value),
        )
    }

    pub async fn admin(&self) -> Admin {
        self.client(Some(&self.admin_secret)).await
    }

    pub async fn reader(&self) -> Admin {
        self.client(Some(&self.reader_secret)).await
    }

    pub async fn decisions(&self) -> DecisionServiceClient<Channel> {
        DecisionServiceClient::new(self.channel().await)
    }

    /// Check at `min_revision` (so it sees that write), returning (decision, reason).
    pub async fn check(
        &self,
        user: &str,
        connector: &str,
        tool: &str,
        min_revision: u64,
    ) -> (pb::Decision, pb::Reason) {
        let response = self
            .decisions()
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
            .into_inner();
        assert!(response.revision >= min_revision);
        (response.decision(), response.reason())
    }

    /// Audit events with `action`, newest first.
    pub async fn audit(&self, action: &str) -> Vec<pb::AuditEvent> {
        let events = self
            .admin()
            .await
            .list_audit_events(pb::ListAuditEventsRequest {
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        events.into_iter().filter(|e| e.action == action).collect()
    }
}

/// What `serve` does with decision records, without its batching window, retention sweeps or
/// JSONL file: each batch the channel holds goes to the log.
async fn log_decisions(
    mut records: tokio::sync::mpsc::Receiver<pdp_service::Record>,
    log: Arc<Writer>,
) {
    let mut batch = Vec::new();
    while records.recv_many(&mut batch, 256).await > 0 {
        let mut logged: Vec<_> = batch.drain(..).map(admin::activity::logged).collect();
        let log = Arc::clone(&log);
        tokio::task::spawn_blocking(move || log.append(&mut logged))
            .await
            .unwrap()
            .unwrap();
    }
}

/// Asserts `result` failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match result {
        Ok(value) => panic!("expected {code:?} ({needle}), got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(needle),
                "`{}` does not contain `{needle}`",
                status.message()
            );
        }
    }
}

/// The fields of a list request that every list RPC checks the same way.
pub struct ListFields {
    pub page_size: u32,
    pub sort: i32,
    pub page_token: String,
    pub search: String,
}

/// The list requests built from [`ListFields`], the rest of each request left empty.
macro_rules! list_requests {
    ($($request:ty),*) => {$(
        impl From<ListFields> for $request {
            fn from(f: ListFields) -> Self {
                Self {
                    page_size: f.page_size,
                    sort: f.sort,
                    page_token: f.page_token,
                    search: f.search,
                    ..Default::default()
                }
            }
        }
    )*};
}

list_requests!(
    pb::ListUsersRequest,
    pb::ListGroupsRequest,
    pb::ListPoliciesRequest
);

/// What every list RPC refuses as INVALID_ARGUMENT naming the field: a page of 501 rows, an
/// unknown sort, a page token no server issued, a search past 1,024 bytes; each request, and
/// the field the refusal names.
pub fn bad_list_requests<R: From<ListFields>>() -> Vec<(R, &'static str)> {
    let make = R::from;
    let valid = || ListFields {
        page_size: 0,
        sort: 0,
        page_token: String::new(),
        search: String::new(),
    };
    vec![
        (
            make(ListFields {
                page_size: 501,
                ..valid()
            }),
            "page_size",
        ),
        (
            make(ListFields {
                sort: 42,
                ..valid()
            }),
            "sort",
        ),
        (
            make(ListFields {
                page_token: "%%%".into(),
                ..valid()
            }),
            "page_token",
        ),
        (
            make(ListFields {
                search: "x".repeat(2000),
                ..valid()
            }),
            "search",
        ),
    ]
}
