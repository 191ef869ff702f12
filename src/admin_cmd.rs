//! `portcullis admin …`: a client for a running server's AdminService (users, groups, policies,
//! API tokens, audit), printed as aligned tables for people or as one JSON document per command.
//!
//! Every call carries `authorization: Bearer <token>`; the token is never printed or logged.

mod agents;
mod approval_flows;
mod approvals;
mod groups;
mod paging;
mod policies;
mod queries;
mod scim_connections;
mod show;
mod tokens;
mod users;
mod webhooks;

use anyhow::Context;
use paging::Paging;
use pb::admin_service_client::AdminServiceClient;
use portcullis_proto::v1 as pb;
use std::process::ExitCode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Rows per request at most (the server's maximum page size).
const MAX_PAGE_SIZE: u32 = 500;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PORTCULLIS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(flatten)]
    token: AdminToken,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(flatten)]
    tls: super::check::ClientTls,
    #[command(flatten)]
    profile: crate::profiles::ProfileArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Who the token acts as, and the roles it holds.
    Whoami,
    /// List, show, lock and unlock users; the tools a user's agent may call.
    #[command(subcommand)]
    Users(users::Command),
    /// List, show, create, update and delete groups (by id or name); list, add and remove members.
    #[command(subcommand)]
    Groups(groups::Command),
    /// List, show, create, update (any field), delete, enable and disable policies.
    #[command(subcommand)]
    Policies(policies::Command),
    /// List, show, register, update and delete agents; the kill switch (enable, disable).
    #[command(subcommand)]
    Agents(agents::Command),
    /// List, show, create, update and delete approval flows; show or set the default flow.
    #[command(subcommand, name = "approval-flows")]
    ApprovalFlows(approval_flows::Command),
    /// The organisation's settings (what happens to unregistered agents).
    #[command(subcommand)]
    Settings(agents::SettingsCommand),
    /// Approval requests: your inbox, show, approve, deny, cancel.
    #[command(subcommand)]
    Approvals(approvals::Command),
    /// List, create and revoke admin API tokens (Admin only).
    #[command(subcommand)]
    Tokens(tokens::Command),
    /// List, create, rotate and revoke identity providers' SCIM connections (writes: Admin only).
    #[command(subcommand, name = "scim-connections")]
    ScimConnections(scim_connections::Command),
    /// Read the server's decision and sidecar token files again, as SIGHUP does (Admin only).
    #[command(name = "reload-token-files")]
    ReloadTokenFiles,
    /// The audit log, newest first.
    Audit(users::AuditArgs),
    /// Whom the enabled policies of a connector's tool name (users, groups, everyone), by
    /// action, most restrictive first.
    #[command(name = "who-can")]
    WhoCan(queries::WhoCanArgs),
    /// List, show, create, update and delete webhook endpoints (approval notifications); their
    /// deliveries.
    #[command(subcommand)]
    Webhooks(webhooks::Command),
}

/// The admin API token of a client command: given, or read from a file (`--token-file`, or a
/// profile's `token-file`, docs/profiles.md).
#[derive(Debug, clap::Args)]
pub struct AdminToken {
    /// The admin API token (`pcl_…`), sent as `authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PORTCULLIS_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    token: Option<Secret>,
    /// A file holding the admin API token, instead of --token (kept out of the shell's history
    /// and the process list). Surrounding whitespace is ignored.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PORTCULLIS_TOKEN_FILE",
        conflicts_with = "token"
    )]
    token_file: Option<std::path::PathBuf>,
}

