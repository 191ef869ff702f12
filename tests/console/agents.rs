//! Agents page: the registry, the kill switch (a gRPC Check by a disabled agent is denied at
//! once) and Read Only.

use super::Setup;
use super::policies::working_agent;

/// A decision for u0000005 by `agent`: the line `portcullis check` prints.
fn decision(setup: &Setup, agent: &str) -> String {
    setup.check(&[
        "--user",
        "u0000005",
        "--agent",
        agent,
        "--connector",
        "slack",
        "--tool",
        "search_alert",
    ])
}

#[tokio::test]
async fn an_admin_disables_an_agent_and_its_next_check_is_denied_then_enables_it() {
    let setup = Setup::start();
    let agent = working_agent(&setup);
    let browser = setup.signed_in(&setup.admin).await;

    let list = browser.get("/console/agents").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains(&format!("<code>{agent}</code>")),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("Kill switch"),
        "an admin sees the switch"
    );
    assert!(
        list.body.contains("for every user, at once"),
        "the confirmation says what happens: {}",
        list.body
    );
    assert!(!decision(&setup, agent).contains("AGENT_DISABLED"));

    // Without the confirmation, or without a reason, nothing changes.
    let unconfirmed = browser
        .submit(
            "/console/agents",
            "/console/agents/disable",
            &[("id", agent), ("reason", "leaking data")],
        )
        .await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    let no_reason = browser
        .submit(
            "/console/agents",
            "/console/agents/disable",
            &[("id", agent), ("reason", " "), ("confirm", "yes")],
        )
        .await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.body);
    assert!(no_reason.body.contains("reason"), "{}", no_reason.body);
    assert!(!decision(&setup, agent).contains("AGENT_DISABLED"));

    let disabled = browser
        .submit(
            "/console/agents",
            "/console/agents/disable",
            &[
                ("id", agent),
                ("reason", "leaking data"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    assert_eq!(disabled.location(), "/console/agents");
    // The write returns once decisions reflect it: the very next Check is denied.
    let after = decision(&setup, agent);
    assert!(
        after.starts_with("DENY") && after.contains("AGENT_DISABLED"),
        "{after}"
    );
    let shown = browser.get("/console/agents").await;
    assert!(shown.body.contains("badge disabled"), "{}", shown.body);

    let enabled = browser
        .submit(
            "/console/agents",
            "/console/agents/enable",
            &[("id", agent), ("confirm", "yes")],
        )
        .await;
    assert_eq!(enabled.status, 303, "{}", enabled.body);
    assert!(!decision(&setup, agent).contains("AGENT_DISABLED"));
}

#[tokio::test]
async fn read_only_sees_the_registry_without_the_switch_and_a_forged_disable_gets_403() {
    let setup = Setup::start();
    let agent = working_agent(&setup);
    let reader = setup.signed_in(&setup.read_only).await;
    let list = reader.get("/console/agents").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&format!("<code>{agent}</code>")));
    for control in [
        "Kill switch",
        "/console/agents/disable",
        "/console/agents/enable",
    ] {
        assert!(!list.body.contains(control), "{control}: {}", list.body);
    }
    let forged = reader
        .submit(
            "/console/agents",
            "/console/agents/disable",
            &[("id", agent), ("reason", "forged"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!decision(&setup, agent).contains("AGENT_DISABLED"));
}
