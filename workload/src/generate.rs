//! Generating realistic synthetic workloads: a tool catalog, users, Zipf-sized groups, policies
//! and decision requests with their expected answers.
//!
//! The shape follows `shared/workload/README.md` (an independent implementation of the same
//! format as `gen.py`, not byte-identical to it). Each phase — catalog, users, groups, policies,
//! requests — draws from its own ChaCha8 stream derived from the seed, so the output is the same
//! on every platform and changing the number of requests leaves everything else unchanged.
//! Only integer arithmetic, IEEE-exact float operations (no `powf`) and fixed iteration orders
//! feed the random choices, for the same reason.
//!
//! Expected answers come from [`pdp::decide_reference`] through [`Oracle`].

use crate::format::{
    Expected, Files, FlowLine, FlowStepLine, GroupLine, PolicyLine, RequestLine, ScopeLine,
    UserLine, action_name, reason_name,
};
use crate::oracle::Oracle;
use crate::{Error, Result};
use pdp::{Action, Reason, Role, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;

mod agents;
pub use agents::AgentsSummary;

/// How big a workload to generate, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Params {
    pub users: usize,
    pub groups: usize,
    pub policies: usize,
    pub requests: usize,
    pub connectors: usize,
    pub tools_per_connector: usize,
    pub seed: u64,
    /// Agents, the setting, agent selectors, step-up requirements and authentication contexts
    /// (`--agents`); written to the manifest only when set, so output without it is unchanged.
    #[serde(skip_serializing_if = "is_false")]
    pub agents: bool,
    /// CEL conditions over arguments on a few policies, and requests with arguments
    /// (`--conditions`; separate because a condition only counts once `pdp::expression` does).
    #[serde(skip_serializing_if = "is_false")]
    pub conditions: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl Params {
    pub const SMALL: Params = Params {
        users: 1_000,
        groups: 50,
        policies: 100,
        requests: 10_000,
        connectors: 10,
        tools_per_connector: 15,
        seed: 1,
        agents: false,
        conditions: false,
    };
    pub const MEDIUM: Params = Params {
        users: 100_000,
        groups: 5_000,
        policies: 2_000,
        requests: 100_000,
        connectors: 25,
        tools_per_connector: 30,
        seed: 1,
        agents: false,
        conditions: false,
    };
    pub const LARGE: Params = Params {
        users: 1_000_000,
        groups: 20_000,
        policies: 10_000,
        requests: 200_000,
        connectors: 40,
        tools_per_connector: 40,
        seed: 1,
        agents: false,
        conditions: false,
    };

    /// `small`, `medium` or `large`, as in the README's table, with seed 1.
    pub fn preset(name: &str) -> Result<Params> {
        match name {
            "small" => Ok(Params::SMALL),
            "medium" => Ok(Params::MEDIUM),
            "large" => Ok(Params::LARGE),
            _ => Err(Error::UnknownPreset(name.to_owned())),
        }
    }

    /// Users, groups, connectors and tools per connector must be at least 1; counts must fit
    /// the generator's 32-bit indexes.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = [
            ("users", self.users),
            ("groups", self.groups),
            ("connectors", self.connectors),
            ("tools_per_connector", self.tools_per_connector),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(Error::Params(format!("{name} must be at least 1")));
            }
        }
        let limit = u32::MAX as usize / 2;
        for (name, value) in [
            ("users", self.users),
            ("groups", self.groups),
            ("policies", self.policies),
            ("requests", self.requests),
        ] {
            if value > limit {
                return Err(Error::Params(format!("{name} must be at most {limit}")));
            }
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::SMALL
    }
}

/// How the generator built a request; recorded in `kind`, never affects the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A user covered by a random enabled policy, calling one of its tools.
    Targeted,
    /// A random user, a connector by popularity and a random catalog tool.
    Random,
    /// A key that names no user.
    UnknownUser,
    /// A tool name not in the catalog.
    UnknownTool,
    /// A connector name not in the catalog.
    UnknownConnector,
    /// A locked or inactive user.
    LockedOrInactive,
    /// A user covered by an all-tools policy, calling any tool of its connector.
    WildcardTool,
}

impl Kind {
    /// With their shares in percent.
    pub const MIX: [(Kind, u32); 7] = [
        (Kind::Targeted, 62),
        (Kind::Random, 15),
        (Kind::UnknownUser, 5),
        (Kind::UnknownTool, 5),
        (Kind::UnknownConnector, 3),
        (Kind::LockedOrInactive, 5),
        (Kind::WildcardTool, 5),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Targeted => "targeted",
            Kind::Random => "random",
            Kind::UnknownUser => "unknown_user",
            Kind::UnknownTool => "unknown_tool",
            Kind::UnknownConnector => "unknown_connector",
            Kind::LockedOrInactive => "locked_or_inactive",
            Kind::WildcardTool => "wildcard_tool",
        }
    }
}

