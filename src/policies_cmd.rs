//! `portcullis policies …`: policies as code. `export` writes a running server's policies (and
//! agents, approval flows, groups' roles and settings, when it has any) into a directory a team
//! keeps in git, `diff` shows what applying it would change, `apply` makes the server's
//! policies (and whatever else the directory has files for) exactly the directory's in one
//! audited change (refused when the server changed since the export), and `test` runs decision
//! cases against a server for CI.
//!
//! Connects as `portcullis admin` does (`--server`, `--token`, the TLS flags); docs in
//! docs/policies-as-code.md.

mod cases;
mod changes;
mod files;
mod sections;

use crate::admin_cmd::{Bearer, Secret};
use anyhow::Context;
use files::{ExportFile, PoliciesFile, PolicyDoc, Version};
use pb::admin_service_client::AdminServiceClient;
use portcullis_proto::v1 as pb;
use sections::{AgentDoc, GroupRolesDoc, SettingsDoc};
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
    #[command(flatten)]
    profile: crate::profiles::ProfileArgs,
    /// Print one JSON document on stdout instead of text (docs/policies-as-code.md); wins over
    /// --quiet. `diff` keeps its exit codes.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write the server's policies into DIR (`policies.json`; `agents.json`,
    /// `approval_flows.json`, `roles.json` and `settings.json` when the server has any; and
    /// `export.json`: the revision and versions exported, which apply checks the server
    /// against).
    Export { dir: PathBuf },
    /// Show what applying DIR would change on the server, field by field. Exit code 0: nothing;
    /// 3: changes; 1: an error.
    Diff { dir: PathBuf },
    /// Make the server's policies (and agents, flows, roles, settings: those DIR has files
    /// for) exactly DIR's, in one audited change; refused, with nothing written, when the
    /// server changed since the export. Rewrites DIR from the server afterwards (new policies
    /// get their ids).
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
    let json = args.json;
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
        return super::runtime()?.block_on(cases::run(decider, file, json));
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
            Command::Export { dir } => export(&mut admin(token)?, &dir, json).await,
            Command::Diff { dir } => diff(&mut admin(token)?, &dir, json).await,
            Command::Apply { dir, dry_run } => apply(&mut admin(token)?, &dir, dry_run, json).await,
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
                cases::run(decider, &file, json).await
            }
        }
    })
}

/// Everything the server exports, read at one revision.
async fn read_server(admin: &mut Admin) -> anyhow::Result<pb::ExportPoliciesResponse> {
    Ok(admin
        .export_policies(pb::ExportPoliciesRequest {})
        .await
        .map_err(crate::admin_cmd::status)?
        .into_inner())
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos / 1_000_000))
    })
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or_default(),
    }
}

/// Ids with their `updated_at`, sorted by id.
fn versions<'a>(
    records: impl Iterator<Item = (&'a str, Option<&'a prost_types::Timestamp>)>,
) -> Vec<Version> {
    let mut versions: Vec<Version> = records
        .map(|(id, at)| Version {
            id: id.to_owned(),
            updated_at_ms: millis(at),
        })
        .collect();
    versions.sort_by(|a, b| a.id.cmp(&b.id));
    versions
}

fn wire_versions(versions: &[Version]) -> Vec<pb::PolicyVersion> {
    versions
        .iter()
        .map(|v| pb::PolicyVersion {
            id: v.id.clone(),
            updated_at: Some(timestamp(v.updated_at_ms)),
        })
        .collect()
}

/// What the export writes, counted for people.
struct Written {
    revision: u64,
    policies: usize,
    agents: usize,
    flows: usize,
    roles: usize,
    settings: bool,
    others: Vec<String>,
}

impl Written {
    /// The `--json` document of what was written into `dir`.
    fn json(&self, dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "dir": dir,
            "revision": self.revision,
            "policies": self.policies,
            "agents": self.agents,
            "approval_flows": self.flows,
            "group_roles": self.roles,
            "settings": self.settings,
        })
    }
}

