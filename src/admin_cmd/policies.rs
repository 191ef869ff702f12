//! `admin policies …`.

use super::show::{self, fields, or_dash, time_cell};
use super::{Client, Paging, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Policies, by name unless sorted otherwise.
    List(ListArgs),
    /// One policy in full.
    Get {
        /// The policy's id.
        id: String,
    },
    /// Create a policy: a connector, some or all of its tools, a scope and an action.
    Create(CreateArgs),
    /// Change a policy's agents, step-up requirement or condition (only what is given).
    Update(UpdateArgs),
    /// Delete a policy.
    Delete {
        /// The policy's id.
        id: String,
    },
    /// Make a disabled policy match again.
    Enable {
        /// The policy's id.
        id: String,
    },
    /// Stop a policy from matching, keeping it.
    Disable {
        /// The policy's id.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only policies whose name or description contains this, in any case.
    #[arg(long)]
    search: Option<String>,
    /// Only policies with this action.
    #[arg(long, value_enum, ignore_case = true)]
    action: Option<ActionArg>,
    /// Only policies of this connector.
    #[arg(long)]
    connector: Option<String>,
    #[arg(long, value_enum, default_value_t = SortArg::Name)]
    sort: SortArg,
    /// Reverse the order.
    #[arg(long)]
    desc: bool,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SortArg {
    Name,
    /// Most restrictive first.
    Action,
}

/// Written as everywhere else (`STEP_UP`); the older `step-up` and any case are still taken.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ActionArg {
    #[value(name = "ALLOW")]
    Allow,
    #[value(name = "STEP_UP", alias = "step-up")]
    StepUp,
    #[value(name = "REQUIRE_APPROVAL", alias = "require-approval")]
    RequireApproval,
    #[value(name = "DENY")]
    Deny,
}

impl ActionArg {
    fn proto(self) -> pb::PolicyAction {
        match self {
            ActionArg::Allow => pb::PolicyAction::Allow,
            ActionArg::StepUp => pb::PolicyAction::StepUp,
            ActionArg::RequireApproval => pb::PolicyAction::RequireApproval,
            ActionArg::Deny => pb::PolicyAction::Deny,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which_tools").required(true).args(["all_tools", "tools"])))]
#[command(group(
    clap::ArgGroup::new("scope")
        .required(true)
        .multiple(true)
        .args(["all_users", "users", "groups"])
))]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// For example `github`.
    #[arg(long)]
    connector: String,
    /// Every tool of the connector.
    #[arg(long)]
    all_tools: bool,
    /// A tool of the connector (repeatable).
    #[arg(long = "tool")]
    tools: Vec<String>,
    /// Everyone.
    #[arg(long, conflicts_with_all = ["users", "groups"])]
    all_users: bool,
    /// A user id or email (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// A group: its id or its exact name (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    #[arg(long, value_enum, ignore_case = true)]
    action: ActionArg,
    /// Which approval flow handles a require-approval answer.
    #[arg(long)]
    approval_flow: Option<String>,
    #[arg(long, default_value = "")]
    description: String,
    /// Create it disabled: it matches nothing until enabled.
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    issue16: PolicyExtras,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The policy's id.
    id: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new description (`""` clears it).
    #[arg(long)]
    description: Option<String>,
    /// Move the policy to another connector (give its tools too unless it covers all).
    #[arg(long)]
    connector: Option<String>,
    /// Cover every tool of the connector instead of a list.
    #[arg(long, conflicts_with = "tools")]
    all_tools: bool,
    /// Replace the tools with these (repeatable).
    #[arg(long = "tool")]
    tools: Vec<String>,
    /// Apply it to everyone instead of the scope's users and groups.
    #[arg(long, conflicts_with_all = ["users", "groups"])]
    all_users: bool,
    /// Replace the scope with these users (ids or emails) and the --group groups (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// Replace the scope with these groups (ids or exact names) and the --user users
    /// (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// A new action.
    #[arg(long, value_enum, ignore_case = true)]
    action: Option<ActionArg>,
    /// Which approval flow handles a REQUIRE_APPROVAL answer.
    #[arg(long, conflicts_with = "no_approval_flow")]
    approval_flow: Option<String>,
    /// Back to the default approval flow (needed when moving away from REQUIRE_APPROVAL).
    #[arg(long)]
    no_approval_flow: bool,
    #[command(flatten)]
    issue16: PolicyExtras,
    /// Apply the policy to every agent again.
    #[arg(long, conflicts_with = "agents")]
    all_agents: bool,
    /// Remove the step-up requirement.
    #[arg(long, conflicts_with_all = ["acr_values", "amr_values", "max_age"])]
    no_step_up: bool,
    /// Remove the condition.
    #[arg(long, conflicts_with = "expression")]
    no_expression: bool,
}

