//! What `--agents` adds to a generated workload: an agent registry, the organisation setting,
//! agent selectors and step-up requirements on policies, requests from real agents with
//! authentication contexts (met, not met, too old); and what `--conditions` adds: CEL
//! conditions over arguments on a few policies, with requests carrying arguments.
//!
//! It runs after the base workload is generated, on its own random streams, so users, groups
//! and the policies' other fields are those of the same params without agents. Requests keep
//! their user, connector and tool, except the targeted ones rebuilt from a STEP_UP policy.

use super::{Groups, Kind, Policies, Spec, Users, below, chance, choose, pick, sample, zipf};
use crate::format::{
    AgentLine, AuthenticationLine, PolicyLine, RequestLine, ScopeLine, SettingsFile, StepUpLine,
};
use pdp::{Action, Unregistered};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// `manifest.json`'s `agents` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentsSummary {
    pub count: u64,
    pub disabled: u64,
    pub restricted: u64,
    pub aliases: u64,
    /// `ALLOW` or `DENY`.
    pub unregistered_agents: String,
    pub policies_with_agent_list: u64,
    pub policies_with_step_up: u64,
    pub policies_with_expression: u64,
    pub requests_with_authentication: u64,
    pub requests_with_arguments: u64,
}

const WELL_KNOWN: [(&str, &str, &str); 14] = [
    ("claude", "Claude", "Anthropic"),
    ("chatgpt", "ChatGPT", "OpenAI"),
    ("copilot", "GitHub Copilot", "GitHub"),
    ("gemini", "Gemini", "Google"),
    ("cursor", "Cursor", "Anysphere"),
    ("devin", "Devin", "Cognition"),
    ("codex", "Codex", "OpenAI"),
    ("windsurf", "Windsurf", "Codeium"),
    ("perplexity", "Perplexity", "Perplexity AI"),
    ("amazon-q", "Amazon Q", "Amazon"),
    ("replit", "Replit Agent", "Replit"),
    ("mistral", "Le Chat", "Mistral AI"),
    ("goose", "Goose", "Block"),
    ("cline", "Cline", "Cline"),
];

const ACRS: [&str; 4] = ["mfa", "phr", "phrh", "urn:mace:incommon:iap:silver"];
const AMRS: [&str; 5] = ["fpt", "hwk", "mfa", "otp", "pwd"];
const MAX_AGES: [u64; 3] = [300, 3600, 86400];
/// None within 60 s of a max age, so a replayer's clock skew changes no answer.
const AGES: [u64; 4] = [30, 600, 7200, 90000];

/// The conditions a few policies get with `conditions`, and arguments that make each hold or not.
const CONDITIONS: [&str; 2] = [
    r#"request.arguments.repo.startsWith("acme/")"#,
    "size(request.arguments.recipients) <= 10",
];

/// The registry, built once and consulted by the request pass.
pub(super) struct Registry {
    pub(super) lines: Vec<AgentLine>,
    pub(super) settings: SettingsFile,
    popularity: Vec<f64>,
    /// Scope by indexes: all users, or these users and groups.
    scopes: Vec<(bool, Vec<u32>, Vec<u32>)>,
}

impl Registry {
    /// No agents (for a summary of `conditions` alone).
    pub(super) fn empty() -> Registry {
        Registry {
            lines: Vec::new(),
            settings: SettingsFile::default(),
            popularity: Vec::new(),
            scopes: Vec::new(),
        }
    }

