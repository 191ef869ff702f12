//! `portcullis`: the binary. Parses flags, starts logging and hands off to one subcommand;
//! the work itself lives in the library crates.
//!
//! Output goes through `stdout` (never `print!`, which panics on a closed pipe).
#![deny(clippy::print_stdout)]

mod admin_cmd;
mod audit_log;
mod backup_cmd;
mod bootstrap;
mod check;
mod config;
mod control;
mod decision_log;
mod decision_token;
mod file_modes;
mod grpc_limits;
mod http;
mod https;
mod import;
mod listen;
mod metrics;
mod net;
mod policies_cmd;
mod profiles;
mod reload;
mod retention;
mod scim_token_cmd;
mod serve;
mod shell_docs;
mod shutdown;
mod sidecar;
mod sidecar_approvals;
mod stdout;
mod telemetry;
mod token_cmd;
mod token_files;
mod workload_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Authorization sidecar for AI agents: decides, for every tool call, whether this agent may
/// call this connector tool for this user.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML file of settings (docs/config.md): flags and environment variables win over it.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Print only what the command exists to show: no confirmations of changes (a secret shown
    /// once is printed alone), warnings, hints or progress bars; `policies diff` answers by its
    /// exit code alone. Errors are always printed.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// How logs are written to stderr: `text` (colored on a terminal) or `json` (one object per
    /// line).
    #[arg(long, global = true, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Which logs to write, as a tracing filter: `info`, `warn,fleet=debug`, … `serve` and
    /// `sidecar` read it again on SIGHUP.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the control plane: decisions, admin and SCIM over the directory in the data dir.
    Serve(serve::Args),
    /// Answer decisions from memory next to a gateway, following a control plane's snapshot
    /// stream: no store of its own.
    Sidecar(sidecar::Args),
    /// Load a directory export (users, groups, policies…), all or nothing: into a running
    /// server with --server (online), or into a stopped store's --data-dir (offline).
    Import(import::Args),
    /// Ask a running server for one decision and print it.
    Check(check::Args),
    /// Manage a running server over its admin API: users, groups, policies, tokens, audit.
    Admin(admin_cmd::Args),
    /// Policies as code: export a server's policies into a directory, diff, apply it as one
    /// audited change, and test decision cases for CI.
    Policies(policies_cmd::Args),
    /// Create the bearer token an identity provider uses for SCIM, on the store directly.
    #[command(subcommand, name = "scim-token")]
    ScimToken(scim_token_cmd::Command),
    /// Manage admin API tokens on the store directly (for bootstrapping).
    #[command(subcommand)]
    Token(token_cmd::Command),
    /// Generate, and replay against a server, workloads of users, groups, policies and requests.
    #[command(subcommand)]
    Workload(workload_cmd::Command),
    /// Write a consistent copy of the store into a new directory, while `serve` runs or not.
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup into a new or empty data directory, with no server running on it.
    Restore(backup_cmd::RestoreArgs),
    /// Show the settings `serve` or `sidecar` would run with, or document them all.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the client profiles (`~/.config/portcullis/config.toml`), the one in use marked.
    Profiles(profiles::ListArgs),
    /// Print a shell completion script (bash, zsh, fish, …) on stdout.
    Completions(shell_docs::CompletionsArgs),
    /// Write man pages for every command into a directory.
    Man(shell_docs::ManArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// The effective settings (config file, environment, defaults) as a config file, each with
    /// where it came from.
    Print {
        /// `serve` or `sidecar`.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(config::SECTIONS))]
        subcommand: String,
        #[command(flatten)]
        json: stdout::JsonArg,
    },
    /// Every setting as Markdown tables: key, environment variable, flag, default, meaning.
    Docs,
}

fn main() -> ExitCode {
    // Before any thread starts: everything we create is private to our user.
    file_modes::private_umask();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {}", said_once(&error));
            return ExitCode::from(2);
        }
    };
    let traces = match &cli.command {
        Command::Serve(args) => telemetry::Traces::start(&args.telemetry, "portcullis"),
        Command::Sidecar(args) => telemetry::Traces::start(&args.telemetry, "portcullis-sidecar"),
        _ => Ok(None),
    };
    let traces = match traces {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("error: {}", said_once(&error));
            return ExitCode::FAILURE;
        }
    };
    init_logging(cli.log_format, &cli.log_filter, traces.as_ref());
    stdout::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Sidecar(args) => sidecar::run(args),
        Command::Import(args) => import::run(args),
        Command::Check(args) => check::run(args),
        Command::Admin(args) => admin_cmd::run(args),
        Command::Policies(args) => policies_cmd::run(args),
        Command::ScimToken(command) => scim_token_cmd::run(command),
        Command::Token(command) => token_cmd::run(command),
        Command::Workload(command) => workload_cmd::run(command),
        Command::Backup(args) => backup_cmd::backup(args),
        Command::Restore(args) => backup_cmd::restore(args),
        Command::Config(ConfigCommand::Print { subcommand, json }) => {
            let mut global: Vec<std::ffi::OsString> = Vec::new();
            if let Some(path) = &cli.config {
                global.extend(["--config".into(), path.clone().into_os_string()]);
            }
            config::print(&Cli::command(), &global, &subcommand, json.json)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Profiles(args) => profiles::list(&args).map(|()| ExitCode::SUCCESS),
        Command::Completions(args) => shell_docs::completions(Cli::command(), args),
        Command::Man(args) => shell_docs::man(Cli::command(), args),
        Command::Config(ConfigCommand::Docs) => stdout::print(config::docs(&Cli::command()))
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
    };
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(code) => code,
        // The reader of our output went away (`… | head -1`): it has what it wanted.
        Err(error) if stdout::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", said_once(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each said once: a cause whose text is already said
/// is left out (libraries that put their source in their own message, as hyper and ours do,
/// would otherwise repeat it: "tcp connect error: tcp connect error: Connection refused").
fn said_once(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        // clap's errors say `error: ` themselves; `main` does.
        let part = part.strip_prefix("error: ").unwrap_or(&part).trim_end();
        if text.contains(part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(part);
    }
    text
}

/// The command line, with the config file filling in what flags and the environment did not.
fn parse() -> anyhow::Result<Cli> {
    let matches = config::matches(&Cli::command(), std::env::args_os().collect())?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// Logs to stderr, so stdout stays for command output. A filter that does not parse falls back
/// to `info`, saying so. With `traces`, trace spans go to its exporter (and never to the log).
fn init_logging(format: LogFormat, filter: &str, traces: Option<&telemetry::Traces>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    // Behind a reload handle, so SIGHUP can swap it (`reload`).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    reload::set_log_filter(handle);
    let mut layers = vec![
        logs.with_filter(filter.and(telemetry::without_traces()))
            .boxed(),
    ];
    layers.extend(traces.map(telemetry::Traces::layer));
    tracing_subscriber::registry().with(layers).init();
    if let Some(e) = bad {
        tracing::warn!(error = %e, "--log-filter does not parse; logging at info");
    }
    if let Some(traces) = traces {
        tracing::info!(endpoint = %traces.endpoint(), "exporting traces over OTLP");
    }
}

/// A multi-threaded runtime for the subcommands that speak gRPC.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