/// `manifest.json`: what was generated and with what, and summary counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub generator: String,
    pub version: u32,
    pub params: Params,
    /// Connector → its tools, sorted.
    pub connectors: BTreeMap<String, Vec<String>>,
    pub counts: Counts,
    /// `DECISION/REASON` → number of requests, such as `DENY/USER_LOCKED`.
    pub requests_by_outcome: BTreeMap<String, u64>,
    pub requests_by_kind: BTreeMap<String, u64>,
    /// With `agents` or `conditions`: what they added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentsSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users_locked: u64,
    pub users_inactive: u64,
    pub users_locked_and_inactive: u64,
    pub memberships: u64,
    pub group_size_max: u64,
    pub group_size_median: u64,
    pub groups_empty: u64,
    pub policies_enabled: u64,
    /// Action name → number of policies.
    pub policies_by_action: BTreeMap<String, u64>,
    pub policies_all_users: u64,
    pub policies_wildcard: u64,
    /// Policies naming a user or group that does not exist.
    pub policies_dangling: u64,
}

/// A generated workload; write it with [`crate::write_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub files: Files,
    pub manifest: Manifest,
}

/// Generates a workload; the same params always give the same workload.
pub fn generate(params: &Params) -> Result<Generated> {
    params.validate()?;
    let catalog = Catalog::generate(params, &mut stream(params.seed, Phase::Catalog));
    let users = Users::generate(params, &mut stream(params.seed, Phase::Users));
    let groups = Groups::generate(params, &mut stream(params.seed, Phase::Groups));
    let policies = Policies::generate(
        params,
        &catalog,
        &groups,
        &mut stream(params.seed, Phase::Policies),
    );
    let mut policies = policies;
    let mut requests = generate_requests(
        params,
        &catalog,
        &users,
        &groups,
        &policies,
        &mut stream(params.seed, Phase::Requests),
    );
    let registry = params.agents.then(|| {
        let registry =
            agents::Registry::generate(&users, &groups, &mut stream(params.seed, Phase::Agents));
        agents::policies(
            &registry,
            &mut policies,
            &mut stream(params.seed, Phase::PolicyAgents),
        );
        agents::requests(
            &registry,
            &users,
            &groups,
            &policies,
            &mut requests,
            &mut stream(params.seed, Phase::RequestAgents),
        );
        registry
    });
    if params.conditions {
        agents::expressions(&mut policies, &mut stream(params.seed, Phase::Conditions));
        agents::arguments(
            &policies,
            &mut requests,
            &mut stream(params.seed, Phase::Arguments),
        );
    }
    let mut oracle = Oracle::new(&users.lines, &groups.lines, &policies.lines);
    if let Some(registry) = &registry {
        oracle = oracle.with_agents(
            &registry.lines,
            pdp::Settings {
                unregistered_agents: registry.settings.unregistered_agents,
            },
        );
    }
    oracle.fill_expected(&mut requests);

    let mut manifest = manifest(params, &catalog, &users, &groups, &policies, &requests);
    if params.agents || params.conditions {
        let empty = agents::Registry::empty();
        let registry_ref = registry.as_ref().unwrap_or(&empty);
        manifest.agents = Some(agents::summary(registry_ref, &policies, &requests));
    }
    let (agent_lines, settings) = match registry {
        Some(registry) => (registry.lines, Some(registry.settings)),
        None => (Vec::new(), None),
    };
    let flows = approval_flows(&groups.lines);
    name_flows(&flows, &mut policies.lines);
    Ok(Generated {
        files: Files {
            agents: agent_lines,
            settings,
            users: users.lines,
            groups: groups.lines,
            policies: policies.lines,
            requests,
            flows,
        },
        manifest,
    })
}

// ---- approval flows -------------------------------------------------------------------------

