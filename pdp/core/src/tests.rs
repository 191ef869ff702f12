//! The rule's examples, and the differential test of the snapshot against the reference.

use crate::identity::{Matches, normalize};
use crate::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        user_name: email.into(),
        emails: vec![email.into()],
        display_name: id.into(),
        ..User::default()
    }
}

fn group(id: &str) -> Group {
    Group {
        id: id.into(),
        display_name: id.into(),
        ..Group::default()
    }
}

fn member(group_id: &str, user_id: &str) -> Membership {
    Membership {
        group_id: group_id.into(),
        user_id: user_id.into(),
        joined_at: Timestamp(0),
        source: MembershipSource::Idp,
    }
}

fn policy(id: &str, connector: &str, tools: &[&str], action: Action) -> Policy {
    Policy {
        id: id.into(),
        name: format!("policy {id}"),
        connector: connector.into(),
        tools: if tools == ["*"] {
            Tools::All
        } else {
            Tools::Only(tools.iter().map(|t| t.to_string()).collect())
        },
        scope: Scope {
            all_users: true,
            ..Scope::default()
        },
        action,
        ..Policy::default()
    }
}

fn request<'a>(user: &'a str, connector: &'a str, tool: &'a str) -> Request<'a> {
    Request {
        context: Default::default(),
        user,
        agent: "claude",
        connector,
        tool,
        attributes: &NoAttributes,
    }
}

/// Decides with both implementations and insists they agree.
fn both(model: &Model, req: &Request<'_>) -> (Action, Reason, Option<String>) {
    let snapshot = Snapshot::build(model);
    let fast = snapshot.decide(req);
    let slow = decide_reference(model, req);
    assert_eq!(fast, slow, "snapshot and reference disagree on {req:?}");
    (fast.action, fast.reason, fast.policy_id.map(str::to_owned))
}

fn base_model() -> Model {
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 7,
        users: vec![user("u1", "Ada@Example.com"), user("u2", "bob@example.com")],
        groups: vec![group("eng"), group("ops")],
        memberships: vec![member("eng", "u1")],
        policies: Vec::new(),
    }
}

#[test]
fn every_pair_of_actions_resolves_to_the_most_restrictive_and_lowest_id() {
    for first in Action::ALL {
        for second in Action::ALL {
            let mut model = base_model();
            model.policies = vec![
                policy("p1", "github", &["create_issue"], first),
                policy("p2", "github", &["create_issue", "merge"], second),
            ];
            let strictest = first.max(second);
            let expected_id = if first == strictest { "p1" } else { "p2" };
            let answer = both(&model, &request("u1", "github", "create_issue"));
            assert_eq!(
                answer,
                (strictest, Reason::Policy, Some(expected_id.into())),
                "{first:?} vs {second:?}"
            );

            // Writing order must not matter.
            model.policies.reverse();
            let again = both(&model, &request("u1", "github", "create_issue"));
            assert_eq!(again, answer);

            // The second alone covers `merge`.
            let merge = both(&model, &request("u1", "github", "merge"));
            assert_eq!(merge, (second, Reason::Policy, Some("p2".into())));
        }
    }
}

#[test]
fn a_wildcard_policy_competes_with_listed_ones() {
    for wildcard in Action::ALL {
        for listed in Action::ALL {
            let mut model = base_model();
            model.policies = vec![
                policy("p1", "github", &["*"], wildcard),
                policy("p2", "github", &["merge"], listed),
            ];
            let answer = both(&model, &request("u1", "github", "merge"));
            let strictest = wildcard.max(listed);
            let id = if wildcard == strictest { "p1" } else { "p2" };
            assert_eq!(answer, (strictest, Reason::Policy, Some(id.into())));
            // A tool no policy lists, and the literal `*`, fall to the wildcard alone.
            for tool in ["not_a_tool", "*"] {
                let answer = both(&model, &request("u1", "github", tool));
                assert_eq!(answer, (wildcard, Reason::Policy, Some("p1".into())));
            }
        }
    }
}

#[test]
fn user_status_comes_before_policies() {
    let mut model = base_model();
    model.policies = vec![policy("p1", "github", &["*"], Action::Allow)];
    model.users.push(User {
        active: false,
        ..user("u3", "c@example.com")
    });
    let lock = Lock {
        at: Timestamp(1),
        by: "admin".into(),
        reason: "incident".into(),
    };
    model.users.push(User {
        lock: Some(lock.clone()),
        ..user("u4", "d@example.com")
    });
    model.users.push(User {
        lock: Some(lock),
        active: false,
        ..user("u5", "e@example.com")
    });

    let deny = |reason| (Action::Deny, reason, None);
    assert_eq!(
        both(&model, &request("nobody", "github", "x")),
        deny(Reason::UnknownUser)
    );
    assert_eq!(
        both(&model, &request("U1", "github", "x")),
        deny(Reason::UnknownUser)
    );
    assert_eq!(
        both(&model, &request("u3", "github", "x")),
        deny(Reason::UserInactive)
    );
    assert_eq!(
        both(&model, &request("u4", "github", "x")),
        deny(Reason::UserLocked)
    );
    assert_eq!(
        both(&model, &request("u5", "github", "x")),
        deny(Reason::UserLocked)
    );
    assert_eq!(both(&model, &request("u1", "github", "x")).0, Action::Allow);
}

#[test]
fn users_are_found_by_id_external_id_and_email_ignoring_case() {
    let mut model = base_model();
    model.users[1].external_id = Some("okta-00b".into());
    model.policies = vec![policy("p1", "github", &["*"], Action::StepUp)];
    for key in ["u2", "okta-00b", "bob@example.com", "BOB@Example.COM"] {
        assert_eq!(
            both(&model, &request(key, "github", "x")).0,
            Action::StepUp,
            "{key}"
        );
    }
    for key in ["ada@example.com", "ADA@EXAMPLE.COM"] {
        assert_eq!(
            both(&model, &request(key, "github", "x")).0,
            Action::StepUp,
            "{key}"
        );
    }
    // The external id is exact.
    assert_eq!(
        both(&model, &request("OKTA-00B", "github", "x")).1,
        Reason::UnknownUser
    );
}

