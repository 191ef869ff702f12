//! Agents and the organisation's settings: the invariants the store keeps, the view, the change
//! log, imports and reopening.

use crate::support::*;
use pdp::{Agents, Directory, Model, Settings, Timestamp, Unregistered};
use store::{Error, Store};
use tempfile::TempDir;

fn selecting(id: &str, agents: &[&str]) -> pdp::Policy {
    pdp::Policy {
        agents: Agents::Only(agents.iter().map(|&a| a.to_owned()).collect()),
        ..policy(id)
    }
}

#[test]
fn agents_and_settings_are_kept_viewed_and_reopened() {
    let dir = TempDir::new().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        eng_and_ops(&store);
        let empty = store.view().unwrap();
        assert!(Directory::agents(&*empty).is_empty());
        assert_eq!(Directory::settings(&*empty), Settings::default());

        store
            .put_agent(&agent("claude", &["claude-oauth"]))
            .unwrap();
        let deny = Settings {
            unregistered_agents: Unregistered::Deny,
        };
        store.put_settings(&deny).unwrap();
        let view = store.view().unwrap();
        assert_eq!(view.agent_named("claude-oauth").unwrap().id, "claude");
        assert_eq!(view.agent_named("claude").unwrap().id, "claude");
        assert!(view.agent_named("Claude").is_none(), "lookups are exact");
        assert_eq!(Directory::settings(&*view), deny);
        let changes = view.changes_since(&empty).unwrap();
        assert!(changes.agents);
        assert!(changes.as_changes().agents);

        // A change to something else leaves the agents flag down.
        store.put_user(&user("carol")).unwrap();
        let later = store.view().unwrap();
        assert!(!later.changes_since(&view).unwrap().agents);

        let touched = store.touched_between(empty.revision(), view.revision());
        let touched = touched.unwrap().unwrap();
        assert!(touched.agents.contains("claude"));
        assert!(touched.settings);
    }
    let store = Store::open(dir.path()).unwrap();
    let model = store.load().unwrap();
    assert_eq!(model.agents, [agent("claude", &["claude-oauth"])]);
    assert_eq!(model.settings.unregistered_agents, Unregistered::Deny);
    let view = store.view().unwrap();
    assert_eq!(view.agent_named("claude-oauth").unwrap().id, "claude");
    assert_eq!(
        store.get_agent("claude").unwrap().unwrap().aliases,
        ["claude-oauth"]
    );
    assert_eq!(
        store.settings().unwrap().unregistered_agents,
        Unregistered::Deny
    );
}

#[test]
fn ids_and_aliases_stay_unique_and_bounded_and_nothing_is_written() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_agent(&agent("claude", &["claude-oauth"]))
        .unwrap();
    let before = (store.revision(), store.load().unwrap());
    let long = "a".repeat(257);
    let refused = [
        (
            agent("gpt", &["claude"]),
            "alias `claude` is already the id",
        ),
        (
            agent("gpt", &["claude-oauth"]),
            "alias `claude-oauth` is already an alias",
        ),
        (
            agent("claude-oauth", &[]),
            "id `claude-oauth` is already an alias",
        ),
        (
            agent("gpt", &["x", "x"]),
            "alias `x` is already an alias of agent `gpt`",
        ),
        (
            agent("gpt", &["gpt"]),
            "alias `gpt` is already the id of agent `gpt`",
        ),
        (agent("", &[]), "invalid agent id"),
        (agent("gpt", &[""]), "invalid agent alias"),
        (agent(&long, &[]), "invalid agent id"),
        (agent("gpt", &[&long]), "invalid agent alias"),
    ];
    for (bad, expected) in refused {
        let error = store.put_agent(&bad).unwrap_err().to_string();
        assert!(error.contains(expected), "{error} lacks {expected}");
    }
    // Two agents written in one change are checked against each other too.
    let error = store
        .transact(|tx| {
            tx.put_agent(&agent("gpt", &["shared"]))?;
            tx.put_agent(&agent("copilot", &["shared"]))
        })
        .unwrap_err();
    assert!(matches!(error, Error::AgentNameTaken { .. }), "{error}");
    assert_eq!((store.revision(), store.load().unwrap()), before);

    // An agent may keep its own aliases when it is rewritten, and move one to another agent
    // only once it gave it up.
    store
        .put_agent(&agent("claude", &["claude-oauth", "anthropic"]))
        .unwrap();
    store
        .transact(|tx| {
            tx.put_agent(&agent("claude", &["claude-oauth"]))?;
            tx.put_agent(&agent("other", &["anthropic"]))
        })
        .unwrap();
    let view = store.view().unwrap();
    assert_eq!(view.agent_named("anthropic").unwrap().id, "other");
}

