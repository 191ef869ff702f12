//! Reading: how a hand-written directory maps onto the model, and one exact message per
//! validation error.

use pdp::{Action, Lock, ManagedBy, Mfa, Role, Timestamp, Tools};
use std::path::Path;
use workload::read_dir;

const NOW: Timestamp = Timestamp(1_800_000_000_000);

const USERS: &str = concat!(
    r#"{"id":"u1","email":"Ann@Example.com","name":"Ann","created":"2026-01-05T12:34:56Z","active":true,"locked":false,"mfa":true,"department":"eng"}"#,
    "\n",
    r#"{"id":"u2","email":"bob@example.com","name":"Bob","created":"2026-01-05T14:34:56.5+02:00","active":false,"locked":true}"#,
    "\n",
    "\n",
    r#"{"id":"u3","email":"cy@example.com","name":"Cy","created":"2026-01-05T12:34:56Z","active":true,"locked":false,"mfa":null}"#,
    "\n",
);
const GROUPS: &str = concat!(
    r#"{"id":"g1","name":"eng","roles":["admin","read_only","admin"],"members":["u3","u1"]}"#,
    "\n",
    r#"{"id":"g2","name":"empty","roles":[],"members":[]}"#,
    "\n",
);
const POLICIES: &str = concat!(
    r#"{"id":"p1","name":"n","connector":"github","tools":["*"],"scope":{"all_users":false,"users":["u-deleted-1"],"groups":["g1","g-deleted-1"]},"action":"ALLOW","enabled":true}"#,
    "\n",
    r#"{"id":"p2","name":"n","connector":"github","tools":["a","b"],"scope":{"all_users":true,"users":[],"groups":[]},"action":"REQUIRE_APPROVAL","enabled":false}"#,
    "\n",
);
const REQUESTS: &str = concat!(
    r#"{"id":"r1","user":"ann@EXAMPLE.com","agent":"a","connector":"github","tool":"x","kind":"targeted","expected":{"decision":"ALLOW","reason":"POLICY","policy_id":"p1"}}"#,
    "\n",
    r#"{"id":"r2","user":"nobody","agent":"a","connector":"github","tool":"x","kind":"unknown_user","expected":{"decision":"DENY","reason":"UNKNOWN_USER"}}"#,
    "\n",
);

fn write(dir: &Path, files: [(&str, &str); 4]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn base(dir: &Path) {
    write(
        dir,
        [
            ("users.jsonl", USERS),
            ("groups.jsonl", GROUPS),
            ("policies.jsonl", POLICIES),
            ("requests.jsonl", REQUESTS),
        ],
    );
}

#[test]
fn a_hand_written_directory_maps_onto_the_model() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    let model = &workload.model;

    assert_eq!(model.users.len(), 3);
    let ann = &model.users[0];
    assert_eq!(ann.user_name, "Ann@Example.com");
    assert_eq!(ann.emails, ["Ann@Example.com"]);
    assert_eq!(ann.display_name, "Ann");
    assert_eq!(ann.created_at, Timestamp(1_767_616_496_000));
    assert_eq!(ann.updated_at, ann.created_at);
    assert_eq!(
        (ann.active, ann.lock.is_none(), ann.mfa),
        (true, true, Mfa::Enabled)
    );
    let bob = &model.users[1];
    assert_eq!(
        bob.created_at,
        Timestamp(1_767_616_496_500),
        "offset normalised to UTC"
    );
    assert_eq!(
        bob.lock,
        Some(Lock {
            at: NOW,
            by: "import".into(),
            reason: "locked in the imported directory".into()
        })
    );
    assert_eq!((bob.active, bob.mfa), (false, Mfa::Unknown));
    assert_eq!(model.users[2].mfa, Mfa::Unknown, "null mfa");

    let g1 = &model.groups[0];
    assert_eq!(g1.display_name, "eng");
    assert_eq!(g1.roles, [Role::Admin, Role::ReadOnly]);
    assert_eq!(g1.managed_by, ManagedBy::External);
    assert_eq!((g1.created_at, g1.updated_at), (NOW, NOW));
    let members: Vec<(&str, &str)> = model
        .memberships
        .iter()
        .map(|m| (m.group_id.as_str(), m.user_id.as_str()))
        .collect();
    assert_eq!(members, [("g1", "u3"), ("g1", "u1")]);
    assert!(model.memberships.iter().all(|m| m.joined_at == NOW));

    let (p1, p2) = (&model.policies[0], &model.policies[1]);
    assert_eq!(p1.tools, Tools::All);
    assert_eq!(
        p1.scope.groups,
        ["g1", "g-deleted-1"],
        "dangling references are kept"
    );
    assert_eq!(p2.tools, Tools::Only(vec!["a".into(), "b".into()]));
    assert_eq!((p2.action, p2.enabled), (Action::RequireApproval, false));

    assert_eq!(workload.requests.len(), 2);
    assert_eq!(workload.requests[1].expected.policy_id, None);

    // The engine agrees with the hand-written answers.
    let snapshot = pdp::Snapshot::build(model);
    for r in &workload.requests {
        let request = pdp::Request {
            context: Default::default(),
            user: &r.user,
            agent: &r.agent,
            connector: &r.connector,
            tool: &r.tool,
            attributes: &pdp::NoAttributes,
        };
        assert_eq!(
            workload::Expected::from(snapshot.decide(&request)),
            r.expected
        );
    }
}