/// The generated flows, without randomness (so every other file stays as it was): one any
/// administrator or the requester's manager approves; and, when a group has two members, the
/// manager (escalating after 30 minutes) then two of that group, granting a one-hour window.
fn approval_flows(groups: &[GroupLine]) -> Vec<FlowLine> {
    let mut flows = vec![FlowLine {
        id: "flow-admins".to_owned(),
        name: "Administrators or the manager".to_owned(),
        description: "One approval by an administrator or the requester's manager".to_owned(),
        steps: vec![FlowStepLine {
            approvers: vec!["admins".to_owned(), "manager".to_owned()],
            min_approvals: 1,
            timeout_s: None,
        }],
        request_ttl_s: Some(3600),
        grant: "once".to_owned(),
        window_s: None,
        any_arguments: false,
    }];
    if let Some(group) = groups.iter().find(|g| g.members.len() >= 2) {
        flows.push(FlowLine {
            id: "flow-two-step".to_owned(),
            name: format!("Manager, then two of {}", group.name),
            description: String::new(),
            steps: vec![
                FlowStepLine {
                    approvers: vec!["manager".to_owned()],
                    min_approvals: 1,
                    timeout_s: Some(1800),
                },
                FlowStepLine {
                    approvers: vec![format!("group:{}", group.id)],
                    min_approvals: 2,
                    timeout_s: None,
                },
            ],
            request_ttl_s: None,
            grant: "window".to_owned(),
            window_s: Some(3600),
            any_arguments: false,
        });
    }
    flows
}

/// Gives REQUIRE_APPROVAL policies the flows in turn, every third one none (the default flow).
fn name_flows(flows: &[FlowLine], policies: &mut [PolicyLine]) {
    let approval = policies
        .iter_mut()
        .filter(|p| p.action == Action::RequireApproval);
    for (i, policy) in approval.enumerate() {
        policy.approval_flow = match i % 3 {
            2 => None,
            k => flows.get(k % flows.len().max(1)).map(|f| f.id.clone()),
        };
    }
}

// ---- randomness -----------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Phase {
    Catalog = 1,
    Users = 2,
    Groups = 3,
    Policies = 4,
    Requests = 5,
    Agents = 6,
    PolicyAgents = 7,
    RequestAgents = 8,
    Conditions = 9,
    Arguments = 10,
}

/// The phase's own stream: the same key, a different ChaCha stream number.
fn stream(seed: u64, phase: Phase) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(phase as u64);
    rng
}

/// Uniform in `0..n` (0 when `n` is 0), drawn as `u64` so it is the same on 32-bit targets.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    rng.random_range(0..n as u64) as usize
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

fn choose<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        return None;
    }
    items.get(below(rng, items.len()))
}

/// Cumulative Zipf-like weights `1 / (rank + q)` for ranks `0..n`.
fn zipf(n: usize, q: f64) -> Vec<f64> {
    let mut total = 0.0;
    (0..n)
        .map(|rank| {
            total += 1.0 / (rank as f64 + q);
            total
        })
        .collect()
}

/// A rank drawn by cumulative weights.
fn pick(rng: &mut ChaCha8Rng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

fn cumulative(weights: &[u32]) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .iter()
        .map(|&w| {
            total += f64::from(w);
            total
        })
        .collect()
}

/// Ids are zero-padded to at least `min` digits, and more when `n` needs them, so that string
/// order is numeric order.
fn width(n: usize, min: usize) -> usize {
    min.max(n.saturating_sub(1).to_string().len())
}

/// `k` distinct indexes from `0..n`, by a partial Fisher–Yates shuffle.
fn sample(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + below(rng, n - i);
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}

// ---- catalog --------------------------------------------------------------------------------

const CONNECTORS: [&str; 40] = [
    "github",
    "slack",
    "google-drive",
    "jira",
    "confluence",
    "gmail",
    "salesforce",
    "notion",
    "linear",
    "zendesk",
    "hubspot",
    "stripe",
    "snowflake",
    "postgres",
    "aws",
    "gcp",
    "azure",
    "datadog",
    "pagerduty",
    "okta",
    "workday",
    "servicenow",
    "figma",
    "dropbox",
    "box",
    "sharepoint",
    "outlook",
    "teams",
    "asana",
    "gitlab",
    "bitbucket",
    "intercom",
    "twilio",
    "sendgrid",
    "airtable",
    "monday",
    "trello",
    "clickup",
    "mongodb",
    "redis",
];
const VERBS: [&str; 20] = [
    "list",
    "get",
    "search",
    "create",
    "update",
    "delete",
    "comment_on",
    "export",
    "share",
    "archive",
    "approve",
    "merge",
    "assign",
    "close",
    "reopen",
    "sync",
    "run",
    "cancel",
    "download",
    "upload",
];
const NOUNS: [&str; 30] = [
    "issue",
    "repo",
    "pull_request",
    "file",
    "folder",
    "message",
    "channel",
    "ticket",
    "page",
    "record",
    "user",
    "invoice",
    "report",
    "query",
    "dashboard",
    "alert",
    "incident",
    "deployment",
    "secret",
    "branch",
    "contact",
    "deal",
    "table",
    "bucket",
    "workflow",
    "task",
    "event",
    "document",
    "comment",
    "webhook",
];
/// Tools with these verbs attract step-up, approval and deny policies.
const SENSITIVE: [&str; 6] = ["delete", "export", "share", "merge", "approve", "run"];

