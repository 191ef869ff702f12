//! `portcullis workload`: generate a workload, and replay one against a running server,
//! checking every answer against the expected one.

use anyhow::{Context, bail};
use futures_util::stream::{self, StreamExt};
use portcullis_proto::v1 as pb;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write users, groups, policies and requests (with expected answers) to a directory.
    Generate(GenerateArgs),
    /// Send every request of a workload to a server and compare each answer with the expected one.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// small (1k users), medium (100k) or large (1M).
    #[arg(long, default_value = "small")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    users: Option<usize>,
    #[arg(long)]
    groups: Option<usize>,
    #[arg(long)]
    policies: Option<usize>,
    #[arg(long)]
    requests: Option<usize>,
    #[arg(long)]
    connectors: Option<usize>,
    #[arg(long)]
    tools_per_connector: Option<usize>,
    /// Also write agents (agents.jsonl), the setting (settings.json), agent selectors, step-up
    /// requirements and requests with authentication contexts.
    #[arg(long)]
    agents: bool,
    /// Also give a few policies a CEL condition over arguments, and requests arguments.
    #[arg(long)]
    conditions: bool,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The server's gRPC address.
    #[arg(
        long = "server",
        alias = "addr",
        env = "PORTCULLIS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// The workload directory (its requests.jsonl).
    #[arg(long)]
    dir: PathBuf,
    /// Send BatchCheck calls of this many checks instead of single Checks.
    #[arg(long)]
    batch: Option<usize>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    tls: crate::check::ClientTls,
    #[command(flatten)]
    token: crate::decision_token::TokenFile,
    #[command(flatten)]
    profile: crate::profiles::ProfileArgs,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Generate(args) => generate(args),
        Command::Replay(args) => replay(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut params = workload::Params::preset(&args.preset)?;
    params.seed = args.seed;
    params.agents = args.agents;
    params.conditions = args.conditions;
    let overrides = [
        (&mut params.users, args.users),
        (&mut params.groups, args.groups),
        (&mut params.policies, args.policies),
        (&mut params.requests, args.requests),
        (&mut params.connectors, args.connectors),
        (&mut params.tools_per_connector, args.tools_per_connector),
    ];
    for (field, value) in overrides {
        if let Some(value) = value {
            *field = value;
        }
    }
    let generated = workload::generate(&params)?;
    workload::write_dir(&args.out, &generated)
        .with_context(|| format!("cannot write `{}`", args.out.display()))?;
    if args.json.json {
        crate::stdout::json(&serde_json::json!({
            "out": args.out,
            "preset": args.preset,
            "seed": params.seed,
            "users": params.users,
            "groups": params.groups,
            "policies": params.policies,
            "requests": params.requests,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::stdout::done(format_args!(
        "wrote {} users, {} groups, {} policies and {} requests to `{}` in {:.1}s",
        params.users,
        params.groups,
        params.policies,
        params.requests,
        args.out.display(),
        started.elapsed().as_secs_f64()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let requests = workload::read_requests(&args.dir.join("requests.jsonl"))?;
    let addr = crate::check::with_scheme(&args.addr);
    let bearer = args.token.bearer()?;
    let started = Instant::now();
    let answers = crate::runtime()?.block_on(async {
        let channel = crate::check::endpoint(&addr, &args.tls)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let client =
            pb::decision_service_client::DecisionServiceClient::with_interceptor(channel, bearer);
        let checks: Vec<pb::CheckRequest> = requests.iter().map(check_request).collect();
        match args.batch {
            Some(size) => {
                replay_batches(client, checks, size.max(1), args.concurrency.max(1)).await
            }
            None => replay_checks(client, checks, args.concurrency.max(1)).await,
        }
    })?;
    let elapsed = started.elapsed();

    let mut mismatches = 0usize;
    // With --json, the first mismatches go into the document (still capped) instead of stderr.
    let mut shown = Vec::new();
    for (request, answer) in requests.iter().zip(&answers) {
        let got = (
            portcullis_proto::names::decision(answer.decision()),
            portcullis_proto::names::reason(answer.reason()),
            (!answer.policy_id.is_empty()).then_some(answer.policy_id.as_str()),
        );
        let expected = &request.expected;
        let want = (
            workload::action_name(expected.decision),
            workload::reason_name(expected.reason),
            expected.policy_id.as_deref(),
        );
        if got != want {
            mismatches += 1;
            if mismatches <= MAX_MISMATCHES_SHOWN {
                if args.json.json {
                    let side = |(decision, reason, policy): (&str, &str, Option<&str>)| {
                        serde_json::json!({
                            "decision": decision, "reason": reason, "policy_id": policy,
                        })
                    };
                    shown.push(serde_json::json!({
                        "id": request.id,
                        "expected": side(want),
                        "got": side(got),
                    }));
                } else {
                    eprintln!("mismatch {}: expected {want:?}, got {got:?}", request.id);
                }
            }
        }
    }
    let rate = requests.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    if args.json.json {
        crate::stdout::json(&serde_json::json!({
            "requests": requests.len(),
            "matched": requests.len() - mismatches,
            "mismatched": mismatches,
            "elapsed_ms": elapsed.as_millis() as u64,
            "per_second": rate,
            "mismatches": shown,
        }))?;
    } else {
        crate::stdout::println(format_args!(
            "{} requests in {:.2}s ({rate:.0}/s): {} matched, {} mismatched",
            requests.len(),
            elapsed.as_secs_f64(),
            requests.len() - mismatches,
            mismatches
        ))?;
    }
    if mismatches > 0 {
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// The request as a gateway sends it now: `auth_time = now − auth_age_s` (gen.py keeps every
/// age over a minute away from any `max_age`, so clock skew changes no answer).
fn check_request(request: &workload::RequestLine) -> pb::CheckRequest {
    let now = std::time::SystemTime::now();
    pb::CheckRequest {
        authentication: request.authentication.as_ref().map(|a| pb::Authentication {
            acr: a.acr.clone(),
            amr: a.amr.clone(),
            auth_time: a.auth_age_s.map(|age| {
                prost_types::Timestamp::from(
                    now.checked_sub(std::time::Duration::from_secs(age))
                        .unwrap_or(std::time::UNIX_EPOCH),
                )
            }),
        }),
        arguments: request.arguments.as_ref().map(crate::check::to_struct),
        user: request.user.clone(),
        agent: request.agent.clone(),
        connector: request.connector.clone(),
        tool: request.tool.clone(),
        ..Default::default()
    }
}

type Client = crate::decision_token::Client;

/// Mismatches described one by one (on stderr, or in the `--json` document); the rest counted.
const MAX_MISMATCHES_SHOWN: usize = 10;

async fn replay_checks(
    client: Client,
    checks: Vec<pb::CheckRequest>,
    concurrency: usize,
) -> anyhow::Result<Vec<pb::CheckResponse>> {
    let calls = checks.into_iter().map(|check| {
        let mut client = client.clone();
        async move {
            client
                .check(check)
                .await
                .map(tonic::Response::into_inner)
                .map_err(crate::admin_cmd::status)
        }
    });
    let answers: Vec<_> = stream::iter(calls).buffered(concurrency).collect().await;
    answers
        .into_iter()
        .map(|a| a.context("a check failed"))
        .collect()
}

async fn replay_batches(
    client: Client,
    checks: Vec<pb::CheckRequest>,
    size: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<pb::CheckResponse>> {
    let expected = checks.len();
    let batches: Vec<Vec<pb::CheckRequest>> = checks.chunks(size).map(<[_]>::to_vec).collect();
    let calls = batches.into_iter().map(|checks| {
        let mut client = client.clone();
        async move {
            client
                .batch_check(pb::BatchCheckRequest { checks })
                .await
                .map(|r| r.into_inner().results)
                .map_err(crate::admin_cmd::status)
        }
    });
    let answers: Vec<_> = stream::iter(calls).buffered(concurrency).collect().await;
    let mut all = Vec::with_capacity(expected);
    for batch in answers {
        all.extend(batch.context("a batch check failed")?);
    }
    if all.len() != expected {
        bail!("expected {expected} answers, got {}", all.len());
    }
    Ok(all)
}
