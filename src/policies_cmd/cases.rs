//! `policies test FILE`: decision cases run against a server's Check, for CI. A case names a
//! request and what it should get; a failure prints what was expected and what came back.

use super::Admin;
use super::files::read_yaml;
use anyhow::Context;
use portcullis_proto::v1 as pb;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// Most cases one file may hold.
const MAX_CASES: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Shown in the report; defaults to the case's position.
    #[serde(default)]
    name: String,
    user: String,
    #[serde(default)]
    agent: String,
    connector: String,
    tool: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
    #[serde(default)]
    arguments: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    authentication: Option<Authentication>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Authentication {
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    amr: Vec<String>,
    /// RFC 3339, or a duration ago (`10m`).
    #[serde(default)]
    auth_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `allow`, `deny`, `step-up` or `require-approval`.
    decision: String,
    /// `policy`, `no-matching-policy`, `unknown-user`…; unchecked when absent.
    #[serde(default)]
    reason: Option<String>,
    /// The deciding policy's id or name; unchecked when absent.
    #[serde(default)]
    policy: Option<String>,
}

/// `STEP_UP`, `step-up` and `step_up` read alike.
fn normal(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

/// Where cases are decided.
pub enum Decider {
    /// A running server's Check; the admin client, when there is a token, names policies.
    Server {
        channel: Channel,
        admin: Option<Box<Admin>>,
        decision_token: Option<std::path::PathBuf>,
    },
    /// Offline with the decision engine: a workload directory (docs/import-format.md), its
    /// policies replaced by an export directory's when one is given.
    Offline {
        dir: std::path::PathBuf,
        policies: Option<std::path::PathBuf>,
    },
}

/// What came back for one case, names normalised.
struct Got {
    decision: String,
    reason: String,
    policy_id: String,
}

/// The engine over a workload directory, and its policies' names by id.
fn offline(
    dir: &Path,
    policies: Option<&Path>,
) -> anyhow::Result<(pdp::Snapshot, HashMap<String, String>)> {
    let mut workload = workload::read_dir(dir, pdp::Timestamp::now(), &mut |_| {})
        .with_context(|| format!("cannot read the workload directory `{}`", dir.display()))?;
    if let Some(export) = policies {
        let mut file: super::files::PoliciesFile =
            super::files::read_json(&export.join(super::files::POLICIES))?;
        file.policies
            .iter_mut()
            .for_each(super::files::PolicyDoc::normalize);
        workload.model.policies = file
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_model(i))
            .collect::<anyhow::Result<_>>()?;
    }
    let names = workload
        .model
        .policies
        .iter()
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect();
    Ok((pdp::Snapshot::build(&workload.model), names))
}

