//! The shape promised by shared/workload/README.md, within loose bounds.

use crate::small;
use pdp::{Action, Reason};
use std::collections::{BTreeMap, HashMap, HashSet};
use workload::{Generated, Params, RequestLine};

fn share(part: usize, whole: usize) -> f64 {
    part as f64 / whole as f64
}

#[track_caller]
fn within(what: &str, value: f64, low: f64, high: f64) {
    assert!(
        (low..=high).contains(&value),
        "{what}: {value:.4} not within {low}..={high}"
    );
}

fn sorted_same_width(ids: &[&str]) {
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sorted and unique");
    let len = ids[0].len();
    assert!(ids.iter().all(|id| id.len() == len), "ids zero-padded");
}

#[test]
fn users_and_groups() {
    let files = &small(1).files;
    let users = &files.users;
    sorted_same_width(&users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>());
    assert_eq!(users[42].id, "u0000042");
    within(
        "locked",
        share(users.iter().filter(|u| u.locked).count(), users.len()),
        0.03,
        0.07,
    );
    within(
        "inactive",
        share(users.iter().filter(|u| !u.active).count(), users.len()),
        0.015,
        0.05,
    );
    let emails: HashSet<String> = users.iter().map(|u| u.email.to_lowercase()).collect();
    assert_eq!(emails.len(), users.len(), "emails unique ignoring case");

    let groups = &files.groups;
    sorted_same_width(&groups.iter().map(|g| g.id.as_str()).collect::<Vec<_>>());
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for group in groups {
        assert!(
            group.members.windows(2).all(|w| w[0] < w[1]),
            "members sorted"
        );
        for m in &group.members {
            *per_user.entry(m.as_str()).or_default() += 1;
        }
    }
    assert_eq!(per_user.len(), users.len(), "every user is in a group");
    assert!(per_user.values().all(|&n| (1..=8).contains(&n)));
    let few = per_user.values().filter(|&&n| n <= 3).count();
    within("users in 1-3 groups", share(few, users.len()), 0.6, 0.85);
    assert!(per_user.values().any(|&n| n >= 6));

    let mut sizes: Vec<(usize, usize)> = groups
        .iter()
        .enumerate()
        .map(|(g, x)| (x.members.len(), g))
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    let (largest, median) = (sizes[0].0, sizes[sizes.len() / 2].0);
    assert!(
        largest >= 5 * median,
        "Zipf-like: largest {largest}, median {median}"
    );
    // Popularity does not follow the id.
    let top: Vec<usize> = sizes[..5].iter().map(|&(_, g)| g).collect();
    assert_ne!(top, [0, 1, 2, 3, 4]);
    let no_roles = groups.iter().filter(|g| g.roles.is_empty()).count();
    within(
        "groups without roles",
        share(no_roles, groups.len()),
        0.8,
        1.0,
    );
}

/// More policies than `small` has, for tighter shares.
fn many_policies() -> Generated {
    workload::generate(&Params {
        users: 2_000,
        groups: 100,
        policies: 4_000,
        requests: 2_000,
        connectors: 12,
        tools_per_connector: 20,
        seed: 5,
        ..Params::SMALL
    })
    .unwrap()
}

