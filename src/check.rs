//! `portcullis check`: one decision from a running server, printed for people or as JSON.

use anyhow::Context;
use portcullis_proto::v1 as pb;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How a client trusts an `https://` server and, optionally, proves who it is (shared by
/// `check`, `admin` and `workload replay`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTls {
    /// With an `https://` server: the PEM CA certificate that signed its certificate; without
    /// it, the webpki roots.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CA_FILE",
        help_heading = "TLS options"
    )]
    pub ca_file: Option<PathBuf>,
    /// With an `https://` server: present this PEM client certificate (with --client-key), for
    /// a server started with --client-ca-file.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CLIENT_CERT",
        requires = "client_key",
        help_heading = "TLS options"
    )]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CLIENT_KEY",
        requires = "client_cert",
        help_heading = "TLS options"
    )]
    pub client_key: Option<PathBuf>,
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// An endpoint for `addr` (`host:port` or a URL): over TLS when it is `https://`, trusting
/// `--ca-file` (else the webpki roots) and presenting `--client-cert` if given.
pub fn endpoint(addr: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let addr = with_scheme(addr);
    let endpoint = Endpoint::from_shared(addr.clone())
        .with_context(|| format!("`{addr}` is not a valid server address"))?
        .connect_timeout(Duration::from_secs(10));
    if !addr.starts_with("https://") {
        anyhow::ensure!(
            tls.ca_file.is_none() && tls.client_cert.is_none(),
            "--ca-file and --client-cert need an `https://` server address, not `{addr}`"
        );
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read_file(ca)?)),
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        config = config.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
    }
    endpoint
        .tls_config(config)
        .with_context(|| format!("cannot set up TLS for `{addr}`"))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's gRPC address.
    #[arg(
        long = "server",
        alias = "addr",
        env = "PORTCULLIS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// A user id, email (any case) or the identity provider's external id.
    #[arg(long)]
    user: String,
    /// The AI agent acting for the user.
    #[arg(long, default_value = "cli")]
    agent: String,
    #[arg(long)]
    connector: String,
    #[arg(long)]
    tool: String,
    /// A request attribute for policy conditions, as KEY=VALUE (repeatable).
    #[arg(long = "attr", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// The user's authentication context class (`acr` of their token), for step-up.
    #[arg(long)]
    acr: Option<String>,
    /// An authentication method the user used (`amr` of their token; repeatable).
    #[arg(long)]
    amr: Vec<String>,
    /// When the user authenticated: RFC 3339 (`2026-01-05T12:34:56Z`) or a duration ago
    /// (`10m`, `2h`).
    #[arg(long, value_parser = parse_auth_time)]
    auth_time: Option<std::time::SystemTime>,
    /// A tool-call argument for conditions, as KEY=JSON (repeatable); a value that is not JSON
    /// is taken as a string.
    #[arg(long = "arg", value_parser = parse_argument)]
    arguments: Vec<(String, serde_json::Value)>,
    /// An approved approval request for this exact call (`portcullis admin approvals`): a
    /// Require approval answer becomes Allow once (or within the flow's window).
    #[arg(long, default_value = "")]
    approval: String,
    /// Answer only from this store revision or newer.
    #[arg(long, default_value_t = 0)]
    min_revision: u64,
    /// Also list every policy of the connector and why it did or did not match.
    #[arg(long)]
    explain: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: ClientTls,
    #[command(flatten)]
    profile: crate::profiles::ProfileArgs,
    #[command(flatten)]
    token: crate::decision_token::TokenFile,
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// RFC 3339, or a duration before now (`10m`).
pub(crate) fn parse_auth_time(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(at) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(at.into());
    }
    match humantime::parse_duration(s) {
        Ok(ago) => std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("`{s}` ago is before the epoch")),
        Err(_) => Err(format!(
            "`{s}` is neither an RFC 3339 time nor a duration ago such as `10m`"
        )),
    }
}