/// The agent selector, step-up requirement and CEL condition of a policy.
#[derive(Debug, clap::Args)]
pub struct PolicyExtras {
    /// A registered agent id the policy applies to (repeatable); none: every agent.
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// With `--action STEP_UP`: an acceptable `acr` (repeatable; any one of them).
    #[arg(long = "acr")]
    acr_values: Vec<String>,
    /// With `--action STEP_UP`: an `amr` that must be present (repeatable; all of them).
    #[arg(long = "amr")]
    amr_values: Vec<String>,
    /// With `--action STEP_UP`: the user authenticated at most this many seconds ago.
    #[arg(long)]
    max_age: Option<u64>,
    /// A condition in CEL that must hold, e.g. `request.arguments.repo.startsWith("acme/")`.
    #[arg(long)]
    expression: Option<String>,
}

impl PolicyExtras {
    fn agents(&self) -> Option<pb::PolicyAgents> {
        (!self.agents.is_empty()).then(|| pb::PolicyAgents {
            agent_ids: self.agents.clone(),
        })
    }

    fn step_up(&self) -> Option<pb::StepUpRequirement> {
        let set =
            !self.acr_values.is_empty() || !self.amr_values.is_empty() || self.max_age.is_some();
        set.then(|| pb::StepUpRequirement {
            acr_values: self.acr_values.clone(),
            amr_values: self.amr_values.clone(),
            max_age: self.max_age.unwrap_or(0),
        })
    }
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List(args) => list(client, args).await,
        Command::Get { id } => {
            let answer = client
                .get_policy(pb::GetPolicyRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            let p = answer.policy.unwrap_or_default();
            let json = json!({"policy": show::policy(&p), "revision": answer.revision});
            Ok(Report::new(json, details(&p, answer.revision)))
        }
        Command::Create(args) => create(client, args).await,
        Command::Update(args) => update(client, args).await,
        Command::Delete { id } => {
            let answer = client
                .delete_policy(pb::DeletePolicyRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({"revision": answer.revision});
            let text = format!("deleted policy {id} at revision {}\n", answer.revision);
            Ok(Report::new(json, text).changed(true))
        }
        Command::Enable { id } => set_enabled(client, id, true).await,
        Command::Disable { id } => set_enabled(client, id, false).await,
    }
}

async fn set_enabled(client: &mut Client, id: String, enabled: bool) -> anyhow::Result<Report> {
    let answer = client
        .set_policy_enabled(pb::SetPolicyEnabledRequest { id, enabled })
        .await
        .map_err(status)?
        .into_inner();
    let p = answer.policy.unwrap_or_default();
    let json = json!({"policy": show::policy(&p), "revision": answer.revision});
    let verb = if enabled { "enabled" } else { "disabled" };
    let text = format!(
        "{verb} policy {} ({}) at revision {}\n",
        p.id, p.name, answer.revision
    );
    Ok(Report::new(json, text).changed(true))
}

async fn update(client: &mut Client, args: UpdateArgs) -> anyhow::Result<Report> {
    let extras = &args.issue16;
    let mut paths = Vec::new();
    if !extras.agents.is_empty() || args.all_agents {
        paths.push("agents".to_owned());
    }
    if extras.step_up().is_some() || args.no_step_up {
        paths.push("step_up".to_owned());
    }
    if extras.expression.is_some() || args.no_expression {
        paths.push("expression".to_owned());
    }
    let named = [
        ("name", args.name.is_some()),
        ("description", args.description.is_some()),
        ("connector", args.connector.is_some()),
        ("tools", args.all_tools || !args.tools.is_empty()),
        (
            "scope",
            args.all_users || !args.users.is_empty() || !args.groups.is_empty(),
        ),
        ("action", args.action.is_some()),
        (
            "approval_flow_id",
            args.approval_flow.is_some() || args.no_approval_flow,
        ),
    ];
    paths.extend(
        named
            .iter()
            .filter(|(_, given)| *given)
            .map(|(path, _)| (*path).to_owned()),
    );
    if paths.is_empty() {
        anyhow::bail!(
            "nothing to change: pass --name, --description, --connector, --tool, --all-tools, \
             --user, --group, --all-users, --action, --approval-flow, --no-approval-flow, \
             --agent, --all-agents, --acr, --amr, --max-age, --no-step-up, --expression or \
             --no-expression"
        );
    }
    let user_ids = user_ids(client, args.users).await?;
    let mut group_ids = Vec::with_capacity(args.groups.len());
    for group in &args.groups {
        group_ids.push(super::groups::resolve(client, group).await?);
    }
    let policy = pb::Policy {
        id: args.id.clone(),
        name: args.name.unwrap_or_default(),
        description: args.description.unwrap_or_default(),
        connector: args.connector.unwrap_or_default(),
        all_tools: args.all_tools,
        tools: args.tools,
        scope: Some(pb::PolicyScope {
            all_users: args.all_users,
            user_ids,
            group_ids,
        }),
        action: args.action.map_or(0, |a| a.proto() as i32),
        approval_flow_id: args.approval_flow.unwrap_or_default(),
        agents: extras.agents(),
        step_up: extras.step_up(),
        expression: extras.expression.clone().unwrap_or_default(),
        ..Default::default()
    };
    let answer = client
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(policy),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(status)?
        .into_inner();
    let p = answer.policy.unwrap_or_default();
    let json = json!({"policy": show::policy(&p), "revision": answer.revision});
    let text = format!(
        "updated policy {} ({}) at revision {}\n",
        p.id, p.name, answer.revision
    );
    Ok(Report::new(json, text).changed(true))
}

/// Scopes name users by id: look up the ones given by email.
async fn user_ids(client: &mut Client, users: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut user_ids = Vec::with_capacity(users.len());
    for user in users {
        if user.contains('@') {
            let found = client
                .get_user(pb::GetUserRequest {
                    user: user.clone(),
                    activity_limit: 1,
                })
                .await
                .map_err(status)?
                .into_inner();
            user_ids.push(found.user.map(|u| u.id).unwrap_or(user));
        } else {
            user_ids.push(user);
        }
    }
    Ok(user_ids)
}

async fn create(client: &mut Client, args: CreateArgs) -> anyhow::Result<Report> {
    let user_ids = user_ids(client, args.users).await?;
    let mut group_ids = Vec::with_capacity(args.groups.len());
    for group in &args.groups {
        group_ids.push(super::groups::resolve(client, group).await?);
    }
    let policy = pb::Policy {
        name: args.name,
        description: args.description,
        connector: args.connector,
        all_tools: args.all_tools,
        tools: args.tools,
        scope: Some(pb::PolicyScope {
            all_users: args.all_users,
            user_ids,
            group_ids,
        }),
        action: args.action.proto() as i32,
        approval_flow_id: args.approval_flow.unwrap_or_default(),
        enabled: !args.disabled,
        agents: args.issue16.agents(),
        step_up: args.issue16.step_up(),
        expression: args.issue16.expression.clone().unwrap_or_default(),
        ..Default::default()
    };
    let answer = client
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy),
        })
        .await
        .map_err(status)?
        .into_inner();
    let p = answer.policy.unwrap_or_default();
    let json = json!({"policy": show::policy(&p), "revision": answer.revision});
    let text = format!(
        "created policy {} ({}) at revision {}\n",
        p.id, p.name, answer.revision
    );
    Ok(Report::new(json, text).changed(true))
}