    pub(super) fn generate(users: &Users, groups: &Groups, rng: &mut ChaCha8Rng) -> Registry {
        let n_users = users.lines.len();
        let n = match n_users {
            0..10_000 => 8,
            10_000..100_000 => 12,
            100_000..1_000_000 => 13,
            _ => 16,
        };
        let in_house = 1 + below(rng, 3);
        let known = n - in_house;
        let mut ids: Vec<(String, String, String)> = WELL_KNOWN[..known]
            .iter()
            .map(|&(id, name, vendor)| (id.to_owned(), name.to_owned(), vendor.to_owned()))
            .collect();
        for i in 0..in_house {
            ids.push((
                format!("inhouse-{}", i + 1),
                format!("In-house agent {}", i + 1),
                "Example Corp".to_owned(),
            ));
        }
        let k = 1 + usize::from(chance(rng, 0.5));
        let disabled = sample(rng, n, k);
        let mut lines = Vec::with_capacity(n);
        let mut scopes = Vec::with_capacity(n);
        for (a, (id, name, vendor)) in ids.into_iter().enumerate() {
            let mut aliases = Vec::new();
            for _ in 0..below(rng, 3) {
                let alias = if aliases.is_empty() && chance(rng, 0.5) {
                    format!("{id}-ai")
                } else {
                    format!("oauth-client-{:04x}", below(rng, 0x10000))
                };
                // Aliases are unique across agents; a rare clash is simply skipped.
                let taken = lines.iter().any(|l: &AgentLine| l.aliases.contains(&alias))
                    || aliases.contains(&alias);
                if !taken {
                    aliases.push(alias);
                }
            }
            let (all, mut scope_users, mut scope_groups) = (true, Vec::new(), Vec::new());
            let all = if chance(rng, 0.3) {
                if chance(rng, 0.8) {
                    for _ in 0..1 + below(rng, 2) {
                        let g = groups.by_rank[pick(rng, &groups.popularity)];
                        if !scope_groups.contains(&g) {
                            scope_groups.push(g);
                        }
                    }
                }
                if scope_groups.is_empty() || chance(rng, 0.3) {
                    for _ in 0..1 + below(rng, 5) {
                        let u = below(rng, n_users) as u32;
                        if !scope_users.contains(&u) {
                            scope_users.push(u);
                        }
                    }
                }
                scope_users.sort_unstable();
                scope_groups.sort_unstable();
                false
            } else {
                all
            };
            lines.push(AgentLine {
                id,
                name,
                vendor,
                aliases,
                enabled: !disabled.contains(&a),
                scope: ScopeLine {
                    all_users: all,
                    users: scope_users
                        .iter()
                        .map(|&u| users.lines[u as usize].id.clone())
                        .collect(),
                    groups: scope_groups
                        .iter()
                        .map(|&g| groups.lines[g as usize].id.clone())
                        .collect(),
                },
            });
            scopes.push((all, scope_users, scope_groups));
        }
        let settings = SettingsFile {
            unregistered_agents: if chance(rng, 0.5) {
                Unregistered::Deny
            } else {
                Unregistered::Allow
            },
        };
        // Popularity follows the well-known order; the file is sorted by id.
        let popularity = zipf(n, 1.0);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| lines[a].id.cmp(&lines[b].id));
        let lines_sorted = order.iter().map(|&a| lines[a].clone()).collect();
        let scopes_sorted = order.iter().map(|&a| scopes[a].clone()).collect();
        let mut rank_of = vec![0; n];
        for (sorted, &a) in order.iter().enumerate() {
            rank_of[a] = sorted;
        }
        // Popularity by sorted index: weight of the agent that had rank `a`.
        let mut weights = vec![0.0; n];
        let mut previous = 0.0;
        for (a, &c) in popularity.iter().enumerate() {
            weights[rank_of[a]] = c - previous;
            previous = c;
        }
        let mut total = 0.0;
        let popularity = weights
            .iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Registry {
            lines: lines_sorted,
            settings,
            popularity,
            scopes: scopes_sorted,
        }
    }

    fn covers(&self, a: usize, user: usize, user_groups: &[Vec<u32>]) -> bool {
        let (all, users, groups) = &self.scopes[a];
        *all || users.contains(&(user as u32))
            || user_groups[user].iter().any(|g| groups.contains(g))
    }
}

