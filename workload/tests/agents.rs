//! Agents, the setting, agent selectors, step-up requirements, expressions and requests'
//! authentication and arguments: how they map onto the model, the round trip, and one exact
//! message per validation error.

use pdp::{Action, Agents, Authentication, StepUp, Timestamp, Unregistered};
use std::path::Path;
use workload::{Files, read_dir, write_dir};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

const AGENTS: &str = concat!(
    r#"{"id":"chatgpt","name":"ChatGPT","vendor":"OpenAI","aliases":["chat-gpt"],"enabled":false,"scope":{"all_users":true,"users":[],"groups":[]}}"#,
    "\n",
    r#"{"id":"claude","name":"Claude","vendor":"Anthropic","aliases":["claude-ai","oauth-client-c093"],"enabled":true,"scope":{"all_users":false,"users":["u1"],"groups":["g1"]}}"#,
    "\n",
);
const USERS: &str = concat!(
    r#"{"id":"u1","email":"ann@example.com","name":"Ann","created":"2026-01-05T12:34:56Z","active":true,"locked":false,"mfa":true}"#,
    "\n",
);
const GROUPS: &str = concat!(
    r#"{"id":"g1","name":"eng","roles":[],"members":["u1"]}"#,
    "\n"
);
const POLICIES: &str = concat!(
    r#"{"id":"p1","name":"n","connector":"github","tools":["*"],"scope":{"all_users":true,"users":[],"groups":[]},"agents":["*"],"action":"ALLOW","enabled":true}"#,
    "\n",
    r#"{"id":"p2","name":"n","connector":"github","tools":["merge"],"scope":{"all_users":true,"users":[],"groups":[]},"agents":["chatgpt","claude"],"action":"STEP_UP","step_up":{"acr_values":["phrh"],"amr_values":["hwk"],"max_age":300},"enabled":true}"#,
    "\n",
);
const REQUESTS: &str = concat!(
    r#"{"id":"r1","user":"u1","agent":"claude-ai","connector":"github","tool":"merge","authentication":{"acr":"phrh","amr":["hwk","pwd"],"auth_age_s":30},"arguments":{"n":[1,2],"repo":"acme/x"},"kind":"step_up_met","expected":{"decision":"ALLOW","reason":"STEP_UP_MET","policy_id":"p1"}}"#,
    "\n",
);

fn base(dir: &Path) {
    for (name, text) in [
        ("agents.jsonl", AGENTS),
        ("settings.json", "{\"unregistered_agents\":\"DENY\"}\n"),
        ("users.jsonl", USERS),
        ("groups.jsonl", GROUPS),
        ("policies.jsonl", POLICIES),
        ("requests.jsonl", REQUESTS),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn agents_settings_and_policy_fields_map_onto_the_model() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    let model = &workload.model;
    assert_eq!(model.settings.unregistered_agents, Unregistered::Deny);
    assert_eq!(model.agents.len(), 2);
    let claude = &model.agents[1];
    assert_eq!(
        (
            claude.id.as_str(),
            claude.display_name.as_str(),
            claude.vendor.as_str()
        ),
        ("claude", "Claude", "Anthropic")
    );
    assert_eq!(claude.aliases, ["claude-ai", "oauth-client-c093"]);
    assert!(claude.enabled && !model.agents[0].enabled);
    assert!(!claude.scope.all_users);
    assert_eq!(claude.scope.groups, ["g1"]);
    assert_eq!(claude.created_at, NOW);

    assert_eq!(model.policies[0].agents, Agents::All);
    assert_eq!(model.policies[0].step_up, None);
    let p2 = &model.policies[1];
    assert_eq!(
        p2.agents,
        Agents::Only(vec!["chatgpt".into(), "claude".into()])
    );
    assert_eq!(p2.action, Action::StepUp);
    assert_eq!(
        p2.step_up,
        Some(StepUp {
            acr_values: vec!["phrh".into()],
            amr_values: vec!["hwk".into()],
            max_age: Some(300),
        })
    );

    let r1 = &workload.requests[0];
    let auth = r1.authentication.as_ref().unwrap();
    assert_eq!(
        auth.at(NOW),
        Authentication {
            acr: "phrh".into(),
            amr: vec!["hwk".into(), "pwd".into()],
            auth_time: Some(Timestamp(NOW.0 - 30_000)),
        }
    );
    assert_eq!(
        serde_json::Value::Object(r1.arguments.clone().unwrap()),
        serde_json::json!({"repo": "acme/x", "n": [1, 2]})
    );
}

#[test]
fn agents_round_trip_through_files_and_the_model() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    let workload = read_dir(dir.path(), NOW, &mut |_| {}).unwrap();
    let mut files = Files::from_model(&workload.model).unwrap();
    files.requests = workload.requests.clone();
    assert_eq!(files.agents.len(), 2);
    assert_eq!(files.to_model(NOW), workload.model);

    // Written and read again: the same model and requests; the request line is byte-identical
    // (keys in the format's order).
    let again = tempfile::tempdir().unwrap();
    write_dir(again.path(), &files).unwrap();
    let reread = read_dir(again.path(), NOW, &mut |_| {}).unwrap();
    assert_eq!(reread, workload);
    assert_eq!(
        std::fs::read_to_string(again.path().join("requests.jsonl")).unwrap(),
        REQUESTS
    );
    assert_eq!(
        std::fs::read_to_string(again.path().join("settings.json")).unwrap(),
        "{\"unregistered_agents\":\"DENY\"}\n"
    );

    // Without agents or a setting, neither file is written, and a stale one is removed.
    let plain = Files {
        agents: Vec::new(),
        settings: None,
        ..files
    };
    write_dir(again.path(), &plain).unwrap();
    assert!(!again.path().join("agents.jsonl").exists());
    assert!(!again.path().join("settings.json").exists());
}