#[test]
fn policies() {
    let generated = many_policies();
    let policies = &generated.files.policies;
    let n = policies.len();
    sorted_same_width(&policies.iter().map(|p| p.id.as_str()).collect::<Vec<_>>());
    assert_eq!(policies[7].id, "pol-000007");

    let all_users = policies.iter().filter(|p| p.scope.all_users).count();
    let with_groups = policies
        .iter()
        .filter(|p| !p.scope.groups.is_empty())
        .count();
    let with_users = policies
        .iter()
        .filter(|p| !p.scope.users.is_empty())
        .count();
    let both = policies
        .iter()
        .filter(|p| !p.scope.users.is_empty() && !p.scope.groups.is_empty())
        .count();
    within("all users", share(all_users, n), 0.08, 0.12);
    within("groups", share(with_groups, n), 0.55, 0.68);
    within("users", share(with_users, n), 0.27, 0.38);
    within("both", share(both, n), 0.01, 0.08);

    let count = |a: Action| policies.iter().filter(|p| p.action == a).count();
    within("ALLOW", share(count(Action::Allow), n), 0.71, 0.80);
    within("STEP_UP", share(count(Action::StepUp), n), 0.07, 0.13);
    within(
        "REQUIRE_APPROVAL",
        share(count(Action::RequireApproval), n),
        0.04,
        0.10,
    );
    within("DENY", share(count(Action::Deny), n), 0.04, 0.09);
    within(
        "disabled",
        share(policies.iter().filter(|p| !p.enabled).count(), n),
        0.03,
        0.07,
    );

    // Sensitive tools are more often restrictive.
    let sensitive = |t: &String| {
        ["delete_", "export_", "share_", "merge_", "approve_", "run_"]
            .iter()
            .any(|v| t.starts_with(v))
    };
    let restrictive = |ps: Vec<&workload::PolicyLine>| {
        share(
            ps.iter().filter(|p| p.action != Action::Allow).count(),
            ps.len(),
        )
    };
    let on_sensitive = restrictive(
        policies
            .iter()
            .filter(|p| p.tools != ["*"] && p.tools.iter().any(sensitive))
            .collect(),
    );
    let on_read = restrictive(
        policies
            .iter()
            .filter(|p| p.tools != ["*"] && !p.tools.iter().any(sensitive))
            .collect(),
    );
    assert!(on_sensitive > 2.0 * on_read, "{on_sensitive} vs {on_read}");

    for p in policies {
        let catalog = &generated.manifest.connectors[&p.connector];
        if p.tools != ["*"] {
            assert!(p.tools.iter().all(|t| catalog.contains(t)), "{p:?}");
            assert!(p.tools.windows(2).all(|w| w[0] < w[1]), "{p:?}");
        } else if p.scope.all_users {
            assert!(
                matches!(p.action, Action::Allow | Action::StepUp),
                "no all-users policy denies or needs approval for every tool: {p:?}"
            );
        }
    }

    let dangling: Vec<&String> = policies
        .iter()
        .flat_map(|p| p.scope.users.iter().chain(&p.scope.groups))
        .filter(|id| id.starts_with("u-deleted-") || id.starts_with("g-deleted-"))
        .collect();
    assert!(
        (5..=40).contains(&dangling.len()),
        "{} dangling",
        dangling.len()
    );
    assert_eq!(
        generated.manifest.counts.policies_dangling,
        dangling.len() as u64
    );
}

#[test]
fn catalog() {
    let manifest = &small(1).manifest;
    assert_eq!(manifest.connectors.len(), 10);
    assert!(manifest.connectors.contains_key("github"));
    assert!(manifest.connectors.contains_key("google-drive"));
    for tools in manifest.connectors.values() {
        assert_eq!(tools.len(), 15);
        assert!(tools.windows(2).all(|w| w[0] < w[1]));
    }
}

fn by_kind(requests: &[RequestLine]) -> BTreeMap<&str, Vec<&RequestLine>> {
    let mut kinds: BTreeMap<&str, Vec<&RequestLine>> = BTreeMap::new();
    for r in requests {
        kinds.entry(r.kind.as_str()).or_default().push(r);
    }
    kinds
}

