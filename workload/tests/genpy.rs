//! A cross-check against a directory written by the independent Python generator
//! (`shared/workload/gen.py`), which is not part of this repository: run by hand with
//! `PORTCULLIS_GENPY_WORKLOAD=/tmp/wl-small cargo test -p portcullis-workload -- --ignored`,
//! with or without `--agents` given to gen.py.

use pdp::{Agents, Context, NoAttributes, Request, Snapshot, Timestamp, Unregistered};
use std::collections::BTreeMap;
use std::path::Path;
use workload::Expected;

/// The clock requests are decided at; `auth_age_s` is relative to it.
const NOW: Timestamp = Timestamp(1_767_225_600_000);

#[test]
#[ignore = "needs a directory written by gen.py in PORTCULLIS_GENPY_WORKLOAD"]
fn reads_gen_py_output_and_agrees_with_its_answers() {
    let Ok(dir) = std::env::var("PORTCULLIS_GENPY_WORKLOAD") else {
        panic!("set PORTCULLIS_GENPY_WORKLOAD to a directory written by gen.py");
    };
    let dir = Path::new(&dir);
    let workload = workload::read_dir(dir, Timestamp(0), &mut |_| {}).unwrap();
    assert!(!workload.requests.is_empty());
    if dir.join("agents.jsonl").exists() {
        agents_were_read(dir, &workload);
    }
    let snapshot = Snapshot::build(&workload.model);
    let mut wrong = 0;
    // Disagreements by the answer gen.py expects, to see at a glance which rule is missing.
    let mut by_expected: BTreeMap<String, usize> = BTreeMap::new();
    for r in &workload.requests {
        let authentication = r.authentication.as_ref().map(|a| a.at(NOW));
        let request = Request {
            context: Context {
                authentication: authentication.as_ref(),
                arguments: r.arguments.as_ref(),
                now: NOW,
                grant: None,
            },
            user: &r.user,
            agent: &r.agent,
            connector: &r.connector,
            tool: &r.tool,
            attributes: &NoAttributes,
        };
        let got = Expected::from(snapshot.decide(&request));
        if got != r.expected {
            wrong += 1;
            *by_expected
                .entry(format!(
                    "{}/{}",
                    workload::action_name(r.expected.decision),
                    workload::reason_name(r.expected.reason)
                ))
                .or_default() += 1;
            if wrong <= 10 {
                eprintln!("{}: engine {got:?}, gen.py {:?}", r.id, r.expected);
            }
        }
    }
    eprintln!(
        "{} agents, {} users, {} groups, {} policies, {} requests, {wrong} disagreements {by_expected:?}",
        workload.model.agents.len(),
        workload.model.users.len(),
        workload.model.groups.len(),
        workload.model.policies.len(),
        workload.requests.len()
    );
    assert_eq!(wrong, 0);
}

/// What `--agents` adds reached the model: every agent, the setting, every selector and
/// step-up requirement, and the requests' authentication.
fn agents_were_read(dir: &Path, workload: &workload::Workload) {
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let lines = |name: &str| -> Vec<serde_json::Value> {
        text(name)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let model = &workload.model;
    let agents = lines("agents.jsonl");
    assert_eq!(model.agents.len(), agents.len());
    for (agent, line) in model.agents.iter().zip(&agents) {
        assert_eq!(agent.id, line["id"].as_str().unwrap());
        assert_eq!(agent.enabled, line["enabled"].as_bool().unwrap());
        assert_eq!(
            agent.aliases.len(),
            line["aliases"].as_array().unwrap().len()
        );
        assert_eq!(
            agent.scope.all_users,
            line["scope"]["all_users"].as_bool().unwrap()
        );
    }
    let settings: serde_json::Value = serde_json::from_str(&text("settings.json")).unwrap();
    let deny = settings["unregistered_agents"] == "DENY";
    assert_eq!(
        model.settings.unregistered_agents,
        if deny {
            Unregistered::Deny
        } else {
            Unregistered::Allow
        }
    );
    let policies = lines("policies.jsonl");
    assert_eq!(model.policies.len(), policies.len());
    for (policy, line) in model.policies.iter().zip(&policies) {
        let all = line["agents"] == serde_json::json!(["*"]);
        assert_eq!(policy.agents == Agents::All, all, "{}", policy.id);
        assert_eq!(
            policy.step_up.is_some(),
            line.get("step_up").is_some(),
            "{}",
            policy.id
        );
    }
    assert!(model.policies.iter().any(|p| p.agents != Agents::All));
    assert!(model.policies.iter().any(|p| p.step_up.is_some()));
    let with_auth = lines("requests.jsonl")
        .iter()
        .filter(|r| r.get("authentication").is_some())
        .count();
    assert_eq!(
        workload
            .requests
            .iter()
            .filter(|r| r.authentication.is_some())
            .count(),
        with_auth
    );
    assert!(with_auth > 0);
}