fn agents_text(agents: Option<&pb::PolicyAgents>) -> String {
    match agents {
        None => "all".to_owned(),
        Some(a) if a.agent_ids.is_empty() => "none".to_owned(),
        Some(a) => a.agent_ids.join(", "),
    }
}

fn step_up_text(step_up: Option<&pb::StepUpRequirement>) -> String {
    let Some(s) = step_up else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    if !s.acr_values.is_empty() {
        parts.push(format!("acr one of {}", s.acr_values.join(", ")));
    }
    if !s.amr_values.is_empty() {
        parts.push(format!("amr all of {}", s.amr_values.join(", ")));
    }
    if s.max_age > 0 {
        parts.push(format!("max age {}s", s.max_age));
    }
    or_dash(&parts.join("; "))
}

fn details(p: &pb::Policy, revision: u64) -> String {
    let scope = p.scope.clone().unwrap_or_default();
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
    let tools = if p.all_tools {
        "all".to_owned()
    } else {
        p.tools.join(", ")
    };
    let conditions = p
        .conditions
        .iter()
        .map(|c| format!("{} {} [{}]", c.attribute, c.operator, c.values.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    fields(&[
        ("id", p.id.clone()),
        ("name", p.name.clone()),
        ("description", or_dash(&p.description)),
        ("connector", p.connector.clone()),
        ("tools", or_dash(&tools)),
        ("scope", or_dash(&who.join("; "))),
        ("action", show::action(p.action())),
        ("approval flow", or_dash(&p.approval_flow_id)),
        ("conditions", or_dash(&conditions)),
        ("agents", agents_text(p.agents.as_ref())),
        ("step-up", step_up_text(p.step_up.as_ref())),
        ("expression", or_dash(&p.expression)),
        ("enabled", p.enabled.to_string()),
        ("created", time_cell(p.created_at.as_ref())),
        ("updated", time_cell(p.updated_at.as_ref())),
        ("revision", revision.to_string()),
    ])
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Report> {
    let request = pb::ListPoliciesRequest {
        search: args.search.unwrap_or_default(),
        action: args
            .action
            .map_or(pb::PolicyAction::Unspecified, ActionArg::proto) as i32,
        connector: args.connector.unwrap_or_default(),
        sort: match args.sort {
            SortArg::Name => pb::PolicySort::Name,
            SortArg::Action => pb::PolicySort::Action,
        } as i32,
        descending: args.desc,
        ..Default::default()
    };
    let listed = args
        .paging
        .list(client, request, |mut c, r| async move {
            c.list_policies(r).await
        })
        .await?;
    let header = [
        "NAME",
        "CONNECTOR",
        "TOOLS",
        "SCOPE",
        "ACTION",
        "ENABLED",
        "ID",
    ];
    Ok(listed.table("policies", show::policy_row, &header, |p| {
        let tools = if p.all_tools {
            "all".to_owned()
        } else {
            p.tool_count.to_string()
        };
        let scope = if p.all_users {
            "all users".to_owned()
        } else {
            format!("{} users, {} groups", p.user_count, p.group_count)
        };
        vec![
            p.name.clone(),
            p.connector.clone(),
            tools,
            scope,
            show::action(p.action()),
            show::yes_no(p.enabled),
            p.id.clone(),
        ]
    }))
}