#[test]
fn requests() {
    let generated = small(1);
    let files = &generated.files;
    let requests = &files.requests;
    let n = requests.len();
    sorted_same_width(&requests.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());
    let kinds = by_kind(requests);
    for (kind, percent) in [
        ("targeted", 62.0),
        ("random", 15.0),
        ("unknown_user", 5.0),
        ("unknown_tool", 5.0),
        ("unknown_connector", 3.0),
        ("locked_or_inactive", 5.0),
        ("wildcard_tool", 5.0),
    ] {
        let got = share(kinds[kind].len(), n) * 100.0;
        within(kind, got, percent - 2.0, percent + 2.0);
    }

    let ids: HashSet<&str> = files.users.iter().map(|u| u.id.as_str()).collect();
    let by_email = kinds["targeted"]
        .iter()
        .chain(&kinds["random"])
        .filter(|r| r.user.contains('@'))
        .collect::<Vec<_>>();
    within(
        "named by email",
        share(
            by_email.len(),
            kinds["targeted"].len() + kinds["random"].len(),
        ),
        0.05,
        0.11,
    );
    assert!(
        by_email
            .iter()
            .any(|r| r.user.chars().any(|c| c.is_ascii_uppercase()))
    );

    for r in &kinds["unknown_user"] {
        assert!(!ids.contains(r.user.as_str()));
        assert_eq!(r.expected.reason, Reason::UnknownUser, "{r:?}");
    }
    let unknown: HashSet<&str> = kinds["unknown_user"].iter().map(|r| &r.user[..1]).collect();
    assert!(unknown.contains("U") && unknown.contains("g") && unknown.contains("n"));
    assert!(
        kinds["unknown_user"]
            .iter()
            .any(|r| r.user == "nobody@example.com")
    );
    assert!(
        kinds["unknown_user"]
            .iter()
            .any(|r| r.user.starts_with('u'))
    );

    let tools: HashSet<&str> = kinds["unknown_tool"]
        .iter()
        .map(|r| r.tool.as_str())
        .collect();
    assert!(tools.contains("*") && tools.contains("drop_all_tables"));
    assert!(tools.iter().any(|t| t.starts_with("not_a_tool_")));
    assert!(
        tools
            .iter()
            .any(|t| t.chars().any(|c| c.is_ascii_uppercase()))
    );

    let connectors: HashSet<&str> = kinds["unknown_connector"]
        .iter()
        .map(|r| r.connector.as_str())
        .collect();
    assert_eq!(
        connectors,
        HashSet::from(["unknown-connector", "GitHub", "github "])
    );
    for r in &kinds["unknown_connector"] {
        assert_ne!(r.expected.reason, Reason::Policy);
    }
    for r in &kinds["locked_or_inactive"] {
        assert!(
            matches!(r.expected.reason, Reason::UserLocked | Reason::UserInactive),
            "{r:?}"
        );
    }

    // Agents: Zipf over max(10, users / 50) ids.
    let mut agents: HashMap<&str, usize> = HashMap::new();
    for r in requests {
        *agents.entry(r.agent.as_str()).or_default() += 1;
    }
    assert!(
        agents
            .keys()
            .all(|a| a.len() == 11 && a.starts_with("agent-000"))
    );
    assert!(agents.keys().all(|a| a[6..].parse::<usize>().unwrap() < 20));
    let top = agents.iter().max_by_key(|&(_, n)| *n).unwrap().0;
    assert_eq!(*top, "agent-00000");

    // Outcomes: every kind of answer occurs; user-status denials are about a sixth.
    let mut outcomes: HashMap<(Action, Reason), usize> = HashMap::new();
    for r in requests {
        *outcomes
            .entry((r.expected.decision, r.expected.reason))
            .or_default() += 1;
    }
    for action in Action::ALL {
        assert!(
            outcomes
                .get(&(action, Reason::Policy))
                .is_some_and(|&n| n > 0)
        );
    }
    let status = [
        Reason::UnknownUser,
        Reason::UserLocked,
        Reason::UserInactive,
    ]
    .iter()
    .map(|&reason| outcomes.get(&(Action::Deny, reason)).copied().unwrap_or(0))
    .sum::<usize>();
    within("status denials", share(status, n), 0.12, 0.22);
    within(
        "allowed",
        share(outcomes[&(Action::Allow, Reason::Policy)], n),
        0.3,
        0.65,
    );
    within(
        "no matching policy",
        share(outcomes[&(Action::Deny, Reason::NoMatchingPolicy)], n),
        0.04,
        0.25,
    );
}

#[test]
fn manifest_counts_match_the_files() {
    let generated = small(1);
    let (files, m) = (&generated.files, &generated.manifest);
    let c = &m.counts;
    assert_eq!(m.params, Params::SMALL);
    assert_eq!(
        c.users_locked,
        files.users.iter().filter(|u| u.locked).count() as u64
    );
    assert_eq!(
        c.users_inactive,
        files.users.iter().filter(|u| !u.active).count() as u64
    );
    let memberships: usize = files.groups.iter().map(|g| g.members.len()).sum();
    assert_eq!(c.memberships, memberships as u64);
    let max = files.groups.iter().map(|g| g.members.len()).max().unwrap();
    assert_eq!(c.group_size_max, max as u64);
    assert_eq!(c.policies_by_action.values().sum::<u64>(), 100);
    assert_eq!(m.requests_by_kind.values().sum::<u64>(), 10_000);
    assert_eq!(m.requests_by_outcome.values().sum::<u64>(), 10_000);
    let allowed = files
        .requests
        .iter()
        .filter(|r| r.expected.decision == Action::Allow)
        .count();
    assert_eq!(m.requests_by_outcome["ALLOW/POLICY"], allowed as u64);
}
