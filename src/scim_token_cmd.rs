//! `portcullis scim-token create`: the bearer token an identity provider (Okta, Entra ID) sends
//! to the SCIM endpoint, made on the store directly (no server may be running on it).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an IdP connection and its token; prints the secret alone on the last line of
    /// stdout (shown only once).
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The store's directory; no server may be running on it.
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// What to call the connection, e.g. `okta` or `entra`: the audit log names SCIM changes
    /// `scim:<name>`.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Create(args) = command;
    let store = match store::Store::open(&args.data_dir) {
        Err(store::Error::Locked { path }) => anyhow::bail!(
            "the data directory `{}` is held by a running server: stop it first",
            path.display()
        ),
        other => other
            .with_context(|| format!("cannot open the store in `{}`", args.data_dir.display()))?,
    };
    let (connection, secret) = scim::connection::create_connection(&store, &args.name)
        .map_err(|e| anyhow::anyhow!("{}", e.detail))
        .with_context(|| format!("cannot create the SCIM connection `{}`", args.name))?;
    if args.json.json {
        // The shape of `portcullis admin scim-connections create --json` (docs/cli.md).
        crate::stdout::json(&serde_json::json!({
            "connection": {
                "id": connection.id,
                "name": connection.name,
                "created_at": crate::token_cmd::format_ms(connection.created_at.0),
                "created_by": connection.created_by,
                "last_used_at": null,
                "rotated_at": null,
                "previous_valid_until": null,
                "revoked_at": null,
            },
            "secret": secret,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::stdout::done(format_args!(
        "connection: {} ({})",
        connection.id, connection.name
    ))?;
    crate::stdout::done(format_args!(
        "In the identity provider, set the SCIM base URL to http(s)://<this server's HTTP address>/scim/v2"
    ))?;
    crate::stdout::done(format_args!(
        "and the bearer token (API token) to the secret below; it is shown only this once."
    ))?;
    crate::stdout::println(format_args!("{secret}"))?;
    Ok(ExitCode::SUCCESS)
}