/// The two ways a newcomer could capture another user's reference, from the security review:
/// each makes the reference ambiguous (Deny), and the ids still name each user.
#[test]
fn a_shared_key_names_nobody_and_ids_always_work() {
    let mut model = base_model();
    model.policies = vec![policy("p1", "github", &["*"], Action::Allow)];
    let allow = (Action::Allow, Reason::Policy, Some("p1".to_string()));
    let ambiguous = (Action::Deny, Reason::AmbiguousUser, None);
    assert_eq!(
        both(&model, &request("ada@example.com", "github", "x")),
        allow
    );
    // (a) A newcomer whose external id is ada's email.
    model.users.push(User {
        external_id: Some("ada@example.com".into()),
        ..user("u9", "mallory@example.com")
    });
    assert_eq!(
        both(&model, &request("ada@example.com", "github", "x")),
        ambiguous
    );
    assert_eq!(both(&model, &request("u1", "github", "x")), allow);
    assert_eq!(both(&model, &request("u9", "github", "x")), allow);
    // (b) A newcomer whose email is bob's, in upper case, or in fullwidth letters.
    for email in ["BOB@EXAMPLE.COM", "ｂｏｂ@example.com"] {
        let mut model = base_model();
        model.policies = vec![policy("p1", "github", &["*"], Action::Allow)];
        model.users.push(user("u9", email));
        assert_eq!(
            both(&model, &request("bob@example.com", "github", "x")),
            ambiguous
        );
        assert_eq!(both(&model, &request(email, "github", "x")), ambiguous);
        assert_eq!(both(&model, &request("u2", "github", "x")), allow);
    }
    // A user whose external id is their own email is still one user.
    let mut model = base_model();
    model.policies = vec![policy("p1", "github", &["*"], Action::Allow)];
    model.users[0].external_id = Some("ADA@example.com".into());
    assert_eq!(
        both(&model, &request("ADA@example.com", "github", "x")),
        allow
    );
}

#[test]
fn scope_connector_tool_and_enabled_must_all_match() {
    let mut model = base_model();
    let mut by_group = policy("p1", "github", &["create_issue"], Action::Allow);
    by_group.scope = Scope {
        all_users: false,
        users: vec![],
        groups: vec!["eng".into()],
    };
    let mut by_user = policy("p2", "slack", &["post"], Action::Allow);
    by_user.scope = Scope {
        all_users: false,
        users: vec!["u2".into()],
        groups: vec![],
    };
    let mut disabled = policy("p3", "github", &["create_issue"], Action::Deny);
    disabled.enabled = false;
    let mut dangling = policy("p4", "github", &["create_issue"], Action::Deny);
    dangling.scope = Scope {
        all_users: false,
        users: vec!["u-deleted-1".into()],
        groups: vec!["g-deleted-1".into()],
    };
    model.policies = vec![by_group, by_user, disabled, dangling];

    let no_match = (Action::Deny, Reason::NoMatchingPolicy, None);
    assert_eq!(
        both(&model, &request("u1", "github", "create_issue")),
        (Action::Allow, Reason::Policy, Some("p1".into()))
    );
    assert_eq!(
        both(&model, &request("u2", "github", "create_issue")),
        no_match
    );
    assert_eq!(
        both(&model, &request("u2", "slack", "post")),
        (Action::Allow, Reason::Policy, Some("p2".into()))
    );
    assert_eq!(both(&model, &request("u1", "slack", "post")), no_match);
    assert_eq!(
        both(&model, &request("u1", "GitHub", "create_issue")),
        no_match
    );
    assert_eq!(
        both(&model, &request("u1", "github ", "create_issue")),
        no_match
    );
    assert_eq!(
        both(&model, &request("u1", "github", "Create_Issue")),
        no_match
    );
    assert_eq!(both(&model, &request("u1", "github", "*")), no_match);
}

#[test]
fn conditions_must_all_hold_and_an_absent_attribute_fails_them() {
    let mut model = base_model();
    let mut p = policy("p1", "github", &["*"], Action::Allow);
    p.conditions = vec![
        Condition {
            attribute: "env".into(),
            operator: Operator::In,
            values: vec!["prod".into(), "staging".into()],
        },
        Condition {
            attribute: "network".into(),
            operator: Operator::NotIn,
            values: vec!["tor".into()],
        },
    ];
    model.policies = vec![p];
    let check = |attrs: &[(&str, &str)]| {
        let attrs: BTreeMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let req = Request {
            attributes: &attrs,
            ..request("u1", "github", "x")
        };
        both(&model, &req).1
    };
    assert_eq!(
        check(&[("env", "prod"), ("network", "corp")]),
        Reason::Policy
    );
    assert_eq!(
        check(&[("env", "dev"), ("network", "corp")]),
        Reason::NoMatchingPolicy
    );
    assert_eq!(
        check(&[("env", "prod"), ("network", "tor")]),
        Reason::NoMatchingPolicy
    );
    assert_eq!(check(&[("env", "prod")]), Reason::NoMatchingPolicy);
    assert_eq!(check(&[]), Reason::NoMatchingPolicy);
}

#[test]
fn explain_says_why_each_policy_of_the_connector_did_or_did_not_match() {
    let mut model = base_model();
    let mut scoped = policy("p2", "github", &["merge"], Action::Deny);
    scoped.scope = Scope {
        all_users: false,
        users: vec!["u2".into()],
        groups: vec![],
    };
    let mut disabled = policy("p3", "github", &["merge"], Action::Deny);
    disabled.enabled = false;
    model.policies = vec![
        disabled,
        scoped,
        policy("p1", "github", &["merge"], Action::StepUp),
        policy("p4", "github", &["create_issue"], Action::Deny),
        policy("p5", "slack", &["*"], Action::Deny),
    ];
    let snapshot = Snapshot::build(&model);
    let (decision, matches) = snapshot.explain(&request("u1", "github", "merge"));
    assert_eq!(decision.policy_id, Some("p1"));
    let got: Vec<(&str, Outcome, bool)> = matches
        .iter()
        .map(|m| (m.policy_id, m.outcome, m.deciding))
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1", Outcome::Matched, true),
            ("p2", Outcome::ScopeNotCovered, false),
            ("p3", Outcome::Disabled, false),
            ("p4", Outcome::ToolNotCovered, false),
        ]
    );
    let (_, matches) = snapshot.explain(&request("ghost", "github", "merge"));
    assert!(matches.iter().all(|m| m.outcome == Outcome::UserDenied));
}

