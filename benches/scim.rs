//! SCIM against a real server: provisioning throughput, a 10,000-member group PATCH, and how
//! long a SCIM change takes to reach decisions.
//!
//! ```sh
//! cargo bench --bench scim                                   # medium (100k users)
//! PORTCULLIS_BENCH_PRESET=large cargo bench --bench scim     # large (1M users)
//! RUST_LOG=live=debug cargo bench --bench scim 2>log       # and every publish, how long
//! ```
//!
//! It generates the preset's directory, imports it into a sled store in a temp dir, makes a SCIM
//! connection, serves `scim::router` (axum, HTTP/1, as `portcullis serve` does) and the
//! DecisionService (tonic) in this process on two loopback ports, and calls them with real
//! clients: hyper-util's HTTP/1 client with the connection's bearer token, and a gRPC client.
//! Each figure is a distribution over many calls (p50, p90, p99). In order: POST /Users of new
//! users, sequential and concurrent; PATCH `active=false` and the first Check after the response;
//! removing a member of a group a policy grants through, likewise; a group PATCH adding 500 and
//! then 10,000 existing users in one operation, and removing them; deactivations again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use live::Live;
use pb::decision_service_client::DecisionServiceClient;
use pdp_service::DecisionService;
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use support::{Picker, check, peak_rss_mib, summary};
use tonic::transport::Channel;

mod support;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A group PATCH that fits one store batch, to compare with the 10,000-member one.
const SMALL_PATCH: usize = 500;

/// How much to measure: fewer repetitions at 1M users, where most writes rebuild the snapshot.
struct Plan {
    sequential: usize,
    clients: usize,
    per_client: usize,
    group_members: usize,
    group_rounds: usize,
    deactivations: usize,
    removals: usize,
}

impl Plan {
    fn for_preset(preset: &str) -> Plan {
        match preset {
            "large" => Plan {
                sequential: 20,
                clients: 8,
                per_client: 5,
                group_members: 10_000,
                group_rounds: 2,
                deactivations: 20,
                removals: 10,
            },
            _ => Plan {
                sequential: 300,
                clients: 8,
                per_client: 100,
                group_members: 10_000,
                group_rounds: 5,
                deactivations: 20,
                removals: 20,
            },
        }
    }
}

/// An HTTP/1 SCIM client with the connection's bearer token.
#[derive(Clone)]
struct Scim {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    bearer: Arc<str>,
}

impl Scim {
    /// One call; returns the status and the body once it is fully received.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Bytes) {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", &*self.bearer);
        if body.is_some() {
            request = request.header("content-type", "application/scim+json");
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    }

