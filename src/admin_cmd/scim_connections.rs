//! `admin scim-connections …`: identity providers' SCIM connections over the API: list, create
//! and rotate (the secret shown once), revoke. Writes are Admin only. And
//! `admin reload-token-files`, the other credentials a running server takes up anew.

use super::show::{Table, fields, or_dash, time_cell, time_json};
use super::{Client, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every connection, oldest first, revoked ones included.
    List,
    /// Create a connection; prints the secret alone on the last line of stdout (shown only once).
    Create {
        /// What to call the identity provider, e.g. `okta`: the audit log names its changes
        /// `scim:<name>`.
        #[arg(long)]
        name: String,
    },
    /// A new secret for a connection; prints it alone on the last line of stdout (shown only
    /// once). The old secret is still accepted for --grace, then refused.
    Rotate {
        /// The connection's id.
        id: String,
        /// How long the old secret is still accepted, `0s` to `7d`, e.g. `1h`: time to put the
        /// new one in the identity provider.
        #[arg(long, default_value = "1h")]
        grace: humantime::Duration,
    },
    /// Revoke a connection: every secret of it is refused from the next request on.
    Revoke {
        /// The connection's id.
        id: String,
    },
}

fn connection(c: &pb::ScimConnection) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "created_at": time_json(c.created_at.as_ref()),
        "created_by": c.created_by,
        "last_used_at": time_json(c.last_used_at.as_ref()),
        "rotated_at": time_json(c.rotated_at.as_ref()),
        "previous_valid_until": time_json(c.previous_valid_until.as_ref()),
        "revoked_at": time_json(c.revoked_at.as_ref()),
    })
}

/// The fields of a connection just made or rotated, then its secret alone on the last line.
fn with_secret(c: &pb::ScimConnection, secret: &str, revision: u64) -> String {
    let mut text = fields(&[
        ("connection", format!("{} ({})", c.id, c.name)),
        (
            "old secret until",
            time_cell(c.previous_valid_until.as_ref()),
        ),
        ("revision", revision.to_string()),
    ]);
    text.push_str(
        "In the identity provider, set the bearer token (API token) to the secret below; it is \
         shown only this once.\n",
    );
    text.push_str(secret);
    text.push('\n');
    text
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List => {
            let answer = client
                .list_scim_connections(pb::ListScimConnectionsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut table = Table::new(&[
                "ID",
                "NAME",
                "CREATED",
                "CREATOR",
                "LAST USED",
                "ROTATED",
                "OLD SECRET UNTIL",
                "REVOKED",
            ]);
            for c in &answer.connections {
                table.row(vec![
                    c.id.clone(),
                    c.name.clone(),
                    time_cell(c.created_at.as_ref()),
                    or_dash(&c.created_by),
                    time_cell(c.last_used_at.as_ref()),
                    time_cell(c.rotated_at.as_ref()),
                    time_cell(c.previous_valid_until.as_ref()),
                    time_cell(c.revoked_at.as_ref()),
                ]);
            }
            let json = json!({
                "connections": answer.connections.iter().map(connection).collect::<Vec<_>>(),
            });
            Ok(Report::new(json, table.render()))
        }
        Command::Create { name } => {
            let answer = client
                .create_scim_connection(pb::CreateScimConnectionRequest { name })
                .await
                .map_err(status)?
                .into_inner();
            let c = answer.connection.unwrap_or_default();
            let json = json!({
                "connection": connection(&c),
                "secret": answer.secret,
                "revision": answer.revision,
            });
            Ok(
                Report::new(json, with_secret(&c, &answer.secret, answer.revision))
                    .secret(&answer.secret),
            )
        }
        Command::Rotate { id, grace } => {
            let grace: std::time::Duration = grace.into();
            let grace = prost_types::Duration {
                seconds: i64::try_from(grace.as_secs())?,
                nanos: i32::try_from(grace.subsec_nanos())?,
            };
            let answer = client
                .rotate_scim_connection(pb::RotateScimConnectionRequest {
                    id,
                    grace: Some(grace),
                })
                .await
                .map_err(status)?
                .into_inner();
            let c = answer.connection.unwrap_or_default();
            let json = json!({
                "connection": connection(&c),
                "secret": answer.secret,
                "revision": answer.revision,
            });
            Ok(
                Report::new(json, with_secret(&c, &answer.secret, answer.revision))
                    .secret(&answer.secret),
            )
        }
        Command::Revoke { id } => {
            let answer = client
                .revoke_scim_connection(pb::RevokeScimConnectionRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({
                "connection": answer.connection.as_ref().map(connection),
                "revision": answer.revision,
            });
            let text = format!(
                "revoked SCIM connection {id} at revision {}\n",
                answer.revision
            );
            Ok(Report::new(json, text).changed(true))
        }
    }
}

/// `admin reload-token-files`: fails (exit 1) if a file did not check out.
pub async fn reload_token_files(client: &mut Client) -> anyhow::Result<Report> {
    let answer = client
        .reload_token_files(pb::ReloadTokenFilesRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let failed: Vec<String> = answer
        .files
        .iter()
        .filter(|f| !f.error.is_empty())
        .map(|f| format!("{}: {} (its previous secrets stay)", f.setting, f.error))
        .collect();
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    let mut table = Table::new(&["SETTING", "SECRETS"]);
    for f in &answer.files {
        table.row(vec![f.setting.clone(), f.secrets.to_string()]);
    }
    let json = json!({
        "files": answer.files.iter().map(|f| json!({"setting": f.setting, "secrets": f.secrets})).collect::<Vec<_>>(),
    });
    Ok(Report::new(json, table.render()).changed(true))
}