#[test]
fn allowed_tools_lists_every_non_deny_tool_and_the_wildcard() {
    let mut model = base_model();
    model.policies = vec![
        policy("p1", "github", &["create_issue", "merge"], Action::Allow),
        policy("p2", "github", &["merge"], Action::Deny),
        policy("p3", "slack", &["*"], Action::StepUp),
        policy("p4", "slack", &["post"], Action::RequireApproval),
    ];
    let snapshot = Snapshot::build(&model);
    let got: Vec<(&str, &str, Action, &str)> = snapshot
        .allowed_tools("u1", "a", None, &NoAttributes, Timestamp(0))
        .iter()
        .map(|t| (t.connector, t.tool, t.action, t.policy_id))
        .collect();
    assert_eq!(
        got,
        vec![
            ("github", "create_issue", Action::Allow, "p1"),
            ("slack", "post", Action::RequireApproval, "p4"),
            ("slack", "*", Action::StepUp, "p3"),
        ]
    );
    assert_eq!(
        snapshot
            .allowed_tools("u1", "a", Some("slack"), &NoAttributes, Timestamp(0))
            .len(),
        2
    );
    assert!(
        snapshot
            .allowed_tools("ghost", "a", None, &NoAttributes, Timestamp(0))
            .is_empty()
    );
    // Every listed tool agrees with decide().
    for t in snapshot.allowed_tools("u1", "a", None, &NoAttributes, Timestamp(0)) {
        let d = snapshot.decide(&request(
            "u1",
            t.connector,
            if t.tool == "*" { "unlisted" } else { t.tool },
        ));
        assert_eq!((d.action, d.policy_id), (t.action, Some(t.policy_id)));
    }
}

// ---- differential: random models and requests, snapshot against reference ----

const CONNECTORS: [&str; 3] = ["github", "slack", "drive"];
const TOOLS: [&str; 4] = ["read", "write", "delete", "*"];

fn arb_action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

fn arb_model() -> impl Strategy<Value = Model> {
    let users = prop::collection::vec(
        (
            prop::bool::weighted(0.85),
            prop::bool::weighted(0.15),
            0..4usize,
            0..4usize,
        ),
        3..8,
    );
    let groups = 0..5usize;
    let memberships = prop::collection::vec((0..6usize, 0..9usize), 0..16);
    let condition = (
        prop::sample::select(vec!["env", "ip"]),
        any::<bool>(),
        prop::sample::select(vec!["a", "b"]),
    )
        .prop_map(|(attribute, in_, value)| Condition {
            attribute: attribute.into(),
            operator: if in_ { Operator::In } else { Operator::NotIn },
            values: vec![value.into()],
        });
    let arb_policy = (
        0..3usize,
        prop::option::of(prop::collection::vec(
            prop::sample::select(TOOLS.to_vec()),
            1..3,
        )),
        (
            any::<bool>(),
            prop::collection::vec(0..9usize, 0..3),
            prop::collection::vec(0..6usize, 0..3),
        ),
        arb_action(),
        prop::bool::weighted(0.9),
        prop::collection::vec(condition, 0..2),
    );
    let policies = prop::collection::vec(arb_policy, 0..12);
    // Per policy: its agent selector and, for a Step up one, its requirement.
    let selectors = prop::collection::vec(
        (
            prop::option::weighted(
                0.3,
                prop::sample::subsequence(vec!["chatgpt", "claude", "ghost-agent"], 0..3),
            ),
            prop::option::weighted(0.8, arb_step_up()),
            prop::option::weighted(
                0.15,
                prop::sample::select(vec![
                    "request.attributes.env == 'a'",
                    "user.mfa || request.agent == 'claude'",
                    "size(user.groups) > 0 && user.email.endsWith('example.com')",
                    "request.tool.startsWith('w') && now.getHours() < 23",
                    // Evaluation errors: a missing key, a non-boolean.
                    "request.attributes.missing == 'x'",
                    "1 + 1",
                    // Does not compile.
                    "request.(",
                ]),
            ),
        ),
        12,
    );
    let agents = (
        prop::sample::subsequence(vec!["chatgpt", "claude", "copilot", "inhouse"], 0..5),
        prop::collection::vec(
            (
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.6),
                prop::collection::vec(0..9usize, 0..3),
                prop::collection::vec(0..6usize, 0..3),
            ),
            4,
        ),
        any::<bool>(),
    )
        .prop_map(|(ids, shapes, deny)| {
            let agents = ids
                .into_iter()
                .zip(shapes)
                .map(|(id, (enabled, all_users, users, groups))| Agent {
                    id: id.into(),
                    aliases: if id == "claude" {
                        vec!["claude-alias".into()]
                    } else {
                        Vec::new()
                    },
                    enabled,
                    scope: Scope {
                        all_users,
                        users: users.into_iter().map(|u| format!("u{u}")).collect(),
                        groups: groups.into_iter().map(|g| format!("g{g}")).collect(),
                    },
                    ..Agent::default()
                })
                .collect::<Vec<_>>();
            let settings = Settings {
                unregistered_agents: if deny {
                    Unregistered::Deny
                } else {
                    Unregistered::Allow
                },
            };
            (agents, settings)
        });
    (users, groups, memberships, policies, (selectors, agents)).prop_map(
        |(users, group_count, memberships, policies, (selectors, (agents, settings)))| {
            let users: Vec<User> = users
                .into_iter()
                .enumerate()
                .map(|(i, (active, locked, external, email_case))| {
                    let email = match email_case {
                        0 => format!("user{i}@example.com"),
                        1 => format!("User{i}@Example.com"),
                        // Fullwidth: the same login as `user{i}@example.com` once normalized.
                        2 => format!("ｕｓｅｒ{i}@example.com"),
                        // Users sharing an email: it names none of them.
                        _ => "shared@example.com".to_string(),
                    };
                    let external_id = match external {
                        0 => None,
                        // Another user's email as an external id: a collision across kinds.
                        1 => Some(format!("user{}@example.com", (i + 1) % 8)),
                        _ => Some(format!("ext-{i}")),
                    };
                    User {
                        active,
                        lock: locked.then(|| Lock {
                            at: Timestamp(1),
                            by: "a".into(),
                            reason: "r".into(),
                        }),
                        external_id,
                        ..user(&format!("u{i}"), &email)
                    }
                })
                .collect();
            Model {
                agents,
                settings,
                revision: 1,
                users,
                groups: (0..group_count).map(|g| group(&format!("g{g}"))).collect(),
                // Indexes past the end make dangling references on purpose.
                memberships: memberships
                    .into_iter()
                    .map(|(g, u)| member(&format!("g{g}"), &format!("u{u}")))
                    .collect(),
                policies: policies
                    .into_iter()
                    .zip(selectors)
                    .enumerate()
                    .map(
                        |(
                            i,
                            (
                                (
                                    connector,
                                    tools,
                                    (all_users, users, groups),
                                    action,
                                    enabled,
                                    conditions,
                                ),
                                (selector, step_up, expression),
                            ),
                        )| Policy {
                            expression: expression.map(String::from),
                            agents: match selector {
                                None => Agents::All,
                                Some(ids) => {
                                    Agents::Only(ids.into_iter().map(String::from).collect())
                                }
                            },
                            step_up: step_up.filter(|_| action == Action::StepUp),
                            id: format!("p{:02}", (i * 7) % 12),
                            connector: CONNECTORS[connector].into(),
                            tools: match tools {
                                None => Tools::All,
                                Some(t) => Tools::Only(t.into_iter().map(String::from).collect()),
                            },
                            scope: Scope {
                                all_users,
                                users: users.into_iter().map(|u| format!("u{u}")).collect(),
                                groups: groups.into_iter().map(|g| format!("g{g}")).collect(),
                            },
                            name: format!("policy {i}"),
                            action,
                            enabled,
                            conditions,
                            ..Policy::default()
                        },
                    )
                    .collect(),
            }
        },
    )
}

