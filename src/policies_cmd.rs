//! `portcullis policies …`: policies as code. `export` writes a running server's policies into
//! a directory a team keeps in git, `diff` shows what applying it would change, `apply` makes
//! the server's policies exactly the directory's in one audited change (refused when the server
//! changed since the export), and `test` runs decision cases against a server for CI.
//!
//! Connects as `portcullis admin` does (`--server`, `--token`, the TLS flags); docs in
//! docs/policies-as-code.md.

mod cases;
mod changes;
mod files;

use crate::admin_cmd::{Bearer, Secret};
use anyhow::Context;
use files::{ExportFile, PoliciesFile, PolicyDoc, Version};
use pb::admin_service_client::AdminServiceClient;
use portcullis_proto::v1 as pb;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// `diff`'s exit code when the directory differs from the server (1 is an error).
const CHANGES: u8 = 3;
/// Largest answer read from the server, in bytes (an export of thousands of policies is
/// larger than gRPC's default 4 MiB).
const MAX_ANSWER: usize = 64 << 20;

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
    /// The admin API token: required by export, diff and apply (a Read Only token may export
    /// and diff).
    #[command(flatten)]
    token: crate::admin_cmd::AdminToken,
    #[command(flatten)]
    tls: super::check::ClientTls,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write the server's policies into DIR (`policies.json`, and `export.json`: the revision
    /// and versions exported, which apply checks the server against).
    Export { dir: PathBuf },
    /// Show what applying DIR would change on the server, field by field. Exit code 0: nothing;
    /// 3: changes; 1: an error.
    Diff { dir: PathBuf },
    /// Make the server's policies exactly DIR's, in one audited change; refused, with nothing
    /// written, when the server's policies changed since the export. Rewrites DIR from the
    /// server afterwards (new policies get their ids).
    Apply {
        dir: PathBuf,
        /// Validate on the server and show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the decision cases of FILE against the server (Check), or offline; exit code 1 when
    /// any fails, with what was expected and what came back.
    Test {
        /// The cases, YAML or JSON (docs/policies-as-code.md).
        file: PathBuf,
        /// The secret a server started with `--decision-token-file` wants on Check.
        #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
        decision_token_file: Option<PathBuf>,
        /// Decide offline, with no server: users, groups, agents and policies from this
        /// workload directory (docs/import-format.md).
        #[arg(long, value_name = "DIR")]
        offline: Option<PathBuf>,
        /// With `--offline`: the policies of this export directory (`policies.json`) instead of
        /// the workload's: test edits before applying them.
        #[arg(long, value_name = "EXPORT_DIR", requires = "offline")]
        policies: Option<PathBuf>,
    },
}

type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = super::check::with_scheme(&args.server);
    let endpoint = super::check::endpoint(&addr, &args.tls)?;
    let token = args.token.secret()?;
    // Offline needs no connection at all.
    if let Command::Test {
        file,
        offline: Some(dir),
        policies,
        ..
    } = &args.command
    {
        let decider = cases::Decider::Offline {
            dir: dir.clone(),
            policies: policies.clone(),
        };
        return super::runtime()?.block_on(cases::run(decider, file));
    }
    super::runtime()?.block_on(async move {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let admin = |token: Option<Secret>| -> anyhow::Result<Admin> {
            let secret = token.ok_or_else(crate::admin_cmd::no_token)?;
            Ok(
                AdminServiceClient::with_interceptor(channel.clone(), Bearer::new(&secret)?)
                    .max_decoding_message_size(MAX_ANSWER),
            )
        };
        match args.command {
            Command::Export { dir } => export(&mut admin(token)?, &dir).await,
            Command::Diff { dir } => diff(&mut admin(token)?, &dir).await,
            Command::Apply { dir, dry_run } => apply(&mut admin(token)?, &dir, dry_run).await,
            Command::Test {
                file,
                decision_token_file,
                ..
            } => {
                let admin = token.map(|t| admin(Some(t)).map(Box::new)).transpose()?;
                let decider = cases::Decider::Server {
                    channel: channel.clone(),
                    admin,
                    decision_token: decision_token_file,
                };
                cases::run(decider, &file).await
            }
        }
    })
}

