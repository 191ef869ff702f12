//! `admin agents …` and `admin settings …`.

use super::show::{self, Table, fields, or_dash, time_cell};
use super::{Client, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every registered agent, by id.
    List,
    /// One agent in full.
    Get {
        /// The agent's id or one of its aliases.
        id: String,
    },
    /// Register an agent: the id gateways send, a display name, aliases, whom it may act for.
    Create(CreateArgs),
    /// Change an agent's display name, vendor, aliases or scope (only what is given).
    Update(UpdateArgs),
    /// Delete an agent; it is removed from every policy that selects it.
    Delete {
        /// The agent's id.
        id: String,
    },
    /// Let a disabled agent act again.
    Enable {
        /// The agent's id.
        id: String,
    },
    /// The kill switch: deny every request through the agent, for everyone, at once.
    Disable {
        /// The agent's id.
        id: String,
        /// Why, kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("scope")
        .required(true)
        .multiple(true)
        .args(["all_users", "users", "groups"])
))]
pub struct CreateArgs {
    /// The name gateways send, e.g. `claude`; exact.
    id: String,
    #[arg(long)]
    name: String,
    /// Who makes it.
    #[arg(long, default_value = "")]
    vendor: String,
    /// Another name it arrives under, e.g. an OAuth client id (repeatable).
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// It may act for everyone.
    #[arg(long, conflicts_with_all = ["users", "groups"])]
    all_users: bool,
    /// A user id it may act for (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// A group id whose members it may act for (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The agent's id.
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    vendor: Option<String>,
    /// Replace the aliases with these (repeatable).
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// Remove every alias.
    #[arg(long, conflicts_with = "aliases")]
    no_aliases: bool,
    /// Replace the scope: everyone.
    #[arg(long, conflicts_with_all = ["users", "groups"])]
    all_users: bool,
    /// Replace the scope: this user (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// Replace the scope: this group (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SettingsCommand {
    /// The organisation's settings.
    Get,
    /// Change the organisation's settings.
    Set {
        /// What happens to requests from agents no registered id or alias names.
        #[arg(long, value_enum, ignore_case = true)]
        unregistered_agents: UnregisteredArg,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UnregisteredArg {
    /// They go on to the policies for every agent (the default).
    #[value(name = "ALLOW")]
    Allow,
    /// They are denied (UNKNOWN_AGENT).
    #[value(name = "DENY")]
    Deny,
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List => {
            let answer = client
                .list_agents(pb::ListAgentsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut table = Table::new(&["ID", "NAME", "VENDOR", "ALIASES", "SCOPE", "ENABLED"]);
            for a in &answer.agents {
                table.row(vec![
                    a.id.clone(),
                    a.display_name.clone(),
                    or_dash(&a.vendor),
                    or_dash(&a.aliases.join(", ")),
                    scope_text(a.scope.as_ref()),
                    show::yes_no(a.enabled),
                ]);
            }
            let json = json!({
                "agents": answer.agents.iter().map(agent_json).collect::<Vec<_>>(),
                "revision": answer.revision,
            });
            Ok(Report::new(json, table.render()))
        }
        Command::Get { id } => {
            let answer = client
                .get_agent(pb::GetAgentRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            let a = answer.agent.unwrap_or_default();
            Ok(shown(&a, answer.revision, None))
        }
        Command::Create(args) => {
            let agent = pb::Agent {
                id: args.id,
                display_name: args.name,
                vendor: args.vendor,
                aliases: args.aliases,
                scope: Some(pb::PolicyScope {
                    all_users: args.all_users,
                    user_ids: args.users,
                    group_ids: args.groups,
                }),
                ..Default::default()
            };
            let answer = client
                .create_agent(pb::CreateAgentRequest { agent: Some(agent) })
                .await
                .map_err(status)?
                .into_inner();
            let a = answer.agent.unwrap_or_default();
            Ok(shown(&a, answer.revision, Some("created")))
        }
        Command::Update(args) => update(client, args).await,
        Command::Delete { id } => {
            let answer = client
                .delete_agent(pb::DeleteAgentRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let updated: Vec<&str> = answer
                .updated_policies
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            let json = json!({
                "updated_policies": answer.updated_policies.iter().map(show::policy).collect::<Vec<_>>(),
                "revision": answer.revision,
            });
            let mut text = format!("deleted agent {id} at revision {}\n", answer.revision);
            if !updated.is_empty() {
                text.push_str(&format!("removed from policies {}\n", updated.join(", ")));
            }
            Ok(Report::new(json, text).changed(true))
        }
        Command::Enable { id } => set_enabled(client, id, true, String::new()).await,
        Command::Disable { id, reason } => set_enabled(client, id, false, reason).await,
    }
}

async fn update(client: &mut Client, args: UpdateArgs) -> anyhow::Result<Report> {
    let mut paths = Vec::new();
    if args.name.is_some() {
        paths.push("display_name".to_owned());
    }
    if args.vendor.is_some() {
        paths.push("vendor".to_owned());
    }
    if !args.aliases.is_empty() || args.no_aliases {
        paths.push("aliases".to_owned());
    }
    if args.all_users || !args.users.is_empty() || !args.groups.is_empty() {
        paths.push("scope".to_owned());
    }
    if paths.is_empty() {
        anyhow::bail!("nothing to change: pass --name, --vendor, --alias, --no-aliases or a scope");
    }
    let agent = pb::Agent {
        id: args.id,
        display_name: args.name.unwrap_or_default(),
        vendor: args.vendor.unwrap_or_default(),
        aliases: args.aliases,
        scope: Some(pb::PolicyScope {
            all_users: args.all_users,
            user_ids: args.users,
            group_ids: args.groups,
        }),
        ..Default::default()
    };
    let answer = client
        .update_agent(pb::UpdateAgentRequest {
            agent: Some(agent),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(status)?
        .into_inner();
    let a = answer.agent.unwrap_or_default();
    Ok(shown(&a, answer.revision, Some("updated")))
}

async fn set_enabled(
    client: &mut Client,
    id: String,
    enabled: bool,
    reason: String,
) -> anyhow::Result<Report> {
    let answer = client
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id,
            enabled,
            reason,
        })
        .await
        .map_err(status)?
        .into_inner();
    let a = answer.agent.unwrap_or_default();
    let verb = if enabled { "enabled" } else { "disabled" };
    Ok(shown(&a, answer.revision, Some(verb)))
}

/// One agent: in full, or one line saying what was done to it.
fn shown(a: &pb::Agent, revision: u64, done: Option<&str>) -> Report {
    let json = json!({"agent": agent_json(a), "revision": revision});
    let text = match done {
        Some(verb) => format!("{verb} agent {} at revision {revision}\n", a.id),
        None => fields(&[
            ("id", a.id.clone()),
            ("name", a.display_name.clone()),
            ("vendor", or_dash(&a.vendor)),
            ("aliases", or_dash(&a.aliases.join(", "))),
            ("scope", scope_text(a.scope.as_ref())),
            ("enabled", a.enabled.to_string()),
            ("created", time_cell(a.created_at.as_ref())),
            ("updated", time_cell(a.updated_at.as_ref())),
            ("revision", revision.to_string()),
        ]),
    };
    Report::new(json, text).changed(done.is_some())
}

fn scope_text(scope: Option<&pb::PolicyScope>) -> String {
    let scope = scope.cloned().unwrap_or_default();
    let mut who = Vec::new();
    if scope.all_users {
        who.push("all users".to_owned());
    }
    if !scope.user_ids.is_empty() {
        who.push(format!("users {}", scope.user_ids.join(", ")));
    }
    if !scope.group_ids.is_empty() {
        who.push(format!("groups {}", scope.group_ids.join(", ")));
    }
    or_dash(&who.join("; "))
}

fn agent_json(a: &pb::Agent) -> serde_json::Value {
    let scope = a.scope.clone().unwrap_or_default();
    json!({
        "id": a.id,
        "display_name": a.display_name,
        "vendor": a.vendor,
        "aliases": a.aliases,
        "enabled": a.enabled,
        "scope": {
            "all_users": scope.all_users,
            "user_ids": scope.user_ids,
            "group_ids": scope.group_ids,
        },
        "created_at": show::time(a.created_at.as_ref()),
        "updated_at": show::time(a.updated_at.as_ref()),
    })
}

fn unregistered_text(u: pb::UnregisteredAgents) -> &'static str {
    match u {
        pb::UnregisteredAgents::Deny => "DENY",
        pb::UnregisteredAgents::Allow | pb::UnregisteredAgents::Unspecified => "ALLOW",
    }
}

pub async fn settings(client: &mut Client, command: SettingsCommand) -> anyhow::Result<Report> {
    let changed = matches!(command, SettingsCommand::Set { .. });
    let (settings, revision) = match command {
        SettingsCommand::Get => {
            let answer = client
                .get_settings(pb::GetSettingsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            (answer.settings.unwrap_or_default(), answer.revision)
        }
        SettingsCommand::Set {
            unregistered_agents,
        } => {
            let value = match unregistered_agents {
                UnregisteredArg::Allow => pb::UnregisteredAgents::Allow,
                UnregisteredArg::Deny => pb::UnregisteredAgents::Deny,
            };
            let answer = client
                .update_settings(pb::UpdateSettingsRequest {
                    settings: Some(pb::Settings {
                        unregistered_agents: value as i32,
                    }),
                })
                .await
                .map_err(status)?
                .into_inner();
            (answer.settings.unwrap_or_default(), answer.revision)
        }
    };
    let unregistered = unregistered_text(settings.unregistered_agents());
    let json = json!({
        "settings": {"unregistered_agents": unregistered},
        "revision": revision,
    });
    let text = fields(&[
        ("unregistered agents", unregistered.to_owned()),
        ("revision", revision.to_string()),
    ]);
    Ok(Report::new(json, text).changed(changed))
}