/// The agents a generated request may name: registered ids, an alias, unregistered names
/// (the empty string, a wrong case, a stranger).
const REQUEST_AGENTS: [&str; 8] = [
    "claude",
    "chatgpt",
    "copilot",
    "inhouse",
    "claude-alias",
    "",
    "CLAUDE",
    "shadow",
];

/// "Now" in generated requests; authentication times are before it.
const NOW: Timestamp = Timestamp(10_000_000_000);

/// What a generated request carries besides the user, connector, tool and attributes.
#[derive(Debug, Clone)]
struct Extra {
    agent: usize,
    authentication: Option<Authentication>,
    arguments: Option<Arguments>,
    /// A grant for the request's own call, with the fields flagged here changed (user, agent,
    /// connector, tool, arguments): some cover the call, most do not.
    grant: Option<[bool; 5]>,
    any_arguments: bool,
}

/// A grant as a test owns it.
#[derive(Debug, Clone)]
struct OwnedGrant {
    user_id: String,
    agent: String,
    connector: String,
    tool: String,
    digest: Option<String>,
}

impl OwnedGrant {
    fn borrowed(&self) -> Grant<'_> {
        Grant {
            user_id: &self.user_id,
            agent: &self.agent,
            connector: &self.connector,
            tool: &self.tool,
            arguments_digest: self.digest.as_deref(),
        }
    }
}

fn arb_extra() -> impl Strategy<Value = Extra> {
    let authentication = prop::option::of((
        prop::sample::select(vec!["mfa", "phr", "pwd"]),
        prop::sample::subsequence(vec!["hwk", "otp", "pwd"], 0..3),
        prop::sample::select(vec![30i64, 600, 7200]),
    ))
    .prop_map(|auth| {
        auth.map(|(acr, amr, age_s)| Authentication {
            acr: acr.into(),
            amr: amr.into_iter().map(String::from).collect(),
            auth_time: Some(Timestamp(NOW.0 - age_s * 1000)),
        })
    });
    let arguments = prop::option::of(prop::sample::select(vec!["a", "b"])).prop_map(|repo| {
        repo.map(|repo| {
            let mut args = Arguments::new();
            args.insert("repo".into(), serde_json::Value::String(repo.into()));
            args
        })
    });
    let grant = prop::option::of(prop::array::uniform5(prop::bool::weighted(0.15)));
    (
        0..REQUEST_AGENTS.len(),
        authentication,
        arguments,
        grant,
        any::<bool>(),
    )
        .prop_map(
            |(agent, authentication, arguments, grant, any_arguments)| Extra {
                agent,
                authentication,
                arguments,
                grant,
                any_arguments,
            },
        )
}

impl Extra {
    fn context<'a>(&'a self, grant: Option<&'a OwnedGrant>) -> Context<'a> {
        Context {
            authentication: self.authentication.as_ref(),
            arguments: self.arguments.as_ref(),
            now: NOW,
            grant: grant.map(OwnedGrant::borrowed),
        }
    }

    /// The grant for `user`'s call of `connector`/`tool`, changed where the flags say.
    fn grant(&self, user: &str, connector: &str, tool: &str) -> Option<OwnedGrant> {
        let [
            user_changed,
            agent_changed,
            connector_changed,
            tool_changed,
            args_changed,
        ] = self.grant?;
        let other = |changed: bool, value: &str| {
            if changed {
                format!("{value}-other")
            } else {
                value.to_owned()
            }
        };
        let digest = if args_changed {
            arguments_digest(None).replace('4', "5")
        } else {
            arguments_digest(self.arguments.as_ref())
        };
        Some(OwnedGrant {
            user_id: other(user_changed, user),
            agent: other(agent_changed, self.agent()),
            connector: other(connector_changed, connector),
            tool: other(tool_changed, tool),
            digest: (!self.any_arguments).then_some(digest),
        })
    }

    fn agent(&self) -> &'static str {
        REQUEST_AGENTS[self.agent]
    }
}

fn arb_step_up() -> impl Strategy<Value = StepUp> {
    (
        prop::sample::subsequence(vec!["mfa", "phr"], 0..3),
        prop::sample::subsequence(vec!["hwk", "otp"], 0..3),
        prop::option::of(prop::sample::select(vec![300u64, 3600])),
    )
        .prop_map(|(acr, amr, max_age)| StepUp {
            acr_values: acr.into_iter().map(String::from).collect(),
            amr_values: amr.into_iter().map(String::from).collect(),
            max_age,
        })
}

