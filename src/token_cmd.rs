//! `portcullis token create`: an admin API token made on the store directly, for bootstrapping
//! before the first `serve` (a running server's admins use `CreateApiToken`).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token; prints the secret alone on the last line of stdout (shown only once).
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The store's directory; no server may be running on it.
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// The user the token acts as: an email or a user id.
    #[arg(long)]
    user: String,
    /// A name to tell the token apart, e.g. `ci` or `laptop`.
    #[arg(long, default_value = "cli")]
    name: String,
    /// When it stops working, e.g. `90d`, `12h`; never if omitted.
    #[arg(long)]
    expires: Option<humantime::Duration>,
    /// A role the token holds itself, so the first admin can act before any group has roles.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    ReadOnly,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Create(args) = command;
    let store = match store::Store::open(&args.data_dir) {
        Err(store::Error::Locked { path }) => anyhow::bail!(
            "the data directory `{}` is held by a running server: stop it first, or have an \
             admin create the token through the API (`portcullis admin tokens create`)",
            path.display()
        ),
        other => other
            .with_context(|| format!("cannot open the store in `{}`", args.data_dir.display()))?,
    };
    let role = args.role.map(|r| match r {
        RoleArg::Admin => pdp::Role::Admin,
        RoleArg::ReadOnly => pdp::Role::ReadOnly,
    });
    let minted = admin::token::create_on_store(
        &store,
        &args.user,
        &args.name,
        role,
        args.expires.map(Into::into),
    )
    .with_context(|| format!("cannot create a token for `{}`", args.user))?;
    let token = &minted.token;
    let expires = match token.expires_at {
        Some(at) => format_ms(at.0),
        None => "never".to_owned(),
    };
    let own_role = match token.role {
        Some(pdp::Role::Admin) => Some("admin"),
        Some(pdp::Role::ReadOnly) => Some("read-only"),
        None => None,
    };
    if args.json.json {
        // The shape of `portcullis admin tokens create --json` (docs/cli.md).
        crate::stdout::json(&serde_json::json!({
            "token": {
                "id": token.id,
                "name": token.name,
                "user_id": token.user_id,
                "role": own_role,
                "created_at": format_ms(token.created_at.0),
                "created_by": token.created_by,
                "expires_at": token.expires_at.map(|at| format_ms(at.0)),
                "revoked_at": null,
            },
            "secret": minted.secret,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let role = own_role.unwrap_or("none (the user's groups' roles apply)");
    crate::stdout::done(format_args!("token:   {} ({})", token.id, token.name))?;
    crate::stdout::done(format_args!("user:    {}", token.user_id))?;
    crate::stdout::done(format_args!("role:    {role}"))?;
    crate::stdout::done(format_args!("expires: {expires}"))?;
    crate::stdout::done(format_args!(
        "The secret follows; it is shown only this once. Use it as `authorization: Bearer <secret>`."
    ))?;
    crate::stdout::println(minted.secret)?;
    Ok(ExitCode::SUCCESS)
}

pub fn format_ms(ms: i64) -> String {
    pdp::Timestamp(ms)
        .rfc3339()
        .unwrap_or_else(|| ms.to_string())
}