fn is_sensitive(tool: &str) -> bool {
    SENSITIVE
        .iter()
        .any(|verb| tool.strip_prefix(verb).is_some_and(|r| r.starts_with('_')))
}

struct Catalog {
    names: Vec<String>,
    /// Per connector, sorted.
    tools: Vec<Vec<String>>,
    /// Cumulative connector popularity: the first connectors are used most.
    popularity: Vec<f64>,
}

impl Catalog {
    fn generate(params: &Params, rng: &mut ChaCha8Rng) -> Catalog {
        let all: Vec<String> = VERBS
            .iter()
            .flat_map(|v| NOUNS.iter().map(move |n| format!("{v}_{n}")))
            .collect();
        let mut names = Vec::with_capacity(params.connectors);
        let mut tools = Vec::with_capacity(params.connectors);
        for c in 0..params.connectors {
            names.push(match CONNECTORS.get(c) {
                Some(name) => (*name).to_owned(),
                None => format!("connector-{:03}", c + 1),
            });
            let mut chosen: Vec<String> = if params.tools_per_connector <= all.len() {
                sample(rng, all.len(), params.tools_per_connector)
                    .into_iter()
                    .map(|i| all[i].clone())
                    .collect()
            } else {
                let extra = params.tools_per_connector - all.len();
                let w = width(extra, 4);
                all.iter()
                    .cloned()
                    .chain((0..extra).map(|k| format!("tool_{k:0w$}")))
                    .collect()
            };
            chosen.sort();
            tools.push(chosen);
        }
        Catalog {
            names,
            tools,
            popularity: zipf(params.connectors, 1.0),
        }
    }
}

// ---- users ----------------------------------------------------------------------------------

const FIRST: [&str; 24] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "John",
    "Katherine",
    "Leslie",
    "Sophie",
    "Tim",
    "Anita",
    "Guido",
    "Yukihiro",
    "Bjarne",
    "Shafi",
    "Fei-Fei",
];
const LAST: [&str; 26] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Lamport",
    "Wilson",
    "Berners-Lee",
    "Borg",
    "van Rossum",
    "Matsumoto",
    "Stroustrup",
    "Goldwasser",
    "Li",
    "Kay",
    "Hoare",
];
/// 2025-01-01T00:00:00Z, in milliseconds.
const CREATED_FROM: i64 = 1_735_689_600_000;
const CREATED_SPAN_SECONDS: usize = 365 * 86_400;