/// Gives policies agent selectors and STEP_UP policies a requirement.
pub(super) fn policies(registry: &Registry, policies: &mut Policies, rng: &mut ChaCha8Rng) {
    for line in &mut policies.lines {
        line.agents = Some(if chance(rng, 0.3) {
            let mut ids: Vec<String> = Vec::new();
            for _ in 0..1 + below(rng, 3) {
                let id = registry.lines[pick(rng, &registry.popularity)].id.clone();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids.sort();
            ids
        } else {
            vec!["*".to_owned()]
        });
        if line.action == Action::StepUp && chance(rng, 0.8) {
            line.step_up = Some(requirement(rng));
        }
    }
}

/// Gives about 10% of the policies that are not STEP_UP a condition over arguments.
pub(super) fn expressions(policies: &mut Policies, rng: &mut ChaCha8Rng) {
    for line in &mut policies.lines {
        if line.action != Action::StepUp && chance(rng, 0.1) {
            line.expression = Some(CONDITIONS[below(rng, CONDITIONS.len())].to_owned());
        }
    }
}

fn requirement(rng: &mut ChaCha8Rng) -> StepUpLine {
    loop {
        let mut step_up = StepUpLine::default();
        if chance(rng, 0.6) {
            let k = 1 + below(rng, 2);
            let mut acrs: Vec<String> = sample(rng, ACRS.len(), k)
                .into_iter()
                .map(|i| ACRS[i].to_owned())
                .collect();
            acrs.sort();
            step_up.acr_values = acrs;
        }
        if chance(rng, 0.5) {
            let k = 1 + below(rng, 2);
            let mut amrs: Vec<String> = sample(rng, AMRS.len(), k)
                .into_iter()
                .map(|i| AMRS[i].to_owned())
                .collect();
            amrs.sort();
            step_up.amr_values = amrs;
        }
        if chance(rng, 0.5) {
            step_up.max_age = Some(MAX_AGES[below(rng, MAX_AGES.len())]);
        }
        if !(step_up.acr_values.is_empty()
            && step_up.amr_values.is_empty()
            && step_up.max_age.is_none())
        {
            return step_up;
        }
    }
}

/// An authentication meeting `step_up`.
fn meeting(step_up: &StepUpLine, rng: &mut ChaCha8Rng) -> AuthenticationLine {
    let acr = choose(rng, &step_up.acr_values)
        .cloned()
        .unwrap_or_else(|| ACRS[below(rng, ACRS.len())].to_owned());
    let mut amr = step_up.amr_values.clone();
    if chance(rng, 0.5) {
        amr.push("pwd".to_owned());
    }
    amr.sort();
    amr.dedup();
    let age = match step_up.max_age {
        Some(max) => *choose(
            rng,
            &AGES
                .iter()
                .copied()
                .filter(|&a| a <= max)
                .collect::<Vec<_>>(),
        )
        .unwrap_or(&AGES[0]),
        None => AGES[below(rng, AGES.len())],
    };
    AuthenticationLine {
        acr,
        amr,
        auth_age_s: Some(age),
    }
}

/// An authentication that misses `step_up` on one count (or none at all).
fn missing(step_up: &StepUpLine, rng: &mut ChaCha8Rng) -> Option<AuthenticationLine> {
    let mut auth = meeting(step_up, rng);
    let mut ways = vec![0];
    if !step_up.acr_values.is_empty() && step_up.acr_values.len() < ACRS.len() {
        ways.push(1);
    }
    if !step_up.amr_values.is_empty() {
        ways.push(2);
    }
    if step_up
        .max_age
        .is_some_and(|max| max < AGES[AGES.len() - 1])
    {
        ways.push(3);
    }
    match ways[below(rng, ways.len())] {
        1 => {
            let others: Vec<&str> = ACRS
                .into_iter()
                .filter(|a| !step_up.acr_values.iter().any(|v| v == a))
                .collect();
            auth.acr = others[below(rng, others.len())].to_owned();
        }
        2 => {
            let drop = &step_up.amr_values[below(rng, step_up.amr_values.len())];
            auth.amr.retain(|m| m != drop);
        }
        3 => {
            let max = step_up.max_age.unwrap_or(0);
            let older: Vec<u64> = AGES.into_iter().filter(|&a| a > max).collect();
            auth.auth_age_s = Some(older[below(rng, older.len())]);
        }
        _ => return None,
    }
    Some(auth)
}

fn random_authentication(rng: &mut ChaCha8Rng) -> AuthenticationLine {
    let k = 1 + below(rng, 3);
    let mut amr: Vec<String> = sample(rng, AMRS.len(), k)
        .into_iter()
        .map(|i| AMRS[i].to_owned())
        .collect();
    amr.sort();
    AuthenticationLine {
        acr: ACRS[below(rng, ACRS.len())].to_owned(),
        amr,
        auth_age_s: Some(AGES[below(rng, AGES.len())]),
    }
}

/// Gives requests real agents and authentication contexts (and arguments for the conditions),
/// rebuilding some targeted ones from STEP_UP policies.
pub(super) fn requests(
    registry: &Registry,
    users: &Users,
    groups: &Groups,
    policies: &Policies,
    requests: &mut [RequestLine],
    rng: &mut ChaCha8Rng,
) {
    let n_users = users.lines.len();
    let mut user_groups: Vec<Vec<u32>> = vec![Vec::new(); n_users];
    for (g, members) in groups.members.iter().enumerate() {
        for &u in members {
            user_groups[u as usize].push(g as u32);
        }
    }
    let index: std::collections::HashMap<&str, usize> = users
        .lines
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id.as_str(), i))
        .collect();
    let step_ups: Vec<(&PolicyLine, &Spec)> = policies
        .lines
        .iter()
        .zip(&policies.specs)
        .filter(|(line, spec)| line.action == Action::StepUp && spec.enabled)
        .collect();

    for request in requests.iter_mut() {
        let kept = matches!(request.kind.as_str(), "unknown_user" | "locked_or_inactive");
        let mut step_up_kind = None;
        let mut listed: Option<&Vec<String>> = None;
        if request.kind == Kind::Targeted.as_str() && !step_ups.is_empty() && chance(rng, 0.3) {
            let (line, spec) = step_ups[below(rng, step_ups.len())];
            let mut covered = Vec::new();
            if let Some(&u) = choose(rng, &spec.users) {
                covered.push(u as usize);
            }
            if let Some(&g) = choose(rng, &spec.groups)
                && let Some(&u) = choose(rng, &groups.members[g as usize])
            {
                covered.push(u as usize);
            }
            let user = match choose(rng, &covered) {
                Some(&u) => u,
                None => below(rng, n_users),
            };
            request.user = users.lines[user].id.clone();
            request.connector = line.connector.clone();
            if line.tools != ["*"] {
                request.tool = choose(rng, &line.tools).cloned().unwrap_or_default();
            }
            listed = line.agents.as_ref().filter(|a| *a != &["*"]);
            request.authentication = None;
            match &line.step_up {
                Some(step_up) if chance(rng, 0.5) => {
                    request.authentication = Some(meeting(step_up, rng));
                    step_up_kind = Some("step_up_met");
                }
                Some(step_up) => {
                    request.authentication = missing(step_up, rng);
                    step_up_kind = Some("step_up_not_met");
                }
                None => {
                    if chance(rng, 0.5) {
                        request.authentication = Some(random_authentication(rng));
                    }
                    step_up_kind = Some("step_up_not_met");
                }
            }
        } else if chance(rng, 0.4) {
            request.authentication = Some(random_authentication(rng));
        }

        let user = index.get(request.user.as_str()).copied();
        let popular = |rng: &mut ChaCha8Rng| pick(rng, &registry.popularity);
        let fitting = |a: usize| {
            registry.lines[a].enabled && user.is_none_or(|u| registry.covers(a, u, &user_groups))
        };
        let x = below(rng, 100);
        let (agent, agent_kind) = if x < 75 {
            // Registered (by id, or by alias 10 in 75 times), enabled, covering the user.
            let from_list = listed
                .filter(|_| chance(rng, 0.8))
                .and_then(|ids| choose(rng, ids))
                .and_then(|id| registry.lines.iter().position(|l| &l.id == id))
                .filter(|&a| fitting(a));
            let a = from_list.or_else(|| (0..20).map(|_| popular(rng)).find(|&a| fitting(a)));
            match a {
                Some(a) if x >= 65 && !registry.lines[a].aliases.is_empty() => (
                    choose(rng, &registry.lines[a].aliases)
                        .cloned()
                        .unwrap_or_default(),
                    None,
                ),
                Some(a) => (registry.lines[a].id.clone(), None),
                None => (registry.lines[popular(rng)].id.clone(), None),
            }
        } else if x < 85 {
            let name = match below(rng, 3) {
                0 => format!("shadow-agent-{}", below(rng, 100)),
                1 => registry.lines[popular(rng)].name.clone(),
                _ => registry.lines[popular(rng)].id.to_uppercase(),
            };
            // A display name may equal an id (in-house ones do not): then it is registered.
            let registered = registry
                .lines
                .iter()
                .any(|l| l.id == name || l.aliases.contains(&name));
            (name, (!registered).then_some("unknown_agent"))
        } else if x < 90 {
            let disabled: Vec<usize> = (0..registry.lines.len())
                .filter(|&a| !registry.lines[a].enabled)
                .collect();
            match choose(rng, &disabled) {
                Some(&a) => (registry.lines[a].id.clone(), Some("disabled_agent")),
                None => (registry.lines[popular(rng)].id.clone(), None),
            }
        } else if x < 95 {
            let outside: Vec<usize> = match user {
                Some(u) => (0..registry.lines.len())
                    .filter(|&a| registry.lines[a].enabled && !registry.covers(a, u, &user_groups))
                    .collect(),
                None => Vec::new(),
            };
            match choose(rng, &outside) {
                Some(&a) => (registry.lines[a].id.clone(), Some("agent_out_of_scope")),
                None => (registry.lines[popular(rng)].id.clone(), None),
            }
        } else {
            (String::new(), Some("unknown_agent"))
        };
        request.agent = agent;
        if !kept && let Some(kind) = agent_kind.or(step_up_kind) {
            request.kind = kind.to_owned();
        }
    }
}