pub async fn run(decider: Decider, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cases: CasesFile = read_yaml(file)?;
    if cases.cases.len() > MAX_CASES {
        anyhow::bail!(
            "{}: {} cases, the limit is {MAX_CASES}",
            file.display(),
            cases.cases.len()
        );
    }
    let wants_names = cases.cases.iter().any(|c| c.expect.policy.is_some());
    // Policy names, so a case may name its policy rather than an id that differs per server.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut engine = None;
    let mut client = None;
    match decider {
        Decider::Offline { dir, policies } => {
            let (snapshot, offline_names) = offline(&dir, policies.as_deref())?;
            names = offline_names;
            engine = Some(snapshot);
        }
        Decider::Server {
            channel,
            admin,
            decision_token,
        } => {
            if let Some(mut admin) = admin
                && wants_names
            {
                let policies = super::read_server(&mut admin).await?.policies;
                names = policies.into_iter().map(|p| (p.id, p.name)).collect();
            }
            client = Some(decisions(channel, decision_token)?);
        }
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = String::new();
    // The same results for `--json`.
    let mut results = Vec::new();
    for (i, case) in cases.cases.into_iter().enumerate() {
        let label = if case.name.is_empty() {
            format!("cases[{i}]")
        } else {
            case.name.clone()
        };
        let authentication = match case.authentication {
            None => None,
            Some(a) => {
                let auth_time = a
                    .auth_time
                    .as_deref()
                    .map(crate::check::parse_auth_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{label}: authentication.auth_time: {e}"))?;
                crate::check::authentication(a.acr, a.amr, auth_time)
            }
        };
        let got = match (&engine, &mut client) {
            (Some(snapshot), _) => {
                let authentication = authentication.map(|a| pdp::Authentication {
                    acr: a.acr,
                    amr: a.amr,
                    auth_time: a.auth_time.map(|t| {
                        pdp::Timestamp(
                            t.seconds
                                .saturating_mul(1000)
                                .saturating_add(i64::from(t.nanos / 1_000_000)),
                        )
                    }),
                });
                let arguments = (!case.arguments.is_empty()).then_some(&case.arguments);
                let decision = snapshot.decide(&pdp::Request {
                    user: &case.user,
                    agent: &case.agent,
                    connector: &case.connector,
                    tool: &case.tool,
                    attributes: &case.attributes,
                    context: pdp::Context {
                        authentication: authentication.as_ref(),
                        arguments,
                        now: pdp::Timestamp::now(),
                        grant: None,
                    },
                });
                Got {
                    decision: normal(workload::format::action_name(decision.action)),
                    reason: normal(workload::format::reason_name(decision.reason)),
                    policy_id: decision.policy_id.unwrap_or_default().to_owned(),
                }
            }
            (None, Some(client)) => {
                let request = pb::CheckRequest {
                    user: case.user,
                    agent: case.agent,
                    connector: case.connector,
                    tool: case.tool,
                    attributes: case.attributes,
                    arguments: (!case.arguments.is_empty())
                        .then(|| crate::check::to_struct(&case.arguments)),
                    authentication,
                    ..Default::default()
                };
                let answer = client
                    .check(request)
                    .await
                    .map_err(crate::admin_cmd::status)
                    .with_context(|| format!("{label}: Check failed"))?
                    .into_inner();
                Got {
                    decision: normal(portcullis_proto::names::decision(answer.decision())),
                    reason: normal(portcullis_proto::names::reason(answer.reason())),
                    policy_id: answer.policy_id,
                }
            }
            (None, None) => anyhow::bail!("no decider"),
        };
        let mut diffs = Vec::new();
        if normal(&case.expect.decision) != got.decision {
            diffs.push(("decision", normal(&case.expect.decision), got.decision));
        }
        if let Some(reason) = &case.expect.reason
            && normal(reason) != got.reason
        {
            diffs.push(("reason", normal(reason), got.reason));
        }
        if let Some(policy) = &case.expect.policy {
            let name = names.get(&got.policy_id);
            if *policy != got.policy_id && name != Some(policy) {
                let shown = match name {
                    Some(name) => format!("{} ({name})", got.policy_id),
                    None if got.policy_id.is_empty() => "none".to_owned(),
                    None => got.policy_id.clone(),
                };
                diffs.push(("policy", policy.clone(), shown));
            }
        }
        results.push(serde_json::json!({
            "name": label,
            "passed": diffs.is_empty(),
            "diffs": diffs.iter().map(|(field, expected, got)| serde_json::json!({
                "field": field, "expected": expected, "got": got,
            })).collect::<Vec<_>>(),
        }));
        if diffs.is_empty() {
            passed += 1;
            let _ = writeln!(report, "ok   {label}");
        } else {
            failed += 1;
            let _ = writeln!(report, "FAIL {label}");
            for (field, expected, got) in diffs {
                let _ = writeln!(report, "    {field}: expected {expected}, got {got}");
            }
        }
    }
    if json {
        crate::stdout::json(&serde_json::json!({
            "passed": passed,
            "failed": failed,
            "cases": results,
        }))?;
    } else if crate::stdout::quiet() {
        // Only the failures, and the count when there are some.
        let failures: String = report
            .lines()
            .filter(|line| !line.starts_with("ok "))
            .map(|line| format!("{line}\n"))
            .collect();
        crate::stdout::print(format_args!("{failures}"))?;
        if failed > 0 {
            crate::stdout::println(format_args!("{passed} passed, {failed} failed"))?;
        }
    } else {
        crate::stdout::print(format_args!("{report}"))?;
        crate::stdout::println(format_args!("{passed} passed, {failed} failed"))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Adds `authorization: Bearer <secret>` to every Check when there is a decision token.
#[derive(Clone)]
struct DecisionBearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for DecisionBearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Decisions = pb::decision_service_client::DecisionServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, DecisionBearer>,
>;

/// A DecisionService client; a server started with `--decision-token-file` wants its secret on
/// every Check.
fn decisions(
    channel: Channel,
    decision_token: Option<std::path::PathBuf>,
) -> anyhow::Result<Decisions> {
    let bearer: Option<MetadataValue<Ascii>> = match decision_token {
        None => None,
        Some(path) => {
            let secret = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let value = MetadataValue::try_from(format!("Bearer {}", secret.trim()))
                .map_err(|_| anyhow::anyhow!("{}: not printable ASCII", path.display()))?;
            Some(value)
        }
    };
    Ok(
        pb::decision_service_client::DecisionServiceClient::with_interceptor(
            channel,
            DecisionBearer(bearer),
        ),
    )
}
