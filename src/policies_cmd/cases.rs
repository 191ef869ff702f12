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

pub async fn run(
    channel: Channel,
    admin: Option<Admin>,
    file: &Path,
    decision_token: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let cases: CasesFile = read_yaml(file)?;
    if cases.cases.len() > MAX_CASES {
        anyhow::bail!(
            "{}: {} cases, the limit is {MAX_CASES}",
            file.display(),
            cases.cases.len()
        );
    }
    // Policy names, so a case may name its policy rather than an id that differs per server.
    let mut names: HashMap<String, String> = HashMap::new();
    if let Some(mut admin) = admin
        && cases.cases.iter().any(|c| c.expect.policy.is_some())
    {
        let (_, policies) = super::read_server(&mut admin).await?;
        names = policies.into_iter().map(|p| (p.id, p.name)).collect();
    }
    // A server started with `--decision-token-file` wants its secret on every Check.
    let bearer: Option<MetadataValue<Ascii>> = match decision_token {
        None => None,
        Some(path) => {
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let value = MetadataValue::try_from(format!("Bearer {}", secret.trim()))
                .map_err(|_| anyhow::anyhow!("{}: not printable ASCII", path.display()))?;
            Some(value)
        }
    };
    let mut client = pb::decision_service_client::DecisionServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            if let Some(value) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        },
    );
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = String::new();
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
        let got_decision = normal(crate::check::decision_name(answer.decision()));
        let got_reason = normal(crate::check::reason_name(answer.reason()));
        let mut diffs = Vec::new();
        if normal(&case.expect.decision) != got_decision {
            diffs.push(("decision", normal(&case.expect.decision), got_decision));
        }
        if let Some(reason) = &case.expect.reason
            && normal(reason) != got_reason
        {
            diffs.push(("reason", normal(reason), got_reason));
        }
        if let Some(policy) = &case.expect.policy {
            let name = names.get(&answer.policy_id);
            if *policy != answer.policy_id && name != Some(policy) {
                let got = match name {
                    Some(name) => format!("{} ({name})", answer.policy_id),
                    None if answer.policy_id.is_empty() => "none".to_owned(),
                    None => answer.policy_id.clone(),
                };
                diffs.push(("policy", policy.clone(), got));
            }
        }
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
    print!("{report}");
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