/// With `conditions`: arguments on half the requests to a connector and tool that a policy
/// with a condition covers, making the condition hold or not.
pub(super) fn arguments(policies: &Policies, requests: &mut [RequestLine], rng: &mut ChaCha8Rng) {
    let conditional: Vec<&PolicyLine> = policies
        .lines
        .iter()
        .filter(|p| p.expression.is_some())
        .collect();
    for request in requests.iter_mut() {
        let covered = conditional.iter().any(|p| {
            p.connector == request.connector
                && (p.tools == ["*"] || p.tools.contains(&request.tool))
        });
        if !covered || !chance(rng, 0.5) {
            continue;
        }
        let mut arguments = serde_json::Map::new();
        let owner = ["acme", "other", "acme-evil"][below(rng, 3)];
        arguments.insert(
            "repo".into(),
            serde_json::Value::String(format!("{owner}/repo-{}", below(rng, 100))),
        );
        let n = [1, 3, 10, 11, 50][below(rng, 5)];
        arguments.insert(
            "recipients".into(),
            (0..n)
                .map(|i| serde_json::Value::String(format!("person{i}@example.com")))
                .collect(),
        );
        request.arguments = Some(arguments);
    }
}

pub(super) fn summary(
    registry: &Registry,
    policies: &Policies,
    requests: &[RequestLine],
) -> AgentsSummary {
    let count = |n: usize| n as u64;
    AgentsSummary {
        count: count(registry.lines.len()),
        disabled: count(registry.lines.iter().filter(|a| !a.enabled).count()),
        restricted: count(registry.lines.iter().filter(|a| !a.scope.all_users).count()),
        aliases: count(registry.lines.iter().map(|a| a.aliases.len()).sum()),
        unregistered_agents: crate::format::unregistered_name(
            registry.settings.unregistered_agents,
        )
        .to_owned(),
        policies_with_agent_list: count(
            policies
                .lines
                .iter()
                .filter(|p| p.agents.as_ref().is_some_and(|a| a != &["*"]))
                .count(),
        ),
        policies_with_step_up: count(
            policies
                .lines
                .iter()
                .filter(|p| p.step_up.is_some())
                .count(),
        ),
        policies_with_expression: count(
            policies
                .lines
                .iter()
                .filter(|p| p.expression.is_some())
                .count(),
        ),
        requests_with_authentication: count(
            requests
                .iter()
                .filter(|r| r.authentication.is_some())
                .count(),
        ),
        requests_with_arguments: count(requests.iter().filter(|r| r.arguments.is_some()).count()),
    }
}
