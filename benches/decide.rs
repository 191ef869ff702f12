//! In-process `Snapshot::decide` over a generated workload's requests, and what a snapshot costs
//! to build and hold.
//!
//! ```sh
//! cargo bench --bench decide                              # small and medium
//! PORTCULLIS_BENCH_LARGE=1 cargo bench --bench decide     # and large (1M users)
//! ```
//!
//! Besides criterion's per-call time over the request mix, prints the per-request latency
//! distribution (p50, p99, each call timed alone, so timer overhead is included and reported),
//! the snapshot build time and the resident memory the snapshot adds per user.
//!
//! From medium up it also times `Snapshot::apply` (a lock, a policy change) over snapshots
//! with 0, 1,000 and 8,000 changes pending over their full build, and `decide` over those
//! snapshots: what a publish costs, and what the overlay costs a decision.
//!
//! `decide/medium-agents` decides the medium workload generated with agents (`Params.agents`):
//! a registry with aliases and the unregistered-agent setting, agent selectors and step-up
//! requirements on policies, and requests carrying real agents (by id, alias or unknown name)
//! and authentication contexts, decided at the generator's time; every answer is first checked
//! against the generator's expected one. `decide/medium-condition` decides those requests of
//! the medium workload generated with agents and conditions (`Params.conditions`) whose
//! deciding policy has a CEL condition over arguments: the condition is evaluated on each call.
//!
//! `expression/evaluate` times one CEL condition over the call's arguments
//! (`request.arguments.repo.startsWith("acme/")`, target: median ≤ 2 µs): what a policy with a
//! condition adds to a decision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput};
use pdp::identity::Matches;
use pdp::{
    Changes, Directory, Lock, Model, NoAttributes, Policy, Request, Snapshot, User, UserDelta,
};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

struct Case {
    preset: &'static str,
    model: Model,
    snapshot: Snapshot,
    requests: Vec<(String, String, String, String)>,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn prepare(preset: &'static str) -> Case {
    let params = workload::Params::preset(preset).unwrap();
    let generated = workload::generate(&params).unwrap();
    let model = generated.files.to_model(pdp::Timestamp(0));
    let before = rss_bytes();
    let started = Instant::now();
    let snapshot = Snapshot::build(&model);
    let build = started.elapsed();
    let added = rss_bytes().saturating_sub(before);
    println!(
        "{preset}: {} users, {} policies; snapshot build {:.0} ms; snapshot RSS {:.1} MiB ({:.0} bytes per user)",
        snapshot.user_count(),
        snapshot.policy_count(),
        build.as_secs_f64() * 1000.0,
        added as f64 / (1 << 20) as f64,
        added as f64 / snapshot.user_count().max(1) as f64
    );
    let requests = generated
        .files
        .requests
        .iter()
        .map(|r| {
            (
                r.user.clone(),
                r.agent.clone(),
                r.connector.clone(),
                r.tool.clone(),
            )
        })
        .collect();
    Case {
        preset,
        model,
        snapshot,
        requests,
    }
}

fn request(r: &(String, String, String, String)) -> Request<'_> {
    Request {
        context: Default::default(),
        user: &r.0,
        agent: &r.1,
        connector: &r.2,
        tool: &r.3,
        attributes: &NoAttributes,
    }
}

/// Times every request alone, a few passes over the workload, and prints percentiles.
fn percentiles(case: &Case) {
    let timer_overhead = {
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| {
                let t = Instant::now();
                black_box(());
                t.elapsed().as_nanos() as u64
            })
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut samples = Vec::with_capacity(case.requests.len() * 3);
    for _ in 0..3 {
        for r in &case.requests {
            let req = request(r);
            let t = Instant::now();
            black_box(case.snapshot.decide(black_box(&req)));
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{}: decide per request, timed alone: p50 {} ns, p99 {} ns, p99.9 {} ns (timer overhead ~{} ns included)",
        case.preset,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        timer_overhead
    );
}

/// A model indexed as a snapshot asks about it (the server's store view plays this part).
struct Indexed<'m> {
    model: &'m Model,
    users: HashMap<&'m str, &'m User>,
    groups_of: HashMap<&'m str, Vec<&'m str>>,
    groups: HashSet<&'m str>,
    policies: HashMap<&'m str, &'m Policy>,
    external: HashMap<&'m str, Matches<&'m str>>,
    logins: HashMap<String, Matches<&'m str>>,
}

