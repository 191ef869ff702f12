//! `--token-file` of `check` and `workload replay`: the decision token of a server started with
//! `--decision-token-file`, sent on every DecisionService call as `authorization: Bearer …`.

use anyhow::Context;
use portcullis_proto::v1 as pb;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A token file is a line or so; anything bigger is the wrong file.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenFile {
    /// A file holding the server's decision token (the secret of its --decision-token-file),
    /// sent as `authorization: Bearer <token>`. Surrounding whitespace is ignored.
    #[arg(long, env = "PORTCULLIS_DECISION_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every call when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
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

pub type Client =
    pb::decision_service_client::DecisionServiceClient<InterceptedService<Channel, Bearer>>;

impl TokenFile {
    /// The token's header value, read from the file (none without --token-file).
    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        bearer(self.token_file.as_deref())
    }
}

/// The header value of the token in `path` (none without a path).
pub fn bearer(path: Option<&std::path::Path>) -> anyhow::Result<Bearer> {
    let Some(path) = path else {
        return Ok(Bearer(None));
    };
    let token = read_token_file(path, "decision token")?;
    let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
        anyhow::anyhow!(
            "the decision token file `{}` holds characters a header cannot carry",
            path.display()
        )
    })?;
    Ok(Bearer(Some(value)))
}

/// The token a client token file holds (`what`: "decision token", "admin API token"), without
/// surrounding whitespace; a file bigger than a token, or empty, is an error naming it.
pub fn read_token_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let cannot = || format!("cannot read the {what} file `{}`", path.display());
    let size = std::fs::metadata(path).with_context(cannot)?.len();
    anyhow::ensure!(
        size <= MAX_TOKEN_FILE_BYTES,
        "the {what} file `{}` holds {size} bytes, more than a token ({MAX_TOKEN_FILE_BYTES} at most)",
        path.display()
    );
    let text = std::fs::read_to_string(path).with_context(cannot)?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the {what} file `{}` is empty",
        path.display()
    );
    Ok(token.to_owned())
}