fn slug(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

struct Users {
    lines: Vec<UserLine>,
    id_width: usize,
    /// Locked or inactive users.
    bad: Vec<u32>,
}

impl Users {
    fn generate(params: &Params, rng: &mut ChaCha8Rng) -> Users {
        let id_width = width(params.users, 7);
        let mut lines = Vec::with_capacity(params.users);
        let mut bad = Vec::new();
        for i in 0..params.users {
            let locked = chance(rng, 0.05);
            let active = !chance(rng, 0.03);
            let mfa = chance(rng, 0.75);
            let first = FIRST[below(rng, FIRST.len())];
            let last = LAST[below(rng, LAST.len())];
            let domain = if chance(rng, 0.1) {
                "contractors.example.net"
            } else {
                "example.com"
            };
            let created = CREATED_FROM + below(rng, CREATED_SPAN_SECONDS) as i64 * 1000;
            if locked || !active {
                bad.push(i as u32);
            }
            // The index makes every email unique, also ignoring case.
            lines.push(UserLine {
                id: user_id(i, id_width),
                email: format!("{}.{}{i}@{domain}", slug(first), slug(last)),
                name: format!("{first} {last}"),
                created: Timestamp(created),
                active,
                locked,
                mfa: Some(mfa),
                manager: None,
            });
        }
        Users {
            lines,
            id_width,
            bad,
        }
    }
}

fn user_id(i: usize, width: usize) -> String {
    format!("u{i:0width$}")
}

// ---- groups ---------------------------------------------------------------------------------

const DEPTS: [&str; 12] = [
    "eng", "sales", "support", "finance", "ops", "sec", "data", "hr", "legal", "mkt", "it",
    "product",
];
const TEAMS: [&str; 15] = [
    "admin",
    "developer",
    "viewer",
    "analyst",
    "support",
    "finance",
    "security",
    "sre",
    "sales",
    "hr",
    "legal",
    "marketing",
    "manager",
    "contractor",
    "auditor",
];
/// How many groups a user is in: 1 to 8, weighted towards 1–3.
const GROUPS_PER_USER: [u32; 8] = [30, 24, 17, 11, 8, 5, 3, 2];

struct Groups {
    lines: Vec<GroupLine>,
    /// Per group, its members' indexes, ascending.
    members: Vec<Vec<u32>>,
    /// Popularity rank → group; shuffled so popularity does not follow the id.
    by_rank: Vec<u32>,
    popularity: Vec<f64>,
    memberships: usize,
}

impl Groups {
    fn generate(params: &Params, rng: &mut ChaCha8Rng) -> Groups {
        let n = params.groups;
        let mut by_rank: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = below(rng, i + 1);
            by_rank.swap(i, j);
        }
        let popularity = zipf(n, 1.5);
        let per_user = cumulative(&GROUPS_PER_USER);
        let most = GROUPS_PER_USER.len().min(n);

        let mut members: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut memberships = 0;
        let mut chosen: Vec<u32> = Vec::with_capacity(GROUPS_PER_USER.len());
        for u in 0..params.users {
            let k = (pick(rng, &per_user) + 1).min(most);
            chosen.clear();
            let mut tries = 0;
            while chosen.len() < k && tries < 4 * k + 8 {
                let g = by_rank[pick(rng, &popularity)];
                if !chosen.contains(&g) {
                    chosen.push(g);
                }
                tries += 1;
            }
            for &g in &chosen {
                // Users are visited in ascending order, so member lists stay sorted.
                members[g as usize].push(u as u32);
            }
            memberships += chosen.len();
        }

        let user_width = width(params.users, 7);
        let group_width = width(n, 5);
        let lines = (0..n)
            .map(|g| {
                let x = rng.random::<f64>();
                let roles = if x < 0.02 {
                    vec![Role::Admin]
                } else if x < 0.08 {
                    vec![Role::ReadOnly]
                } else {
                    Vec::new()
                };
                GroupLine {
                    id: group_id(g, group_width),
                    name: format!(
                        "{}-{}-{g}",
                        DEPTS[g % DEPTS.len()],
                        TEAMS[(g * 7) % TEAMS.len()]
                    ),
                    roles,
                    members: members[g]
                        .iter()
                        .map(|&u| user_id(u as usize, user_width))
                        .collect(),
                }
            })
            .collect();
        Groups {
            lines,
            members,
            by_rank,
            popularity,
            memberships,
        }
    }
}

fn group_id(g: usize, width: usize) -> String {
    format!("g{g:0width$}")
}

// ---- policies -------------------------------------------------------------------------------

/// Action weights (ALLOW, STEP_UP, REQUIRE_APPROVAL, DENY) by what a policy covers.
const ACTIONS_READ: [u32; 4] = [90, 5, 2, 3];
const ACTIONS_SENSITIVE: [u32; 4] = [62, 15, 12, 11];
const ACTIONS_WILDCARD: [u32; 4] = [84, 6, 3, 7];
/// No all-users, all-tools policy denies or requires approval for everything.
const ACTIONS_WILDCARD_ALL_USERS: [u32; 4] = [90, 10, 0, 0];

/// A policy as the generator knows it, with indexes rather than ids.
struct Spec {
    connector: usize,
    /// `["*"]` or sorted tool names.
    tools: Vec<String>,
    all_users: bool,
    /// Existing users and groups it names (dangling references are only in the lines).
    users: Vec<u32>,
    groups: Vec<u32>,
    enabled: bool,
    dangling: bool,
}

struct Policies {
    lines: Vec<PolicyLine>,
    specs: Vec<Spec>,
}