    /// A call that must answer `status`; returns the body as JSON (`Null` when empty).
    async fn expect(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let (got, bytes) = self.call(method, path, body).await;
        assert_eq!(
            got,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        );
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

/// A new user as Okta pushes one.
fn okta_user(tag: &str, i: usize) -> Value {
    let email = format!("bench.{tag}{i}@scim-bench.example.com");
    json!({
        "schemas": [USER],
        "userName": email,
        "name": {"givenName": "Bench", "familyName": format!("{tag}{i}")},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "displayName": format!("Bench {tag}{i}"),
        "locale": "en-US",
        "externalId": format!("00u{tag}{i:07}"),
        "groups": [],
        "active": true
    })
}

/// A member of a group some policy grants through, and a request that policy decides for them.
#[derive(Clone, Debug)]
struct Grant {
    user: String,
    group: String,
    group_size: usize,
    policy: String,
    connector: String,
    tool: String,
}

/// Up to `n` grants, each a different user and group: the user is in exactly one of the
/// policy's groups, not named by it directly, and the policy decides the request.
fn grants(live: &Live, n: usize) -> Vec<Grant> {
    let view = live.view().unwrap();
    let snapshot = live.engine().snapshot();
    let mut found = Vec::new();
    let mut users: HashSet<String> = HashSet::new();
    let mut groups: HashSet<String> = HashSet::new();
    for policy in view.policies() {
        if found.len() >= n {
            break;
        }
        if !policy.enabled || policy.scope.all_users || policy.scope.groups.is_empty() {
            continue;
        }
        let tool = match &policy.tools {
            pdp::Tools::All => "bench_tool".to_owned(),
            pdp::Tools::Only(tools) => match tools.first() {
                Some(t) => t.clone(),
                None => continue,
            },
        };
        'groups: for group in &policy.scope.groups {
            let Some(entry) = view.group(group) else {
                continue;
            };
            if entry.group.managed_by != pdp::ManagedBy::External || groups.contains(group) {
                continue;
            }
            for (user, _) in view.members_of(group).take(50) {
                if users.contains(&**user) || policy.scope.users.iter().any(|u| **u == **user) {
                    continue;
                }
                let through = view
                    .groups_of(user)
                    .filter(|(g, _)| policy.scope.groups.iter().any(|p| **p == ***g))
                    .count();
                if through != 1 {
                    continue;
                }
                let decision = snapshot.decide(&pdp::Request {
                    context: Default::default(),
                    user,
                    agent: "bench",
                    connector: &policy.connector,
                    tool: &tool,
                    attributes: &pdp::NoAttributes,
                });
                if decision.policy_id != Some(policy.id.as_str()) {
                    continue;
                }
                users.insert(user.to_string());
                groups.insert(group.clone());
                found.push(Grant {
                    user: user.to_string(),
                    group: group.clone(),
                    group_size: entry.members,
                    policy: policy.id.clone(),
                    connector: policy.connector.clone(),
                    tool: tool.clone(),
                });
                break 'groups;
            }
        }
    }
    found
}

/// What a Check answers once a change is visible.
#[derive(Clone)]
enum Seen {
    Inactive,
    /// The policy no longer decides the request.
    NotDecidedBy(String),
}

impl Seen {
    fn in_answer(&self, answer: &pb::CheckResponse) -> bool {
        match self {
            Seen::Inactive => answer.reason() == pb::Reason::UserInactive,
            Seen::NotDecidedBy(policy) => answer.policy_id != *policy,
        }
    }
}

/// A SCIM PATCH and the Check that shows it.
struct Probe {
    path: String,
    body: Value,
    check: pb::CheckRequest,
    seen: Seen,
}

/// Sends each probe's PATCH and, as soon as its response arrives, one Check: reports the PATCH
/// latency, whether that first Check already shows the change, and (for the second half, where
/// a poller calls Check in a loop from before the PATCH) when the poller first sees it. The
/// first half runs without the poller, whose load on the two cores slows the PATCH.
async fn freshness(
    scim: &Scim,
    decisions: &DecisionServiceClient<Channel>,
    probes: Vec<Probe>,
    name: &str,
) {
    let alone = probes.len() / 2;
    let mut calls_alone = Vec::new();
    let mut calls_polled = Vec::new();
    let mut first_checks = Vec::new();
    let mut after_return = Vec::new();
    let mut first_saw = 0;
    let mut poller_before = 0;
    let total = probes.len();
    for (i, probe) in probes.into_iter().enumerate() {
        let mut decisions = decisions.clone();
        let poller = (i >= alone).then(|| {
            let mut poller = decisions.clone();
            let (check, seen) = (probe.check.clone(), probe.seen.clone());
            tokio::spawn(async move {
                loop {
                    let answer = poller.check(check.clone()).await.unwrap().into_inner();
                    if seen.in_answer(&answer) {
                        return Instant::now();
                    }
                }
            })
        });
        let t = Instant::now();
        scim.expect("PATCH", &probe.path, Some(&probe.body), 200)
            .await;
        let returned = Instant::now();
        let first = decisions
            .check(probe.check.clone())
            .await
            .unwrap()
            .into_inner();
        first_checks.push(returned.elapsed());
        if probe.seen.in_answer(&first) {
            first_saw += 1;
        }
        match poller {
            None => calls_alone.push(returned - t),
            Some(poller) => {
                calls_polled.push(returned - t);
                let seen = poller.await.unwrap();
                if seen < returned {
                    poller_before += 1;
                }
                after_return.push(seen.saturating_duration_since(returned));
            }
        }
    }
    summary(&format!("{name}, no poller"), calls_alone);
    summary(&format!("{name}, with the poller"), calls_polled);
    summary("first Check after the response (round trip)", first_checks);
    summary("poller seeing it, after the response", after_return);
    println!(
        "  first Check after the response already showed it: {first_saw}/{total}; \
         the poller saw it before the response arrived: {poller_before}/{}",
        total - alone
    );
}

fn main() {
    let preset = std::env::var("PORTCULLIS_BENCH_PRESET").unwrap_or_else(|_| "medium".into());
    let plan = Plan::for_preset(&preset);
    // Errors (a failed publish) by default; `RUST_LOG=live=debug` shows every publish.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let params = workload::Params::preset(&preset).unwrap();
    let generated = workload::generate(&params).unwrap();
    let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
    drop(generated);
    println!(
        "{preset}: {} users, {} groups, {} memberships, {} policies",
        model.users.len(),
        model.groups.len(),
        model.memberships.len(),
        model.policies.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    let started = Instant::now();
    store.import(&model).unwrap();
    drop(model);
    println!("  import {:.1} s", started.elapsed().as_secs_f64());
    let (_connection, secret) = scim::create_connection(&store, "okta").unwrap();
    let started = Instant::now();
    let live = Live::start(store).unwrap();
    println!(
        "  view + first snapshot {:.1} s; peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    // Who the measurements touch, picked before any change.
    let granted = grants(&live, plan.removals);
    let taken: HashSet<&str> = granted.iter().map(|g| g.user.as_str()).collect();
    let active: Vec<String> = live
        .view()
        .unwrap()
        .users()
        .filter(|u| u.status() == pdp::UserStatus::Active && !taken.contains(u.id.as_str()))
        .map(|u| u.id.clone())
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let scim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scim_addr = scim_listener.local_addr().unwrap();
        let app = scim::router(live.clone());
        tokio::spawn(async move {
            axum::serve(scim_listener, app).await.unwrap();
        });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc_listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(DecisionService::new(live.engine().clone()).into_server());
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        tokio::spawn(server.serve_with_incoming(incoming));

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let scim = Scim {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: format!("http://{scim_addr}/scim/v2"),
            bearer: format!("Bearer {secret}").into(),
        };
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut decisions = DecisionServiceClient::new(channel);
        // Warm the connection up.
        scim.expect("GET", "/ServiceProviderConfig", None, 200)
            .await;

        println!("Provisioning: POST /Users of new users (Okta-like bodies):");
        let mut samples = Vec::with_capacity(plan.sequential);
        let started = Instant::now();
        for i in 0..plan.sequential {
            let body = okta_user("seq", i);
            let t = Instant::now();
            scim.expect("POST", "/Users", Some(&body), 201).await;
            samples.push(t.elapsed());
        }
        let wall = started.elapsed();
        summary(
            &format!(
                "sequential: {:.1} users/s",
                plan.sequential as f64 / wall.as_secs_f64()
            ),
            samples,
        );
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..plan.clients {
            let scim = scim.clone();
            let per_client = plan.per_client;
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let body = okta_user(&format!("c{c}x"), i);
                    let t = Instant::now();
                    scim.expect("POST", "/Users", Some(&body), 201).await;
                    samples.push(t.elapsed());
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.unwrap());
        }
        let wall = started.elapsed();
        summary(
            &format!(
                "{} concurrent clients: {:.1} users/s",
                plan.clients,
                samples.len() as f64 / wall.as_secs_f64()
            ),
            samples,
        );

        let mut pick = Picker(42);
        let mut chosen: HashSet<usize> = HashSet::new();
        let mut deactivations = |n: usize| {
            let mut probes = Vec::new();
            for _ in 0..n {
                let mut index = pick.below(active.len());
                while !chosen.insert(index) {
                    index = pick.below(active.len());
                }
                let user = &active[index];
                probes.push(Probe {
                    path: format!("/Users/{user}"),
                    body: json!({
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "replace", "value": {"active": false}}]
                    }),
                    check: check(user, "github", "t"),
                    seen: Seen::Inactive,
                });
            }
            probes
        };
        println!("PATCH active=false → Check answers USER_INACTIVE (Check without min_revision):");
        let probes = deactivations(plan.deactivations);
        freshness(&scim, &decisions, probes, "PATCH /Users active=false").await;

