//! `admin whoami`, `admin users …` and `admin audit`.

use super::show::{self, Table, fields, or_dash, time_cell};
use super::{Client, Paging, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Users, by email unless sorted otherwise.
    List(ListArgs),
    /// One user: details, groups, effective roles, recent decisions and changes.
    Get {
        /// A user id or email (any case).
        user: String,
        /// How many recent decisions and changes to show (at most 200).
        #[arg(long, default_value_t = 20)]
        activity: u32,
    },
    /// Cut off every agent acting for the user, whatever the policies say.
    Lock {
        /// A user id or email.
        user: String,
        /// Why: shown to other admins and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Lift an admin's lock.
    Unlock {
        /// A user id or email.
        user: String,
    },
    /// The tools this user's agent may call (anything but Deny), as DecisionService answers
    /// the gateway's ListAllowedTools.
    AllowedTools(super::queries::AllowedToolsArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only users whose email (or user name) or display name contains this, in any case.
    #[arg(long)]
    search: Option<String>,
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    #[arg(long, value_enum, default_value_t = SortArg::Email)]
    sort: SortArg,
    /// Reverse the order.
    #[arg(long)]
    desc: bool,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Active,
    Inactive,
    Locked,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SortArg {
    Email,
    /// Enabled, then disabled, then not configured.
    Mfa,
    Created,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only events by this actor, exactly (a user id, `cli`, `scim:<connection>`).
    #[arg(long)]
    actor: Option<String>,
    /// Only events about this target id (a user id, group id, policy id, token id).
    #[arg(long)]
    target: Option<String>,
    /// Only events with this action (`user.lock`), or every action starting with it when it
    /// ends with a dot (`user.`).
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2026-12-01T00:00:00Z`) or a duration ago
    /// (`1h`, `7d`).
    #[arg(long, value_parser = when)]
    since: Option<prost_types::Timestamp>,
    /// Only events before this time (as --since).
    #[arg(long, value_parser = when)]
    until: Option<prost_types::Timestamp>,
    #[command(flatten)]
    paging: Paging,
}

/// An RFC 3339 time, or a duration before now.
fn when(text: &str) -> Result<prost_types::Timestamp, String> {
    let at = match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        Ok(at) => at,
        Err(_) => {
            let ago = humantime::parse_duration(text).map_err(|_| {
                format!("`{text}` is neither an RFC 3339 time nor a duration like `1h`")
            })?;
            time::OffsetDateTime::now_utc()
                .checked_sub(time::Duration::try_from(ago).map_err(|e| e.to_string())?)
                .ok_or_else(|| format!("`{text}` is too far back"))?
        }
    };
    Ok(prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
    })
}

pub async fn whoami(client: &mut Client) -> anyhow::Result<Report> {
    let me = client
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let roles = show::roles(me.roles());
    let json = json!({
        "user_id": me.user_id,
        "email": me.email,
        "display_name": me.display_name,
        "roles": roles,
        "token_id": me.token_id,
    });
    let text = fields(&[
        ("user", me.user_id.clone()),
        ("email", me.email.clone()),
        ("name", me.display_name.clone()),
        ("roles", or_dash(&roles.join(", "))),
        ("token", me.token_id.clone()),
    ]);
    Ok(Report::new(json, text))
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List(args) => list(client, args).await,
        Command::Get { user, activity } => get(client, user, activity).await,
        Command::Lock { user, reason } => {
            let answer = client
                .lock_user(pb::LockUserRequest { user, reason })
                .await
                .map_err(status)?
                .into_inner();
            Ok(changed("locked", answer.user.as_ref(), answer.revision))
        }
        // Answered by DecisionService, on the channel: `admin_cmd::run` calls it.
        Command::AllowedTools(_) => anyhow::bail!("allowed-tools is not an AdminService call"),
        Command::Unlock { user } => {
            let answer = client
                .unlock_user(pb::UnlockUserRequest { user })
                .await
                .map_err(status)?
                .into_inner();
            Ok(changed("unlocked", answer.user.as_ref(), answer.revision))
        }
    }
}

fn changed(verb: &str, user: Option<&pb::User>, revision: u64) -> Report {
    let json = json!({"user": user.map(show::user), "revision": revision});
    let who = user.map_or_else(String::new, |u| {
        format!("{} ({})", u.id, u.emails.first().map_or("", String::as_str))
    });
    Report::new(json, format!("{verb} user {who} at revision {revision}\n")).changed(true)
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Report> {
    let request = pb::ListUsersRequest {
        search: args.search.unwrap_or_default(),
        status: args
            .status
            .map_or(pb::UserStatus::Unspecified, |s| match s {
                StatusArg::Active => pb::UserStatus::Active,
                StatusArg::Inactive => pb::UserStatus::Inactive,
                StatusArg::Locked => pb::UserStatus::Locked,
            }) as i32,
        sort: match args.sort {
            SortArg::Email => pb::UserSort::Email,
            SortArg::Mfa => pb::UserSort::Mfa,
            SortArg::Created => pb::UserSort::Created,
        } as i32,
        descending: args.desc,
        ..Default::default()
    };
    let listed = args
        .paging
        .list(
            client,
            request,
            |mut c, r| async move { c.list_users(r).await },
        )
        .await?;
    let header = ["EMAIL", "NAME", "STATUS", "MFA", "CREATED", "ID"];
    Ok(listed.table("users", show::user_row, &header, |u| {
        vec![
            u.email.clone(),
            u.display_name.clone(),
            show::user_status(u.status()),
            show::mfa(u.mfa()),
            time_cell(u.created_at.as_ref()),
            u.id.clone(),
        ]
    }))
}

async fn get(client: &mut Client, user: String, activity: u32) -> anyhow::Result<Report> {
    let answer = client
        .get_user(pb::GetUserRequest {
            user,
            activity_limit: activity,
        })
        .await
        .map_err(status)?
        .into_inner();
    let json = json!({
        "user": answer.user.as_ref().map(show::user),
        "groups": answer.groups.iter().map(show::user_group).collect::<Vec<_>>(),
        "roles": answer.roles.iter().map(show::effective_role).collect::<Vec<_>>(),
        "decisions": answer.decisions.iter().map(show::decision_activity).collect::<Vec<_>>(),
        "changes": answer.changes.iter().map(show::audit_event).collect::<Vec<_>>(),
        "revision": answer.revision,
    });

    let u = answer.user.unwrap_or_default();
    let mut status_line = show::user_status(u.status());
    if let Some(lock) = &u.lock {
        status_line.push_str(&format!(
            " (by {} at {}: {})",
            lock.locked_by,
            time_cell(lock.locked_at.as_ref()),
            lock.reason
        ));
    }
    let roles = answer
        .roles
        .iter()
        .map(|r| format!("{} (from {})", show::role(r.role()), r.group_ids.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let mut text = fields(&[
        ("id", u.id.clone()),
        ("email", or_dash(&u.emails.join(", "))),
        ("name", u.display_name.clone()),
        ("user name", u.user_name.clone()),
        ("external id", or_dash(&u.external_id)),
        ("status", status_line),
        ("mfa", show::mfa(u.mfa())),
        ("roles", or_dash(&roles)),
        ("manager", or_dash(&u.manager_id)),
        ("created", time_cell(u.created_at.as_ref())),
        ("updated", time_cell(u.updated_at.as_ref())),
        ("revision", answer.revision.to_string()),
    ]);

    text.push_str("\nGroups\n");
    let mut groups = Table::new(&["NAME", "ROLES", "MANAGED", "SOURCE", "JOINED", "ID"]);
    for g in &answer.groups {
        groups.row(vec![
            g.name.clone(),
            show::roles_cell(g.roles()),
            show::managed_by(g.managed_by()),
            show::source(g.source()),
            time_cell(g.joined_at.as_ref()),
            g.group_id.clone(),
        ]);
    }
    text.push_str(&groups.render());

    text.push_str("\nRecent decisions\n");
    let mut decisions = Table::new(&[
        "TIME",
        "AGENT",
        "CONNECTOR",
        "TOOL",
        "DECISION",
        "REASON",
        "POLICY",
        "REVISION",
    ]);
    for d in &answer.decisions {
        decisions.row(vec![
            time_cell(d.time.as_ref()),
            d.agent.clone(),
            d.connector.clone(),
            d.tool.clone(),
            show::decision(d.decision()),
            show::reason(d.reason()),
            or_dash(&d.policy_id),
            d.revision.to_string(),
        ]);
    }
    text.push_str(&decisions.render());

    text.push_str("\nRecent changes\n");
    text.push_str(&audit_table(&answer.changes));
    Ok(Report::new(json, text))
}

pub async fn audit(client: &mut Client, args: AuditArgs) -> anyhow::Result<Report> {
    let request = pb::ListAuditEventsRequest {
        actor: args.actor.unwrap_or_default(),
        target_id: args.target.unwrap_or_default(),
        action: args.action.unwrap_or_default(),
        since: args.since,
        until: args.until,
        ..Default::default()
    };
    let listed = args
        .paging
        .list(client, request, |mut c, r| async move {
            c.list_audit_events(r).await
        })
        .await?;
    Ok(listed.report("events", show::audit_event, audit_table(&listed.rows)))
}

fn audit_table(events: &[pb::AuditEvent]) -> String {
    let mut table = Table::new(&[
        "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REVISION", "DETAIL",
    ]);
    for e in events {
        table.row(vec![
            time_cell(e.time.as_ref()),
            e.actor.clone(),
            e.action.clone(),
            format!("{} {}", e.target_kind, e.target_id),
            e.outcome.clone(),
            e.revision.to_string(),
            or_dash(&e.detail),
        ]);
    }
    table.render()
}