impl Policies {
    fn generate(
        params: &Params,
        catalog: &Catalog,
        groups: &Groups,
        rng: &mut ChaCha8Rng,
    ) -> Policies {
        let weights = [
            cumulative(&ACTIONS_READ),
            cumulative(&ACTIONS_SENSITIVE),
            cumulative(&ACTIONS_WILDCARD),
            cumulative(&ACTIONS_WILDCARD_ALL_USERS),
        ];
        let (n_users, n_groups) = (params.users, params.groups);
        let user_width = width(n_users, 7);
        let group_width = width(n_groups, 5);
        let policy_width = width(params.policies, 6);
        let mut lines = Vec::with_capacity(params.policies);
        let mut specs = Vec::with_capacity(params.policies);
        for p in 0..params.policies {
            let connector = pick(rng, &catalog.popularity);
            let x = rng.random::<f64>();
            let (mut users, mut group_list, mut all_users) = (Vec::new(), Vec::new(), false);
            if x < 0.10 {
                all_users = true;
            } else if x < 0.70 {
                let n = (1 + usize::from(chance(rng, 0.35)) + usize::from(chance(rng, 0.15)))
                    .min(n_groups);
                while group_list.len() < n {
                    // Some group policies favour popular groups; the rest pick uniformly.
                    let g = if chance(rng, 0.3) {
                        groups.by_rank[pick(rng, &groups.popularity)]
                    } else {
                        below(rng, n_groups) as u32
                    };
                    if !group_list.contains(&g) {
                        group_list.push(g);
                    }
                }
                if chance(rng, 0.05) {
                    users.push(below(rng, n_users) as u32);
                }
            } else {
                let n =
                    (1 + (rng.random::<f64>() * rng.random::<f64>() * 5.0) as usize).min(n_users);
                while users.len() < n {
                    let u = below(rng, n_users) as u32;
                    if !users.contains(&u) {
                        users.push(u);
                    }
                }
                if chance(rng, 0.05) {
                    group_list.push(below(rng, n_groups) as u32);
                }
            }
            users.sort_unstable();
            group_list.sort_unstable();

            let connector_tools = &catalog.tools[connector];
            let (tools, weights) = if chance(rng, if all_users { 0.05 } else { 0.15 }) {
                let w = if all_users { &weights[3] } else { &weights[2] };
                (vec!["*".to_owned()], w)
            } else {
                let n = 1 + (rng.random::<f64>() * rng.random::<f64>() * 6.0) as usize;
                let mut tools: Vec<String> = sample(rng, connector_tools.len(), n)
                    .into_iter()
                    .map(|i| connector_tools[i].clone())
                    .collect();
                tools.sort();
                let w = if tools.iter().any(|t| is_sensitive(t)) {
                    &weights[1]
                } else {
                    &weights[0]
                };
                (tools, w)
            };
            let action = Action::ALL[pick(rng, weights)];
            let enabled = !chance(rng, 0.05);
            let dangling = chance(rng, 0.005);

            let mut user_ids: Vec<String> = users
                .iter()
                .map(|&u| user_id(u as usize, user_width))
                .collect();
            let mut group_ids: Vec<String> = group_list
                .iter()
                .map(|&g| group_id(g as usize, group_width))
                .collect();
            if dangling {
                // A user or group deleted since the policy was written: it must match nobody.
                if !users.is_empty() || group_list.is_empty() {
                    user_ids.push(format!("u-deleted-{p}"));
                } else {
                    group_ids.push(format!("g-deleted-{p}"));
                }
            }
            let name = format!(
                "{} {} {}",
                action_name(action).to_lowercase(),
                catalog.names[connector],
                if tools == ["*"] {
                    "all tools".to_owned()
                } else if tools.len() == 1 {
                    "1 tool".to_owned()
                } else {
                    format!("{} tools", tools.len())
                }
            );
            lines.push(PolicyLine {
                id: format!("pol-{p:0policy_width$}"),
                name,
                connector: catalog.names[connector].clone(),
                tools: tools.clone(),
                scope: ScopeLine {
                    all_users,
                    users: user_ids,
                    groups: group_ids,
                },
                agents: None,
                action,
                step_up: None,
                approval_flow: None,
                expression: None,
                enabled,
            });
            specs.push(Spec {
                connector,
                tools,
                all_users,
                users,
                groups: group_list,
                enabled,
                dangling,
            });
        }
        Policies { lines, specs }
    }
}

// ---- requests -------------------------------------------------------------------------------