fn arb_request() -> impl Strategy<Value = (String, usize, String, Vec<(String, String)>)> {
    let user = prop_oneof![
        4 => (0..4usize).prop_map(|i| format!("u{i}")),
        1 => (0..9usize).prop_map(|i| format!("u{i}")),
        1 => (0..9usize).prop_map(|i| format!("ext-{i}")),
        1 => (0..9usize).prop_map(|i| format!("USER{i}@EXAMPLE.COM")),
        1 => Just("shared@Example.com".to_string()),
        1 => (0..9usize).prop_map(|i| format!("ＵＳＥＲ{i}@example.com")),
        1 => (0..9usize).prop_map(|i| format!("user{i}@example.com")),
        1 => Just("U1".to_string()),
    ];
    let tool = prop_oneof![
        prop::sample::select(TOOLS.to_vec()).prop_map(String::from),
        Just("unknown".to_string())
    ];
    let attrs = prop::collection::vec(
        (
            prop::sample::select(vec!["env", "ip"]),
            prop::sample::select(vec!["a", "b"]),
        )
            .prop_map(|(k, v)| (k.to_string(), v.to_string())),
        0..3,
    );
    (
        user,
        prop::sample::select(vec![0usize, 0, 1, 1, 2, 3]),
        tool,
        attrs,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_agrees_with_reference(model in arb_model(), requests in prop::collection::vec((arb_request(), arb_extra()), 1..24)) {
        let snapshot = Snapshot::build(&model);
        for ((user, connector, tool, attrs), extra) in &requests {
            let attrs: BTreeMap<String, String> = attrs.iter().cloned().collect();
            let connector = CONNECTORS.get(*connector).copied().unwrap_or("unknown");
            let grant = extra.grant(user, connector, tool);
            let req = Request { context: extra.context(grant.as_ref()), user, agent: extra.agent(), connector, tool, attributes: &attrs };
            prop_assert_eq!(snapshot.decide(&req), decide_reference(&model, &req), "{:?} {:?}", req, grant);
        }
    }

    /// The lock property: whatever keys users share, once the user a reference resolves to is
    /// locked, no request by that reference is allowed, before or after further changes.
    #[test]
    fn a_lock_by_any_key_denies_every_check_by_that_key(
        model in arb_model(),
        key in arb_request().prop_map(|r| r.0),
        rounds in prop::collection::vec(prop::collection::vec(arb_change(), 1..6), 0..4),
    ) {
        let mut model = model;
        model.policies = vec![policy("p1", "github", &["*"], Action::Allow)];
        let snapshot = Snapshot::build(&model);
        let Some(locked) = snapshot.decide(&request(&key, "github", "x")).user_id.map(String::from) else {
            return Ok(());
        };
        let lock = |model: &mut Model| {
            for u in model.users.iter_mut().filter(|u| u.id == locked) {
                u.lock = Some(Lock { at: Timestamp(1), by: "admin".into(), reason: "r".into() });
            }
        };
        let before = model.clone();
        lock(&mut model);
        model.revision = 2;
        let mut snapshot = snapshot.apply(2, &changes_between(&before, &model).borrowed(), &ModelDirectory(&model));
        for (round, ops) in rounds.iter().enumerate() {
            let before = model.clone();
            for op in ops {
                // Changes that touch the locked user's own keys or status are the IdP renaming
                // or an admin unlocking them: the reference then names someone else, rightly.
                if op.touches(&model, &locked) {
                    continue;
                }
                op.apply(&mut model);
            }
            model.revision = round as u64 + 3;
            snapshot = snapshot.apply(model.revision, &changes_between(&before, &model).borrowed(), &ModelDirectory(&model));
            for s in [&snapshot, &Snapshot::build(&model)] {
                let decision = s.decide(&request(&key, "github", "x"));
                prop_assert_eq!(decision.action, Action::Deny, "{:?} after {:?}", decision, ops);
            }
        }
    }

    /// A snapshot moved through rounds of random changes with [`Snapshot::apply`] decides,
    /// explains and lists tools like the reference (and a fresh build) on the model each
    /// round leaves.
    #[test]
    fn applied_changes_agree_with_reference(
        model in arb_model(),
        rounds in prop::collection::vec(prop::collection::vec(arb_change(), 1..8), 1..5),
        requests in prop::collection::vec((arb_request(), arb_extra()), 1..16),
    ) {
        let base = Snapshot::build(&model);
        let mut snapshot = base.clone();
        let mut model = model;
        for (round, ops) in rounds.iter().enumerate() {
            let before = model.clone();
            for op in ops {
                op.apply(&mut model);
            }
            model.revision = round as u64 + 10;
            let changes = changes_between(&before, &model);
            snapshot = snapshot.apply(model.revision, &changes.borrowed(), &ModelDirectory(&model));
            prop_assert_eq!(snapshot.revision(), model.revision);
            let rebuilt = Snapshot::build(&model);
            prop_assert_eq!(snapshot.user_count(), rebuilt.user_count());
            prop_assert_eq!(snapshot.policy_count(), rebuilt.policy_count());
            for ((user, connector, tool, attrs), extra) in &requests {
                let attrs: BTreeMap<String, String> = attrs.iter().cloned().collect();
                let connector = CONNECTORS.get(*connector).copied().unwrap_or("unknown");
                let grant = extra.grant(user, connector, tool);
                let req = Request { context: extra.context(grant.as_ref()), user, agent: extra.agent(), connector, tool, attributes: &attrs };
                prop_assert_eq!(snapshot.decide(&req), decide_reference(&model, &req), "{:?} after {:?}", req, ops);
                prop_assert_eq!(snapshot.explain(&req), rebuilt.explain(&req), "{:?}", req);
                prop_assert_eq!(
                    snapshot.allowed_tools(user, extra.agent(), None, &attrs, NOW),
                    rebuilt.allowed_tools(user, extra.agent(), None, &attrs, NOW)
                );
            }
        }
        // The base is untouched.
        prop_assert_eq!(base.pending_changes(), 0);
        prop_assert_eq!(base.revision(), 1);
    }
}

/// One random change to a model, in terms of positions and small numbers so that shrinking
/// stays meaningful.
#[derive(Debug, Clone)]
enum Change {
    Status(usize, u8),
    Member {
        user: usize,
        group: usize,
        add: bool,
    },
    /// A new user `u<n>`; `email` may collide with others' on purpose.
    AddUser {
        n: usize,
        email: usize,
        external: Option<usize>,
    },
    RemoveUser(usize),
    Keys {
        user: usize,
        email: usize,
        external: Option<usize>,
        user_name: Option<usize>,
    },
    AddGroup(usize),
    /// Removing a group; its memberships stay behind (dangling) or go with it.
    RemoveGroup {
        group: usize,
        drop_members: bool,
    },
    PutPolicy(usize, Box<Policy>),
    RemovePolicy(usize),
    /// The kill switch of the agent at this position, thrown or reset.
    ToggleAgent(usize),
    /// A new agent, its scope naming a user and a group (which may not exist).
    AddAgent {
        user: usize,
        group: usize,
    },
    /// The setting for unregistered agents flipped.
    FlipSetting,
}

fn arb_change() -> impl Strategy<Value = Change> {
    let policy =
        arb_model().prop_filter_map("a model with a policy", |m| m.policies.into_iter().next());
    prop_oneof![
        3 => (0..10usize, 0..3u8).prop_map(|(u, s)| Change::Status(u, s)),
        3 => (0..10usize, 0..7usize, any::<bool>()).prop_map(|(user, group, add)| Change::Member { user, group, add }),
        2 => (0..12usize, 0..12usize, prop::option::of(0..12usize))
            .prop_map(|(n, email, external)| Change::AddUser { n, email, external }),
        1 => (0..10usize).prop_map(Change::RemoveUser),
        2 => (0..10usize, 0..12usize, prop::option::of(0..12usize), prop::option::of(0..12usize))
            .prop_map(|(user, email, external, user_name)| Change::Keys { user, email, external, user_name }),
        1 => (0..7usize).prop_map(Change::AddGroup),
        1 => (0..7usize, any::<bool>()).prop_map(|(group, drop_members)| Change::RemoveGroup { group, drop_members }),
        2 => (0..14usize, policy).prop_map(|(n, p)| Change::PutPolicy(n, Box::new(p))),
        1 => (0..14usize).prop_map(Change::RemovePolicy),
        1 => (0..4usize).prop_map(Change::ToggleAgent),
        1 => (0..12usize, 0..7usize).prop_map(|(user, group)| Change::AddAgent { user, group }),
        1 => Just(Change::FlipSetting),
    ]
}

impl Change {
    /// Whether this change rewrites the keys or status of the user with this id, or removes
    /// them.
    fn touches(&self, model: &Model, id: &str) -> bool {
        let at = |i: usize| model.users.get(i).is_some_and(|u| u.id == id);
        match *self {
            Change::Status(i, _) | Change::RemoveUser(i) | Change::Keys { user: i, .. } => at(i),
            _ => false,
        }
    }

    fn apply(&self, model: &mut Model) {
        // Some external ids are others' emails: collisions across kinds of keys.
        let external_id = |x: usize| match x % 3 {
            0 => format!("user{x}@example.com"),
            _ => format!("ext-{x}"),
        };
        let email = |e: usize| match e % 4 {
            0 => "shared@example.com".to_string(),
            1 => format!("User{e}@Example.com"),
            _ => format!("user{e}@example.com"),
        };
        match *self {
            Change::Status(i, status) => {
                if let Some(u) = model.users.get_mut(i) {
                    match status {
                        0 => {
                            u.lock = None;
                            u.active = true;
                        }
                        1 => {
                            u.lock = None;
                            u.active = false;
                        }
                        _ => {
                            u.lock = Some(Lock {
                                at: Timestamp(0),
                                by: "t".into(),
                                reason: "t".into(),
                            })
                        }
                    }
                }
            }
            Change::Member { user, group, add } => {
                let user_id = format!("u{user}");
                let group_id = format!("g{group}");
                model
                    .memberships
                    .retain(|m| !(m.user_id == user_id && m.group_id == group_id));
                if add {
                    model.memberships.push(member(&group_id, &user_id));
                }
            }
            Change::AddUser {
                n,
                email: e,
                external,
            } => {
                let id = format!("u{n}");
                if model.users.iter().all(|u| u.id != id) {
                    model.users.push(User {
                        external_id: external.map(external_id),
                        ..user(&id, &email(e))
                    });
                }
            }
            Change::RemoveUser(i) => {
                if i < model.users.len() {
                    model.users.remove(i);
                }
            }
            Change::Keys {
                user,
                email: e,
                external,
                user_name,
            } => {
                if let Some(u) = model.users.get_mut(user) {
                    u.emails = vec![email(e)];
                    u.external_id = external.map(external_id);
                    // An id of another user as a user name or external id: shadowed by id.
                    u.user_name = user_name.map_or_else(|| email(e), |n| format!("u{n}"));
                }
            }
            Change::AddGroup(g) => {
                let id = format!("g{g}");
                if model.groups.iter().all(|x| x.id != id) {
                    model.groups.push(group(&id));
                }
            }
            Change::RemoveGroup {
                group,
                drop_members,
            } => {
                let id = format!("g{group}");
                model.groups.retain(|g| g.id != id);
                if drop_members {
                    model.memberships.retain(|m| m.group_id != id);
                }
            }
            Change::PutPolicy(n, ref policy) => {
                let id = format!("p{n:02}");
                let policy = Policy {
                    id: id.clone(),
                    ..(**policy).clone()
                };
                match model.policies.iter_mut().find(|p| p.id == id) {
                    Some(p) => *p = policy,
                    None => model.policies.push(policy),
                }
            }
            Change::RemovePolicy(n) => {
                let id = format!("p{n:02}");
                model.policies.retain(|p| p.id != id);
            }
            Change::ToggleAgent(i) => {
                if let Some(agent) = model.agents.get_mut(i) {
                    agent.enabled = !agent.enabled;
                }
            }
            Change::AddAgent { user, group } => {
                if model.agents.iter().all(|a| a.id != "copilot") {
                    model.agents.push(Agent {
                        id: "copilot".into(),
                        scope: Scope {
                            all_users: false,
                            users: vec![format!("u{user}")],
                            groups: vec![format!("g{group}")],
                        },
                        ..Agent::default()
                    });
                }
            }
            Change::FlipSetting => {
                model.settings.unregistered_agents = match model.settings.unregistered_agents {
                    Unregistered::Allow => Unregistered::Deny,
                    Unregistered::Deny => Unregistered::Allow,
                };
            }
        }
    }
}

/// A model as [`Snapshot::apply`] asks about it, by brute force.
struct ModelDirectory<'m>(&'m Model);

