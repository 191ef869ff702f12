//! `admin tokens …`: admin API tokens over the API (Admin only).

use super::show::{self, Table, fields, or_dash, time_cell};
use super::{Client, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every token, or one user's.
    List {
        /// Only this user's tokens (a user id or email).
        #[arg(long)]
        user: Option<String>,
    },
    /// Create a token; prints the secret alone on the last line of stdout (shown only once).
    Create {
        /// The user the token acts as: a user id or email.
        #[arg(long)]
        user: String,
        /// A name to tell the token apart, e.g. `ci` or `laptop`.
        #[arg(long, default_value = "cli")]
        name: String,
        /// When it stops working, e.g. `90d`, `12h`; never if omitted.
        #[arg(long)]
        expires: Option<humantime::Duration>,
        /// A role the token holds itself; without one the user's groups' roles apply.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// An admin-API role as the flags spell it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    ReadOnly,
}

impl RoleArg {
    pub fn proto(self) -> pb::Role {
        match self {
            RoleArg::Admin => pb::Role::Admin,
            RoleArg::ReadOnly => pb::Role::ReadOnly,
        }
    }
}

pub async fn run(client: &mut Client, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::List { user } => {
            let answer = client
                .list_api_tokens(pb::ListApiTokensRequest {
                    user: user.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut table = Table::new(&[
                "ID", "NAME", "USER", "ROLE", "CREATED", "CREATOR", "EXPIRES", "REVOKED",
            ]);
            for t in &answer.tokens {
                table.row(vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.user_id.clone(),
                    show::token_role(t).unwrap_or_else(|| "-".to_owned()),
                    time_cell(t.created_at.as_ref()),
                    or_dash(&t.created_by),
                    t.expires_at
                        .as_ref()
                        .map_or_else(|| "never".to_owned(), |at| time_cell(Some(at))),
                    time_cell(t.revoked_at.as_ref()),
                ]);
            }
            let json = json!({
                "tokens": answer.tokens.iter().map(show::token).collect::<Vec<_>>(),
            });
            Ok(Report::new(json, table.render()))
        }
        Command::Create {
            user,
            name,
            expires,
            role,
        } => {
            let expires_in = expires
                .map(|d| {
                    let d: std::time::Duration = d.into();
                    anyhow::Ok(prost_types::Duration {
                        seconds: i64::try_from(d.as_secs())?,
                        nanos: i32::try_from(d.subsec_nanos())?,
                    })
                })
                .transpose()?;
            let answer = client
                .create_api_token(pb::CreateApiTokenRequest {
                    user,
                    name,
                    expires_in,
                    role: role.map_or(pb::Role::Unspecified, RoleArg::proto) as i32,
                })
                .await
                .map_err(status)?
                .into_inner();
            let t = answer.token.unwrap_or_default();
            let json = json!({
                "token": show::token(&t),
                "secret": answer.secret,
                "revision": answer.revision,
            });
            let mut text = fields(&[
                ("token", format!("{} ({})", t.id, t.name)),
                ("user", t.user_id.clone()),
                (
                    "role",
                    show::token_role(&t)
                        .unwrap_or_else(|| "none (the user's groups' roles apply)".to_owned()),
                ),
                (
                    "expires",
                    t.expires_at
                        .as_ref()
                        .map_or_else(|| "never".to_owned(), |at| time_cell(Some(at))),
                ),
                ("revision", answer.revision.to_string()),
            ]);
            text.push_str(
                "The secret follows; it is shown only this once. \
                 Use it as `authorization: Bearer <secret>`.\n",
            );
            text.push_str(&answer.secret);
            text.push('\n');
            Ok(Report::new(json, text).secret(&answer.secret))
        }
        Command::Revoke { id } => {
            let answer = client
                .revoke_api_token(pb::RevokeApiTokenRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({
                "token": answer.token.as_ref().map(show::token),
                "revision": answer.revision,
            });
            let text = format!("revoked token {id} at revision {}\n", answer.revision);
            Ok(Report::new(json, text).changed(true))
        }
    }
}