/// Generates the requests, with a placeholder `expected` that [`Oracle`] fills in.
fn generate_requests(
    params: &Params,
    catalog: &Catalog,
    users: &Users,
    groups: &Groups,
    policies: &Policies,
    rng: &mut ChaCha8Rng,
) -> Vec<RequestLine> {
    let mix = cumulative(&Kind::MIX.map(|(_, share)| share));
    let enabled: Vec<&Spec> = policies.specs.iter().filter(|p| p.enabled).collect();
    let wildcard: Vec<&Spec> = enabled
        .iter()
        .copied()
        .filter(|p| p.tools == ["*"])
        .collect();
    let n_users = params.users;
    let agents = n_users.div_euclid(50).max(10);
    let agent_popularity = zipf(agents, 1.0);
    let agent_width = width(agents, 5);
    let request_width = width(params.requests, 7);
    let placeholder = Expected {
        decision: Action::Deny,
        reason: Reason::NoMatchingPolicy,
        policy_id: None,
    };

    let mut requests = Vec::with_capacity(params.requests);
    for n in 0..params.requests {
        let mut kind = Kind::MIX[pick(rng, &mix)].0;
        if kind == Kind::WildcardTool && wildcard.is_empty() {
            kind = Kind::Targeted;
        }
        if (kind == Kind::Targeted && enabled.is_empty())
            || (kind == Kind::LockedOrInactive && users.bad.is_empty())
        {
            kind = Kind::Random;
        }

        // The user as an index, or as a string that names nobody.
        let (user, connector, tool): (Result<usize, String>, Option<usize>, String) = match kind {
            Kind::Targeted | Kind::WildcardTool => {
                let pool = if kind == Kind::WildcardTool {
                    &wildcard
                } else {
                    &enabled
                };
                let policy = pool[below(rng, pool.len())];
                let mut covered = Vec::with_capacity(2);
                if let Some(&u) = choose(rng, &policy.users) {
                    covered.push(u as usize);
                }
                if let Some(&g) = choose(rng, &policy.groups)
                    && let Some(&u) = choose(rng, &groups.members[g as usize])
                {
                    covered.push(u as usize);
                }
                // An all-users policy (or one whose groups are empty) covers anyone.
                let user = match choose(rng, &covered) {
                    Some(&u) => u,
                    None => below(rng, n_users),
                };
                let tools = if policy.tools == ["*"] {
                    &catalog.tools[policy.connector]
                } else {
                    &policy.tools
                };
                let tool = choose(rng, tools).cloned().unwrap_or_default();
                (Ok(user), Some(policy.connector), tool)
            }
            Kind::Random => {
                let user = below(rng, n_users);
                let connector = pick(rng, &catalog.popularity);
                let tool = choose(rng, &catalog.tools[connector])
                    .cloned()
                    .unwrap_or_default();
                (Ok(user), Some(connector), tool)
            }
            Kind::UnknownUser => {
                let connector = pick(rng, &catalog.popularity);
                let tool = choose(rng, &catalog.tools[connector])
                    .cloned()
                    .unwrap_or_default();
                let key = match below(rng, 4) {
                    0 => user_id(n_users + below(rng, 1_000_000), users.id_width),
                    1 => format!("ghost-{}", below(rng, 1_000_000)),
                    // Ids are case-sensitive: `U0000042` is not `u0000042`.
                    2 => user_id(below(rng, n_users), users.id_width).to_uppercase(),
                    _ => "nobody@example.com".to_owned(),
                };
                (Err(key), Some(connector), tool)
            }
            Kind::UnknownTool => {
                let user = below(rng, n_users);
                let connector = pick(rng, &catalog.popularity);
                let tool = match below(rng, 4) {
                    0 => format!("not_a_tool_{}", below(rng, 1000)),
                    1 => choose(rng, &catalog.tools[connector])
                        .map(|t| t.to_uppercase())
                        .unwrap_or_default(),
                    2 => "drop_all_tables".to_owned(),
                    _ => "*".to_owned(),
                };
                (Ok(user), Some(connector), tool)
            }
            Kind::UnknownConnector => {
                let user = below(rng, n_users);
                let connector = below(rng, params.connectors);
                let tool = choose(rng, &catalog.tools[connector])
                    .cloned()
                    .unwrap_or_default();
                // No connector: the name is chosen below.
                (Ok(user), None, tool)
            }
            Kind::LockedOrInactive => {
                let user = users.bad[below(rng, users.bad.len())] as usize;
                let connector = pick(rng, &catalog.popularity);
                let tool = choose(rng, &catalog.tools[connector])
                    .cloned()
                    .unwrap_or_default();
                (Ok(user), Some(connector), tool)
            }
        };

        let connector = match connector.and_then(|c| catalog.names.get(c)) {
            Some(name) => name.clone(),
            None => {
                let name = ["unknown-connector", "GitHub", "github "][below(rng, 3)];
                if catalog.names.iter().any(|c| c == name) {
                    "unknown-connector".to_owned()
                } else {
                    name.to_owned()
                }
            }
        };
        let user = match user {
            Err(key) => key,
            Ok(u) => {
                let line = &users.lines[u];
                if matches!(kind, Kind::Targeted | Kind::Random) && chance(rng, 0.08) {
                    // Emails match ignoring case.
                    mixed_case(rng, &line.email)
                } else {
                    line.id.clone()
                }
            }
        };
        let agent = pick(rng, &agent_popularity);
        requests.push(RequestLine {
            id: format!("r{n:0request_width$}"),
            user,
            agent: format!("agent-{agent:0agent_width$}"),
            connector,
            tool,
            authentication: None,
            arguments: None,
            kind: kind.as_str().to_owned(),
            expected: placeholder.clone(),
        });
    }
    requests
}