impl Directory for ModelDirectory<'_> {
    fn user(&self, id: &str) -> Option<&User> {
        self.0.users.iter().find(|u| u.id == id)
    }

    fn groups_of(&self, user_id: &str) -> Vec<&str> {
        self.0
            .memberships
            .iter()
            .filter(|m| m.user_id == user_id)
            .map(|m| m.group_id.as_str())
            .collect()
    }

    fn group_exists(&self, id: &str) -> bool {
        self.0.groups.iter().any(|g| g.id == id)
    }

    fn policy(&self, id: &str) -> Option<&Policy> {
        self.0.policies.iter().find(|p| p.id == id)
    }

    fn users_with_external_id(&self, key: &str) -> Matches<&str> {
        matches(
            self.0
                .users
                .iter()
                .filter(|u| u.external_id.as_deref() == Some(key)),
        )
    }

    fn agents(&self) -> Vec<&Agent> {
        self.0.agents.iter().collect()
    }

    fn settings(&self) -> Settings {
        self.0.settings
    }

    fn users_with_login(&self, key: &str) -> Matches<&str> {
        matches(self.0.users.iter().filter(|u| {
            u.emails
                .iter()
                .chain([&u.user_name])
                .any(|e| !e.is_empty() && normalize(e) == key)
        }))
    }
}