        let mut sizes: Vec<usize> = granted.iter().map(|g| g.group_size).collect();
        sizes.sort_unstable();
        println!(
            "PATCH remove a member of a group a policy grants through → Check no longer decided by \
             that policy:"
        );
        println!(
            "  {} (user, group, policy) picked; group sizes: min {}, median {}, max {}",
            granted.len(),
            sizes.first().copied().unwrap_or(0),
            sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            sizes.last().copied().unwrap_or(0)
        );
        let mut probes = Vec::new();
        for grant in &granted {
            let check = check(&grant.user, &grant.connector, &grant.tool);
            let before = decisions.check(check.clone()).await.unwrap().into_inner();
            assert_eq!(before.policy_id, grant.policy, "{grant:?}");
            probes.push(Probe {
                path: format!("/Groups/{}", grant.group),
                body: json!({
                    "schemas": [PATCH_OP],
                    "Operations": [{
                        "op": "remove",
                        "path": format!("members[value eq \"{}\"]", grant.user)
                    }]
                }),
                check,
                seen: Seen::NotDecidedBy(grant.policy.clone()),
            });
        }
        freshness(&scim, &decisions, probes, "PATCH /Groups remove member").await;

        println!(
            "Group PATCH adding existing users in one `add members` operation, then removing them:"
        );
        let group = scim
            .expect(
                "POST",
                "/Groups",
                Some(&json!({"schemas": [GROUP], "displayName": "SCIM bench big group"})),
                201,
            )
            .await;
        let path = format!("/Groups/{}", group["id"].as_str().unwrap());
        // 500 members stay under the store's 1,024 writes per batch (two keys a membership);
        // the 10,000 do not: the change is applied in chunks and the store reloads its view.
        for size in [SMALL_PATCH, plan.group_members] {
            let mut adds = Vec::new();
            let mut removes = Vec::new();
            let mut response = 0;
            let rounds = if size == SMALL_PATCH {
                5
            } else {
                plan.group_rounds
            };
            for round in 0..rounds {
                let from = (round * size) % (active.len() - size);
                let values: Vec<Value> = active[from..from + size]
                    .iter()
                    .map(|id| json!({"value": id}))
                    .collect();
                for (op, samples, expected) in
                    [("add", &mut adds, size), ("remove", &mut removes, 0)]
                {
                    let body = json!({
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": op, "path": "members", "value": values}]
                    });
                    let t = Instant::now();
                    let (status, bytes) = scim.call("PATCH", &path, Some(&body)).await;
                    samples.push(t.elapsed());
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                    let answer: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(answer["members"].as_array().map_or(0, Vec::len), expected);
                    response = response.max(bytes.len());
                }
            }
            summary(
                &format!("add {size} members ({} KiB response)", response / 1024),
                adds,
            );
            summary(&format!("remove the same {size}"), removes);
        }

        // A change of more than 1,024 store writes makes the store reload its view, which then
        // shares no structure with the publisher's last full build: until the next full build,
        // every publish compares the two whole views.
        println!("Again, after the group PATCHes (the store reloaded its view):");
        let probes = deactivations(plan.deactivations / 2);
        freshness(&scim, &decisions, probes, "PATCH /Users active=false").await;
    });
    println!("peak RSS {} MiB", peak_rss_mib());
}