impl<'m> Indexed<'m> {
    fn new(model: &'m Model) -> Indexed<'m> {
        let mut index = Indexed {
            model,
            users: HashMap::new(),
            groups_of: HashMap::new(),
            groups: model.groups.iter().map(|g| g.id.as_str()).collect(),
            policies: model.policies.iter().map(|p| (p.id.as_str(), p)).collect(),
            external: HashMap::new(),
            logins: HashMap::new(),
        };
        for user in &model.users {
            index.users.entry(&user.id).or_insert(user);
            if let Some(x) = &user.external_id {
                let found = index.external.entry(x).or_insert(Matches::None);
                *found = also(*found, &user.id);
            }
            for login in user.logins() {
                let found = index.logins.entry(login).or_insert(Matches::None);
                *found = also(*found, &user.id);
            }
        }
        for m in &model.memberships {
            index
                .groups_of
                .entry(&m.user_id)
                .or_default()
                .push(&m.group_id);
        }
        index
    }
}

impl Directory for Indexed<'_> {
    fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).copied()
    }
    fn groups_of(&self, user_id: &str) -> Vec<&str> {
        self.groups_of.get(user_id).cloned().unwrap_or_default()
    }
    fn group_exists(&self, id: &str) -> bool {
        self.groups.contains(id)
    }
    fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.get(id).copied()
    }
    fn users_with_external_id(&self, key: &str) -> Matches<&str> {
        self.external.get(key).copied().unwrap_or(Matches::None)
    }
    fn agents(&self) -> Vec<&pdp::Agent> {
        self.model.agents.iter().collect()
    }
    fn settings(&self) -> pdp::Settings {
        self.model.settings
    }
    fn users_with_login(&self, key: &str) -> Matches<&str> {
        self.logins.get(key).copied().unwrap_or(Matches::None)
    }
}

/// `found` with one more user filed under its key.
fn also<'m>(found: Matches<&'m str>, id: &'m str) -> Matches<&'m str> {
    match found {
        Matches::None => Matches::One(id),
        Matches::One(other) if other == id => found,
        _ => Matches::Many,
    }
}

/// `apply` of one lock and of one policy change over snapshots with changes pending, and
/// `decide` over those snapshots.
fn bench_apply(c: &mut Criterion, case: &Case) {
    const PENDING: [usize; 3] = [0, 1_000, 8_000];
    let max = PENDING[PENDING.len() - 1];
    // The model after every lock below and with its first policy toggled.
    let mut changed = case.model.clone();
    for user in changed.users.iter_mut().take(max + 1) {
        user.lock = Some(Lock {
            at: pdp::Timestamp(1),
            by: "bench".into(),
            reason: "bench".into(),
        });
    }
    if let Some(policy) = changed.policies.first_mut() {
        policy.enabled = !policy.enabled;
    }
    let directory = Indexed::new(&changed);
    let ids: Vec<&str> = case.model.users.iter().map(|u| u.id.as_str()).collect();
    let locks = |range: std::ops::Range<usize>| Changes {
        users: ids[range]
            .iter()
            .map(|id| UserDelta {
                id,
                before: directory.user(id),
            })
            .collect(),
        ..Changes::default()
    };
    let policy = Changes {
        policies: case
            .model
            .policies
            .iter()
            .take(1)
            .map(|p| p.id.as_str())
            .collect(),
        ..Changes::default()
    };
    let mut group = c.benchmark_group("apply");
    let mut snapshot = case.snapshot.clone();
    let mut done = 0;
    for pending in PENDING {
        while done < pending {
            let next = (done + 1_000).min(pending);
            snapshot = snapshot.apply(2, &locks(done..next), &directory);
            done = next;
        }
        let started = Instant::now();
        let once = snapshot.apply(3, &locks(max..max + 1), &directory);
        println!(
            "{}: {} changes pending: one lock applied in {:.1} µs (first call)",
            case.preset,
            once.pending_changes(),
            started.elapsed().as_secs_f64() * 1e6
        );
        let lock = locks(max..max + 1);
        group.bench_function(format!("lock/{}/{pending}", case.preset), |b| {
            b.iter(|| black_box(snapshot.apply(3, black_box(&lock), &directory)))
        });
        group.bench_function(format!("policy/{}/{pending}", case.preset), |b| {
            b.iter(|| black_box(snapshot.apply(3, black_box(&policy), &directory)))
        });
        let overlaid = snapshot.apply(3, &policy, &directory);
        group.bench_function(format!("decide/{}/{pending}", case.preset), |b| {
            let mut i = 0;
            b.iter(|| {
                let r = &case.requests[i];
                i = (i + 1) % case.requests.len();
                black_box(overlaid.decide(black_box(&request(r))))
            })
        });
    }
    group.finish();
}

fn bench_expression(c: &mut Criterion) {
    use pdp::expression::{Expression, Input, UserFacts};
    let expression = Expression::compile(r#"request.arguments.repo.startsWith("acme/")"#)
        .expect("the benchmark's condition compiles");
    let arguments: pdp::Arguments = serde_json::from_str(
        r#"{"repo": "acme/widgets", "title": "Flaky test", "body": "It fails one run in ten.",
            "labels": ["bug", "ci"]}"#,
    )
    .unwrap();
    let request = Request {
        user: "alice",
        agent: "claude",
        connector: "github",
        tool: "create_issue",
        attributes: &NoAttributes,
        context: pdp::Context {
            authentication: None,
            arguments: Some(&arguments),
            now: pdp::Timestamp(1_796_661_000_000),
            grant: None,
        },
    };
    let groups = ["eng"];
    let input = Input {
        request: &request,
        user: UserFacts {
            id: "u-alice",
            email: "alice@example.com",
            groups: &groups,
            mfa: pdp::Mfa::Enabled,
        },
    };
    assert_eq!(expression.evaluate(&input), Ok(true));
    let mut group = c.benchmark_group("expression");
    group.throughput(Throughput::Elements(1));
    group.bench_function("evaluate", |b| {
        b.iter(|| black_box(expression.evaluate(black_box(&input))))
    });
    group.finish();
}