/// Writes DIR from the server: policies.json and export.json always, each other file when the
/// server has something for it (a stale one removed otherwise).
async fn write_dir(admin: &mut Admin, dir: &Path) -> anyhow::Result<Written> {
    let server = read_server(admin).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut docs: Vec<PolicyDoc> = server.policies.iter().map(PolicyDoc::from_wire).collect();
    files::sort(&mut docs);
    let count = docs.len();
    files::write_json(&dir.join(files::POLICIES), &PoliciesFile { policies: docs })?;
    let mut others = Vec::new();
    let agents: Vec<AgentDoc> = server.agents.iter().map(AgentDoc::from_wire).collect();
    let agent_count = agents.len();
    if !agents.is_empty() {
        others.push(format!("{} agents", agents.len()));
    }
    sections::write_or_remove(
        dir,
        sections::AGENTS,
        Some(&sections::AgentsFile { agents }).filter(|f| !f.agents.is_empty()),
    )?;
    let flows = server
        .approval_flows
        .iter()
        .map(sections::flow_doc)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let flow_count = flows.len();
    if !flows.is_empty() {
        others.push(format!("{} approval flows", flows.len()));
    }
    sections::write_or_remove(
        dir,
        sections::FLOWS,
        Some(&sections::FlowsFile {
            approval_flows: flows,
        })
        .filter(|f| !f.approval_flows.is_empty()),
    )?;
    let roles: Vec<GroupRolesDoc> = server
        .group_roles
        .iter()
        .map(GroupRolesDoc::from_wire)
        .collect();
    if !roles.is_empty() {
        others.push(format!("the roles of {} groups", roles.len()));
    }
    sections::write_or_remove(
        dir,
        sections::ROLES,
        Some(&sections::RolesFile {
            group_roles: roles.clone(),
        })
        .filter(|f| !f.group_roles.is_empty()),
    )?;
    let role_count = roles.len();
    let settings =
        SettingsDoc::from_wire(server.settings.as_ref(), &server.default_approval_flow_id);
    let has_settings = !settings.is_default();
    if !settings.is_default() {
        others.push("the settings".to_owned());
    }
    sections::write_or_remove(
        dir,
        sections::SETTINGS,
        Some(&settings).filter(|s| !s.is_default()),
    )?;
    files::write_json(
        &dir.join(files::EXPORT),
        &ExportFile {
            revision: server.revision,
            policies: versions(
                server
                    .policies
                    .iter()
                    .map(|p| (p.id.as_str(), p.updated_at.as_ref())),
            ),
            agents: Some(versions(
                server
                    .agents
                    .iter()
                    .map(|a| (a.id.as_str(), a.updated_at.as_ref())),
            )),
            approval_flows: Some(versions(
                server
                    .approval_flows
                    .iter()
                    .map(|f| (f.id.as_str(), f.updated_at.as_ref())),
            )),
            group_roles: Some(roles),
            settings: Some(settings),
        },
    )?;
    Ok(Written {
        revision: server.revision,
        policies: count,
        agents: agent_count,
        flows: flow_count,
        roles: role_count,
        settings: has_settings,
        others,
    })
}