fn mixed_case(rng: &mut ChaCha8Rng, text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() && chance(rng, 0.3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

// ---- manifest -------------------------------------------------------------------------------

fn manifest(
    params: &Params,
    catalog: &Catalog,
    users: &Users,
    groups: &Groups,
    policies: &Policies,
    requests: &[RequestLine],
) -> Manifest {
    let count = |n: usize| n as u64;
    let mut sizes: Vec<usize> = groups.members.iter().map(Vec::len).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut by_action: BTreeMap<String, u64> = Action::ALL
        .iter()
        .map(|&a| (action_name(a).to_owned(), 0))
        .collect();
    for line in &policies.lines {
        *by_action
            .entry(action_name(line.action).to_owned())
            .or_default() += 1;
    }
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for request in requests {
        let outcome = format!(
            "{}/{}",
            action_name(request.expected.decision),
            reason_name(request.expected.reason)
        );
        *by_outcome.entry(outcome).or_default() += 1;
        *by_kind.entry(request.kind.clone()).or_default() += 1;
    }
    let u = &users.lines;
    Manifest {
        generator: "portcullis-workload".to_owned(),
        version: 1,
        params: *params,
        connectors: catalog
            .names
            .iter()
            .cloned()
            .zip(catalog.tools.iter().cloned())
            .collect(),
        counts: Counts {
            users_locked: count(u.iter().filter(|u| u.locked).count()),
            users_inactive: count(u.iter().filter(|u| !u.active).count()),
            users_locked_and_inactive: count(u.iter().filter(|u| u.locked && !u.active).count()),
            memberships: count(groups.memberships),
            group_size_max: count(sizes.first().copied().unwrap_or(0)),
            group_size_median: count(sizes.get(sizes.len() / 2).copied().unwrap_or(0)),
            groups_empty: count(sizes.iter().filter(|&&s| s == 0).count()),
            policies_enabled: count(policies.specs.iter().filter(|p| p.enabled).count()),
            policies_by_action: by_action,
            policies_all_users: count(policies.specs.iter().filter(|p| p.all_users).count()),
            policies_wildcard: count(policies.specs.iter().filter(|p| p.tools == ["*"]).count()),
            policies_dangling: count(policies.specs.iter().filter(|p| p.dangling).count()),
        },
        requests_by_outcome: by_outcome,
        requests_by_kind: by_kind,
        agents: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_readme() {
        assert_eq!(Params::preset("small").unwrap().users, 1_000);
        assert_eq!(Params::preset("medium").unwrap().groups, 5_000);
        assert_eq!(Params::preset("large").unwrap().tools_per_connector, 40);
        assert_eq!(
            Params::preset("huge").unwrap_err().to_string(),
            "unknown preset `huge`, expected small, medium or large"
        );
        let zero = Params {
            groups: 0,
            ..Params::SMALL
        };
        assert_eq!(
            generate(&zero).unwrap_err().to_string(),
            "invalid parameters: groups must be at least 1"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(width(1_000, 7), 7);
        assert_eq!(width(100_000_001, 7), 9);
        assert_eq!(width(0, 5), 5);
        assert!(is_sensitive("delete_repo"));
        assert!(!is_sensitive("deleted_repo"));
        assert!(!is_sensitive("list_repo"));
        assert_eq!(slug("van Rossum"), "vanrossum");
        let mut rng = stream(1, Phase::Catalog);
        let s = sample(&mut rng, 10, 4);
        assert_eq!(s.len(), 4);
        let mut sorted = s.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_eq!(pick(&mut rng, &[1.0]), 0);
    }

    #[test]
    fn more_tools_than_combinations() {
        let params = Params {
            users: 5,
            groups: 2,
            policies: 3,
            requests: 20,
            connectors: 42,
            tools_per_connector: 602,
            seed: 3,
            ..Params::SMALL
        };
        let generated = generate(&params).unwrap();
        let tools = &generated.manifest.connectors["connector-042"];
        assert_eq!(tools.len(), 602);
        assert!(tools.contains(&"tool_0001".to_owned()));
    }
}