fn matches<'m>(mut users: impl Iterator<Item = &'m User>) -> Matches<&'m str> {
    match (users.next(), users.next()) {
        (None, _) => Matches::None,
        (Some(user), None) => Matches::One(&user.id),
        (Some(_), Some(_)) => Matches::Many,
    }
}

/// What changed between two models, exactly as [`Changes`] asks, owned.
struct OwnedChanges {
    users: Vec<(String, Option<User>)>,
    groups: Vec<String>,
    policies: Vec<String>,
    agents: bool,
}

impl OwnedChanges {
    fn borrowed(&self) -> Changes<'_> {
        Changes {
            users: self
                .users
                .iter()
                .map(|(id, before)| UserDelta {
                    id,
                    before: before.as_ref(),
                })
                .collect(),
            groups: self.groups.iter().map(String::as_str).collect(),
            policies: self.policies.iter().map(String::as_str).collect(),
            agents: self.agents,
        }
    }
}

fn changes_between(before: &Model, after: &Model) -> OwnedChanges {
    let groups_of = |model: &Model, id: &str| {
        let mut groups: Vec<String> = model
            .memberships
            .iter()
            .filter(|m| m.user_id == id && model.groups.iter().any(|g| g.id == m.group_id))
            .map(|m| m.group_id.clone())
            .collect();
        groups.sort();
        groups.dedup();
        groups
    };
    let mut users = Vec::new();
    let ids: std::collections::BTreeSet<&str> = before
        .users
        .iter()
        .chain(&after.users)
        .map(|u| u.id.as_str())
        .collect();
    for id in ids {
        let old = before.users.iter().find(|u| u.id == id);
        let new = after.users.iter().find(|u| u.id == id);
        if old != new || groups_of(before, id) != groups_of(after, id) {
            users.push((id.to_string(), old.cloned()));
        }
    }
    let group_ids: std::collections::BTreeSet<&str> = before
        .groups
        .iter()
        .chain(&after.groups)
        .map(|g| g.id.as_str())
        .collect();
    let groups = group_ids
        .into_iter()
        .filter(|id| {
            before.groups.iter().any(|g| g.id == *id) != after.groups.iter().any(|g| g.id == *id)
        })
        .map(String::from)
        .collect();
    let policy_ids: std::collections::BTreeSet<&str> = before
        .policies
        .iter()
        .chain(&after.policies)
        .map(|p| p.id.as_str())
        .collect();
    let policies = policy_ids
        .into_iter()
        .filter(|id| {
            before.policies.iter().find(|p| p.id == *id)
                != after.policies.iter().find(|p| p.id == *id)
        })
        .map(String::from)
        .collect();
    OwnedChanges {
        users,
        groups,
        policies,
        agents: before.agents != after.agents || before.settings != after.settings,
    }
}

/// Decides with both implementations, as `agent`, with `authentication` at [`NOW`].
fn as_agent(
    model: &Model,
    user: &str,
    agent: &str,
    authentication: Option<&Authentication>,
) -> (Action, Reason, Option<String>) {
    let req = Request {
        user,
        agent,
        connector: "github",
        tool: "x",
        attributes: &NoAttributes,
        context: Context {
            authentication,
            arguments: None,
            now: NOW,
            grant: None,
        },
    };
    let snapshot = Snapshot::build(model);
    let fast = snapshot.decide(&req);
    assert_eq!(fast, decide_reference(model, &req), "{req:?}");
    (fast.action, fast.reason, fast.policy_id.map(str::to_owned))
}

#[test]
fn the_agent_gate_and_agent_selectors() {
    let mut model = base_model();
    let agent = |id: &str, enabled: bool, users: &[&str]| Agent {
        id: id.into(),
        aliases: if id == "claude" {
            vec!["oauth-client-c093".into()]
        } else {
            Vec::new()
        },
        enabled,
        scope: Scope {
            all_users: users.is_empty(),
            users: users.iter().map(|u| u.to_string()).collect(),
            groups: Vec::new(),
        },
        ..Agent::default()
    };
    model.agents = vec![
        agent("claude", true, &[]),
        agent("copilot", false, &[]),
        agent("inhouse", true, &["u2"]),
    ];
    model.policies = vec![
        Policy {
            agents: Agents::Only(vec!["claude".into()]),
            ..policy("p1", "github", &["*"], Action::Allow)
        },
        policy("p2", "github", &["*"], Action::StepUp),
    ];
    let allow = |p: &str| (Action::Allow, Reason::Policy, Some(p.to_string()));
    let deny = |r| (Action::Deny, r, None);
    let step_up = (Action::StepUp, Reason::Policy, Some("p2".to_string()));
    // Claude, by id or alias, gets the policy for it; an allow ranks below the step-up for
    // everyone, so the step-up wins; without it, claude's own allow.
    assert_eq!(as_agent(&model, "u1", "claude", None), step_up);
    assert_eq!(as_agent(&model, "u1", "oauth-client-c093", None), step_up);
    model.policies.truncate(1);
    assert_eq!(as_agent(&model, "u1", "claude", None), allow("p1"));
    assert_eq!(
        as_agent(&model, "u1", "oauth-client-c093", None),
        allow("p1")
    );
    // Unregistered agents (a stranger, another case, the empty string) match only policies
    // for all agents; with the setting at deny they are refused.
    for stranger in ["chatgpt", "CLAUDE", ""] {
        assert_eq!(
            as_agent(&model, "u1", stranger, None),
            deny(Reason::NoMatchingPolicy)
        );
    }
    model.settings.unregistered_agents = Unregistered::Deny;
    assert_eq!(
        as_agent(&model, "u1", "chatgpt", None),
        deny(Reason::UnknownAgent)
    );
    assert_eq!(as_agent(&model, "u1", "", None), deny(Reason::UnknownAgent));
    // The kill switch, and an agent's scope.
    assert_eq!(
        as_agent(&model, "u1", "copilot", None),
        deny(Reason::AgentDisabled)
    );
    assert_eq!(
        as_agent(&model, "u1", "inhouse", None),
        deny(Reason::AgentNotAllowed)
    );
    assert_eq!(
        as_agent(&model, "u2", "inhouse", None),
        deny(Reason::NoMatchingPolicy)
    );
    // User checks come first.
    model.users[0].lock = Some(Lock {
        at: Timestamp(1),
        by: "a".into(),
        reason: "r".into(),
    });
    assert_eq!(
        as_agent(&model, "u1", "copilot", None),
        deny(Reason::UserLocked)
    );
}