/// Every policy on the server in full, read at one revision.
async fn read_server(admin: &mut Admin) -> anyhow::Result<(u64, Vec<pb::Policy>)> {
    let answer = admin
        .export_policies(pb::ExportPoliciesRequest {})
        .await
        .map_err(crate::admin_cmd::status)?
        .into_inner();
    Ok((answer.revision, answer.policies))
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos / 1_000_000))
    })
}

/// Writes DIR from the server's policies; returns the revision read.
async fn write_dir(admin: &mut Admin, dir: &Path) -> anyhow::Result<(u64, usize)> {
    let (revision, policies) = read_server(admin).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut versions: Vec<Version> = policies
        .iter()
        .map(|p| Version {
            id: p.id.clone(),
            updated_at_ms: millis(p.updated_at.as_ref()),
        })
        .collect();
    versions.sort_by(|a, b| a.id.cmp(&b.id));
    let mut docs: Vec<PolicyDoc> = policies.iter().map(PolicyDoc::from_wire).collect();
    files::sort(&mut docs);
    let count = docs.len();
    files::write_json(&dir.join(files::POLICIES), &PoliciesFile { policies: docs })?;
    files::write_json(
        &dir.join(files::EXPORT),
        &ExportFile {
            revision,
            policies: versions,
        },
    )?;
    Ok((revision, count))
}

async fn export(admin: &mut Admin, dir: &Path) -> anyhow::Result<ExitCode> {
    let (revision, count) = write_dir(admin, dir).await?;
    crate::stdout::println(format_args!(
        "exported {count} policies at revision {revision} into {}",
        dir.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The directory as read: its policies and the export's base.
struct Local {
    policies: Vec<PolicyDoc>,
    base: ExportFile,
}

fn read_dir(dir: &Path) -> anyhow::Result<Local> {
    let mut file: PoliciesFile = files::read_json(&dir.join(files::POLICIES))?;
    file.policies.iter_mut().for_each(PolicyDoc::normalize);
    let base: ExportFile = files::read_json(&dir.join(files::EXPORT)).with_context(|| {
        format!(
            "{} is written by `portcullis policies export`",
            files::EXPORT
        )
    })?;
    Ok(Local {
        policies: file.policies,
        base,
    })
}

async fn diff(admin: &mut Admin, dir: &Path) -> anyhow::Result<ExitCode> {
    let local = read_dir(dir)?;
    let (revision, server) = read_server(admin).await?;
    let changes = changes::between(&local.policies, &server)?;
    if let Some(conflict) = changes::conflicts(&local.base, &server) {
        eprintln!(
            "note: the server changed since the export (revision {} then, {revision} now): \
             {conflict}; apply will refuse until you export again",
            local.base.revision
        );
    }
    crate::stdout::print(format_args!("{}", changes::render(&changes)))?;
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES)
    })
}

