//! `portcullis`: the binary. Parses flags, starts logging and hands off to one subcommand;
//! the work itself lives in the library crates.

mod admin_cmd;
mod check;
mod import;
mod net;
mod scim_token_cmd;
mod serve;
mod sidecar;
mod token_cmd;
mod workload_cmd;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Authorization sidecar for AI agents: decides, for every tool call, whether this agent may
/// call this connector tool for this user.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the control plane: decisions, admin and SCIM over the directory in the data dir.
    Serve(serve::Args),
    /// Answer decisions from memory next to a gateway, following a control plane's snapshot
    /// stream: no store of its own.
    Sidecar(sidecar::Args),
    /// Load a directory export (users, groups, policies) into the data dir, all or nothing.
    Import(import::Args),
    /// Ask a running server for one decision and print it.
    Check(check::Args),
    /// Manage a running server over its admin API: users, groups, policies, tokens, audit.
    Admin(admin_cmd::Args),
    /// Create the bearer token an identity provider uses for SCIM, on the store directly.
    #[command(subcommand, name = "scim-token")]
    ScimToken(scim_token_cmd::Command),
    /// Manage admin API tokens on the store directly (for bootstrapping).
    #[command(subcommand)]
    Token(token_cmd::Command),
    /// Generate, and replay against a server, workloads of users, groups, policies and requests.
    #[command(subcommand)]
    Workload(workload_cmd::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Sidecar(args) => sidecar::run(args),
        Command::Import(args) => import::run(args),
        Command::Check(args) => check::run(args),
        Command::Admin(args) => admin_cmd::run(args),
        Command::ScimToken(command) => scim_token_cmd::run(command),
        Command::Token(command) => token_cmd::run(command),
        Command::Workload(command) => workload_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), so stdout stays for command output.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A multi-threaded runtime for the subcommands that speak gRPC.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