#[test]
fn a_met_step_up_counts_as_an_allow() {
    let mut model = base_model();
    let requirement = StepUp {
        acr_values: vec!["phrh".into()],
        amr_values: vec!["hwk".into()],
        max_age: Some(300),
    };
    model.policies = vec![
        Policy {
            step_up: Some(requirement.clone()),
            ..policy("p1", "github", &["*"], Action::StepUp)
        },
        policy("p2", "github", &["*"], Action::Allow),
    ];
    let auth = |acr: &str, amr: &[&str], age_s: i64| Authentication {
        acr: acr.into(),
        amr: amr.iter().map(|m| m.to_string()).collect(),
        auth_time: Some(Timestamp(NOW.0 - age_s * 1000)),
    };
    let step_up = (Action::StepUp, Reason::Policy, Some("p1".to_string()));
    let met = (Action::Allow, Reason::StepUpMet, Some("p1".to_string()));
    // Met: an Allow, and the lower id among the Allows (p1 < p2) decides.
    assert_eq!(
        as_agent(&model, "u1", "a", Some(&auth("phrh", &["hwk", "pwd"], 30))),
        met
    );
    // Not met: another acr, a missing amr, too old, no authentication at all.
    for not_met in [
        auth("mfa", &["hwk"], 30),
        auth("phrh", &["pwd"], 30),
        auth("phrh", &["hwk"], 7200),
    ] {
        assert_eq!(as_agent(&model, "u1", "a", Some(&not_met)), step_up);
    }
    assert_eq!(as_agent(&model, "u1", "a", None), step_up);
    // The answer carries what the deciding policy requires.
    let snapshot = Snapshot::build(&model);
    let decision = snapshot.decide(&request("u1", "github", "x"));
    assert_eq!(decision.step_up, Some(&requirement));
    // An Allow of lower id wins the tie at Allow.
    model.policies[1].id = "p0".into();
    assert_eq!(
        as_agent(&model, "u1", "a", Some(&auth("phrh", &["hwk"], 30))),
        (Action::Allow, Reason::Policy, Some("p0".to_string()))
    );
    // A Step up policy without a requirement is never met.
    model.policies[0].step_up = None;
    model.policies.truncate(1);
    assert_eq!(
        as_agent(&model, "u1", "a", Some(&auth("phrh", &["hwk"], 30))),
        step_up
    );
}

#[test]
fn a_grant_for_exactly_the_call_turns_require_approval_into_allow() {
    let mut model = base_model();
    let mut approval = policy("p1", "github", &["delete_repo"], Action::RequireApproval);
    approval.approval_flow_id = Some("flow-1".into());
    model.policies = vec![approval, policy("p2", "github", &["archive"], Action::Deny)];
    let mut arguments = Arguments::new();
    arguments.insert("repo".into(), serde_json::json!("acme/old"));
    let digest = arguments_digest(Some(&arguments));
    let exact = OwnedGrant {
        user_id: "u1".into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "delete_repo".into(),
        digest: Some(digest.clone()),
    };
    let decide_in =
        |model: &Model, user: &str, tool: &str, grant: &OwnedGrant, args: Option<&Arguments>| {
            let mut req = request(user, "github", tool);
            req.context.arguments = args;
            req.context.grant = Some(grant.borrowed());
            both(model, &req)
        };
    let decide = |user: &str, tool: &str, grant: &OwnedGrant, args: Option<&Arguments>| {
        decide_in(&model, user, tool, grant, args)
    };
    let approved = (Action::Allow, Reason::Approved, Some("p1".to_owned()));
    let held = (
        Action::RequireApproval,
        Reason::Policy,
        Some("p1".to_owned()),
    );
    assert_eq!(
        decide("u1", "delete_repo", &exact, Some(&arguments)),
        approved
    );
    // The user by any key, as long as it resolves to the grant's user.
    assert_eq!(
        decide("ada@example.com", "delete_repo", &exact, Some(&arguments)),
        approved
    );
    // Any difference in the call: still held.
    assert_eq!(decide("u1", "delete_repo", &exact, None), held);
    assert_eq!(decide("u2", "delete_repo", &exact, Some(&arguments)), held);
    let mut other_agent = exact.clone();
    other_agent.agent = "chatgpt".into();
    assert_eq!(
        decide("u1", "delete_repo", &other_agent, Some(&arguments)),
        held
    );
    // A grant for any arguments covers other arguments, never another tool; a Deny stays one.
    let mut any = exact.clone();
    any.digest = None;
    assert_eq!(decide("u1", "delete_repo", &any, None), approved);
    let mut archive = any.clone();
    archive.tool = "archive".into();
    assert_eq!(
        decide("u1", "archive", &archive, None),
        (Action::Deny, Reason::Policy, Some("p2".to_owned()))
    );
    // The answer names the policy's flow.
    let snapshot = Snapshot::build(&model);
    let plain = snapshot.decide(&request("u1", "github", "delete_repo"));
    assert_eq!(plain.approval_flow, Some("flow-1"));
    // A locked user is denied whatever the grant.
    let mut locked = model.clone();
    locked.users[0].lock = Some(Lock {
        at: Timestamp(1),
        by: "admin".into(),
        reason: "test".into(),
    });
    assert_eq!(
        decide_in(&locked, "u1", "delete_repo", &exact, Some(&arguments)),
        (Action::Deny, Reason::UserLocked, None)
    );
}

#[test]
fn posting_lists_are_found_by_key_whatever_their_filter_bits() {
    use crate::snapshot::Postings;
    // 1, 513 and 1025 share a filter bit; 1537 shares it too and has no list.
    let lists = [
        (1, vec![0, 4]),
        (513, vec![2]),
        (1025, vec![1, 3, 5]),
        (7, vec![6]),
    ];
    let postings = Postings::new(lists.iter().cloned().collect());
    for (key, ranks) in &lists {
        assert_eq!(postings.get(*key), ranks.as_slice(), "key {key}");
    }
    for absent in [0, 2, 1537, 6, u32::MAX] {
        assert_eq!(postings.get(absent), &[] as &[u32], "key {absent}");
    }
    assert!(Postings::new(Default::default()).is_empty());
    assert_eq!(Postings::new(Default::default()).get(1), &[] as &[u32]);
}
