//! `admin groups …`.

use super::show::{self, fields, or_dash, time_cell};
use super::{Client, Paging, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Groups, by name unless sorted otherwise.
    List(ListArgs),
    /// One group and the policies that name it.
    Get {
        /// The group: its id or its exact name.
        id: String,
    },
    /// Rename a group, or change its description or roles (only what is given changes).
    Update(UpdateArgs),
    /// Create a local group.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// An admin-API role every member holds (repeatable).
        #[arg(long = "role", value_enum)]
        roles: Vec<super::tokens::RoleArg>,
    },
    /// The group's members, by user id.
    Members {
        /// The group: its id or its exact name.
        id: String,
        /// Only members whose name or email contains this, in any case.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Add users to the group, all or none; members already in it stay as they are.
    Assign {
        /// The group: its id or its exact name.
        id: String,
        /// User ids or emails.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove one member from the group.
    Remove {
        /// The group: its id or its exact name.
        id: String,
        /// A user id or email.
        user: String,
    },
    /// Delete the group and take it out of every policy that names it; its users stay.
    Delete {
        /// The group: its id or its exact name.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["name", "description", "roles", "no_roles"])
))]
pub struct UpdateArgs {
    /// The group: its id or its exact name.
    id: String,
    /// The new name.
    #[arg(long)]
    name: Option<String>,
    /// The new description (`""` clears it).
    #[arg(long)]
    description: Option<String>,
    /// The admin-API roles every member holds, replacing the current ones (repeatable).
    #[arg(long = "role", value_enum, conflicts_with = "no_roles")]
    roles: Vec<super::tokens::RoleArg>,
    /// Take every role away from the group.
    #[arg(long)]
    no_roles: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only groups whose name contains this, in any case.
    #[arg(long)]
    search: Option<String>,
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
    /// By member count.
    Users,
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List(args) => list(client, args).await,
        Command::Update(args) => update(client, args).await,
        Command::Get { id } => {
            let answer = get(client, &id).await?;
            let g = answer.group.unwrap_or_default();
            let json = json!({
                "group": show::group(&g),
                "policy_ids": answer.policy_ids,
                "revision": answer.revision,
            });
            let text = fields(&[
                ("id", g.id.clone()),
                ("name", g.name.clone()),
                ("description", or_dash(&g.description)),
                ("roles", show::roles_cell(g.roles())),
                ("managed by", show::managed_by(g.managed_by())),
                ("external id", or_dash(&g.external_id)),
                ("users", g.user_count.to_string()),
                ("policies", or_dash(&answer.policy_ids.join(", "))),
                ("created", time_cell(g.created_at.as_ref())),
                ("updated", time_cell(g.updated_at.as_ref())),
                ("revision", answer.revision.to_string()),
            ]);
            Ok(Report::new(json, text))
        }
        Command::Create {
            name,
            description,
            roles,
        } => {
            let answer = client
                .create_group(pb::CreateGroupRequest {
                    name,
                    description,
                    roles: roles.into_iter().map(|r| r.proto() as i32).collect(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let g = answer.group.unwrap_or_default();
            let json = json!({"group": show::group(&g), "revision": answer.revision});
            let text = format!(
                "created group {} ({}) at revision {}\n",
                g.id, g.name, answer.revision
            );
            Ok(Report::new(json, text).changed(true))
        }
        Command::Members { id, search, paging } => {
            let id = resolve(client, &id).await?;
            members(client, id, search, paging).await
        }
        Command::Assign { id, users } => {
            let id = resolve(client, &id).await?;
            let asked = users.len();
            let answer = client
                .assign_users(pb::AssignUsersRequest {
                    group_id: id.clone(),
                    users,
                })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({
                "added": answer.added,
                "revision": answer.revision,
                "warning": (!answer.warning.is_empty()).then_some(&answer.warning),
            });
            let text = format!(
                "added {} of {asked} users to group {id} at revision {}\n",
                answer.added, answer.revision
            );
            Ok(Report::new(json, text)
                .changed(true)
                .warning(&answer.warning))
        }
        Command::Remove { id, user } => {
            let id = resolve(client, &id).await?;
            let answer = client
                .remove_group_member(pb::RemoveGroupMemberRequest {
                    group_id: id.clone(),
                    user: user.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({
                "removed": answer.removed,
                "revision": answer.revision,
                "warning": (!answer.warning.is_empty()).then_some(&answer.warning),
            });
            let text = if answer.removed {
                format!(
                    "removed {user} from group {id} at revision {}\n",
                    answer.revision
                )
            } else {
                format!(
                    "{user} was not a member of group {id}: nothing changed (revision {})\n",
                    answer.revision
                )
            };
            Ok(Report::new(json, text)
                .changed(true)
                .warning(&answer.warning))
        }
        Command::Delete { id } => {
            let id = resolve(client, &id).await?;
            let answer = client
                .delete_group(pb::DeleteGroupRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({
                "updated_policies": answer.updated_policies.iter().map(show::policy).collect::<Vec<_>>(),
                "revision": answer.revision,
            });
            let mut text = format!("deleted group {id} at revision {}", answer.revision);
            if !answer.updated_policies.is_empty() {
                let ids: Vec<&str> = answer
                    .updated_policies
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect();
                text.push_str(&format!("; removed it from policies {}", ids.join(", ")));
            }
            text.push('\n');
            Ok(Report::new(json, text).changed(true))
        }
    }
}

/// The id of the group `reference` names: its id, else the one group of that name, ignoring
/// case (GetGroup's `or_by_name`; the server refuses a name several groups share, listing them).
pub async fn resolve(client: &mut Client, reference: &str) -> anyhow::Result<String> {
    Ok(get(client, reference).await?.group.unwrap_or_default().id)
}

/// The group `reference` names, by id or name (see [`resolve`]).
async fn get(client: &mut Client, reference: &str) -> anyhow::Result<pb::GetGroupResponse> {
    client
        .get_group(pb::GetGroupRequest {
            id: reference.to_owned(),
            or_by_name: true,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(status)
}

async fn update(client: &mut Client, args: UpdateArgs) -> anyhow::Result<Report> {
    let id = resolve(client, &args.id).await?;
    let mut paths = Vec::new();
    if args.name.is_some() {
        paths.push("name".to_owned());
    }
    if args.description.is_some() {
        paths.push("description".to_owned());
    }
    if !args.roles.is_empty() || args.no_roles {
        paths.push("roles".to_owned());
    }
    let answer = client
        .update_group(pb::UpdateGroupRequest {
            id,
            name: args.name.unwrap_or_default(),
            description: args.description.unwrap_or_default(),
            roles: args.roles.into_iter().map(|r| r.proto() as i32).collect(),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(status)?
        .into_inner();
    let g = answer.group.unwrap_or_default();
    let json = json!({
        "group": show::group(&g),
        "revision": answer.revision,
        "warning": (!answer.warning.is_empty()).then_some(&answer.warning),
    });
    let text = format!(
        "updated group {} ({}) at revision {}: roles {}\n",
        g.id,
        g.name,
        answer.revision,
        show::roles_cell(g.roles())
    );
    Ok(Report::new(json, text)
        .changed(true)
        .warning(&answer.warning))
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Report> {
    let request = pb::ListGroupsRequest {
        search: args.search.unwrap_or_default(),
        sort: match args.sort {
            SortArg::Name => pb::GroupSort::Name,
            SortArg::Users => pb::GroupSort::UserCount,
        } as i32,
        descending: args.desc,
        ..Default::default()
    };
    let listed = args
        .paging
        .list(
            client,
            request,
            |mut c, r| async move { c.list_groups(r).await },
        )
        .await?;
    let header = ["NAME", "USERS", "ROLES", "MANAGED", "CREATED", "ID"];
    Ok(listed.table("groups", show::group, &header, |g| {
        vec![
            g.name.clone(),
            g.user_count.to_string(),
            show::roles_cell(g.roles()),
            show::managed_by(g.managed_by()),
            time_cell(g.created_at.as_ref()),
            g.id.clone(),
        ]
    }))
}

async fn members(
    client: &mut Client,
    id: String,
    search: Option<String>,
    paging: Paging,
) -> anyhow::Result<Report> {
    let request = pb::ListGroupMembersRequest {
        group_id: id,
        search: search.unwrap_or_default(),
        ..Default::default()
    };
    let listed = paging
        .list(client, request, |mut c, r| async move {
            c.list_group_members(r).await
        })
        .await?;
    let header = ["EMAIL", "NAME", "STATUS", "SOURCE", "JOINED", "ID"];
    Ok(listed.table("members", show::member, &header, |m| {
        vec![
            m.email.clone(),
            m.display_name.clone(),
            show::user_status(m.status()),
            show::source(m.source()),
            time_cell(m.joined_at.as_ref()),
            m.user_id.clone(),
        ]
    }))
}
