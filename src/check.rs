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
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = with_scheme(&args.addr);
    let endpoint = endpoint(&addr, &args.tls)?;
    let request = pb::CheckRequest {
        authentication: None,
        arguments: None,
        user: args.user,
        agent: args.agent,
        connector: args.connector,
        tool: args.tool,
        attributes: args.attributes.into_iter().collect(),
        min_revision: args.min_revision,
        explain: args.explain,
    };
    let answer = super::runtime()?.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let mut client = pb::decision_service_client::DecisionServiceClient::new(channel);
        let answer = client
            .check(request)
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))?;
        anyhow::Ok(answer.into_inner())
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&answer))?);
    } else {
        print!("{}", render(&answer));
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

/// `DECISION_STEP_UP` → `STEP_UP`, as the workload files and people write it.
pub fn decision_name(decision: pb::Decision) -> &'static str {
    decision.as_str_name().trim_start_matches("DECISION_")
}

pub fn reason_name(reason: pb::Reason) -> &'static str {
    reason.as_str_name().trim_start_matches("REASON_")
}

fn render(answer: &pb::CheckResponse) -> String {
    let mut out = format!(
        "{}  reason {}",
        decision_name(answer.decision()),
        reason_name(answer.reason())
    );
    if !answer.policy_id.is_empty() {
        out.push_str(&format!("  policy {}", answer.policy_id));
    }
    out.push_str(&format!(
        "  revision {}  decision {}\n",
        answer.revision, answer.decision_id
    ));
    for m in &answer.explanation {
        let marker = if m.deciding { "*" } else { " " };
        out.push_str(&format!(
            "{marker} {:<16} {:<18} {:<20} {}\n",
            m.policy_id,
            decision_name(m.action()),
            m.outcome()
                .as_str_name()
                .trim_start_matches("MATCH_OUTCOME_"),
            m.policy_name
        ));
    }
    out
}

fn to_json(answer: &pb::CheckResponse) -> serde_json::Value {
    serde_json::json!({
        "decision": decision_name(answer.decision()),
        "reason": reason_name(answer.reason()),
        "policy_id": (!answer.policy_id.is_empty()).then_some(&answer.policy_id),
        "revision": answer.revision,
        "decision_id": answer.decision_id,
        "explanation": answer.explanation.iter().map(|m| serde_json::json!({
            "policy_id": m.policy_id,
            "policy_name": m.policy_name,
            "action": decision_name(m.action()),
            "outcome": m.outcome().as_str_name().trim_start_matches("MATCH_OUTCOME_"),
            "matched": m.matched,
            "deciding": m.deciding,
        })).collect::<Vec<_>>(),
    })
}