fn parse_argument(s: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=JSON"))?;
    if key.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// The authentication a request carries: present when any of its parts is given.
pub fn authentication(
    acr: Option<String>,
    amr: Vec<String>,
    auth_time: Option<std::time::SystemTime>,
) -> Option<pb::Authentication> {
    if acr.is_none() && amr.is_empty() && auth_time.is_none() {
        return None;
    }
    Some(pb::Authentication {
        acr: acr.unwrap_or_default(),
        amr,
        auth_time: auth_time.map(prost_types::Timestamp::from),
    })
}

/// A JSON object as a protobuf `Struct` (one conversion, the decision service's).
pub use pdp_service::json_to_struct as to_struct;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = with_scheme(&args.addr);
    let endpoint = endpoint(&addr, &args.tls)?;
    // Read before connecting: a bad file is reported as such, whatever the server.
    let bearer = args.token.bearer()?;
    let arguments: serde_json::Map<String, serde_json::Value> =
        args.arguments.into_iter().collect();
    let request = pb::CheckRequest {
        authentication: authentication(args.acr, args.amr, args.auth_time),
        arguments: (!arguments.is_empty()).then(|| to_struct(&arguments)),
        user: args.user,
        agent: args.agent,
        connector: args.connector,
        tool: args.tool,
        attributes: args.attributes.into_iter().collect(),
        min_revision: args.min_revision,
        explain: args.explain,
        approval_id: args.approval,
    };
    let answer = super::runtime()?.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let mut client =
            pb::decision_service_client::DecisionServiceClient::with_interceptor(channel, bearer);
        let answer = client
            .check(request)
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))?;
        anyhow::Ok(answer.into_inner())
    })?;
    if args.json {
        crate::stdout::json(&to_json(&answer))?;
    } else {
        crate::stdout::print(render(&answer))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Accepts `host:port` as well as a URL.
pub fn with_scheme(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

fn render(answer: &pb::CheckResponse) -> String {
    let mut out = format!(
        "{}  reason {}",
        portcullis_proto::names::decision(answer.decision()),
        portcullis_proto::names::reason(answer.reason())
    );
    if !answer.policy_id.is_empty() {
        out.push_str(&format!("  policy {}", answer.policy_id));
    }
    out.push_str(&format!(
        "  revision {}  decision {}\n",
        answer.revision, answer.decision_id
    ));
    if let Some(step_up) = &answer.step_up {
        out.push_str(&format!("step-up requires {}\n", requirement(step_up)));
    }
    if !answer.challenge.is_empty() {
        out.push_str(&format!("challenge: {}\n", answer.challenge));
    }
    if !answer.explanation.is_empty() {
        // `*` in the first column marks the deciding policy.
        out.push_str(&format!(
            "  {:<16} {:<18} {:<20} {}\n",
            "POLICY", "ACTION", "OUTCOME", "NAME"
        ));
    }
    for m in &answer.explanation {
        let marker = if m.deciding { "*" } else { " " };
        out.push_str(&format!(
            "{marker} {:<16} {:<18} {:<20} {}\n",
            m.policy_id,
            portcullis_proto::names::decision(m.action()),
            m.outcome()
                .as_str_name()
                .trim_start_matches("MATCH_OUTCOME_"),
            m.policy_name
        ));
    }
    out
}

/// `acr one of [..], amr all of [..], max_age 300s`, the parts that are set.
fn requirement(step_up: &pb::StepUpRequirement) -> String {
    let mut parts = Vec::new();
    if !step_up.acr_values.is_empty() {
        parts.push(format!("acr one of [{}]", step_up.acr_values.join(", ")));
    }
    if !step_up.amr_values.is_empty() {
        parts.push(format!("amr all of [{}]", step_up.amr_values.join(", ")));
    }
    if step_up.max_age > 0 {
        parts.push(format!("max_age {}s", step_up.max_age));
    }
    if parts.is_empty() {
        "nothing a token can show".to_owned()
    } else {
        parts.join(", ")
    }
}

fn to_json(answer: &pb::CheckResponse) -> serde_json::Value {
    serde_json::json!({
        "step_up": answer.step_up.as_ref().map(|s| serde_json::json!({
            "acr_values": s.acr_values,
            "amr_values": s.amr_values,
            "max_age": (s.max_age > 0).then_some(s.max_age),
        })),
        "challenge": (!answer.challenge.is_empty()).then_some(&answer.challenge),
        "decision": portcullis_proto::names::decision(answer.decision()),
        "reason": portcullis_proto::names::reason(answer.reason()),
        "policy_id": (!answer.policy_id.is_empty()).then_some(&answer.policy_id),
        "revision": answer.revision,
        "decision_id": answer.decision_id,
        "explanation": answer.explanation.iter().map(|m| serde_json::json!({
            "policy_id": m.policy_id,
            "policy_name": m.policy_name,
            "action": portcullis_proto::names::decision(m.action()),
            "outcome": m.outcome().as_str_name().trim_start_matches("MATCH_OUTCOME_"),
            "matched": m.matched,
            "deciding": m.deciding,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_up_answers_show_the_requirement_and_the_challenge() {
        let challenge = r#"Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="phrh", max_age=300"#;
        let answer = pb::CheckResponse {
            decision: pb::Decision::StepUp as i32,
            reason: pb::Reason::Policy as i32,
            policy_id: "pol-1".into(),
            revision: 3,
            decision_id: "d1".into(),
            step_up: Some(pb::StepUpRequirement {
                acr_values: vec!["phrh".into(), "phr".into()],
                amr_values: vec!["hwk".into()],
                max_age: 300,
            }),
            challenge: challenge.into(),
            ..Default::default()
        };
        assert_eq!(
            render(&answer),
            format!(
                "STEP_UP  reason POLICY  policy pol-1  revision 3  decision d1\n\
                 step-up requires acr one of [phrh, phr], amr all of [hwk], max_age 300s\n\
                 challenge: {challenge}\n"
            )
        );
        let json = to_json(&answer);
        assert_eq!(json["challenge"], challenge);
        assert_eq!(
            json["step_up"],
            serde_json::json!({"acr_values": ["phrh", "phr"], "amr_values": ["hwk"], "max_age": 300})
        );
        let only_age = pb::StepUpRequirement {
            max_age: 60,
            ..Default::default()
        };
        assert_eq!(requirement(&only_age), "max_age 60s");
        assert_eq!(
            requirement(&pb::StepUpRequirement::default()),
            "nothing a token can show"
        );
    }

    #[test]
    fn the_explanation_is_a_table_with_headers_and_the_deciding_policy_starred() {
        let answer = pb::CheckResponse {
            decision: pb::Decision::Deny as i32,
            reason: pb::Reason::Policy as i32,
            policy_id: "pol-2".into(),
            revision: 7,
            decision_id: "d2".into(),
            explanation: vec![
                pb::PolicyMatch {
                    policy_id: "pol-1".into(),
                    policy_name: "allow all".into(),
                    action: pb::Decision::Allow as i32,
                    outcome: pb::MatchOutcome::Matched as i32,
                    matched: true,
                    deciding: false,
                    ..Default::default()
                },
                pb::PolicyMatch {
                    policy_id: "pol-2".into(),
                    policy_name: "deny exports".into(),
                    action: pb::Decision::Deny as i32,
                    outcome: pb::MatchOutcome::Matched as i32,
                    matched: true,
                    deciding: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render(&answer),
            "DENY  reason POLICY  policy pol-2  revision 7  decision d2\n\
             \x20 POLICY           ACTION             OUTCOME              NAME\n\
             \x20 pol-1            ALLOW              MATCHED              allow all\n\
             * pol-2            DENY               MATCHED              deny exports\n"
        );
    }

    #[test]
    fn arguments_and_authentication_become_protobuf() {
        assert_eq!(
            parse_argument(r#"to=["a","b"]"#).unwrap(),
            ("to".into(), serde_json::json!(["a", "b"]))
        );
        assert_eq!(
            parse_argument("repo=acme/x").unwrap(),
            ("repo".into(), serde_json::json!("acme/x"))
        );
        // Only the first `=` splits.
        assert_eq!(
            parse_argument("q=a=b").unwrap(),
            ("q".into(), serde_json::json!("a=b"))
        );
        let object = serde_json::json!({"n": 3, "ok": true, "none": null, "o": {"l": ["x"]}});
        let s = to_struct(object.as_object().unwrap());
        use prost_types::value::Kind;
        assert_eq!(s.fields["n"].kind, Some(Kind::NumberValue(3.0)));
        assert_eq!(s.fields["ok"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(s.fields["none"].kind, Some(Kind::NullValue(0)));
        let Some(Kind::StructValue(inner)) = &s.fields["o"].kind else {
            panic!("{s:?}");
        };
        let Some(Kind::ListValue(list)) = &inner.fields["l"].kind else {
            panic!("{inner:?}");
        };
        assert_eq!(list.values[0].kind, Some(Kind::StringValue("x".into())));

        assert_eq!(authentication(None, Vec::new(), None), None);
        let at = parse_auth_time("2026-01-05T12:34:56Z").unwrap();
        let auth = authentication(None, vec!["pwd".into()], Some(at)).unwrap();
        assert_eq!(auth.acr, "");
        assert_eq!(auth.auth_time.unwrap().seconds, 1_767_616_496);
        let ago = parse_auth_time("10m").unwrap();
        let age = std::time::SystemTime::now().duration_since(ago).unwrap();
        assert!((599..=605).contains(&age.as_secs()), "{age:?}");
        assert!(parse_auth_time("soon").is_err());
        assert_eq!(parse_auth_time("2026-01-05T14:34:56+02:00").unwrap(), at);
    }
}