#[test]
fn agents_and_settings_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    std::fs::remove_file(dir.path().join("settings.json")).unwrap();
    let model = read_dir(dir.path(), NOW, &mut |_| {}).unwrap().model;
    assert_eq!(model.settings.unregistered_agents, Unregistered::Allow);
    std::fs::remove_file(dir.path().join("agents.jsonl")).unwrap();
    // p2 names agents that no longer exist.
    assert_eq!(
        read_dir(dir.path(), NOW, &mut |_| {})
            .unwrap_err()
            .to_string(),
        "policies.jsonl:2: agents[0]: unknown agent `chatgpt`, not an id in agents.jsonl"
    );
}

/// Replaces line `line` of `file` in the base directory (appends past the end) and returns
/// the error message.
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
        Err(err) => err.to_string(),
    }
}

fn agent(fields: &str) -> String {
    let mut all = serde_json::json!({
        "id": "copilot", "name": "Copilot", "vendor": "GitHub", "aliases": [],
        "enabled": true, "scope": {"all_users": true, "users": [], "groups": []},
    });
    let changes: serde_json::Value = serde_json::from_str(fields).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        all[key] = value.clone();
    }
    all.to_string()
}

#[test]
fn agent_errors() {
    let cases = [
        (r#"{"id":""}"#, "agents.jsonl:3: id: empty"),
        (
            r#"{"id":"claude"}"#,
            "agents.jsonl:3: id: `claude` is already an agent's id or alias, on line 2",
        ),
        (
            r#"{"id":"chat-gpt"}"#,
            "agents.jsonl:3: id: `chat-gpt` is already an agent's id or alias, on line 1",
        ),
        (
            r#"{"aliases":["gh-copilot","oauth-client-c093"]}"#,
            "agents.jsonl:3: aliases[1]: `oauth-client-c093` is already an agent's id or alias, on line 2",
        ),
        (
            r#"{"aliases":["claude"]}"#,
            "agents.jsonl:3: aliases[0]: `claude` is already an agent's id or alias, on line 2",
        ),
        (
            r#"{"aliases":["x","x"]}"#,
            "agents.jsonl:3: aliases[1]: `x` is already an agent's id or alias, on line 3",
        ),
        (
            r#"{"aliases":["copilot"]}"#,
            "agents.jsonl:3: aliases[0]: `copilot` is already an agent's id or alias, on line 3",
        ),
        (r#"{"aliases":[""]}"#, "agents.jsonl:3: aliases[0]: empty"),
        (
            r#"{"enabled":"yes"}"#,
            "agents.jsonl:3: enabled: expected a boolean, found a string",
        ),
        (
            r#"{"scope":{"all_users":false,"users":"u1"}}"#,
            "agents.jsonl:3: scope.users: expected an array of strings, found a string",
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(
            error_with("agents.jsonl", 3, &agent(fields)),
            want,
            "{fields}"
        );
    }
}

fn policy(fields: &str) -> String {
    let mut all = serde_json::json!({
        "id": "p3", "name": "n", "connector": "github", "tools": ["a"],
        "scope": {"all_users": true, "users": [], "groups": []},
        "action": "STEP_UP", "enabled": true,
    });
    let changes: serde_json::Value = serde_json::from_str(fields).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        all[key] = value.clone();
    }
    all.to_string()
}

#[test]
fn policy_agent_and_step_up_errors() {
    let cases = [
        (
            r#"{"agents":["claude","gemini"]}"#,
            "policies.jsonl:3: agents[1]: unknown agent `gemini`, not an id in agents.jsonl",
        ),
        (
            // An alias is not an id: selectors name agents by id.
            r#"{"agents":["claude-ai"]}"#,
            "policies.jsonl:3: agents[0]: unknown agent `claude-ai`, not an id in agents.jsonl",
        ),
        (
            r#"{"agents":["claude","claude"]}"#,
            "policies.jsonl:3: agents[1]: duplicate agent `claude`",
        ),
        (
            r#"{"agents":[]}"#,
            "policies.jsonl:3: agents: empty, expected agent ids or `*`",
        ),
        (
            r#"{"agents":["*","claude"]}"#,
            "policies.jsonl:3: agents: `*` stands for every agent and must be alone",
        ),
        (
            r#"{"agents":"*"}"#,
            "policies.jsonl:3: agents: expected an array of strings, found a string",
        ),
        (
            r#"{"action":"ALLOW","step_up":{"max_age":300}}"#,
            "policies.jsonl:3: step_up: only a STEP_UP policy has a step-up requirement, this one is ALLOW",
        ),
        (
            r#"{"step_up":{}}"#,
            "policies.jsonl:3: step_up: empty, expected at least one of acr_values, amr_values and max_age",
        ),
        (
            r#"{"step_up":{"acr_values":[],"amr_values":[]}}"#,
            "policies.jsonl:3: step_up: empty, expected at least one of acr_values, amr_values and max_age",
        ),
        (
            r#"{"step_up":{"amr_values":["hwk",""]}}"#,
            "policies.jsonl:3: step_up.amr_values[1]: empty",
        ),
        (
            r#"{"step_up":{"max_age":-1}}"#,
            "policies.jsonl:3: step_up.max_age: expected a non-negative integer, found a number",
        ),
        (
            r#"{"step_up":{"max_age":"5m"}}"#,
            "policies.jsonl:3: step_up.max_age: expected a non-negative integer, found a string",
        ),
        (
            r#"{"expression":true}"#,
            "policies.jsonl:3: expression: expected a string, found a boolean",
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(
            error_with("policies.jsonl", 3, &policy(fields)),
            want,
            "{fields}"
        );
    }
    // An expression that does not compile is refused, naming the policy's line and field
    // (the message itself is CEL's).
    let err = error_with(
        "policies.jsonl",
        3,
        &policy(r#"{"expression":"request.arguments.repo.startsWith("}"#),
    );
    assert!(err.starts_with("policies.jsonl:3: expression: "), "{err}");
}

#[test]
fn settings_errors() {
    for (text, want) in [
        (
            r#"{"unregistered_agents":"deny"}"#,
            "settings.json:1: unregistered_agents: unknown value `deny`, expected ALLOW or DENY",
        ),
        (
            r#"{"unregistered_agents":false}"#,
            "settings.json:1: unregistered_agents: expected a string, found a boolean",
        ),
        (
            "[]",
            "settings.json:1: malformed JSON: expected an object, found an array",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        std::fs::write(dir.path().join("settings.json"), text).unwrap();
        assert_eq!(
            read_dir(dir.path(), NOW, &mut |_| {})
                .unwrap_err()
                .to_string(),
            want,
            "{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    std::fs::write(
        dir.path().join("settings.json"),
        "{\n  \"unregistered_agents\": ",
    )
    .unwrap();
    let err = read_dir(dir.path(), NOW, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("settings.json:2: malformed JSON: "),
        "{err}"
    );
}