async fn apply(admin: &mut Admin, dir: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let local = read_dir(dir)?;
    let policies = local
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| p.to_wire(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let expected = local
        .base
        .policies
        .iter()
        .map(|v| pb::PolicyVersion {
            id: v.id.clone(),
            updated_at: Some(prost_types::Timestamp {
                seconds: v.updated_at_ms.div_euclid(1000),
                nanos: i32::try_from(v.updated_at_ms.rem_euclid(1000) * 1_000_000)
                    .unwrap_or_default(),
            }),
        })
        .collect();
    let answer = admin
        .apply_policies(pb::ApplyPoliciesRequest {
            policies,
            expected,
            dry_run,
        })
        .await
        .map_err(crate::admin_cmd::status)?
        .into_inner();
    let total = answer.created.len() + answer.updated.len() + answer.deleted.len();
    let verb = if dry_run { "would apply" } else { "applied" };
    if total == 0 {
        crate::stdout::println(format_args!(
            "nothing to apply: the server already has these policies"
        ))?;
    } else {
        for (sign, ids) in [
            ("+ created", &answer.created),
            ("~ updated", &answer.updated),
            ("- deleted", &answer.deleted),
        ] {
            for id in ids {
                crate::stdout::println(format_args!("{sign} {id}"))?;
            }
        }
        crate::stdout::println(format_args!(
            "{verb}: {} created, {} updated, {} deleted{}",
            answer.created.len(),
            answer.updated.len(),
            answer.deleted.len(),
            if dry_run {
                String::new()
            } else {
                format!(" at revision {}", answer.revision)
            }
        ))?;
    }
    if !dry_run && total > 0 {
        let (revision, _) = write_dir(admin, dir).await?;
        crate::stdout::println(format_args!(
            "rewrote {} from the server at revision {revision}: commit it",
            dir.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_are_consistent() {
        <Args as clap::Args>::augment_args(clap::Command::new("policies")).debug_assert();
    }

    #[test]
    fn a_policy_survives_the_file_both_ways() {
        let wire = pb::Policy {
            id: "pol-1".into(),
            name: "approve deletes".into(),
            connector: "github".into(),
            tools: vec!["delete_repo".into()],
            scope: Some(pb::PolicyScope {
                group_ids: vec!["g-eng".into()],
                ..Default::default()
            }),
            action: pb::PolicyAction::RequireApproval.into(),
            approval_flow_id: "f-sec".into(),
            conditions: vec![pb::PolicyCondition {
                attribute: "repo".into(),
                operator: "in".into(),
                values: vec!["infra".into()],
            }],
            enabled: true,
            agents: Some(pb::PolicyAgents {
                agent_ids: vec!["claude".into()],
            }),
            expression: "true".into(),
            ..Default::default()
        };
        let doc = PolicyDoc::from_wire(&wire);
        assert_eq!(doc.action, "require-approval");
        let mut spelled_out = doc.clone();
        spelled_out.step_up = Some(files::StepUpDoc {
            acr_values: vec![],
            amr_values: vec!["hwk".into()],
            max_age: Some(0),
        });
        spelled_out.normalize();
        assert_eq!(spelled_out.step_up.as_ref().unwrap().max_age, None);
        let mut empty = doc.clone();
        empty.approval_flow_id = Some(String::new());
        empty.expression = Some(String::new());
        empty.normalize();
        assert_eq!((empty.approval_flow_id, empty.expression), (None, None));
        assert_eq!(doc.to_wire(0).unwrap(), wire);
        let text = serde_json::to_string(&doc).unwrap();
        assert!(
            !text.contains("all_tools") && !text.contains("step_up"),
            "{text}"
        );
        let back: PolicyDoc = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn bad_entries_are_named() {
        let doc: PolicyDoc = serde_json::from_value(serde_json::json!({
            "name": "x", "connector": "github", "all_tools": true,
            "scope": {"all_users": true}, "action": "permit"
        }))
        .unwrap();
        assert!(doc.enabled, "enabled defaults to true");
        let error = doc.to_wire(4).unwrap_err().to_string();
        assert!(error.contains("policies[4].action: `permit`"), "{error}");
        let error = serde_json::from_value::<PolicyDoc>(serde_json::json!({
            "name": "x", "connector": "github", "scope": {}, "action": "allow", "colour": "red"
        }))
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `colour`"), "{error}");
    }

    #[test]
    fn yaml_reads_as_json_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.yaml");
        std::fs::write(&path, "a: [1, 2.5, true, null, x]\nb: {c: 'd'}\n").unwrap();
        let value: serde_json::Value = files::read_yaml(&path).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": [1, 2.5, true, null, "x"], "b": {"c": "d"}})
        );
        std::fs::write(&path, "a: &x 1\nb: *x\n").unwrap();
        let error = files::read_yaml::<serde_json::Value>(&path).unwrap_err();
        assert!(format!("{error:#}").contains("aliases"), "{error:#}");
    }
}