async fn export(admin: &mut Admin, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let written = write_dir(admin, dir).await?;
    if json {
        crate::stdout::json(&written.json(dir))?;
        return Ok(ExitCode::SUCCESS);
    }
    let others = if written.others.is_empty() {
        String::new()
    } else {
        format!(" and {}", written.others.join(", "))
    };
    crate::stdout::done(format_args!(
        "exported {} policies{others} at revision {} into {}",
        written.policies,
        written.revision,
        dir.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The files beyond policies.json the directory has; `None`: absent, not managed.
#[derive(Debug, Default)]
pub struct Sections {
    agents: Option<Vec<AgentDoc>>,
    /// Each flow as sent and as the file would keep it.
    flows: Option<Vec<(pb::ApprovalFlow, serde_json::Value)>>,
    roles: Option<Vec<GroupRolesDoc>>,
    settings: Option<SettingsDoc>,
}

/// The directory as read: its policies, the other files, and the export's base.
struct Local {
    policies: Vec<PolicyDoc>,
    sections: Sections,
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
    let agents =
        sections::read_optional::<sections::AgentsFile>(dir, sections::AGENTS)?.map(|f| f.agents);
    let flows = sections::read_optional::<sections::FlowsFile>(dir, sections::FLOWS)?
        .map(|f| {
            f.approval_flows
                .iter()
                .enumerate()
                .map(|(i, v)| sections::read_flow(i, v))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?;
    let roles = sections::read_optional::<sections::RolesFile>(dir, sections::ROLES)?
        .map(|f| f.group_roles);
    let settings = sections::read_optional::<SettingsDoc>(dir, sections::SETTINGS)?;
    let missing = [
        (agents.is_some() && base.agents.is_none(), sections::AGENTS),
        (
            flows.is_some() && base.approval_flows.is_none(),
            sections::FLOWS,
        ),
        (
            roles.is_some() && base.group_roles.is_none(),
            sections::ROLES,
        ),
        (
            settings.is_some() && base.settings.is_none(),
            sections::SETTINGS,
        ),
    ];
    if let Some((_, name)) = missing.iter().find(|(missing, _)| *missing) {
        anyhow::bail!(
            "{} has no base for {name} (an export from before it was kept): export again and \
             redo the edits on it",
            files::EXPORT
        );
    }
    Ok(Local {
        policies: file.policies,
        sections: Sections {
            agents,
            flows,
            roles,
            settings,
        },
        base,
    })
}

/// What applying the other files would change.
fn section_changes(
    local: &Sections,
    server: &pb::ExportPoliciesResponse,
) -> anyhow::Result<Vec<changes::Change>> {
    use changes::{Item, between_items};
    let mut out = Vec::new();
    if let Some(agents) = &local.agents {
        let item = |a: &AgentDoc| -> anyhow::Result<Item> {
            Ok(Item {
                id: a.id.clone(),
                name: a.display_name.clone(),
                value: serde_json::to_value(a)?,
            })
        };
        let mine = agents
            .iter()
            .map(item)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let theirs = server
            .agents
            .iter()
            .map(|a| item(&AgentDoc::from_wire(a)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.extend(between_items("agent", &mine, &theirs, None));
    }
    if let Some(flows) = &local.flows {
        let mine: Vec<Item> = flows
            .iter()
            .map(|(wire, doc)| Item {
                id: wire.id.clone(),
                name: wire.name.clone(),
                value: doc.clone(),
            })
            .collect();
        let theirs = server
            .approval_flows
            .iter()
            .map(|f| {
                Ok(Item {
                    id: f.id.clone(),
                    name: f.name.clone(),
                    value: sections::flow_doc(f)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // A flow with an id the server lacks is created with that id.
        let mut changes = between_items("approval flow", &mine, &theirs, None);
        out.append(&mut changes);
    }
    if let Some(roles) = &local.roles {
        let item = |g: &GroupRolesDoc| Item {
            id: g.group_id.clone(),
            name: g.name.clone(),
            value: serde_json::json!({ "roles": g.roles }),
        };
        let mine: Vec<Item> = roles.iter().map(item).collect();
        let theirs: Vec<Item> = server
            .group_roles
            .iter()
            .map(|g| item(&GroupRolesDoc::from_wire(g)))
            .collect();
        let none = serde_json::json!({ "roles": [] });
        out.extend(between_items("roles of group", &mine, &theirs, Some(&none)));
    }
    if let Some(settings) = &local.settings {
        let now =
            SettingsDoc::from_wire(server.settings.as_ref(), &server.default_approval_flow_id);
        let item = |s: &SettingsDoc| -> anyhow::Result<Item> {
            Ok(Item {
                id: "settings".into(),
                name: String::new(),
                value: serde_json::to_value(s)?,
            })
        };
        out.extend(between_items(
            "settings",
            &[item(settings)?],
            &[item(&now)?],
            None,
        ));
    }
    Ok(out)
}

async fn diff(admin: &mut Admin, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let local = read_dir(dir)?;
    let server = read_server(admin).await?;
    let mut changes = changes::between(&local.policies, &server.policies)?;
    changes.extend(section_changes(&local.sections, &server)?);
    let quiet = crate::stdout::quiet();
    let conflict = changes::conflicts(&local.base, &server, &local.sections);
    let code = if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES)
    };
    if json {
        let mut document = changes::to_json(&changes);
        document["conflict"] = serde_json::json!(conflict.map(|what| serde_json::json!({
            "exported_revision": local.base.revision,
            "server_revision": server.revision,
            "what": what,
        })));
        crate::stdout::json(&document)?;
        return Ok(code);
    }
    if let Some(conflict) = conflict
        && !quiet
    {
        eprintln!(
            "note: the server changed since the export (revision {} then, {} now): \
             {conflict}; apply will refuse until you export again",
            local.base.revision, server.revision
        );
    }
    // With --quiet the exit code alone answers, as `git diff --quiet` does.
    if !quiet {
        crate::stdout::print(format_args!("{}", changes::render(&changes)))?;
    }
    Ok(code)
}

/// The request's optional sections, from the directory's other files and the export's base.
fn request_sections(local: &Local, request: &mut pb::ApplyPoliciesRequest) -> anyhow::Result<()> {
    let base = &local.base;
    let agents = local
        .sections
        .agents
        .as_ref()
        .map(|agents| pb::ApplyAgents {
            agents: agents.iter().map(AgentDoc::to_wire).collect(),
            expected: wire_versions(base.agents.as_deref().unwrap_or_default()),
        });
    let flows = local
        .sections
        .flows
        .as_ref()
        .map(|flows| pb::ApplyApprovalFlows {
            flows: flows.iter().map(|(wire, _)| wire.clone()).collect(),
            expected: wire_versions(base.approval_flows.as_deref().unwrap_or_default()),
        });
    let roles = match &local.sections.roles {
        Some(roles) => Some(pb::ApplyGroupRoles {
            groups: roles
                .iter()
                .enumerate()
                .map(|(i, g)| g.to_wire(&format!("{}: group_roles[{i}]", sections::ROLES)))
                .collect::<anyhow::Result<_>>()?,
            expected: base
                .group_roles
                .iter()
                .flatten()
                .map(|g| g.to_wire(files::EXPORT))
                .collect::<anyhow::Result<_>>()?,
        }),
        None => None,
    };
    let settings = match &local.sections.settings {
        Some(settings) => {
            let then = base
                .settings
                .clone()
                .unwrap_or_else(|| SettingsDoc::from_wire(None, ""));
            Some(pb::ApplySettings {
                settings: Some(settings.to_wire()?),
                default_approval_flow_id: settings.default_approval_flow_id.clone(),
                expected_settings: Some(then.to_wire()?),
                expected_default_approval_flow_id: then.default_approval_flow_id.clone(),
            })
        }
        None => None,
    };
    *request = pb::ApplyPoliciesRequest {
        agents,
        approval_flows: flows,
        group_roles: roles,
        settings,
        ..std::mem::take(request)
    };
    Ok(())
}

/// A refusal, with the file its field belongs to in front.
fn refusal(status: tonic::Status) -> anyhow::Error {
    let file = sections::file_of(status.message());
    let error = crate::admin_cmd::status(status);
    match file {
        Some(file) => anyhow::anyhow!("{file}: {error}"),
        None => error,
    }
}

async fn apply(
    admin: &mut Admin,
    dir: &Path,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let local = read_dir(dir)?;
    let policies = local
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| p.to_wire(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let expected = wire_versions(&local.base.policies);
    let mut request = pb::ApplyPoliciesRequest {
        policies,
        expected,
        dry_run,
        ..Default::default()
    };
    request_sections(&local, &mut request)?;
    let answer = admin
        .apply_policies(request)
        .await
        .map_err(refusal)?
        .into_inner();
    let total =
        answer.created.len() + answer.updated.len() + answer.deleted.len() + answer.changes.len();
    if json {
        let rewrote = if !dry_run && total > 0 {
            Some(write_dir(admin, dir).await?.json(dir))
        } else {
            None
        };
        crate::stdout::json(&serde_json::json!({
            "dry_run": dry_run,
            "created": answer.created,
            "updated": answer.updated,
            "deleted": answer.deleted,
            "changes": answer.changes.iter().map(|c| serde_json::json!({
                "change": c.change, "kind": c.kind, "id": c.id,
            })).collect::<Vec<_>>(),
            "revision": (!dry_run).then_some(answer.revision),
            "rewrote": rewrote,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would apply" } else { "applied" };
    // A dry run's answer is what it shows; an apply's only confirms (left out with --quiet).
    let say = |text: std::fmt::Arguments<'_>| {
        if dry_run {
            crate::stdout::println(text)
        } else {
            crate::stdout::done(text)
        }
    };
    if total == 0 {
        say(format_args!(
            "nothing to apply: the server already has what the directory holds"
        ))?;
    } else {
        for (sign, ids) in [
            ("+ created", &answer.created),
            ("~ updated", &answer.updated),
            ("- deleted", &answer.deleted),
        ] {
            for id in ids {
                say(format_args!("{sign} {id}"))?;
            }
        }
        for change in &answer.changes {
            let sign = match change.change.as_str() {
                "created" => "+",
                "deleted" => "-",
                _ => "~",
            };
            say(format_args!(
                "{sign} {} {} {}",
                change.change, change.kind, change.id
            ))?;
        }
        let others = if answer.changes.is_empty() {
            String::new()
        } else {
            format!(
                "; {} other change{}",
                answer.changes.len(),
                if answer.changes.len() == 1 { "" } else { "s" }
            )
        };
        say(format_args!(
            "{verb}: {} created, {} updated, {} deleted{others}{}",
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
        let written = write_dir(admin, dir).await?;
        say(format_args!(
            "rewrote {} from the server at revision {}: commit it",
            dir.display(),
            written.revision
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
    fn the_other_files_read_as_the_server_takes_them() {
        use serde_json::json;
        let roles = GroupRolesDoc {
            group_id: "g-admins".into(),
            name: String::new(),
            roles: vec!["admin".into(), "owner".into()],
        };
        let error = roles.to_wire("roles.json: group_roles[0]").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("group_roles[0].roles[1]: `owner` is not `admin` or `read-only`"),
            "{error}"
        );
        let wire = GroupRolesDoc {
            roles: vec!["read-only".into()],
            ..roles
        }
        .to_wire("")
        .unwrap();
        assert_eq!(GroupRolesDoc::from_wire(&wire).roles, ["read-only"]);

        let settings: SettingsDoc = serde_json::from_str("{}").unwrap();
        assert!(settings.is_default());
        let error = SettingsDoc {
            unregistered_agents: "maybe".into(),
            ..settings
        }
        .to_wire()
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("settings.json: unregistered_agents: `maybe` is not `allow` or `deny`"),
            "{error}"
        );

        // A flow reads into the wire form the server takes, and back to the same document,
        // defaults filled in and no timestamps.
        let value = json!({"id": "f1", "name": "x", "grant": {"window": {"seconds": 60}},
            "steps": [{"approvers": ["admins", {"group": "g"}], "min_approvals": 1}]});
        let (wire, doc) = sections::read_flow(0, &value).unwrap();
        assert_eq!(
            (wire.id.as_str(), wire.grant_mode()),
            ("f1", pb::GrantMode::Window)
        );
        assert_eq!(sections::flow_doc(&wire).unwrap(), doc);
        assert_eq!(doc["request_ttl_secs"], json!(86_400));
        assert!(doc.get("created_at").is_none(), "{doc}");
        let error = sections::read_flow(2, &json!({"name": "x", "updated_at": 5})).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("approval_flows.json: approval_flows[2].updated_at: the server keeps it"),
            "{error}"
        );
        let error = sections::read_flow(1, &json!({"name": "x", "step": []})).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("approval_flows[1]: unknown field `step`"),
            "{error}"
        );

        assert_eq!(
            sections::file_of("agents[3].scope: user `x` not found"),
            Some("agents.json")
        );
        assert_eq!(
            sections::file_of("settings.default_approval_flow_id: approval flow `f` not found"),
            Some("settings.json")
        );
        assert_eq!(
            sections::file_of("the server changed since the export"),
            None
        );
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