/// The medium workload generated with agents (and conditions, if `conditions`): requests as
/// the generator's oracle asks them, every answer checked against the expected one.
struct Rich {
    snapshot: Snapshot,
    lines: Vec<workload::RequestLine>,
    authentications: Vec<Option<pdp::Authentication>>,
    /// The ids of the policies with a condition.
    conditioned: HashSet<String>,
}

impl Rich {
    fn prepare(conditions: bool) -> Rich {
        let params = workload::Params {
            agents: true,
            conditions,
            ..workload::Params::MEDIUM
        };
        let generated = workload::generate(&params).unwrap();
        let model = generated.files.to_model(pdp::Timestamp(0));
        let started = Instant::now();
        let snapshot = Snapshot::build(&model);
        let build = started.elapsed();
        let lines = generated.files.requests;
        let authentications = lines.iter().map(workload::oracle::authentication).collect();
        let conditioned = model
            .policies
            .iter()
            .filter(|p| p.expression.is_some())
            .map(|p| p.id.clone())
            .collect();
        let rich = Rich {
            snapshot,
            lines,
            authentications,
            conditioned,
        };
        let (mut with_authentication, mut with_arguments) = (0, 0);
        let mut actions: HashMap<String, usize> = HashMap::new();
        for i in 0..rich.lines.len() {
            let decision = rich.snapshot.decide(&rich.request(i));
            *actions.entry(format!("{:?}", decision.action)).or_default() += 1;
            assert_eq!(
                workload::Expected::from(decision),
                rich.lines[i].expected,
                "request {} decided unlike the generator expects",
                rich.lines[i].id
            );
            with_authentication += usize::from(rich.authentications[i].is_some());
            with_arguments += usize::from(rich.lines[i].arguments.is_some());
        }
        let mut actions: Vec<_> = actions.into_iter().collect();
        actions.sort();
        println!(
            "medium with agents{}: {} agents, {} policies ({} with a condition); snapshot build {:.0} ms; {} requests, {} with an authentication context, {} with arguments, answers {:?} (all as expected)",
            if conditions { " and conditions" } else { "" },
            model.agents.len(),
            model.policies.len(),
            rich.conditioned.len(),
            build.as_secs_f64() * 1000.0,
            rich.lines.len(),
            with_authentication,
            with_arguments,
            actions
        );
        rich
    }

    fn request(&self, i: usize) -> Request<'_> {
        workload::oracle::pdp_request(
            &self.lines[i],
            self.authentications[i].as_ref(),
            workload::oracle::DECIDE_AT,
        )
    }

    /// The requests whose deciding policy has a condition.
    fn conditioned(&self) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| {
                self.snapshot
                    .decide(&self.request(i))
                    .policy_id
                    .is_some_and(|id| self.conditioned.contains(id))
            })
            .collect()
    }
}

fn bench_rich(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    let agents = Rich::prepare(false);
    group.bench_function("medium-agents", |b| {
        let mut i = 0;
        b.iter(|| {
            let r = agents.request(i);
            i = (i + 1) % agents.lines.len();
            black_box(agents.snapshot.decide(black_box(&r)))
        })
    });
    drop(agents);
    let conditions = Rich::prepare(true);
    let conditioned = conditions.conditioned();
    println!(
        "medium with agents and conditions: {} requests decided by a policy with a condition",
        conditioned.len()
    );
    if !conditioned.is_empty() {
        group.bench_function("medium-condition", |b| {
            let mut i = 0;
            b.iter(|| {
                let r = conditions.request(conditioned[i]);
                i = (i + 1) % conditioned.len();
                black_box(conditions.snapshot.decide(black_box(&r)))
            })
        });
    }
    group.finish();
}

fn main() {
    let mut presets = vec!["small", "medium"];
    if std::env::var_os("PORTCULLIS_BENCH_LARGE").is_some() {
        presets.push("large");
    }
    let mut c = Criterion::default().configure_from_args();
    bench_expression(&mut c);
    for preset in presets {
        let case = prepare(preset);
        percentiles(&case);
        let mut group = c.benchmark_group("decide");
        group.throughput(Throughput::Elements(1));
        group.bench_function(preset, |b| {
            let mut i = 0;
            b.iter(|| {
                let r = &case.requests[i];
                i = (i + 1) % case.requests.len();
                black_box(case.snapshot.decide(black_box(&request(r))))
            })
        });
        group.finish();
        if preset != "small" {
            bench_apply(&mut c, &case);
        }
    }
    bench_rich(&mut c);
    c.final_summary();
}