#[test]
fn requests_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    std::fs::remove_file(dir.path().join("requests.jsonl")).unwrap();
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    assert!(workload.requests.is_empty());
    assert_eq!(workload.model.users.len(), 3);
}

#[test]
fn crlf_and_a_byte_order_mark_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let expected = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    std::fs::write(
        dir.path().join("users.jsonl"),
        format!("\u{feff}{}", USERS.replace('\n', "\r\n")),
    )
    .unwrap();
    assert_eq!(read_dir(dir.path(), NOW, &mut |_| {}).unwrap(), expected);
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    std::fs::remove_file(dir.path().join("groups.jsonl")).unwrap();
    let err = read_dir(dir.path(), NOW, &mut |_| {})
        .unwrap_err()
        .to_string();
    let path = dir.path().join("groups.jsonl");
    assert!(
        err.starts_with(&format!("cannot read `{}`: ", path.display())),
        "{err}"
    );
}

/// Replaces line `line` (1-based) of `file` in the base directory, or appends when it is past
/// the end, and returns the first problem's message (later ones may follow from it: a group
/// naming the user whose line is bad).
fn error_with(file: &str, line: usize, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let path = dir.path().join(file);
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    if line <= lines.len() {
        lines[line - 1] = text.to_owned();
    } else {
        lines.push(text.to_owned());
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    match read_dir(dir.path(), NOW, &mut |_| {}) {
        Ok(_) => panic!("{file}:{line} `{text}` was accepted"),
        Err(err) => err.problems()[0].to_string(),
    }
}

const U: &str = r#""name":"X","created":"2026-01-05T12:34:56Z","active":true,"locked":false"#;

#[test]
fn user_errors() {
    let cases = [
        (1, r#"{"id":"u1","#.to_owned(), "users.jsonl:1: malformed JSON: EOF while parsing a value at column 11"),
        (1, r#"{"id":"u1" "email":"x@example.com"}"#.to_owned(), "users.jsonl:1: malformed JSON: expected `,` or `}` at column 12"),
        (1, "[1, 2]".to_owned(), "users.jsonl:1: malformed JSON: expected an object, found an array"),
        (2, format!(r#"{{"id":"u2",{U}}}"#), "users.jsonl:2: email: missing"),
        (2, format!(r#"{{"id":"u2","email":null,{U}}}"#), "users.jsonl:2: email: missing"),
        (2, format!(r#"{{"email":"x@example.com",{U}}}"#), "users.jsonl:2: id: missing"),
        (2, format!(r#"{{"id":"","email":"x@example.com",{U}}}"#), "users.jsonl:2: id: empty"),
        (2, format!(r#"{{"id":7,"email":"x@example.com",{U}}}"#), "users.jsonl:2: id: expected a string, found a number"),
        (5, format!(r#"{{"id":"u1","email":"x@example.com",{U}}}"#), "users.jsonl:5: id: duplicate id `u1`, first on line 1"),
        (2, r#"{"id":"u2","email":"x@example.com","name":"X","created":"2026-13-05T12:34:56Z","active":true,"locked":false}"#.to_owned(),
            "users.jsonl:2: created: invalid RFC 3339 timestamp `2026-13-05T12:34:56Z`"),
        (2, r#"{"id":"u2","email":"x@example.com","name":"X","created":"2026-01-05","active":true,"locked":false}"#.to_owned(),
            "users.jsonl:2: created: invalid RFC 3339 timestamp `2026-01-05`"),
        (2, r#"{"id":"u2","email":"x@example.com","name":"X","created":1767616496,"active":true,"locked":false}"#.to_owned(),
            "users.jsonl:2: created: expected a string, found a number"),
        (2, r#"{"id":"u2","email":"x@example.com","name":"X","created":"2026-01-05T12:34:56Z","active":"yes","locked":false}"#.to_owned(),
            "users.jsonl:2: active: expected a boolean, found a string"),
        (2, r#"{"id":"u2","email":"x@example.com","name":"X","created":"2026-01-05T12:34:56Z","active":true}"#.to_owned(),
            "users.jsonl:2: locked: missing"),
        (2, format!(r#"{{"id":"u2","email":"x@example.com",{U},"mfa":"yes"}}"#), "users.jsonl:2: mfa: expected a boolean, found a string"),
        (2, format!(r#"{{"id":"u2","id":"u3","email":"x@example.com",{U}}}"#), "users.jsonl:2: malformed JSON: duplicate field `id` at column 15"),
        // An email names one user (it is the user name), compared as decisions compare it.
        (4, format!(r#"{{"id":"u4","email":"ANN@example.com",{U}}}"#),
            "users.jsonl:4: email: `ANN@example.com` is already the email of the user on line 1"),
        (4, format!(r#"{{"id":"u4","email":"ａｎｎ@example.com",{U}}}"#),
            "users.jsonl:4: email: `ａｎｎ@example.com` is already the email of the user on line 1"),
        (4, format!(r#"{{"id":"u4","email":"ann\u200b@example.com",{U}}}"#),
            "users.jsonl:4: email: must not contain U+200B: control, invisible and format characters are refused"),
        (4, format!(r#"{{"id":"u4","email":"ann@example.com ",{U}}}"#),
            "users.jsonl:4: email: must not begin or end with whitespace"),
        (2, format!(r#"{{"id":"u2","email":"x",{U}}}"#),
            "users.jsonl:2: email: `x` is not an email address (expected `local@domain`)"),
    ];
    for (line, text, want) in cases {
        assert_eq!(error_with("users.jsonl", line, &text), want, "{text}");
    }
}

#[test]
fn group_errors() {
    let cases = [
        (
            1,
            r#"{"id":"g1","name":"eng","roles":["owner"],"members":[]}"#,
            "groups.jsonl:1: roles: unknown role `owner`, expected admin or read_only",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":"admin","members":[]}"#,
            "groups.jsonl:1: roles: expected an array of strings, found a string",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","members":[]}"#,
            "groups.jsonl:1: roles: missing",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":[]}"#,
            "groups.jsonl:1: members: missing",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":[],"members":["u1","u999"]}"#,
            "groups.jsonl:1: members: unknown user `u999`",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":[],"members":["U1"]}"#,
            "groups.jsonl:1: members: unknown user `U1`",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":[],"members":["u1","u3","u1"]}"#,
            "groups.jsonl:1: members: duplicate member `u1`",
        ),
        (
            1,
            r#"{"id":"g1","name":"eng","roles":[],"members":["u1",3]}"#,
            "groups.jsonl:1: members[1]: expected a string, found a number",
        ),
        (
            2,
            r#"{"id":"g1","name":"again","roles":[],"members":[]}"#,
            "groups.jsonl:2: id: duplicate id `g1`, first on line 1",
        ),
        (
            2,
            r#"{"id":"","name":"x","roles":[],"members":[]}"#,
            "groups.jsonl:2: id: empty",
        ),
        (
            2,
            r#"{"id":"g2","roles":[],"members":[]}"#,
            "groups.jsonl:2: name: missing",
        ),
    ];
    for (line, text, want) in cases {
        assert_eq!(error_with("groups.jsonl", line, text), want, "{text}");
    }
}

fn policy(fields: &str) -> String {
    let mut all = serde_json::json!({
        "id": "p3", "name": "n", "connector": "github", "tools": ["a"],
        "scope": {"all_users": false, "users": [], "groups": []},
        "action": "ALLOW", "enabled": true,
    });
    let changes: serde_json::Value = serde_json::from_str(fields).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            all.as_object_mut().unwrap().remove(key);
        } else {
            all[key] = value.clone();
        }
    }
    all.to_string()
}

#[test]
fn policy_errors() {
    let cases = [
        (
            r#"{"action":"MAYBE"}"#,
            "policies.jsonl:3: action: unknown action `MAYBE`, expected ALLOW, STEP_UP, REQUIRE_APPROVAL or DENY",
        ),
        // `allow` (an older spelling) is read; an unspecified gRPC action is not an action.
        (
            r#"{"action":"POLICY_ACTION_UNSPECIFIED"}"#,
            "policies.jsonl:3: action: unknown action `POLICY_ACTION_UNSPECIFIED`, expected ALLOW, STEP_UP, REQUIRE_APPROVAL or DENY",
        ),
        (r#"{"action":null}"#, "policies.jsonl:3: action: missing"),
        (
            r#"{"tools":[]}"#,
            "policies.jsonl:3: tools: empty, expected tool names or `*`",
        ),
        (r#"{"tools":["a",""]}"#, "policies.jsonl:3: tools[1]: empty"),
        (
            r#"{"tools":"*"}"#,
            "policies.jsonl:3: tools: expected an array of strings, found a string",
        ),
        (r#"{"connector":""}"#, "policies.jsonl:3: connector: empty"),
        (
            r#"{"connector":null}"#,
            "policies.jsonl:3: connector: missing",
        ),
        (r#"{"scope":null}"#, "policies.jsonl:3: scope: missing"),
        (
            r#"{"scope":[]}"#,
            "policies.jsonl:3: scope: expected an object, found an array",
        ),
        (
            r#"{"scope":{"all_users":false,"groups":[]}}"#,
            "policies.jsonl:3: scope.users: missing",
        ),
        (
            r#"{"scope":{"all_users":"no","users":[],"groups":[]}}"#,
            "policies.jsonl:3: scope.all_users: expected a boolean, found a string",
        ),
        (
            r#"{"scope":{"all_users":false,"users":[],"groups":[1]}}"#,
            "policies.jsonl:3: scope.groups[0]: expected a string, found a number",
        ),
        (
            r#"{"enabled":1}"#,
            "policies.jsonl:3: enabled: expected a boolean, found a number",
        ),
        (
            r#"{"id":"p1"}"#,
            "policies.jsonl:3: id: duplicate id `p1`, first on line 1",
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(
            error_with("policies.jsonl", 3, &policy(fields)),
            want,
            "{fields}"
        );
    }
    // Scopes may name users and groups that do not exist; unknown keys are ignored.
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let extra = policy(
        r#"{"scope":{"all_users":false,"users":["ghost"],"groups":["nope"]},"owner":"sec"}"#,
    );
    std::fs::write(
        dir.path().join("policies.jsonl"),
        format!("{POLICIES}{extra}\n"),
    )
    .unwrap();
    assert_eq!(
        read_dir(dir.path(), NOW, &mut |_| {})
            .unwrap()
            .model
            .policies
            .len(),
        3
    );
}

const R: &str = r#""user":"u1","agent":"a","connector":"github","tool":"x","kind":"random""#;

#[test]
fn request_errors() {
    let cases = [
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"ALLOW","reason":"MAYBE"}}}}"#),
            "requests.jsonl:3: expected.reason: unknown reason `MAYBE`, expected POLICY, STEP_UP_MET, NO_MATCHING_POLICY, USER_LOCKED, USER_INACTIVE, UNKNOWN_USER, AMBIGUOUS_USER, UNKNOWN_AGENT, AGENT_DISABLED or AGENT_NOT_ALLOWED"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"STEP_UP","reason":"STEP_UP_MET","policy_id":"p1"}}}}"#),
            "requests.jsonl:3: expected.decision: must be ALLOW when the reason is `STEP_UP_MET`"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"ALLOW","reason":"STEP_UP_MET"}}}}"#),
            "requests.jsonl:3: expected.policy_id: missing, reason STEP_UP_MET needs it"),
        (format!(r#"{{"id":"r3",{R},"authentication":{{"acr":"mfa","amr":[],"auth_age_s":-5}},"expected":{{"decision":"DENY","reason":"UNKNOWN_USER"}}}}"#),
            "requests.jsonl:3: authentication.auth_age_s: expected a non-negative integer, found a number"),
        (format!(r#"{{"id":"r3",{R},"authentication":{{"acr":"mfa","amr":"pwd"}},"expected":{{"decision":"DENY","reason":"UNKNOWN_USER"}}}}"#),
            "requests.jsonl:3: authentication.amr: expected an array of strings, found a string"),
        (format!(r#"{{"id":"r3",{R},"arguments":[1],"expected":{{"decision":"DENY","reason":"UNKNOWN_USER"}}}}"#),
            "requests.jsonl:3: arguments: expected an object, found an array"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"NO","reason":"POLICY","policy_id":"p1"}}}}"#),
            "requests.jsonl:3: expected.decision: unknown action `NO`, expected ALLOW, STEP_UP, REQUIRE_APPROVAL or DENY"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"ALLOW","reason":"POLICY"}}}}"#),
            "requests.jsonl:3: expected.policy_id: missing, reason POLICY needs it"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"DENY","reason":"USER_LOCKED","policy_id":"p1"}}}}"#),
            "requests.jsonl:3: expected.policy_id: must be null when the reason is `USER_LOCKED`"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"ALLOW","reason":"NO_MATCHING_POLICY","policy_id":null}}}}"#),
            "requests.jsonl:3: expected.decision: must be DENY when the reason is `NO_MATCHING_POLICY`"),
        (format!(r#"{{"id":"r3",{R},"expected":{{"decision":"DENY","reason":"POLICY","policy_id":7}}}}"#),
            "requests.jsonl:3: expected.policy_id: expected a string, found a number"),
        (format!(r#"{{"id":"r3",{R}}}"#), "requests.jsonl:3: expected: missing"),
        (format!(r#"{{"id":"r1",{R},"expected":{{"decision":"DENY","reason":"UNKNOWN_USER"}}}}"#),
            "requests.jsonl:3: id: duplicate id `r1`, first on line 1"),
        (r#"{"id":"r3","user":"u1","agent":"a","connector":"github","tool":"x","expected":{"decision":"DENY","reason":"UNKNOWN_USER"}}"#.to_owned(),
            "requests.jsonl:3: kind: missing"),
        (r#"{"id":"r3","user":"u1","agent":"a","connector":["github"],"tool":"x","kind":"k","expected":{"decision":"DENY","reason":"UNKNOWN_USER"}}"#.to_owned(),
            "requests.jsonl:3: connector: expected a string, found an array"),
    ];
    for (text, want) in cases {
        assert_eq!(error_with("requests.jsonl", 3, &text), want, "{text}");
    }
}

#[test]
fn read_requests_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.jsonl");
    std::fs::write(&path, format!("{REQUESTS}\n{{\"id\":\"r9\"}}\n")).unwrap();
    assert_eq!(
        workload::read_requests(&path).unwrap_err().to_string(),
        "mine.jsonl:4: user: missing"
    );
    std::fs::write(&path, REQUESTS).unwrap();
    assert_eq!(workload::read_requests(&path).unwrap().len(), 2);
}

#[test]
fn export_refuses_what_the_format_cannot_say() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let mut model = read_dir(dir.path(), NOW, &mut |_| {}).unwrap().model;
    model.policies[0].conditions.push(pdp::Condition {
        attribute: "env".into(),
        operator: pdp::Operator::In,
        values: vec!["prod".into()],
    });
    assert_eq!(
        workload::Files::from_model(&model).unwrap_err().to_string(),
        "cannot export policy `p1`: conditions cannot be expressed in the workload format"
    );
    model.policies[0].conditions.clear();

    model.policies[0].agents = pdp::Agents::Only(Vec::new());
    assert_eq!(
        workload::Files::from_model(&model).unwrap_err().to_string(),
        "cannot export policy `p1`: an empty agent list cannot be expressed in the workload format"
    );
    model.policies[0].agents = pdp::Agents::All;

    // p2 requires approval: a requirement on it is never read, and is dropped.
    model.policies[1].step_up = Some(pdp::StepUp::default());
    let files = workload::Files::from_model(&model).unwrap();
    assert_eq!(files.policies[1].step_up, None);
    model.policies[1].action = Action::StepUp;
    assert_eq!(
        workload::Files::from_model(&model).unwrap_err().to_string(),
        "cannot export policy `p2`: an empty step-up requirement cannot be expressed in the workload format"
    );
}

const FLOWS: &str = concat!(
    r#"{"id":"f1","name":"Deploys","steps":[{"approvers":["manager"],"min_approvals":1,"timeout_s":1800},{"approvers":["group:g1","user:ANN@example.com","admins"],"min_approvals":2}],"grant":"window","window_s":3600,"any_arguments":true}"#,
    "\n",
    r#"{"id":"f2","name":"Once","description":"d","steps":[{"approvers":["user:u3"],"min_approvals":1}],"request_ttl_s":600}"#,
    "\n",
);

#[test]
fn managers_and_approval_flows_map_onto_the_model_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    // Managers by id or email, a later line too.
    let users = USERS
        .replacen(
            r#""mfa":true,"#,
            r#""mfa":true,"manager":"CY@example.com","#,
            1,
        )
        .replacen(r#""locked":true}"#, r#""locked":true,"manager":"u1"}"#, 1);
    std::fs::write(dir.path().join("users.jsonl"), users).unwrap();
    std::fs::write(dir.path().join("approval_flows.jsonl"), FLOWS).unwrap();
    let policies = POLICIES.replacen(
        r#""action":"REQUIRE_APPROVAL","#,
        r#""action":"REQUIRE_APPROVAL","approval_flow":"f1","#,
        1,
    );
    std::fs::write(dir.path().join("policies.jsonl"), policies).unwrap();
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    let manager = |id: &str| {
        workload
            .model
            .users
            .iter()
            .find(|u| u.id == id)
            .unwrap()
            .manager
            .clone()
    };
    assert_eq!(manager("u1").as_deref(), Some("u3"));
    assert_eq!(manager("u2").as_deref(), Some("u1"));
    assert_eq!(manager("u3"), None);
    assert_eq!(
        workload.model.policies[1].approval_flow_id.as_deref(),
        Some("f1")
    );
    let f1 = &workload.flows[0];
    assert_eq!(f1.id, "f1");
    assert_eq!(f1.steps[0].timeout_secs, Some(1800));
    assert_eq!(
        f1.steps[1].approvers,
        [
            pdp::Approver::Group("g1".into()),
            pdp::Approver::User("u1".into()),
            pdp::Approver::Admins
        ]
    );
    assert_eq!(f1.grant, pdp::GrantMode::Window { seconds: 3600 });
    assert!(f1.any_arguments);
    assert_eq!(f1.created_at, NOW);
    let f2 = &workload.flows[1];
    assert_eq!(f2.grant, pdp::GrantMode::Once);
    assert_eq!(f2.request_ttl_secs, 600);
    assert_eq!(f2.description, "d");
}

#[test]
fn manager_and_flow_errors() {
    let cases = [
        (
            2,
            format!(r#"{{"id":"u2","email":"x@example.com",{U},"manager":"nobody"}}"#),
            "users.jsonl:2: manager: unknown user `nobody`, not an id or email in users.jsonl",
        ),
        (
            2,
            format!(r#"{{"id":"u2","email":"x@example.com",{U},"manager":"u2"}}"#),
            "users.jsonl:2: manager: a user cannot be their own manager",
        ),
        (
            2,
            format!(r#"{{"id":"u2","email":"x@example.com",{U},"manager":""}}"#),
            "users.jsonl:2: manager: empty",
        ),
        (
            2,
            format!(r#"{{"id":"u2","email":"x@example.com",{U},"manager":7}}"#),
            "users.jsonl:2: manager: expected a string, found a number",
        ),
    ];
    for (line, text, want) in cases {
        assert_eq!(error_with("users.jsonl", line, &text), want, "{text}");
    }
    let step = r#"{"approvers":["manager"],"min_approvals":1}"#;
    let flow_cases = [
        (r#"{"id":"f1","name":"n","steps":[]}"#.to_owned(), "approval_flows.jsonl:1: steps: empty, expected at least one step"),
        (r#"{"id":"f1","name":"n"}"#.to_owned(), "approval_flows.jsonl:1: steps: missing"),
        (format!(r#"{{"id":"builtin-admins","name":"n","steps":[{step}]}}"#), "approval_flows.jsonl:1: id: `builtin-admins` is the built-in flow's id"),
        (format!(r#"{{"id":"f1","steps":[{step}]}}"#), "approval_flows.jsonl:1: name: missing"),
        (r#"{"id":"f1","name":"n","steps":[{"approvers":[],"min_approvals":1}]}"#.to_owned(),
            "approval_flows.jsonl:1: steps[0].approvers: empty, expected at least one approver"),
        (r#"{"id":"f1","name":"n","steps":[{"approvers":["manager"]}]}"#.to_owned(),
            "approval_flows.jsonl:1: steps[0].min_approvals: missing"),
        (format!(r#"{{"id":"f1","name":"n","steps":[{step},{{"approvers":["manager","boss"],"min_approvals":1}}]}}"#),
            "approval_flows.jsonl:1: steps[1].approvers[1]: `boss` is not user:<id or email>, group:<id>, manager or admins"),
        (r#"{"id":"f1","name":"n","steps":[{"approvers":["user:nobody@example.com"],"min_approvals":1}]}"#.to_owned(),
            "approval_flows.jsonl:1: steps[0].approvers[0]: unknown user `nobody@example.com`, not an id or email in users.jsonl"),
        (r#"{"id":"f1","name":"n","steps":[{"approvers":["group:g9"],"min_approvals":1}]}"#.to_owned(),
            "approval_flows.jsonl:1: steps[0].approvers[0]: unknown group `g9`, not an id in groups.jsonl"),
        (format!(r#"{{"id":"f1","name":"n","steps":[{step}],"grant":"window"}}"#), "approval_flows.jsonl:1: window_s: missing, `window` needs it"),
        (format!(r#"{{"id":"f1","name":"n","steps":[{step}],"window_s":5}}"#), "approval_flows.jsonl:1: window_s: only a `window` grant has a window"),
        (format!(r#"{{"id":"f1","name":"n","steps":[{step}],"grant":"forever"}}"#), "approval_flows.jsonl:1: grant: unknown grant `forever`, expected once or window"),
        (format!(r#"{{"id":"f1","name":"n","steps":[{step}],"request_ttl_s":-1}}"#), "approval_flows.jsonl:1: request_ttl_s: expected a non-negative integer, found a number"),
        (format!(r#"{{"id":"f2","name":"n","steps":[{step}]}}"#), "approval_flows.jsonl:2: id: duplicate id `f2`, first on line 1"),
    ];
    for (text, want) in flow_cases {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        let lines = if want.contains(":2:") {
            format!("{text}\n{text}\n")
        } else {
            format!("{text}\n")
        };
        std::fs::write(dir.path().join("approval_flows.jsonl"), lines).unwrap();
        match read_dir(dir.path(), NOW, &mut |_| {}) {
            Ok(_) => panic!("`{text}` was accepted"),
            Err(err) => assert_eq!(err.to_string(), want, "{text}"),
        }
    }
    // Policies name flows of the file (or the built-in one), on REQUIRE_APPROVAL only.
    let policy_cases = [
        (
            r#""action":"REQUIRE_APPROVAL","approval_flow":"f9""#,
            "policies.jsonl:2: approval_flow: unknown flow `f9`, not an id in approval_flows.jsonl (nor builtin-admins)",
        ),
        (
            r#""action":"ALLOW","approval_flow":"builtin-admins""#,
            "policies.jsonl:2: approval_flow: only a REQUIRE_APPROVAL policy names an approval flow, this one is ALLOW",
        ),
    ];
    for (fields, want) in policy_cases {
        let text = POLICIES
            .lines()
            .nth(1)
            .unwrap()
            .replace(r#""action":"REQUIRE_APPROVAL""#, fields);
        assert_eq!(error_with("policies.jsonl", 2, &text), want, "{fields}");
    }
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let builtin = POLICIES.replacen(
        r#""action":"REQUIRE_APPROVAL","#,
        r#""action":"REQUIRE_APPROVAL","approval_flow":"builtin-admins","#,
        1,
    );
    std::fs::write(dir.path().join("policies.jsonl"), builtin).unwrap();
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    assert_eq!(
        workload.model.policies[1].approval_flow_id.as_deref(),
        Some("builtin-admins")
    );
}

/// Every bad line is listed, in file order, not only the first; a good line after a bad one is
/// still read.
#[test]
fn every_problem_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let path = dir.path().join("users.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("{{\"id\":\"u8\",\"email\":\"x\",{U}}}\n"));
    text.push_str(&format!(
        "{{\"id\":\"u9\",\"email\":\"u9@example.com\",{U}}}\n"
    ));
    text.push_str(&format!(
        "{{\"id\":\"u9\",\"email\":\"u9b@example.com\",{U}}}\n"
    ));
    std::fs::write(&path, text).unwrap();
    let err = read_dir(dir.path(), NOW, &mut |_| {}).unwrap_err();
    let lines: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(": email: `x` is not an email address"),
        "{lines:?}"
    );
    assert!(lines[1].contains(": id: duplicate id `u9`"), "{lines:?}");
    assert_eq!(err.to_string(), lines.join("\n"));
}

/// Reading stops at the 100th problem and says so.
#[test]
fn problems_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let path = dir.path().join("users.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for i in 0..150 {
        text.push_str(&format!("{{\"id\":\"bad{i}\",\"email\":\"x\",{U}}}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let err = read_dir(dir.path(), NOW, &mut |_| {}).unwrap_err();
    assert!(matches!(
        err,
        workload::Error::Problems { stopped: true, .. }
    ));
    assert_eq!(err.problems().len(), workload::MAX_PROBLEMS);
    assert!(
        err.to_string()
            .ends_with("stopped after 100 problems; there may be more")
    );
}

/// Files in memory read exactly as the same files in a directory.
#[test]
fn files_in_memory_read_as_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read(entry.path()).unwrap());
    }
    let in_memory = workload::read(workload::Source::Files(&files), NOW, &mut |_| {}).unwrap();
    assert_eq!(in_memory, read_dir(dir.path(), NOW, &mut |_| {}).unwrap());
}