#[test]
fn policies_select_only_registered_agents_and_lose_deleted_ones() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    eng_and_ops(&store);
    let revision = store.revision();
    let error = store.put_policy(&selecting("p1", &["claude"])).unwrap_err();
    assert!(
        matches!(&error, Error::UnknownAgent { agent_id, .. } if agent_id == "claude"),
        "{error}"
    );
    let error = store.put_policy(&selecting("p1", &["claude", "claude"]));
    assert!(error.is_err());
    assert_eq!(store.revision(), revision, "nothing written");

    store.put_agent(&agent("claude", &[])).unwrap();
    store.put_agent(&agent("gpt", &[])).unwrap();
    store
        .put_policy(&selecting("both", &["claude", "gpt"]))
        .unwrap();
    store.put_policy(&selecting("only", &["claude"])).unwrap();
    store.put_policy(&policy("all")).unwrap();
    let now = Timestamp(42);
    let (_, changed) = store.transact(|tx| tx.delete_agent("claude", now)).unwrap();
    let ids: Vec<&str> = changed.iter().map(|(_, after)| after.id.as_str()).collect();
    assert_eq!(ids, ["both", "only"]);
    let policy = |id: &str| store.get_policy(id).unwrap().unwrap();
    assert_eq!(policy("both").agents, Agents::Only(vec!["gpt".into()]));
    // A policy left selecting no agent covers none: it is not widened to every agent.
    assert_eq!(policy("only").agents, Agents::Only(vec![]));
    assert_eq!(policy("only").updated_at, now);
    assert_eq!(policy("all").agents, Agents::All);
    assert!(store.get_agent("claude").unwrap().is_none());
    assert!(matches!(
        store.delete_agent("claude"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn imports_take_agents_and_settings_and_check_them_first() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_agent(&agent("claude", &["claude-oauth"]))
        .unwrap();
    let revision = store.revision();
    let clash = Model {
        agents: vec![agent("gpt", &["claude-oauth"])],
        ..Model::default()
    };
    assert!(matches!(
        store.import(&clash),
        Err(Error::AgentNameTaken { .. })
    ));
    let unknown = Model {
        policies: vec![selecting("p1", &["copilot"])],
        ..Model::default()
    };
    assert!(matches!(
        store.import(&unknown),
        Err(Error::UnknownAgent { .. })
    ));
    assert_eq!(store.revision(), revision, "nothing written");

    let model = Model {
        agents: vec![agent("copilot", &[])],
        policies: vec![selecting("p1", &["copilot", "claude"])],
        settings: Settings {
            unregistered_agents: Unregistered::Deny,
        },
        ..Model::default()
    };
    let summary = store.import(&model).unwrap();
    assert_eq!(summary.agents, 1);
    let loaded = store.load().unwrap();
    let ids: Vec<&str> = loaded.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["claude", "copilot"]);
    assert_eq!(loaded.settings.unregistered_agents, Unregistered::Deny);
    let view = store.view().unwrap();
    assert_eq!(Directory::agents(&*view).len(), 2);
    assert_eq!(
        Directory::settings(&*view).unregistered_agents,
        Unregistered::Deny
    );
}

#[test]
fn a_change_may_register_an_agent_and_select_it_at_once() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .transact(|tx| {
            tx.put_agent(&agent("claude", &[]))?;
            tx.put_policy(&selecting("p1", &["claude"]))
        })
        .unwrap();
    assert_eq!(
        store.get_policy("p1").unwrap().unwrap().agents,
        Agents::Only(vec!["claude".into()])
    );
    // Deleting it and selecting it in one change is refused as a whole.
    let revision = store.revision();
    let error = store
        .transact(|tx| {
            tx.delete_agent("claude", Timestamp(1))?;
            tx.put_policy(&selecting("p2", &["claude"]))
        })
        .unwrap_err();
    assert!(matches!(error, Error::UnknownAgent { .. }), "{error}");
    assert_eq!(store.revision(), revision);
    assert!(store.get_agent("claude").unwrap().is_some());
}

#[test]
fn deleting_an_agent_cleans_the_policies_as_the_change_leaves_them() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_agent(&agent("claude", &[])).unwrap();
    store.put_policy(&selecting("p1", &["claude"])).unwrap();
    store.put_policy(&selecting("p2", &["claude"])).unwrap();
    // p1 stops selecting it and p2 goes in the same change: nothing is left to clean, and
    // neither is written twice.
    let (_, cleaned) = store
        .transact(|tx| {
            tx.put_policy(&policy("p1"))?;
            tx.delete_policy("p2")?;
            tx.delete_agent("claude", Timestamp(7))
        })
        .unwrap();
    assert!(cleaned.is_empty(), "{cleaned:?}");
    assert_eq!(store.get_policy("p1").unwrap().unwrap().agents, Agents::All);
    assert!(store.get_policy("p2").unwrap().is_none());
    assert!(store.get_agent("claude").unwrap().is_none());
}
