//! Agents, the kill switch, the settings and the policy fields that name agents, over a real
//! server: every RPC, roles, errors naming fields, nothing written on a refusal.

use crate::support::{Admin, Harness, assert_status};
use portcullis_proto::v1 as pb;
use tonic::Code;

fn claude() -> pb::Agent {
    pb::Agent {
        id: "claude".into(),
        display_name: "Claude".into(),
        vendor: "Anthropic".into(),
        aliases: vec!["claude-oauth-client".into()],
        scope: Some(pb::PolicyScope {
            all_users: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(admin: &mut Admin, agent: pb::Agent) -> pb::CreateAgentResponse {
    admin
        .create_agent(pb::CreateAgentRequest { agent: Some(agent) })
        .await
        .unwrap()
        .into_inner()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn policy_for(agents: Option<&[&str]>) -> pb::Policy {
    pb::Policy {
        name: "Issues".into(),
        connector: "github".into(),
        all_tools: true,
        scope: Some(pb::PolicyScope {
            all_users: true,
            ..Default::default()
        }),
        action: pb::PolicyAction::Allow as i32,
        enabled: true,
        agents: agents.map(|ids| pb::PolicyAgents {
            agent_ids: ids.iter().map(|&a| a.to_owned()).collect(),
        }),
        ..Default::default()
    }
}

async fn create_policy(admin: &mut Admin, policy: pb::Policy) -> Result<pb::Policy, tonic::Status> {
    admin
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy),
        })
        .await
        .map(|r| r.into_inner().policy.unwrap())
}

async fn revision(admin: &mut Admin) -> u64 {
    admin
        .list_agents(pb::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision
}

#[tokio::test]
async fn agents_are_created_listed_got_by_alias_updated_and_audited() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let created = create(&mut admin, claude()).await;
    let agent = created.agent.unwrap();
    assert!(agent.enabled, "a new agent is enabled");
    assert_eq!(agent.aliases, ["claude-oauth-client"]);

    let mut reader = h.reader().await;
    let listed = reader
        .list_agents(pb::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.agents.len(), 1);
    assert!(listed.revision >= created.revision);
    let got = reader
        .get_agent(pb::GetAgentRequest {
            id: "claude-oauth-client".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.agent.unwrap().id, "claude");
    assert_status(
        reader
            .get_agent(pb::GetAgentRequest {
                id: "Claude".into(),
            })
            .await,
        Code::NotFound,
        "agent `Claude`",
    );

    let updated = admin
        .update_agent(pb::UpdateAgentRequest {
            agent: Some(pb::Agent {
                id: "claude".into(),
                vendor: "Anthropic PBC".into(),
                aliases: vec!["claude-2".into()],
                ..Default::default()
            }),
            update_mask: mask(&["vendor", "aliases"]),
        })
        .await
        .unwrap()
        .into_inner();
    let agent = updated.agent.unwrap();
    assert_eq!(
        (agent.vendor.as_str(), agent.display_name.as_str()),
        ("Anthropic PBC", "Claude")
    );
    assert_eq!(agent.aliases, ["claude-2"]);
    assert_eq!(h.audit("agent.create").await.len(), 1);
    let events = h.audit("agent.update").await;
    assert_eq!(events[0].detail, "vendor,aliases");

    // Read Only callers read but never write.
    assert_status(
        reader
            .create_agent(pb::CreateAgentRequest {
                agent: Some(pb::Agent {
                    id: "gpt".into(),
                    ..claude()
                }),
            })
            .await,
        Code::PermissionDenied,
        "Admin role",
    );
    for call in ["SetAgentEnabled", "UpdateSettings"] {
        let result = match call {
            "SetAgentEnabled" => reader
                .set_agent_enabled(pb::SetAgentEnabledRequest {
                    id: "claude".into(),
                    enabled: false,
                    reason: "x".into(),
                })
                .await
                .map(drop),
            _ => reader
                .update_settings(pb::UpdateSettingsRequest {
                    settings: Some(pb::Settings {
                        unregistered_agents: pb::UnregisteredAgents::Deny as i32,
                    }),
                })
                .await
                .map(drop),
        };
        assert_status(result, Code::PermissionDenied, "Admin role");
    }
}

#[tokio::test]
async fn bad_agents_are_refused_naming_the_field_and_nothing_is_written() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    create(&mut admin, claude()).await;
    let before = revision(&mut admin).await;
    let cases: Vec<(pb::Agent, Code, &str)> = vec![
        (
            pb::Agent {
                id: String::new(),
                ..claude()
            },
            Code::InvalidArgument,
            "agent.id",
        ),
        (
            pb::Agent {
                id: "x".repeat(257),
                ..claude()
            },
            Code::InvalidArgument,
            "agent.id",
        ),
        (
            pb::Agent {
                id: " gpt".into(),
                ..claude()
            },
            Code::InvalidArgument,
            "agent.id",
        ),
        (
            pb::Agent {
                id: "gpt".into(),
                display_name: String::new(),
                ..claude()
            },
            Code::InvalidArgument,
            "agent.display_name",
        ),
        (
            pb::Agent {
                id: "gpt".into(),
                scope: None,
                ..claude()
            },
            Code::InvalidArgument,
            "agent.scope",
        ),
        (
            pb::Agent {
                id: "gpt".into(),
                aliases: vec!["a".into(), "a".into()],
                ..claude()
            },
            Code::InvalidArgument,
            "agent.aliases[1]",
        ),
        (
            pb::Agent {
                id: "gpt".into(),
                aliases: vec!["gpt".into()],
                ..claude()
            },
            Code::InvalidArgument,
            "agent.aliases[0]",
        ),
        // A duplicate alias: another agent's.
        (
            pb::Agent {
                id: "gpt".into(),
                ..claude()
            },
            Code::FailedPrecondition,
            "agent.aliases[0]: `claude-oauth-client` is already an alias of agent `claude`",
        ),
        (
            pb::Agent {
                id: "claude-oauth-client".into(),
                aliases: vec![],
                ..claude()
            },
            Code::FailedPrecondition,
            "agent.id",
        ),
        (
            claude(),
            Code::FailedPrecondition,
            "agent `claude` already exists",
        ),
        (
            pb::Agent {
                id: "gpt".into(),
                aliases: vec![],
                scope: Some(pb::PolicyScope {
                    user_ids: vec!["u-nobody".into()],
                    ..Default::default()
                }),
                ..claude()
            },
            Code::NotFound,
            "user `u-nobody`",
        ),
    ];
    for (agent, code, needle) in cases {
        let result = admin
            .create_agent(pb::CreateAgentRequest { agent: Some(agent) })
            .await;
        assert_status(result, code, needle);
    }
    assert_status(
        admin
            .update_agent(pb::UpdateAgentRequest {
                agent: Some(pb::Agent {
                    id: "claude".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["enabled"]),
            })
            .await,
        Code::InvalidArgument,
        "update_mask",
    );
    assert_status(
        admin
            .set_agent_enabled(pb::SetAgentEnabledRequest {
                id: "claude".into(),
                enabled: false,
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "reason",
    );
    assert_status(
        admin
            .update_settings(pb::UpdateSettingsRequest {
                settings: Some(pb::Settings::default()),
            })
            .await,
        Code::InvalidArgument,
        "settings.unregistered_agents",
    );
    assert_eq!(revision(&mut admin).await, before, "nothing written");
}

#[tokio::test]
async fn the_kill_switch_is_audited_with_who_when_and_why_and_live_on_return() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    create(&mut admin, claude()).await;
    let disabled = admin
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id: "claude".into(),
            enabled: false,
            reason: "vendor incident 42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.agent.unwrap().enabled);
    // Decisions answer from at least the revision the call returned (the harness checks it).
    h.check("u-carol", "github", "create_issue", disabled.revision)
        .await;
    let events = h.audit("agent.disable").await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.detail, "vendor incident 42");
    assert_eq!(event.actor, "u-alice");
    assert!(event.time.is_some());
    assert_eq!(event.target_id, "claude");

    // Disabling again changes nothing; enabling needs no reason.
    let again = admin
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id: "claude".into(),
            enabled: false,
            reason: "again".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, disabled.revision);
    let enabled = admin
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id: "claude".into(),
            enabled: true,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.agent.unwrap().enabled);
    assert_eq!(h.audit("agent.enable").await.len(), 1);
}

#[tokio::test]
async fn settings_read_and_write() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let mut reader = h.reader().await;
    let got = reader
        .get_settings(pb::GetSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.settings.unwrap().unregistered_agents(),
        pb::UnregisteredAgents::Allow
    );
    let set = admin
        .update_settings(pb::UpdateSettingsRequest {
            settings: Some(pb::Settings {
                unregistered_agents: pb::UnregisteredAgents::Deny as i32,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(set.revision > got.revision);
    let got = reader
        .get_settings(pb::GetSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.settings.unwrap().unregistered_agents(),
        pb::UnregisteredAgents::Deny
    );
    assert_eq!(h.audit("settings.update").await.len(), 1);
}

#[tokio::test]
async fn policies_select_agents_and_deleting_an_agent_updates_them() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    create(&mut admin, claude()).await;
    create(
        &mut admin,
        pb::Agent {
            id: "chatgpt".into(),
            aliases: vec![],
            ..claude()
        },
    )
    .await;
    let before = revision(&mut admin).await;
    assert_status(
        create_policy(&mut admin, policy_for(Some(&["copilot"]))).await,
        Code::NotFound,
        "agent `copilot`",
    );
    assert_status(
        create_policy(&mut admin, policy_for(Some(&[]))).await,
        Code::InvalidArgument,
        "policy.agents.agent_ids",
    );
    assert_status(
        create_policy(&mut admin, policy_for(Some(&["claude", "claude"]))).await,
        Code::InvalidArgument,
        "policy.agents.agent_ids[1]",
    );
    assert_eq!(revision(&mut admin).await, before, "nothing written");

    let only_claude = create_policy(&mut admin, policy_for(Some(&["claude"])))
        .await
        .unwrap();
    let both = create_policy(&mut admin, policy_for(Some(&["claude", "chatgpt"])))
        .await
        .unwrap();
    let every = create_policy(&mut admin, policy_for(None)).await.unwrap();
    assert!(every.agents.is_none(), "absent: every agent");
    assert_eq!(
        both.agents.clone().unwrap().agent_ids,
        ["claude", "chatgpt"]
    );

    // An update sets the selector like any other field.
    let updated = admin
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(pb::Policy {
                id: every.id.clone(),
                agents: Some(pb::PolicyAgents {
                    agent_ids: vec!["chatgpt".into()],
                }),
                ..Default::default()
            }),
            update_mask: mask(&["agents"]),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(updated.agents.unwrap().agent_ids, ["chatgpt"]);

    let deleted = admin
        .delete_agent(pb::DeleteAgentRequest {
            id: "claude".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut changed: Vec<(String, Vec<String>)> = deleted
        .updated_policies
        .iter()
        .map(|p| (p.id.clone(), p.agents.clone().unwrap().agent_ids))
        .collect();
    changed.sort();
    let mut expected = vec![
        (only_claude.id.clone(), vec![]),
        (both.id.clone(), vec!["chatgpt".to_owned()]),
    ];
    expected.sort();
    assert_eq!(changed, expected);
    // The policy left selecting no agent covers none; it is not widened to every agent.
    let left = admin
        .get_policy(pb::GetPolicyRequest {
            id: only_claude.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(left.agents, Some(pb::PolicyAgents { agent_ids: vec![] }));
    assert_eq!(h.audit("agent.delete").await.len(), 1);
    assert_eq!(
        h.audit("policy.update")
            .await
            .iter()
            .filter(|e| e.detail == "agent `claude` deleted")
            .count(),
        2
    );
    assert_status(
        admin
            .delete_agent(pb::DeleteAgentRequest {
                id: "claude".into(),
            })
            .await,
        Code::NotFound,
        "agent `claude`",
    );
}

#[tokio::test]
async fn step_up_requirements_and_expressions_are_checked() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let before = revision(&mut admin).await;
    let step_up =
        |requirement: Option<pb::StepUpRequirement>, action: pb::PolicyAction| pb::Policy {
            action: action as i32,
            step_up: requirement,
            ..policy_for(None)
        };
    let acr = pb::StepUpRequirement {
        acr_values: vec!["phr".into()],
        ..Default::default()
    };
    assert_status(
        create_policy(
            &mut admin,
            step_up(
                Some(pb::StepUpRequirement::default()),
                pb::PolicyAction::StepUp,
            ),
        )
        .await,
        Code::InvalidArgument,
        "policy.step_up",
    );
    assert_status(
        create_policy(
            &mut admin,
            step_up(Some(acr.clone()), pb::PolicyAction::Allow),
        )
        .await,
        Code::InvalidArgument,
        "policy.step_up",
    );
    assert_status(
        create_policy(
            &mut admin,
            step_up(
                Some(pb::StepUpRequirement {
                    acr_values: vec![String::new()],
                    ..Default::default()
                }),
                pb::PolicyAction::StepUp,
            ),
        )
        .await,
        Code::InvalidArgument,
        "policy.step_up.acr_values[0]",
    );
    // A condition that does not compile, and one too long to try.
    assert_status(
        create_policy(
            &mut admin,
            pb::Policy {
                expression: "request.arguments.repo.startsWith(".into(),
                ..policy_for(None)
            },
        )
        .await,
        Code::InvalidArgument,
        "policy.expression",
    );
    let huge = "a".repeat(pdp::expression::MAX_SOURCE_LEN + 1);
    assert_status(
        create_policy(
            &mut admin,
            pb::Policy {
                expression: huge,
                ..policy_for(None)
            },
        )
        .await,
        Code::InvalidArgument,
        "policy.expression: 4097 bytes",
    );
    assert_eq!(revision(&mut admin).await, before, "nothing written");

    let created = create_policy(
        &mut admin,
        step_up(
            Some(pb::StepUpRequirement {
                max_age: 300,
                ..acr
            }),
            pb::PolicyAction::StepUp,
        ),
    )
    .await
    .unwrap();
    let requirement = created.step_up.unwrap();
    assert_eq!(
        (requirement.acr_values, requirement.max_age),
        (vec!["phr".to_owned()], 300)
    );
}