impl AdminToken {
    /// The token, if one was given or its file named.
    pub fn secret(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(secret) = &self.token {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = crate::decision_token::read_token_file(path, "admin API token")?;
        Ok(Some(Secret(token)))
    }

    /// The token; an error saying how to give one when none was.
    pub fn required(&self) -> anyhow::Result<Secret> {
        self.secret()?.ok_or_else(no_token)
    }
}

/// No admin token was given: how to give one.
pub fn no_token() -> anyhow::Error {
    anyhow::anyhow!(
        "no admin API token: pass `--token-file <file>` or `--token <secret>`, set \
         PORTCULLIS_TOKEN_FILE or PORTCULLIS_TOKEN, or name a token file in a profile \
         (docs/profiles.md); `portcullis token create` makes the first one"
    )
}

/// The token's secret: kept out of `Debug` output so it cannot end up in a log line.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub(crate) fn parse_secret(s: &str) -> Result<Secret, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(Secret(s.to_owned()))
}

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// `Bearer <secret>` as a header value (the secret must be printable ASCII).
    pub(crate) fn new(secret: &Secret) -> anyhow::Result<Bearer> {
        MetadataValue::try_from(format!("Bearer {}", secret.0))
            .map(Bearer)
            .map_err(|_| anyhow::anyhow!("the token is not a valid header value (printable ASCII)"))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// What a command prints: `json` with `--json`, else `text` on stdout and `warning` on stderr.
pub struct Report {
    json: serde_json::Value,
    text: String,
    warning: Option<String>,
    /// A hint for people (on stderr), e.g. that a list was cut at `--limit`.
    note: Option<String>,
    /// The command changed something: `text` only confirms it (left out with `--quiet`).
    changed: bool,
    /// A secret shown only this once: all `--quiet` prints.
    secret: Option<String>,
}

impl Report {
    fn new(json: serde_json::Value, text: impl Into<String>) -> Report {
        Report {
            json,
            text: text.into(),
            warning: None,
            note: None,
            changed: false,
            secret: None,
        }
    }

    fn changed(mut self, changed: bool) -> Report {
        self.changed = changed;
        self
    }

    /// The secret the command made, if any (empty means none).
    fn secret(mut self, secret: &str) -> Report {
        if !secret.is_empty() {
            self.secret = Some(secret.to_owned());
        }
        self
    }

    /// The server's warning, if it sent one (empty means none).
    fn warning(mut self, warning: &str) -> Report {
        if !warning.is_empty() {
            self.warning = Some(warning.to_owned());
        }
        self
    }

    fn note(mut self, note: Option<String>) -> Report {
        self.note = note;
        self
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let secret = args.token.required()?;
    let bearer = MetadataValue::try_from(format!("Bearer {}", secret.0))
        .map_err(|_| anyhow::anyhow!("the token is not a valid header value (printable ASCII)"))?;
    let addr = super::check::with_scheme(&args.server);
    let json = args.json;
    let report = super::runtime()?.block_on(async {
        let channel = super::check::endpoint(&addr, &args.tls)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let mut client =
            AdminServiceClient::with_interceptor(channel.clone(), Bearer(bearer.clone()));
        match args.command {
            Command::Whoami => users::whoami(&mut client).await,
            Command::Users(users::Command::AllowedTools(args)) => {
                queries::allowed_tools(channel, args).await
            }
            Command::Users(command) => users::run(&mut client, command).await,
            Command::WhoCan(args) => queries::who_can(&mut client, args).await,
            Command::Groups(command) => groups::run(&mut client, command).await,
            Command::Policies(command) => policies::run(&mut client, command).await,
            Command::Tokens(command) => tokens::run(&mut client, command).await,
            Command::ScimConnections(command) => scim_connections::run(&mut client, command).await,
            Command::ReloadTokenFiles => scim_connections::reload_token_files(&mut client).await,
            Command::Agents(command) => agents::run(&mut client, command).await,
            Command::Settings(command) => agents::settings(&mut client, command).await,
            Command::Audit(command) => users::audit(&mut client, command).await,
            Command::ApprovalFlows(command) => {
                let mut client =
                    pb::approval_flow_service_client::ApprovalFlowServiceClient::with_interceptor(
                        channel,
                        Bearer(bearer),
                    );
                approval_flows::run(&mut client, command).await
            }
            Command::Approvals(command) => {
                let mut client =
                    pb::approval_service_client::ApprovalServiceClient::with_interceptor(
                        channel,
                        Bearer(bearer),
                    );
                approvals::run(&mut client, command).await
            }
            Command::Webhooks(command) => {
                let mut client = pb::webhook_service_client::WebhookServiceClient::with_interceptor(
                    channel,
                    Bearer(bearer),
                );
                webhooks::run(&mut client, command).await
            }
        }
    })?;
    if json {
        crate::stdout::json(&report.json)?;
    } else if crate::stdout::quiet() {
        // What the command exists to show, without confirmations, warnings or hints.
        if let Some(secret) = &report.secret {
            crate::stdout::println(secret)?;
        } else if !report.changed {
            crate::stdout::print(report.text)?;
        }
    } else {
        crate::stdout::print(report.text)?;
        if let Some(warning) = &report.warning {
            eprintln!("warning: {warning}");
        }
        if let Some(note) = &report.note {
            eprintln!("{note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A refused or failed call as people read it: `permission denied: <the server's message>`.
pub fn status(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", code_name(status.code()), status.message())
}

/// `PermissionDenied` → `permission denied`.
fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_are_consistent() {
        <Args as clap::Args>::augment_args(clap::Command::new("admin")).debug_assert();
    }

    #[test]
    fn status_codes_read_as_words() {
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "permission denied"
        );
        assert_eq!(code_name(tonic::Code::Unauthenticated), "unauthenticated");
        let error = status(tonic::Status::not_found("user `x` not found"));
        assert_eq!(error.to_string(), "not found: user `x` not found");
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let secret = parse_secret(" pcl_abc ").unwrap();
        assert_eq!(secret.0, "pcl_abc");
        assert!(!format!("{secret:?}").contains("pcl_abc"));
    }
}
